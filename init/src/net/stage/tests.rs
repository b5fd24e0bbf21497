use super::*;
use crate::net::netlink::{Fake, Route};
use std::collections::HashMap;
use std::sync::Mutex;

fn link(index: u32, name: &str, mac: &str, kind: Option<&str>) -> Link {
    Link {
        index,
        name: name.into(),
        mac: mac.into(),
        ether: true,
        kind: kind.map(Into::into),
        up: false,
        carrier: false,
    }
}

fn lo() -> Link {
    Link {
        ether: false,
        ..link(1, "lo", "00:00:00:00:00:00", None)
    }
}

fn lease(a: [u8; 4], gw: Option<[u8; 4]>) -> Assigned {
    Assigned {
        address: Ipv4Addr::from(a),
        prefix: 24,
        gateway: gw.map(Ipv4Addr::from),
        dns: vec![],
        lease_time: Some(3600),
    }
}

/// DHCP per interface name: a lease or an error, after an optional delay.
#[derive(Default)]
struct FakeDhcp {
    replies: HashMap<String, (Duration, Result<Assigned, String>)>,
    asked: Mutex<Vec<(String, Option<String>)>>,
    released: Mutex<Vec<String>>,
}

impl Dhcp for FakeDhcp {
    type Held = String;
    fn release(&self, held: String) {
        self.released.lock().unwrap().push(held);
    }
    fn acquire(
        &self,
        link: &Link,
        hostname: Option<&str>,
        _stop: &Arc<AtomicBool>,
    ) -> Result<(Assigned, String), String> {
        self.asked
            .lock()
            .unwrap()
            .push((link.name.clone(), hostname.map(Into::into)));
        let (delay, r) = self
            .replies
            .get(&link.name)
            .cloned()
            .unwrap_or((Duration::ZERO, Err("no DHCP offer within 30 s".into())));
        std::thread::sleep(delay);
        r.map(|a| (a, link.name.clone()))
    }
}

/// Probe answers per device (`None` = unbound).
#[derive(Default)]
struct FakeProber {
    ok: Vec<Option<String>>,
    count: Mutex<HashMap<Option<String>, u32>>,
}

impl Prober for FakeProber {
    fn probe(&self, device: Option<&str>) -> Probe {
        let d = device.map(String::from);
        *self.count.lock().unwrap().entry(d.clone()).or_default() += 1;
        if self.ok.contains(&d) {
            Probe::Answered("HTTP/1.1 404 Not Found".into())
        } else {
            Probe::Unreachable("No route to host (os error 113)".into())
        }
    }
}

struct NoCarrierOn(Vec<&'static str>);

impl Carrier for NoCarrierOn {
    fn has_carrier(&self, link: &Link) -> bool {
        !self.0.contains(&link.name.as_str())
    }
}

/// Runs the stage with the fakes behind the `Arc`s it shares with its workers.
fn run(
    s: &Settings,
    n: &mut Fake,
    dhcp: &Arc<FakeDhcp>,
    prober: &Arc<FakeProber>,
    carrier: NoCarrierOn,
) -> Result<(Chosen, Option<String>), NetError> {
    let p: Arc<dyn Prober> = prober.clone();
    let c: Arc<dyn Carrier> = Arc::new(carrier);
    bring_up(s, n, dhcp, &p, &c)
}

fn settings() -> Settings {
    Settings {
        wait: 3,
        probe_interval: Duration::ZERO,
        carrier_wait: Duration::from_millis(200),
        ..Settings::new(SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 2), 8080))
    }
}

fn nl(links: Vec<Link>) -> Fake {
    Fake {
        links,
        ..Fake::default()
    }
}

#[test]
fn one_nic_lease_probe_and_done() {
    let mut n = nl(vec![lo(), link(2, "eth0", "52:54:00:12:34:56", None)]);
    let dhcp = Arc::new(FakeDhcp {
        replies: [(
            "eth0".into(),
            (
                Duration::ZERO,
                Ok(lease([10, 0, 2, 15], Some([10, 0, 2, 2]))),
            ),
        )]
        .into(),
        ..FakeDhcp::default()
    });
    let prober = Arc::new(FakeProber {
        ok: vec![Some("eth0".into())],
        ..FakeProber::default()
    });
    let c = run(&settings(), &mut n, &dhcp, &prober, NoCarrierOn(vec![]))
        .unwrap()
        .0;
    assert_eq!(c.interface, "eth0");
    assert_eq!(c.method, "dhcp");
    assert_eq!(c.address, Some(Ipv4Addr::new(10, 0, 2, 15)));
    assert_eq!(c.mac, "52:54:00:12:34:56");
    assert_eq!(
        n.calls,
        vec![
            "up 1",
            "up 2",
            "addr 2 10.0.2.15/24",
            "route 2 via 10.0.2.2 metric 100"
        ]
    );
}

#[test]
fn a_lease_that_cannot_reach_the_server_is_flushed_and_the_next_wins() {
    let mut n = nl(vec![
        lo(),
        link(2, "eth0", "52:54:00:00:00:01", None),
        link(3, "eth1", "52:54:00:00:00:02", None),
    ]);
    let dhcp = Arc::new(FakeDhcp {
        replies: [
            (
                "eth0".into(),
                (
                    Duration::ZERO,
                    Ok(lease([10, 0, 2, 15], Some([10, 0, 2, 2]))),
                ),
            ),
            // The good NIC's lease arrives later.
            (
                "eth1".into(),
                (
                    Duration::from_millis(100),
                    Ok(lease([10, 0, 3, 15], Some([10, 0, 3, 2]))),
                ),
            ),
        ]
        .into(),
        ..FakeDhcp::default()
    });
    let prober = Arc::new(FakeProber {
        ok: vec![Some("eth1".into())],
        ..FakeProber::default()
    });
    let c = run(&settings(), &mut n, &dhcp, &prober, NoCarrierOn(vec![]))
        .unwrap()
        .0;
    assert_eq!(c.interface, "eth1");
    // eth0 was applied, probed through eth0 only, then flushed.
    assert!(n.calls.contains(&"addr 2 10.0.2.15/24".to_string()));
    assert!(
        n.calls.contains(&"deladdr 2 10.0.2.15/24".to_string()),
        "{:?}",
        n.calls
    );
    assert!(n.addrs.iter().all(|a| a.index != 2));
    assert!(n.routes.iter().all(|r| r.oif != Some(2)));
    assert!(n.routes.iter().any(|r| r.oif == Some(3) && r.is_default()));
    assert_eq!(prober.count.lock().unwrap()[&Some("eth0".to_string())], 3);
    // The losing lease was given back to its server.
    assert_eq!(*dhcp.released.lock().unwrap(), vec!["eth0".to_string()]);
}

#[test]
fn no_interface_works_gives_one_error_naming_each() {
    let mut n = nl(vec![
        lo(),
        link(2, "eth0", "52:54:00:00:00:01", None),
        link(3, "eth1", "52:54:00:00:00:02", None),
        link(4, "eth2", "52:54:00:00:00:03", None),
        link(5, "br0", "52:54:00:00:00:04", Some("bridge")),
    ]);
    let dhcp = Arc::new(FakeDhcp {
        replies: [(
            "eth0".into(),
            (
                Duration::ZERO,
                Ok(lease([10, 0, 2, 15], Some([10, 0, 2, 2]))),
            ),
        )]
        .into(),
        ..FakeDhcp::default()
    });
    let e = run(
        &settings(),
        &mut n,
        &dhcp,
        &Arc::new(FakeProber::default()),
        NoCarrierOn(vec!["eth2"]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("no interface reaches 10.0.2.2:8080: "), "{e}");
    assert!(e.contains("eth0: lease applied but TCP unreachable (No route to host (os error 113)) after 3 probes"), "{e}");
    assert!(e.contains("eth1: no DHCP offer within 30 s"), "{e}");
    assert!(e.contains("eth2: no carrier within 0 s"), "{e}");
    assert!(e.contains("br0: virtual (bridge)"), "{e}");
    assert!(n.addrs.is_empty(), "the failed lease was flushed");
}

#[test]
fn ze_mac_pins_one_nic_in_any_case() {
    let mut n = nl(vec![
        lo(),
        link(2, "eth0", "52:54:00:00:00:01", None),
        link(3, "eth1", "52:54:00:00:00:02", None),
    ]);
    let dhcp = Arc::new(FakeDhcp {
        replies: [
            (
                "eth0".into(),
                (
                    Duration::ZERO,
                    Ok(lease([10, 0, 2, 15], Some([10, 0, 2, 2]))),
                ),
            ),
            (
                "eth1".into(),
                (
                    Duration::ZERO,
                    Ok(lease([10, 0, 3, 15], Some([10, 0, 3, 2]))),
                ),
            ),
        ]
        .into(),
        ..FakeDhcp::default()
    });
    let prober = Arc::new(FakeProber {
        ok: vec![Some("eth0".into()), Some("eth1".into())],
        ..FakeProber::default()
    });
    let s = Settings {
        mac: Mac::parse("52:54:00:00:00:02"),
        hostname: Some("node7".into()),
        ..settings()
    };
    let c = run(&s, &mut n, &dhcp, &prober, NoCarrierOn(vec![]))
        .unwrap()
        .0;
    assert_eq!(c.interface, "eth1");
    assert_eq!(
        *dhcp.asked.lock().unwrap(),
        vec![("eth1".to_string(), Some("node7".to_string()))]
    );
}

#[test]
fn a_ze_mac_that_matches_nothing_lists_what_exists() {
    let links = vec![lo(), link(2, "eth0", "52:54:00:00:00:01", None)];
    let e = candidates(&links, Mac::parse("AA:BB:CC:DD:EE:FF"), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ze.mac aa:bb:cc:dd:ee:ff: no interface has this MAC (have: eth0 52:54:00:00:00:01)"
    );
}

#[test]
fn virtual_and_non_ethernet_links_are_skipped_unless_named() {
    let mut tun = link(6, "tun0", "", Some("tun"));
    tun.ether = false;
    let links = vec![
        lo(),
        link(2, "eth0", "52:54:00:00:00:01", None),
        link(3, "veth0", "52:54:00:00:00:02", Some("veth")),
        link(4, "wg0", "", Some("wireguard")),
        link(5, "dummy0", "52:54:00:00:00:05", Some("dummy")),
        tun,
    ];
    let (take, skipped) = candidates(&links, None, None).unwrap();
    assert_eq!(
        take.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        vec!["eth0"]
    );
    assert_eq!(
        skipped,
        vec![
            "veth0: virtual (veth)",
            "wg0: virtual (wireguard)",
            "dummy0: virtual (dummy)",
            "tun0: not ethernet"
        ]
    );
    let named = vec!["veth0".to_string()];
    let (take, _) = candidates(&links, None, Some(&named)).unwrap();
    assert_eq!(take[0].name, "veth0");
}

#[test]
fn an_existing_default_route_is_trusted_only_if_the_probe_answers() {
    let links = vec![lo(), link(2, "eth0", "52:54:00:00:00:01", None)];
    let default = Route {
        destination: Ipv4Addr::UNSPECIFIED,
        prefix: 0,
        gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
        oif: Some(2),
        metric: 0,
        table: 254,
    };
    // Answers: no DHCP at all.
    let mut n = Fake {
        links: links.clone(),
        routes: vec![default.clone()],
        ..Fake::default()
    };
    let dhcp = Arc::new(FakeDhcp::default());
    let prober = Arc::new(FakeProber {
        ok: vec![None],
        ..FakeProber::default()
    });
    let c = run(&settings(), &mut n, &dhcp, &prober, NoCarrierOn(vec![]))
        .unwrap()
        .0;
    assert_eq!((c.method, c.interface.as_str()), ("existing-route", "eth0"));
    assert!(dhcp.asked.lock().unwrap().is_empty());

    // Does not answer: DHCP runs.
    let mut n = Fake {
        links,
        routes: vec![default],
        ..Fake::default()
    };
    let dhcp = Arc::new(FakeDhcp {
        replies: [(
            "eth0".into(),
            (
                Duration::ZERO,
                Ok(lease([10, 0, 2, 15], Some([10, 0, 2, 2]))),
            ),
        )]
        .into(),
        ..FakeDhcp::default()
    });
    let prober = Arc::new(FakeProber {
        ok: vec![Some("eth0".into())],
        ..FakeProber::default()
    });
    let c = run(&settings(), &mut n, &dhcp, &prober, NoCarrierOn(vec![]))
        .unwrap()
        .0;
    assert_eq!(c.method, "dhcp");
    assert_eq!(dhcp.asked.lock().unwrap().len(), 1);
}

#[test]
fn static_ip_is_applied_without_dhcp() {
    let mut n = nl(vec![lo(), link(2, "eth0", "52:54:00:00:00:01", None)]);
    let s = Settings {
        ip: crate::config::ip::parse("10.0.2.15::10.0.2.2:255.255.255.0:h:eth0:off").unwrap(),
        ..settings()
    };
    let dhcp = Arc::new(FakeDhcp::default());
    let prober = Arc::new(FakeProber {
        ok: vec![None],
        ..FakeProber::default()
    });
    let c = run(&s, &mut n, &dhcp, &prober, NoCarrierOn(vec![]))
        .unwrap()
        .0;
    assert_eq!(c.method, "static");
    assert!(dhcp.asked.lock().unwrap().is_empty());
    assert_eq!(
        n.calls,
        vec![
            "up 1",
            "up 2",
            "addr 2 10.0.2.15/24",
            "route 2 via 10.0.2.2 metric 0"
        ]
    );
}

#[test]
fn wait_zero_takes_the_first_lease_without_probing() {
    let mut n = nl(vec![lo(), link(2, "eth0", "52:54:00:00:00:01", None)]);
    let dhcp = Arc::new(FakeDhcp {
        replies: [(
            "eth0".into(),
            (Duration::ZERO, Ok(lease([10, 0, 2, 15], None))),
        )]
        .into(),
        ..FakeDhcp::default()
    });
    let prober = Arc::new(FakeProber::default());
    let s = Settings {
        wait: 0,
        ..settings()
    };
    let c = run(&s, &mut n, &dhcp, &prober, NoCarrierOn(vec![]))
        .unwrap()
        .0;
    assert_eq!(c.interface, "eth0");
    assert!(prober.count.lock().unwrap().is_empty());
    // No router: an address and its prefix route, no default route.
    assert!(n.routes.iter().all(|r| !r.is_default()));
}

#[test]
fn probe_until_paces_attempts_and_reports_the_last_failure() {
    let prober = Arc::new(FakeProber::default());
    let stop = AtomicBool::new(false);
    let t = Instant::now();
    let e = probe_until(&*prober, Some("eth9"), 3, Duration::from_millis(50), &stop).unwrap_err();
    // Two gaps between three attempts.
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        e,
        "TCP unreachable (No route to host (os error 113)) after 3 probes"
    );
}
