//! The network stage's policy (SPEC "HTTP source"): find a path to `ze.server`.
//!
//! 1. A static `ip=` is applied as given, then probed.
//! 2. A default route that already exists (kernel `ip=dhcp`) is trusted only if the
//!    probe answers through it.
//! 3. Otherwise every candidate interface — ethernet hardware, or only `ze.mac`'s — is
//!    brought up, and each waits for carrier (10 s) and runs DHCP in its own worker,
//!    concurrently. Each lease is applied as it arrives (a default route with a metric of
//!    its own) and probed through its interface; the first interface whose probe answers
//!    wins. The others are flushed and logged as skipped with the reason.
//! 4. If none works, one error names every interface and why.
//!
//! Netlink calls all happen on the calling thread; the workers only wait, run DHCP and
//! probe, and report events.

use super::netlink::{Link, Netlink};
use super::probe::Probe;
use crate::config::{IpConfig, Mac, StaticIp};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An address configuration, from a DHCP lease or from `ip=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assigned {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// Seconds; `None` for static or infinite.
    pub lease_time: Option<u32>,
}

/// What the stage settled on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chosen {
    pub interface: String,
    pub mac: String,
    /// `existing-route`, `dhcp` or `static`.
    pub method: &'static str,
    pub address: Option<Ipv4Addr>,
    pub prefix: Option<u8>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_time: Option<u32>,
    pub elapsed_ms: u64,
}

/// Runs DHCP on one interface (a worker thread calls it).
pub trait Dhcp: Send + Sync + 'static {
    /// The lease's live state: kept alive for the winner, released for the others.
    type Held: Send;
    /// Runs until a lease, a give-up, or `stop` (another interface won).
    fn acquire(
        &self,
        link: &Link,
        hostname: Option<&str>,
        stop: &Arc<AtomicBool>,
    ) -> Result<(Assigned, Self::Held), String>;
    /// Gives back a lease that will not be used (DHCPRELEASE).
    fn release(&self, held: Self::Held);
}

/// Probes the server, optionally bound to one interface.
pub trait Prober: Send + Sync + 'static {
    fn probe(&self, device: Option<&str>) -> Probe;
    /// Link state, addresses and routes, for the log every 10 failed attempts.
    fn diagnostics(&self) -> String {
        String::new()
    }
}

/// Whether an interface has carrier.
pub trait Carrier: Send + Sync + 'static {
    fn has_carrier(&self, link: &Link) -> bool;
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: SocketAddrV4,
    /// Probe attempts; 0 skips the probe.
    pub wait: u32,
    /// Minimum time between probe attempts (one attempt's timeout).
    pub probe_interval: Duration,
    pub carrier_wait: Duration,
    pub mac: Option<Mac>,
    pub ip: IpConfig,
    pub hostname: Option<String>,
    /// Use exactly these interfaces, whatever their kind (host mode, tests with veth).
    pub interfaces: Option<Vec<String>>,
}

impl Settings {
    pub fn new(server: SocketAddrV4) -> Settings {
        Settings {
            server,
            wait: 30,
            probe_interval: super::probe::TIMEOUT,
            carrier_wait: Duration::from_secs(10),
            mac: None,
            ip: IpConfig::default(),
            hostname: None,
            interfaces: None,
        }
    }
}

/// The stage's failure: one line naming each interface and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NetError(pub String);

/// Picks the interfaces to try, and says why each other one is not.
pub fn candidates(
    links: &[Link],
    mac: Option<Mac>,
    named: Option<&[String]>,
) -> Result<(Vec<Link>, Vec<String>), NetError> {
    let mut take = Vec::new();
    let mut skipped = Vec::new();
    for l in links {
        if l.name == "lo" {
            continue;
        }
        let why = if let Some(names) = named {
            (!names.contains(&l.name)).then(|| "not named in --interfaces".to_string())
        } else if let Some(m) = mac {
            (!l.mac.eq_ignore_ascii_case(&m.to_string())).then(|| format!("MAC is not ze.mac {m}"))
        } else if !l.ether {
            Some("not ethernet".into())
        } else {
            // Hardware NICs carry no rtnetlink link kind; bridge, veth, dummy,
            // wireguard, xfrm, tun, vlan, bond… all do.
            l.kind.as_deref().map(|k| format!("virtual ({k})"))
        };
        match why {
            None => take.push(l.clone()),
            Some(w) => skipped.push(format!("{}: {w}", l.name)),
        }
    }
    if take.is_empty() {
        let have: Vec<String> = links
            .iter()
            .filter(|l| l.name != "lo")
            .map(|l| format!("{} {}", l.name, l.mac))
            .collect();
        let have = if have.is_empty() {
            "none".into()
        } else {
            have.join(", ")
        };
        return Err(NetError(match (mac, named) {
            (_, Some(names)) => format!("no interface named {} (have: {have})", names.join(", ")),
            (Some(m), _) => format!("ze.mac {m}: no interface has this MAC (have: {have})"),
            _ => format!("no ethernet interface (have: {have})"),
        }));
    }
    Ok((take, skipped))
}

enum Event<H> {
    Lease(usize, Assigned, H),
    Failed(usize, String),
    ProbeOk(usize, Probe),
    ProbeFailed(usize, String),
}

/// Probes up to `attempts` times (at least `interval` apart), logging diagnostics every
/// 10 failures. `Ok` with the answer, or `Err` with the last failure.
pub fn probe_until(
    prober: &dyn Prober,
    device: Option<&str>,
    attempts: u32,
    interval: Duration,
    stop: &AtomicBool,
) -> Result<Probe, String> {
    let mut last = String::from("not probed");
    for i in 1..=attempts {
        if stop.load(Ordering::Relaxed) {
            return Err("stopped".into());
        }
        let started = Instant::now();
        let p = prober.probe(device);
        if p.answered() {
            return Ok(p);
        }
        last = p.to_string();
        let on = device.map(|d| format!(" via {d}")).unwrap_or_default();
        log::debug!("probe {i}/{attempts}{on}: {p}");
        if i % 10 == 0 {
            log::info!("probe {i}/{attempts}{on}: {p}");
            let d = prober.diagnostics();
            if !d.is_empty() {
                log::info!("{d}");
            }
        }
        if i < attempts {
            std::thread::sleep(interval.saturating_sub(started.elapsed()));
        }
    }
    Err(format!("{last} after {attempts} probes"))
}

/// Brings the network up per the policy above. With DHCP, the winner's held lease comes
/// back too, for the caller to keep alive.
///
/// The workers are detached threads: the stage returns as soon as a winner is known,
/// without waiting for a loser's probe to time out. Workers that finish later find
/// nobody listening; a late lease is released.
pub fn bring_up<D: Dhcp>(
    s: &Settings,
    nl: &mut dyn Netlink,
    dhcp: &Arc<D>,
    prober: &Arc<dyn Prober>,
    carrier: &Arc<dyn Carrier>,
) -> Result<(Chosen, Option<D::Held>), NetError> {
    let started = Instant::now();
    let nlerr = |e: super::netlink::NetlinkError| NetError(e.to_string());
    let links = nl.links().map_err(nlerr)?;
    if let Some(lo) = links.iter().find(|l| l.name == "lo") {
        nl.set_up(lo.index).map_err(nlerr)?;
    }
    let never = AtomicBool::new(false);
    let elapsed = |t: Instant| t.elapsed().as_millis() as u64;

    if let IpConfig::Static(st) = &s.ip {
        return bring_up_static(s, st, &links, nl, &**prober, &**carrier, &never, started)
            .map(|c| (c, None));
    }

    // A route someone else set up (the kernel's ip=dhcp): trusted only if it works.
    let routes = nl.routes().map_err(nlerr)?;
    if let Some(r) = routes.iter().find(|r| r.is_default()) {
        let via = r
            .gateway
            .map(|g| g.to_string())
            .unwrap_or_else(|| "-".into());
        let p = prober.probe(None);
        if p.answered() {
            let dev = links.iter().find(|l| Some(l.index) == r.oif);
            log::info!("network: the existing default route via {via} reaches the server: {p}");
            let chosen = Chosen {
                interface: dev.map(|l| l.name.clone()).unwrap_or_default(),
                mac: dev.map(|l| l.mac.clone()).unwrap_or_default(),
                method: "existing-route",
                address: None,
                prefix: None,
                gateway: r.gateway,
                dns: vec![],
                lease_time: None,
                elapsed_ms: elapsed(started),
            };
            return Ok((chosen, None));
        }
        log::warn!("network: ignoring the existing default route via {via}: {p}");
    }

    // `ip=:::::eth1:dhcp` (or an answers file's interface) pins DHCP to one NIC.
    let (pinned, mac) = match &s.ip {
        IpConfig::Dhcp {
            device: Some(crate::config::Device::Name(n)),
        } => (Some(vec![n.clone()]), s.mac),
        IpConfig::Dhcp {
            device: Some(crate::config::Device::Mac(m)),
        } => (None, Some(*m)),
        _ => (None, s.mac),
    };
    let named = s.interfaces.as_deref().or(pinned.as_deref());
    let (cands, skipped) = candidates(&links, mac, named)?;
    for sk in &skipped {
        log::info!("network: skipping {sk}");
    }
    for c in &cands {
        nl.set_up(c.index).map_err(nlerr)?;
    }
    log::info!(
        "network: trying {} concurrently",
        cands
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Event<D::Held>>();
    let mut outcome: Vec<Option<String>> = vec![None; cands.len()];
    let mut leased: Vec<Option<Assigned>> = vec![None; cands.len()];
    let mut held: Vec<Option<D::Held>> = (0..cands.len()).map(|_| None).collect();
    for (i, link) in cands.iter().enumerate() {
        let (tx, stop, dhcp, carrier) = (tx.clone(), stop.clone(), dhcp.clone(), carrier.clone());
        let (link, hostname, wait) = (link.clone(), s.hostname.clone(), s.carrier_wait);
        std::thread::spawn(move || {
            let t = Instant::now();
            while !carrier.has_carrier(&link) {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if t.elapsed() >= wait {
                    let _ = tx.send(Event::Failed(
                        i,
                        format!("no carrier within {} s", wait.as_secs()),
                    ));
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let ev = match dhcp.acquire(&link, hostname.as_deref(), &stop) {
                Ok((a, h)) => Event::Lease(i, a, h),
                Err(e) => Event::Failed(i, e),
            };
            // After the stage has returned nobody listens: give a late lease back.
            if let Err(mpsc::SendError(Event::Lease(_, _, h))) = tx.send(ev) {
                dhcp.release(h);
            }
        });
    }
    let mut pending = cands.len();
    let result = loop {
        if pending == 0 {
            break None;
        }
        let Ok(ev) = rx.recv() else { break None };
        match ev {
            Event::Failed(i, why) | Event::ProbeFailed(i, why) => {
                log::warn!("network: {}: {why}", cands[i].name);
                outcome[i] = Some(why);
                if leased[i].is_some()
                    && let Err(e) = nl.flush(cands[i].index)
                {
                    log::warn!("network: flushing {}: {e}", cands[i].name);
                }
                if let Some(h) = held[i].take() {
                    dhcp.release(h);
                }
                pending -= 1;
            }
            Event::Lease(i, a, h) => {
                let link = &cands[i];
                log::info!(
                    "network: {}: lease {}/{} via {}",
                    link.name,
                    a.address,
                    a.prefix,
                    a.gateway
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "(no router)".into())
                );
                if let Err(e) = apply(nl, link, &a, 100 + i as u32) {
                    outcome[i] = Some(format!("applying the lease: {e}"));
                    pending -= 1;
                    let _ = nl.flush(link.index);
                    dhcp.release(h);
                    continue;
                }
                leased[i] = Some(a);
                held[i] = Some(h);
                if s.wait == 0 {
                    break Some((i, None));
                }
                let (tx, stop, prober) = (tx.clone(), stop.clone(), prober.clone());
                let name = link.name.clone();
                let (attempts, interval) = (s.wait, s.probe_interval);
                std::thread::spawn(move || {
                    let ev = match probe_until(&*prober, Some(&name), attempts, interval, &stop) {
                        Ok(p) => Event::ProbeOk(i, p),
                        Err(e) => Event::ProbeFailed(i, format!("lease applied but {e}")),
                    };
                    let _ = tx.send(ev);
                });
            }
            Event::ProbeOk(i, p) => break Some((i, Some(p))),
        }
    };
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    let Some((w, probe)) = result else {
        let reasons: Vec<String> = cands
            .iter()
            .zip(&outcome)
            .map(|(c, o)| format!("{}: {}", c.name, o.as_deref().unwrap_or("no result")))
            .chain(skipped.iter().cloned())
            .collect();
        return Err(NetError(format!(
            "no interface reaches {}: {}",
            s.server,
            reasons.join("; ")
        )));
    };
    // The losers' leases go, so only the winner's routes remain.
    for (i, c) in cands.iter().enumerate() {
        if i != w && leased[i].is_some() {
            log::info!(
                "network: {}: skipped, {} won; flushing its lease",
                c.name,
                cands[w].name
            );
            if let Err(e) = nl.flush(c.index) {
                log::warn!("network: flushing {}: {e}", c.name);
            }
        }
    }
    let a = leased[w].clone().expect("the winner has a lease");
    if let Some(p) = probe {
        log::info!("network: {} reaches {}: {p}", cands[w].name, s.server);
    }
    let chosen = Chosen {
        interface: cands[w].name.clone(),
        mac: cands[w].mac.clone(),
        method: "dhcp",
        address: Some(a.address),
        prefix: Some(a.prefix),
        gateway: a.gateway,
        dns: a.dns,
        lease_time: a.lease_time,
        elapsed_ms: elapsed(started),
    };
    Ok((chosen, held[w].take()))
}

/// Address, then (when there is a router) a default route with `metric`.
fn apply(
    nl: &mut dyn Netlink,
    link: &Link,
    a: &Assigned,
    metric: u32,
) -> Result<(), super::netlink::NetlinkError> {
    nl.add_address(link.index, a.address, a.prefix)?;
    if let Some(g) = a.gateway {
        nl.add_default_route(link.index, g, metric)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn bring_up_static(
    s: &Settings,
    st: &StaticIp,
    links: &[Link],
    nl: &mut dyn Netlink,
    prober: &dyn Prober,
    carrier: &dyn Carrier,
    never: &AtomicBool,
    started: Instant,
) -> Result<Chosen, NetError> {
    let named = st.device.as_ref().map(|d| vec![d.to_string()]);
    let link = match &st.device {
        Some(crate::config::Device::Mac(m)) => candidates(links, Some(*m), None)?.0,
        _ => candidates(links, s.mac, named.as_deref().or(s.interfaces.as_deref()))?.0,
    }
    .remove(0);
    nl.set_up(link.index).map_err(|e| NetError(e.to_string()))?;
    let t = Instant::now();
    while !carrier.has_carrier(&link) && t.elapsed() < s.carrier_wait {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !carrier.has_carrier(&link) {
        log::warn!(
            "network: {} has no carrier after {} s; applying the static address anyway",
            link.name,
            s.carrier_wait.as_secs()
        );
    }
    let a = Assigned {
        address: st.address,
        prefix: st.prefix,
        gateway: st.gateway,
        dns: st.dns.clone(),
        lease_time: None,
    };
    log::info!(
        "network: {}: static {}/{} via {}",
        link.name,
        a.address,
        a.prefix,
        a.gateway
            .map(|g| g.to_string())
            .unwrap_or_else(|| "(no gateway)".into())
    );
    apply(nl, &link, &a, 0).map_err(|e| NetError(e.to_string()))?;
    if s.wait > 0 {
        let p = probe_until(prober, None, s.wait, s.probe_interval, never).map_err(|e| {
            NetError(format!(
                "static {}/{} on {}: {} {e}",
                a.address, a.prefix, link.name, s.server
            ))
        })?;
        log::info!("network: {} reaches {}: {p}", link.name, s.server);
    }
    Ok(Chosen {
        interface: link.name.clone(),
        mac: link.mac.clone(),
        method: "static",
        address: Some(a.address),
        prefix: Some(a.prefix),
        gateway: a.gateway,
        dns: a.dns,
        lease_time: None,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests;
