//! The network stage's real collaborators: sysfs carrier, the TCP/HTTP probe, and link
//! diagnostics from rtnetlink.

use super::netlink::{Link, Netlink, RtNetlink};
use super::probe::{Probe, probe_once};
use super::stage::{Carrier, Prober};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

/// Carrier from `<sys_root>/class/net/<name>/carrier` (reading it fails while the link
/// is down, which counts as no carrier).
pub struct SysfsCarrier {
    pub sys_root: PathBuf,
}

impl Carrier for SysfsCarrier {
    fn has_carrier(&self, link: &Link) -> bool {
        std::fs::read_to_string(
            self.sys_root
                .join("class/net")
                .join(&link.name)
                .join("carrier"),
        )
        .is_ok_and(|s| s.trim() == "1")
    }
}

/// Probes `server` over TCP/HTTP with `timeout` per attempt.
pub struct HttpProber {
    pub server: SocketAddrV4,
    pub timeout: Duration,
}

impl Prober for HttpProber {
    fn probe(&self, device: Option<&str>) -> Probe {
        probe_once(self.server, device, self.timeout)
    }

    fn diagnostics(&self) -> String {
        match RtNetlink::open() {
            Ok(mut nl) => diagnostics(&mut nl),
            Err(e) => format!("diagnostics: rtnetlink: {e}"),
        }
    }
}

/// One line per link with its state and addresses, then the routes.
pub fn diagnostics(nl: &mut dyn Netlink) -> String {
    let links = nl.links().unwrap_or_default();
    let addrs = nl.addresses().unwrap_or_default();
    let routes = nl.routes().unwrap_or_default();
    let mut out = Vec::new();
    for l in links.iter().filter(|l| l.name != "lo") {
        let a: Vec<String> = addrs
            .iter()
            .filter(|a| a.index == l.index)
            .map(|a| format!("{}/{}", a.address, a.prefix))
            .collect();
        out.push(format!(
            "link {} {} {} carrier={} addr={}",
            l.name,
            l.mac,
            if l.up { "up" } else { "down" },
            u8::from(l.carrier),
            if a.is_empty() {
                "-".into()
            } else {
                a.join(",")
            }
        ));
    }
    let name = |i: Option<u32>| {
        i.and_then(|i| links.iter().find(|l| l.index == i))
            .map(|l| l.name.clone())
            .unwrap_or_else(|| "-".into())
    };
    for r in &routes {
        out.push(format!(
            "route {}/{} via {} dev {} metric {}",
            r.destination,
            r.prefix,
            r.gateway
                .map(|g| g.to_string())
                .unwrap_or_else(|| "-".into()),
            name(r.oif),
            r.metric
        ));
    }
    if out.is_empty() {
        "no links, addresses or routes".into()
    } else {
        out.join("; ")
    }
}
