//! The network stage's real collaborators: sysfs carrier, the TCP/HTTP probe, and link
//! diagnostics from rtnetlink.

use super::dhcp_run::Keeper;
use super::netlink::{Link, Netlink, RtNetlink};
use super::probe::{Probe, probe_once};
use super::stage::{Assigned, Carrier, Chosen, NetError, Prober, Settings};
use crate::config::Config;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
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

/// DHCP with the real client (`dhcp_run`), on a packet socket per interface.
pub struct RealDhcp {
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
    pub timeout: Duration,
}

impl super::stage::Dhcp for RealDhcp {
    type Held = super::dhcp_run::Acquired;

    fn acquire(
        &self,
        link: &Link,
        hostname: Option<&str>,
        stop: &Arc<AtomicBool>,
    ) -> Result<(Assigned, Self::Held), String> {
        use super::dhcp_run::{Interface, Options, Seed, acquire};
        let iface = Interface::from_sysfs(&self.sys_root, &link.name).map_err(|e| e.to_string())?;
        let mut opts = Options::new(Seed::from_kernel(&self.dev_root, iface.mac));
        opts.hostname = hostname.map(str::to_string);
        opts.timeout = self.timeout;
        opts.stop = Some(stop.clone());
        let got = acquire(&iface, &opts).map_err(|e| {
            // The interface name is ours to add; the client's message starts with it.
            let m = e.to_string();
            m.strip_prefix(&format!("{}: ", link.name))
                .unwrap_or(&m)
                .to_string()
        })?;
        let l = got.lease();
        let a = Assigned {
            address: l.address,
            prefix: l.prefix,
            gateway: l.router,
            dns: l.dns.clone(),
            lease_time: l.lease_time,
        };
        if l.mask_defaulted {
            log::warn!(
                "network: {}: the lease has no subnet mask; using the classful /{}",
                link.name,
                l.prefix
            );
        }
        Ok((a, got))
    }

    fn release(&self, held: Self::Held) {
        if let Err(e) = held.release() {
            log::debug!("DHCPRELEASE: {e}");
        }
    }
}

/// The stage's settings from the configuration.
pub fn settings(cfg: &Config, interfaces: Option<Vec<String>>) -> Option<Settings> {
    let server = cfg.server?;
    Some(Settings {
        wait: cfg.wait,
        mac: cfg.mac,
        ip: cfg.ip.clone(),
        hostname: cfg.hostname.clone(),
        interfaces,
        ..Settings::new(SocketAddrV4::new(server, cfg.port))
    })
}

/// The network stage on this machine: rtnetlink, packet-socket DHCP, sysfs carrier and
/// the HTTP probe. A DHCP lease is kept alive (renewed) for as long as the returned
/// keeper lives.
pub fn bring_up(
    s: &Settings,
    sys_root: &Path,
    dev_root: &Path,
) -> Result<(Chosen, Option<Keeper>), NetError> {
    let mut nl = RtNetlink::open().map_err(|e| NetError(format!("rtnetlink: {e}")))?;
    let dhcp = Arc::new(RealDhcp {
        sys_root: sys_root.to_path_buf(),
        dev_root: dev_root.to_path_buf(),
        timeout: super::dhcp::DEFAULT_TIMEOUT,
    });
    let prober: Arc<dyn Prober> = Arc::new(HttpProber {
        server: s.server,
        timeout: super::probe::TIMEOUT,
    });
    let carrier: Arc<dyn Carrier> = Arc::new(SysfsCarrier {
        sys_root: sys_root.to_path_buf(),
    });
    let (chosen, held) = super::stage::bring_up(s, &mut nl, &dhcp, &prober, &carrier)?;
    let keeper = held.map(|h| h.keep(|_| {}));
    Ok((chosen, keeper))
}

/// `/etc/resolv.conf` from the chosen DNS servers (PID 1 only: the initrd has no other
/// resolver configuration, and names only matter for a `kldload.answers` URL).
pub fn write_resolv_conf(path: &Path, dns: &[std::net::Ipv4Addr]) -> std::io::Result<()> {
    if dns.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
    std::fs::write(path, text)
}
