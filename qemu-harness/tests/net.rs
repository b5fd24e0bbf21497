//! The network stage (`ze-init net`) against real peers in network namespaces: dnsmasq
//! and ISC dhcpd leases really applied (checked with `ip` in the client namespace), two
//! links where only the second reaches the server, no DHCP server at all, and a static
//! `ip=`. The probe target is the harness's HTTP server running in the server
//! namespace. Only addresses inside the namespaces are used.
//!
//! Root tier: `make e2e` runs these with `--ignored`.

use qemu_harness::netns::{Daemon, Dnsmasq, IscDhcpd, Lan, Netns, output_within, veth};
use qemu_harness::{artifacts, prereq};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

fn ready(extra: &[&str]) -> bool {
    let mut cmds = vec!["ip"];
    cmds.extend(extra);
    prereq::require_root() && prereq::require(&cmds)
}

/// Starts the harness's HTTP server in `ns` on `addr:8080`, serving an empty tree (the
/// probe only needs an HTTP answer: a 404 is reachable).
fn http_server(ns: &Netns, addr: Ipv4Addr, dir: &Path) -> Daemon {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_ze-harness"));
    cmd.arg("serve").arg(&www).arg(format!("{addr}:8080"));
    let mut d = ns
        .spawn("http", cmd, &dir.join(format!("http-{addr}.log")))
        .unwrap();
    d.wait_ready(Duration::from_secs(10), |d| {
        Ok(d.log().contains("listening on"))
    })
    .unwrap();
    d
}

/// Runs `ze-init net` in `ns`.
fn ze_net(ns: &Netns, cmdline: &str, extra: &[&str], limit: Duration) -> (Output, f64) {
    let bin = artifacts::ze_init_host().expect("building ze-init");
    let mut cmd = ns.command(&bin);
    cmd.args(["net", "--cmdline", cmdline]).args(extra);
    let t = Instant::now();
    let out = output_within(&mut cmd, limit).expect("running ze-init net");
    (out, t.elapsed().as_secs_f64())
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "ze-init net failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "root tier: network namespaces; run by make e2e"]
fn dnsmasq_lease_is_applied_and_the_probe_answers() {
    if !ready(&["dnsmasq"]) {
        return;
    }
    let mut lan = Lan::new("netdm").unwrap();
    lan.start_dnsmasq(&Dnsmasq::default()).unwrap();
    let _http = http_server(&lan.server, lan.server_addr, lan.dir());
    let (out, _) = ze_net(
        &lan.client,
        "ze.server=10.77.0.1 ze.port=8080 ze.wait=5",
        &["--interfaces", &lan.client_if],
        Duration::from_secs(40),
    );
    let doc = json(&out);
    assert_eq!(doc["interface"], "cli0");
    assert_eq!(doc["method"], "dhcp");
    assert_eq!(doc["gateway"], "10.77.0.1");
    assert_eq!(doc["lease_time"], 3600);
    let a = doc["address"].as_str().unwrap();
    // Applied for real: the namespace's own view.
    let addrs = lan
        .client
        .ip(&["-4", "addr", "show", "dev", "cli0"])
        .unwrap();
    assert!(addrs.contains(&format!("inet {a}/24")), "{addrs}");
    let routes = lan.client.ip(&["-4", "route", "show", "default"]).unwrap();
    assert!(
        routes.contains("default via 10.77.0.1 dev cli0"),
        "{routes}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP answered (HTTP/1.1 404"));
}

#[test]
#[ignore = "root tier: network namespaces; run by make e2e"]
fn isc_dhcpd_lease_is_applied() {
    if !ready(&["dhcpd"]) {
        return;
    }
    let mut lan = Lan::new("netisc").unwrap();
    lan.start_dhcpd(&IscDhcpd::default()).unwrap();
    let _http = http_server(&lan.server, lan.server_addr, lan.dir());
    let (out, _) = ze_net(
        &lan.client,
        "ze.server=10.77.0.1 ze.port=8080 ze.wait=5",
        &["--interfaces", &lan.client_if],
        Duration::from_secs(40),
    );
    let doc = json(&out);
    let a = doc["address"].as_str().unwrap();
    let addrs = lan
        .client
        .ip(&["-4", "addr", "show", "dev", "cli0"])
        .unwrap();
    assert!(addrs.contains(&format!("inet {a}/")), "{addrs}");
}

/// The client namespace has two links, each to its own DHCP server; only the second
/// server's network holds the HTTP server, and the first has no route to it.
#[test]
#[ignore = "root tier: network namespaces; run by make e2e"]
fn the_lease_that_cannot_reach_the_server_is_flushed_and_the_second_wins() {
    if !ready(&["dnsmasq"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let client = Netns::new("net2c").unwrap();
    let a = Netns::new("net2a").unwrap();
    let b = Netns::new("net2b").unwrap();
    veth(&a, "srva", &client, "cli0").unwrap();
    veth(&b, "srvb", &client, "cli1").unwrap();
    a.add_address("srva", "10.77.0.1/24").unwrap();
    b.add_address("srvb", "10.78.0.1/24").unwrap();
    let da = dir.path().join("a");
    let db = dir.path().join("b");
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let _dhcp_a = Dnsmasq::default().start(&a, "srva", &da).unwrap();
    let _dhcp_b = Dnsmasq {
        range: (Ipv4Addr::new(10, 78, 0, 100), Ipv4Addr::new(10, 78, 0, 199)),
        router: Some(Ipv4Addr::new(10, 78, 0, 1)),
        ..Dnsmasq::default()
    }
    .start(&b, "srvb", &db)
    .unwrap();
    let _http = http_server(&b, Ipv4Addr::new(10, 78, 0, 1), dir.path());
    // Network A cannot reach 10.78.0.1: its router drops what it cannot route.
    let (out, _) = ze_net(
        &client,
        "ze.server=10.78.0.1 ze.port=8080 ze.wait=3",
        &["--interfaces", "cli0,cli1"],
        Duration::from_secs(60),
    );
    let doc = json(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(doc["interface"], "cli1", "{doc}");
    // The winner does not wait for the loser's probe to time out (2 s).
    assert!(doc["elapsed_ms"].as_u64().unwrap() < 1500, "{doc}\n{log}");
    assert!(
        log.contains("cli0: skipped, cli1 won; flushing its lease"),
        "{log}"
    );
    // cli0's lease is gone; cli1 keeps its own.
    let a0 = client.ip(&["-4", "addr", "show", "dev", "cli0"]).unwrap();
    assert!(!a0.contains("inet "), "cli0 still has an address: {a0}");
    let routes = client.ip(&["-4", "route", "show"]).unwrap();
    assert!(!routes.contains("cli0"), "{routes}");
    assert!(
        routes.contains("default via 10.78.0.1 dev cli1"),
        "{routes}"
    );
}

#[test]
#[ignore = "root tier: network namespaces; run by make e2e"]
fn no_dhcp_server_fails_within_the_documented_time() {
    if !ready(&[]) {
        return;
    }
    let lan = Lan::new("netnone").unwrap();
    let (out, secs) = ze_net(
        &lan.client,
        "ze.server=10.77.0.1 ze.port=8080",
        &["--interfaces", &lan.client_if],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let fatal: Vec<&str> = err.lines().filter(|l| l.contains("FATAL")).collect();
    assert_eq!(fatal.len(), 1, "{err}");
    assert!(
        fatal[0].starts_with("[ze-install] FATAL: network: no interface reaches 10.77.0.1:8080: cli0: no DHCP lease after 30 s"),
        "{}",
        fatal[0]
    );
    // docs/network.md: DHCP gives up after 30 s (carrier is immediate on veth).
    assert!((29.0..40.0).contains(&secs), "took {secs:.1} s");
}

#[test]
#[ignore = "root tier: network namespaces; run by make e2e"]
fn static_ip_is_applied_without_dhcp() {
    if !ready(&["dnsmasq"]) {
        return;
    }
    let mut lan = Lan::new("netst").unwrap();
    // A DHCP server is there but must not be asked.
    lan.start_dnsmasq(&Dnsmasq::default()).unwrap();
    let _http = http_server(&lan.server, lan.server_addr, lan.dir());
    let (out, _) = ze_net(
        &lan.client,
        "ze.server=10.77.0.1 ze.port=8080 ze.wait=5 ip=10.77.0.42::10.77.0.1:255.255.255.0:node:cli0:off",
        &[],
        Duration::from_secs(30),
    );
    let doc = json(&out);
    assert_eq!(doc["method"], "static");
    assert_eq!(doc["address"], "10.77.0.42");
    let addrs = lan
        .client
        .ip(&["-4", "addr", "show", "dev", "cli0"])
        .unwrap();
    assert!(addrs.contains("inet 10.77.0.42/24"), "{addrs}");
    let routes = lan.client.ip(&["-4", "route", "show", "default"]).unwrap();
    assert!(
        routes.contains("default via 10.77.0.1 dev cli0"),
        "{routes}"
    );
    let leases = Dnsmasq::leases(lan.dir());
    assert!(
        leases.trim().is_empty(),
        "dnsmasq handed out a lease: {leases}"
    );
}
