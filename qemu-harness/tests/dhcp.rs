//! The DHCP client against real servers (dnsmasq, ISC dhcpd), each in its own network
//! namespace with the client in another, joined by a veth pair. `ze-init dhcp` runs in
//! the client namespace; the result is judged from its JSON and from the server's own
//! lease file and log.
//!
//! Root tier: needs root (network namespaces) and the servers; `make e2e` runs these
//! with `--ignored`. Locally a missing prerequisite skips; under CI=true it fails.

use qemu_harness::netns::{Dnsmasq, IscDhcpd, Lan, output_within};
use qemu_harness::{artifacts, prereq};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::process::Output;
use std::time::{Duration, Instant};

fn ready(server: &str) -> bool {
    prereq::require_root() && prereq::require(&["ip", server])
}

/// Runs `ze-init dhcp --interface cli0 <args>` in the client namespace.
fn ze_dhcp(lan: &Lan, args: &[&str], limit: Duration) -> Output {
    let bin = artifacts::ze_init_host().expect("building ze-init");
    let mut cmd = lan.client.command(&bin);
    cmd.args(["dhcp", "--interface", &lan.client_if]).args(args);
    output_within(&mut cmd, limit).expect("running ze-init dhcp")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "ze-init dhcp failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

fn addr(v: &Value) -> Ipv4Addr {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .parse()
        .unwrap()
}

fn in_pool(a: Ipv4Addr) -> bool {
    (Ipv4Addr::new(10, 77, 0, 100)..=Ipv4Addr::new(10, 77, 0, 199)).contains(&a)
}

#[test]
#[ignore = "root tier: network namespaces and dnsmasq; run by make e2e"]
fn dhcp_lease_from_dnsmasq() {
    if !ready("dnsmasq") {
        return;
    }
    let mut lan = Lan::new("dnsmq").unwrap();
    let cfg = Dnsmasq {
        dns: vec![Ipv4Addr::new(10, 77, 0, 53), Ipv4Addr::new(10, 77, 0, 54)],
        ..Dnsmasq::default()
    };
    lan.start_dnsmasq(&cfg).unwrap();
    let mac = lan.client.mac(&lan.client_if).unwrap();
    let out = ze_dhcp(
        &lan,
        &["--hostname", "ze-test-node"],
        Duration::from_secs(20),
    );
    let doc = json(&out);
    let lease = &doc["lease"];
    let a = addr(&lease["address"]);
    assert!(in_pool(a), "{doc}");
    assert_eq!(lease["prefix"], 24);
    assert_eq!(lease["mask_defaulted"], false);
    assert_eq!(addr(&lease["router"]), lan.server_addr);
    assert_eq!(addr(&lease["server_id"]), lan.server_addr);
    assert_eq!(
        lease["dns"],
        serde_json::json!(["10.77.0.53", "10.77.0.54"])
    );
    assert_eq!(lease["lease_time"], 3600);
    assert_eq!(
        (lease["t1"].as_u64(), lease["t2"].as_u64()),
        (Some(1800), Some(3150))
    );
    assert_eq!(doc["mac"], mac.as_str());
    assert!(doc["elapsed_ms"].as_f64().unwrap() < 5000.0, "{doc}");
    // From the server's side: the lease file binds that address to our MAC, with the
    // hostname we sent.
    let leases = Dnsmasq::leases(lan.dir());
    let line = leases
        .lines()
        .find(|l| l.contains(&mac))
        .unwrap_or_else(|| panic!("no lease for {mac}:\n{leases}"));
    assert!(line.contains(&format!(" {a} ")), "{line}");
    assert!(line.contains("ze-test-node"), "{line}");
    // Logged as the operator will see it.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!("cli0: DHCPOFFER {a} from 10.77.0.1")),
        "{log}"
    );
}

#[test]
#[ignore = "root tier: network namespaces and dnsmasq; run by make e2e"]
fn dhcp_rapid_commit_with_dnsmasq() {
    if !ready("dnsmasq") {
        return;
    }
    let mut lan = Lan::new("rapid").unwrap();
    let cfg = Dnsmasq {
        rapid_commit: true,
        ..Dnsmasq::default()
    };
    lan.start_dnsmasq(&cfg).unwrap();
    let doc = json(&ze_dhcp(&lan, &[], Duration::from_secs(20)));
    assert!(in_pool(addr(&doc["lease"]["address"])), "{doc}");
    // Two messages, not four: the server never saw a REQUEST.
    let server_log = std::fs::read_to_string(lan.dir().join("dnsmasq.log")).unwrap();
    assert!(server_log.contains("DHCPACK(srv0)"), "{server_log}");
    assert!(!server_log.contains("DHCPREQUEST"), "{server_log}");
    assert!(!server_log.contains("DHCPOFFER"), "{server_log}");
}

#[test]
#[ignore = "root tier: network namespaces and ISC dhcpd; run by make e2e"]
fn dhcp_lease_from_isc_dhcpd() {
    if !ready("dhcpd") {
        return;
    }
    let mut lan = Lan::new("iscd").unwrap();
    lan.start_dhcpd(&IscDhcpd::default()).unwrap();
    let mac = lan.client.mac(&lan.client_if).unwrap();
    let doc = json(&ze_dhcp(&lan, &[], Duration::from_secs(20)));
    let lease = &doc["lease"];
    let a = addr(&lease["address"]);
    assert!(in_pool(a), "{doc}");
    assert_eq!(lease["prefix"], 24);
    assert_eq!(addr(&lease["router"]), lan.server_addr);
    assert_eq!(lease["dns"], serde_json::json!(["10.77.0.53"]));
    assert_eq!(lease["lease_time"], 600);
    // dhcpd's lease database records the binding.
    let db = std::fs::read_to_string(lan.dir().join("dhcpd.leases")).unwrap();
    let entry = db
        .split("lease ")
        .find(|e| e.contains(&mac))
        .unwrap_or_else(|| panic!("no lease for {mac}:\n{db}"));
    assert!(entry.starts_with(&a.to_string()), "{entry}");
    assert!(entry.contains("binding state active"), "{entry}");
}

#[test]
#[ignore = "root tier: network namespaces and ISC dhcpd; run by make e2e"]
fn dhcp_renews_at_t1_by_unicast_with_isc_dhcpd() {
    if !ready("dhcpd") {
        return;
    }
    let mut lan = Lan::new("renew").unwrap();
    let mac = lan.client.mac(&lan.client_if).unwrap();
    let fixed = Ipv4Addr::new(10, 77, 0, 42);
    // The server answers a renewal by unicast to the leased address, which the kernel
    // must own to answer the server's ARP: configure it up front, as the network
    // stage does after binding.
    lan.client
        .add_address(&lan.client_if, &format!("{fixed}/24"))
        .unwrap();
    let cfg = IscDhcpd {
        lease_secs: 8,
        fixed: vec![(mac.clone(), fixed)],
        ..IscDhcpd::default()
    };
    lan.start_dhcpd(&cfg).unwrap();
    // Lease 8 s: T1 at 4 s. Hold 6 s: one renewal.
    let doc = json(&ze_dhcp(&lan, &["--hold", "6"], Duration::from_secs(30)));
    assert_eq!(addr(&doc["lease"]["address"]), fixed);
    assert_eq!(doc["events"], serde_json::json!(["renewed"]), "{doc}");
    // The server saw a RENEWING request: unicast, so dhcpd names no server in it
    // ("DHCPREQUEST for X from" without "(server)").
    let log = std::fs::read_to_string(lan.dir().join("dhcpd.log")).unwrap();
    let renew = format!("DHCPREQUEST for {fixed} from {mac}");
    assert!(log.contains(&renew), "{log}");
    assert_eq!(log.matches("DHCPACK on").count(), 2, "{log}");
    // And it came by unicast: the server's IP layer counted exactly two broadcasts,
    // the DISCOVER and the selecting REQUEST (a rebinding REQUEST would be a third).
    assert_eq!(ip_ext(&lan, "InBcastPkts"), 2);
}

/// A counter of the `IpExt` line of the server namespace's /proc/net/netstat.
fn ip_ext(lan: &Lan, name: &str) -> u64 {
    let out = lan
        .server
        .command("cat")
        .arg("/proc/net/netstat")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with("IpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let i = names.split_whitespace().position(|n| n == name).unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

#[test]
#[ignore = "root tier: network namespaces; run by make e2e"]
fn dhcp_without_server_fails_within_the_bound() {
    if !(prereq::require_root() && prereq::require(&["ip"])) {
        return;
    }
    let lan = Lan::new("nosrv").unwrap();
    let started = Instant::now();
    let out = ze_dhcp(&lan, &["--timeout", "3"], Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    let fatal: Vec<&str> = err.lines().filter(|l| l.contains("FATAL")).collect();
    assert_eq!(
        fatal,
        vec![
            "[ze-install] FATAL: network: cli0: no DHCP lease after 3 s (1 DHCPDISCOVER sent, no DHCPOFFER)"
        ],
        "{err}"
    );
    // The bound holds from outside too (process start-up included).
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
