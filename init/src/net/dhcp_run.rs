//! The DHCP client on a real interface: the state machine of `net::dhcp`, a packet
//! socket (`sys::packet`), IPv4/UDP framing (`net::packet`) and the monotonic clock.
//!
//! [`acquire`] runs one exchange to a lease (or to the give-up bound) and applies
//! nothing: the caller configures the address. [`Acquired::keep`] then keeps the lease
//! alive in a background thread (renewing at T1, rebinding at T2) for as long as the
//! install runs; [`Acquired::release`] gives back a lease that will not be used.

use super::dhcp::{self, Client, Dest, Event, Lease, Outgoing, Params, Random, State, Step};
use super::packet;
use crate::config::Mac;
use crate::sys::packet::{BROADCAST_MAC, PacketSocket};
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a loop waits before looking at its stop flag again.
const STOP_POLL: Duration = Duration::from_millis(200);
/// Slack on top of the client's own give-up bound, in case a clock or a bug keeps it
/// from giving up: [`acquire`] returns by `timeout + HARD_SLACK` whatever happens.
const HARD_SLACK: Duration = Duration::from_secs(5);

/// The interface to run DHCP on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: Mac,
}

impl Interface {
    /// Reads `ifindex` and `address` from `<sys_root>/class/net/<name>/`.
    pub fn from_sysfs(sys_root: &Path, name: &str) -> Result<Interface, DhcpError> {
        let dir = sys_root.join("class/net").join(name);
        let read = |attr: &str| {
            std::fs::read_to_string(dir.join(attr))
                .map(|s| s.trim().to_string())
                .map_err(|e| DhcpError::Interface {
                    iface: name.to_string(),
                    problem: format!("reading {}: {e}", dir.join(attr).display()),
                })
        };
        let index = read("ifindex")?;
        let address = read("address")?;
        let bad = |what: &str, v: &str| DhcpError::Interface {
            iface: name.to_string(),
            problem: format!("{what} {v:?} in sysfs is not usable"),
        };
        Ok(Interface {
            name: name.to_string(),
            index: index.parse().map_err(|_| bad("ifindex", &index))?,
            mac: Mac::parse(&address)
                .filter(|m| m.0 != [0; 6])
                .ok_or_else(|| bad("MAC address", &address))?,
        })
    }
}

/// The random inputs of one client: its first transaction id and the seed of the
/// jitter source. From the kernel's RNG in real use, fixed in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    pub xid: u32,
    pub jitter: u64,
}

impl Seed {
    /// 12 bytes from getrandom(2) with `GRND_INSECURE`, which neither blocks nor waits
    /// for entropy (reading /dev/urandom delayed the first DISCOVER by a second in early
    /// boot under QEMU: 6.x kernels run their jitter-entropy loop first). On a kernel
    /// older than 5.6, which refuses the flag, `<dev_root>/urandom` as below.
    pub fn from_kernel(dev_root: &Path, mac: Mac) -> Seed {
        let mut b = [0u8; 12];
        match crate::sys::random_insecure(&mut b) {
            Ok(()) => Seed::from_bytes(b),
            Err(_) => Seed::from_urandom(dev_root, mac),
        }
    }

    fn from_bytes(b: [u8; 12]) -> Seed {
        Seed {
            xid: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            jitter: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        }
    }

    /// Reads 12 bytes from `<dev_root>/urandom`, which does not block for good (unlike
    /// getrandom(2) without flags in early boot) but may spend a second generating
    /// entropy first on 6.x kernels. If it cannot be read, the MAC and the clock still
    /// make xids differ between machines, which is what they are for.
    pub fn from_urandom(dev_root: &Path, mac: Mac) -> Seed {
        let mut b = [0u8; 12];
        let path = dev_root.join("urandom");
        let read = std::fs::File::open(&path).and_then(|mut f| f.read_exact(&mut b));
        if let Err(e) = read {
            log::warn!(
                "reading {}: {e}; seeding DHCP from the MAC and clock",
                path.display()
            );
            let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                .map(|t| t.tv_nsec() as u64 ^ (t.tv_sec() as u64) << 32)
                .unwrap_or(0);
            let mut m = [0u8; 8];
            m[..6].copy_from_slice(&mac.0);
            let x = SplitMix(u64::from_le_bytes(m) ^ t).next_u64();
            b[..8].copy_from_slice(&x.to_le_bytes());
            b[8..].copy_from_slice(&(x.rotate_left(29) as u32).to_le_bytes());
        }
        Seed::from_bytes(b)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny and good enough for jitter and xids,
/// which need to differ between clients, not to be secret.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Random for SplitMix {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// How to run the exchange.
#[derive(Debug, Clone)]
pub struct Options {
    pub hostname: Option<String>,
    /// Give up after this long without a lease ([`dhcp::DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    pub rapid_commit: bool,
    pub seed: Seed,
    /// Set from another thread to make [`acquire`] return [`DhcpError::Stopped`]
    /// (within [`STOP_POLL`]), e.g. when another interface won.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Options {
    pub fn new(seed: Seed) -> Options {
        Options {
            hostname: None,
            timeout: dhcp::DEFAULT_TIMEOUT,
            rapid_commit: true,
            seed,
            stop: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("{iface}: {problem}")]
    Interface { iface: String, problem: String },
    #[error("{iface}: opening a packet socket: {source}")]
    Socket { iface: String, source: io::Error },
    #[error("{iface}: sending {what}: {source}")]
    Send {
        iface: String,
        what: String,
        source: io::Error,
    },
    #[error("{iface}: receiving: {source}")]
    Receive { iface: String, source: io::Error },
    /// The documented give-up: no lease within the timeout.
    #[error("{iface}: no DHCP lease after {secs} s ({detail})")]
    NoLease {
        iface: String,
        secs: u64,
        detail: String,
    },
    #[error("{iface}: DHCP stopped")]
    Stopped { iface: String },
}

/// A lease just acquired, with the socket and client state to keep or release it.
pub struct Acquired {
    session: Session,
    lease: Lease,
    /// From the first DISCOVER to the ACK.
    pub elapsed: Duration,
}

impl std::fmt::Debug for Acquired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acquired")
            .field("iface", &self.session.iface.name)
            .field("lease", &self.lease)
            .field("elapsed", &self.elapsed)
            .finish()
    }
}

/// Runs DHCP on `iface` until a lease is bound, the timeout passes, or `opts.stop` is
/// set. The link must be up (and should have carrier: until then the kernel drops
/// what we send and the first retry is 4 s away).
pub fn acquire(iface: &Interface, opts: &Options) -> Result<Acquired, DhcpError> {
    let started = Instant::now();
    let mut params = Params::new(iface.mac);
    params.hostname = opts.hostname.clone();
    params.timeout = opts.timeout;
    params.rapid_commit = opts.rapid_commit;
    let client = Client::new(params, opts.seed.xid, SplitMix(opts.seed.jitter));
    let mut s = Session::open(iface, client)?;
    let step = s.client.start(s.now());
    s.apply(step)?;
    let hard_limit = opts.timeout + HARD_SLACK;
    loop {
        if opts
            .stop
            .as_deref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
        {
            return Err(DhcpError::Stopped {
                iface: iface.name.clone(),
            });
        }
        match s.turn(STOP_POLL)? {
            Some(Event::Bound(lease)) => {
                return Ok(Acquired {
                    session: s,
                    lease,
                    elapsed: started.elapsed(),
                });
            }
            Some(Event::GaveUp) => return Err(s.no_lease(opts.timeout)),
            _ => {}
        }
        if started.elapsed() > hard_limit {
            return Err(s.no_lease(started.elapsed()));
        }
    }
}

impl Acquired {
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub fn interface(&self) -> &Interface {
        &self.session.iface
    }

    /// Keeps the lease alive in a thread: renews at T1 (unicast to the server), rebinds
    /// at T2 (broadcast), and starts over if the lease is lost. Every [`Event`] is
    /// logged and passed to `on_event`, from the keeper's thread. The thread ends when
    /// the [`Keeper`] is stopped or dropped, or when the client gives up.
    pub fn keep(self, mut on_event: impl FnMut(&Event) + Send + 'static) -> Keeper {
        let stop = Arc::new(AtomicBool::new(false));
        let lease = Arc::new(Mutex::new(Some(self.lease)));
        let (flag, shared) = (stop.clone(), lease.clone());
        let mut s = self.session;
        let name = format!("dhcp-{}", s.iface.name);
        let body = move || {
            while !flag.load(Ordering::Relaxed) {
                match s.turn(STOP_POLL) {
                    Ok(Some(ev)) => {
                        let current = match &ev {
                            Event::Bound(l) | Event::Renewed(l) => Some(Some(l.clone())),
                            Event::Nak { .. } | Event::Expired | Event::GaveUp => Some(None),
                            Event::Offer { .. } => None,
                        };
                        if let Some(c) = current {
                            *shared.lock().unwrap_or_else(|e| e.into_inner()) = c;
                        }
                        on_event(&ev);
                        if ev == Event::GaveUp {
                            log::error!("{}: lease lost and no new one; giving up", s.iface.name);
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        log::error!("{e}; no more renewals");
                        break;
                    }
                }
            }
            s
        };
        let thread = std::thread::Builder::new().name(name).spawn(body);
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                log::error!("starting the DHCP renewal thread: {e}");
                None
            }
        };
        Keeper {
            stop,
            lease,
            thread,
        }
    }

    /// Gives the lease back (RFC 2131 §4.4.6), for an interface the installer will not
    /// use, so the address returns to the pool at once.
    pub fn release(mut self) -> Result<(), DhcpError> {
        self.session.release()
    }
}

/// A lease kept alive by a background thread.
pub struct Keeper {
    stop: Arc<AtomicBool>,
    lease: Arc<Mutex<Option<Lease>>>,
    thread: Option<JoinHandle<Session>>,
}

impl Keeper {
    /// The current lease; `None` after a NAK or expiry until a new one is bound.
    pub fn lease(&self) -> Option<Lease> {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the thread still runs (it ends when the client gives up).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread (within [`STOP_POLL`]) without releasing the lease: the address
    /// stays valid until the lease runs out, as across a reboot into the installed
    /// system.
    pub fn stop(mut self) {
        self.join();
    }

    /// Stops the thread and releases the lease.
    pub fn release(mut self) -> Result<(), DhcpError> {
        match self.join() {
            Some(mut s) => s.release(),
            None => Ok(()),
        }
    }

    fn join(&mut self) -> Option<Session> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.join();
    }
}

/// The client, its socket and its clock.
struct Session {
    iface: Interface,
    socket: PacketSocket,
    client: Client<SplitMix>,
    origin: Instant,
    wake: Option<Duration>,
    /// Link-layer source of the last ACK: where unicast renewals go. It is the server
    /// itself, or the relay (router) that forwarded the ACK, which is also the next hop
    /// to the server, so no ARP is needed.
    server_mac: Option<[u8; 6]>,
}

impl Session {
    fn open(iface: &Interface, client: Client<SplitMix>) -> Result<Session, DhcpError> {
        let socket = PacketSocket::open(iface.index).map_err(|source| DhcpError::Socket {
            iface: iface.name.clone(),
            source,
        })?;
        Ok(Session {
            iface: iface.clone(),
            socket,
            client,
            origin: Instant::now(),
            wake: None,
            server_mac: None,
        })
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// One turn: a due timer, or a packet, or up to `max_wait` of waiting.
    fn turn(&mut self, max_wait: Duration) -> Result<Option<Event>, DhcpError> {
        let now = self.now();
        if self.wake.is_some_and(|w| now >= w) {
            let step = self.client.poll(now);
            return self.apply(step);
        }
        let wait = match self.wake {
            Some(w) => (w - now).min(max_wait),
            None => max_wait,
        };
        let rx = self
            .socket
            .recv(wait)
            .map_err(|source| DhcpError::Receive {
                iface: self.iface.name.clone(),
                source,
            })?;
        let Some(rx) = rx else { return Ok(None) };
        let payload = match packet::dhcp_payload(&rx.packet, !rx.checksum_unset) {
            Ok(p) => p,
            Err(e) => {
                log::debug!("{}: ignored packet: {e}", self.iface.name);
                return Ok(None);
            }
        };
        let step = self.client.handle(self.now(), payload);
        if matches!(step.event, Some(Event::Bound(_) | Event::Renewed(_))) {
            self.server_mac = Some(rx.src_mac);
        }
        self.apply(step)
    }

    fn apply(&mut self, step: Step) -> Result<Option<Event>, DhcpError> {
        let name = &self.iface.name;
        if let Some(why) = &step.ignored {
            log::debug!("{name}: ignored a reply: {why}");
        }
        let state = self.client.state();
        if let Some(ev) = &step.event {
            log_event(name, ev);
        } else if matches!(state, State::Renewing | State::Rebinding) && !step.send.is_empty() {
            log::info!(
                "{name}: {state}, {} sent",
                dhcp::name(step.send[0].msg_type)
            );
        }
        for out in &step.send {
            self.send(out)?;
        }
        self.wake = step.wake_at;
        Ok(step.event)
    }

    fn send(&self, out: &Outgoing) -> Result<(), DhcpError> {
        let (ip, mac) = match out.dest {
            Dest::Broadcast => (Ipv4Addr::BROADCAST, BROADCAST_MAC),
            // Without a known server MAC (cannot happen after an ACK) broadcasting the
            // frame still reaches an on-link server.
            Dest::Unicast(ip) => (ip, self.server_mac.unwrap_or(BROADCAST_MAC)),
        };
        let bytes = packet::build(
            out.src,
            packet::CLIENT_PORT,
            ip,
            packet::SERVER_PORT,
            &out.payload,
        );
        log::debug!(
            "{}: {} to {ip} (xid {:#010x})",
            self.iface.name,
            dhcp::name(out.msg_type),
            out.xid
        );
        match self.socket.send(&bytes, mac) {
            Ok(()) => Ok(()),
            // The link is down or busy: the retransmission schedule covers a lost
            // message like any other loss.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENETDOWN | nix::libc::ENOBUFS | nix::libc::EAGAIN)
                ) =>
            {
                log::warn!(
                    "{}: sending {}: {e}; will retry",
                    self.iface.name,
                    dhcp::name(out.msg_type)
                );
                Ok(())
            }
            Err(source) => Err(DhcpError::Send {
                iface: self.iface.name.clone(),
                what: dhcp::name(out.msg_type),
                source,
            }),
        }
    }

    fn release(&mut self) -> Result<(), DhcpError> {
        let step = self.client.release(self.now());
        if let Some(out) = step.send.first() {
            log::info!("{}: releasing the lease", self.iface.name);
            self.send(out)?;
        }
        Ok(())
    }

    fn no_lease(&self, after: Duration) -> DhcpError {
        let st = self.client.stats();
        let detail = match (st.offers, st.naks) {
            (0, _) => format!("{} DHCPDISCOVER sent, no DHCPOFFER", st.discovers),
            (o, 0) => format!(
                "{} DHCPDISCOVER and {} DHCPREQUEST sent, {o} DHCPOFFER, no DHCPACK",
                st.discovers, st.requests
            ),
            (o, n) => format!("{o} DHCPOFFER, {n} DHCPNAK"),
        };
        DhcpError::NoLease {
            iface: self.iface.name.clone(),
            secs: after.as_secs_f64().round() as u64,
            detail,
        }
    }
}

fn log_event(name: &str, ev: &Event) {
    match ev {
        Event::Offer { address, server } => log::info!("{name}: DHCPOFFER {address} from {server}"),
        Event::Bound(l) | Event::Renewed(l) => {
            let verb = match ev {
                Event::Bound(_) => "bound",
                _ => "renewed",
            };
            log::info!("{name}: DHCPACK {verb} {}", describe(l));
            if l.mask_defaulted {
                log::warn!(
                    "{name}: the server sent no subnet mask; using the classful /{} for {}",
                    l.prefix,
                    l.address
                );
            }
        }
        Event::Nak { server, message } => log::warn!(
            "{name}: DHCPNAK from {}{}; starting over",
            server
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown server".into()),
            message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        Event::Expired => log::warn!("{name}: lease expired without renewal; starting over"),
        Event::GaveUp => log::warn!("{name}: no DHCP lease; giving up"),
    }
}

/// `10.0.2.15/24 from 10.0.2.2, router 10.0.2.2, DNS 10.0.2.3, lease 86400 s`.
pub fn describe(l: &Lease) -> String {
    let router = l
        .router
        .map(|r| r.to_string())
        .unwrap_or_else(|| "none".into());
    let dns = match l.dns.is_empty() {
        true => "none".to_string(),
        false => l
            .dns
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let time = l
        .lease_time
        .map(|t| format!("{t} s"))
        .unwrap_or_else(|| "infinite".into());
    format!(
        "{}/{} from {}, router {router}, DNS {dns}, lease {time}",
        l.address, l.prefix, l.server_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_comes_from_sysfs() {
        let sys = tempfile::tempdir().unwrap();
        let dir = sys.path().join("class/net/eth7");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ifindex"), "12\n").unwrap();
        std::fs::write(dir.join("address"), "52:54:00:AB:cd:01\n").unwrap();
        let i = Interface::from_sysfs(sys.path(), "eth7").unwrap();
        assert_eq!(i.index, 12);
        assert_eq!(i.mac, Mac([0x52, 0x54, 0, 0xab, 0xcd, 1]));
        let e = Interface::from_sysfs(sys.path(), "eth8").unwrap_err();
        assert!(e.to_string().starts_with("eth8: reading "), "{e}");
        std::fs::write(dir.join("address"), "00:00:00:00:00:00\n").unwrap();
        let e = Interface::from_sysfs(sys.path(), "eth7").unwrap_err();
        assert!(e.to_string().contains("MAC address"), "{e}");
    }

    #[test]
    fn seed_reads_urandom_and_survives_without_it() {
        let dev = tempfile::tempdir().unwrap();
        std::fs::write(
            dev.path().join("urandom"),
            [1u8, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0],
        )
        .unwrap();
        let mac = Mac([2, 0, 0, 0, 0, 1]);
        assert_eq!(
            Seed::from_urandom(dev.path(), mac),
            Seed { xid: 7, jitter: 1 }
        );
        let none = tempfile::tempdir().unwrap();
        let a = Seed::from_urandom(none.path(), mac);
        let b = Seed::from_urandom(none.path(), Mac([2, 0, 0, 0, 0, 2]));
        assert_ne!(a.xid, b.xid);
    }

    #[test]
    fn kernel_seeds_differ_between_clients() {
        let mac = Mac([2, 0, 0, 0, 0, 1]);
        let dev = tempfile::tempdir().unwrap();
        let seeds: Vec<Seed> = (0..4).map(|_| Seed::from_kernel(dev.path(), mac)).collect();
        // Four 96-bit draws that are not all distinct would mean no randomness at all.
        for (i, a) in seeds.iter().enumerate() {
            for b in &seeds[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // First outputs of SplitMix64 seeded with 0 (reference implementation by
        // Vigna, prng.di.unimi.it/splitmix64.c).
        let mut r = SplitMix(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn no_lease_error_reads_well() {
        let e = DhcpError::NoLease {
            iface: "eth0".into(),
            secs: 30,
            detail: "4 DHCPDISCOVER sent, no DHCPOFFER".into(),
        };
        assert_eq!(
            e.to_string(),
            "eth0: no DHCP lease after 30 s (4 DHCPDISCOVER sent, no DHCPOFFER)"
        );
    }

    #[test]
    fn lease_description_names_everything() {
        let l = Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            mask_defaulted: false,
            router: None,
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            domain: None,
            server_id: Ipv4Addr::new(10, 0, 2, 2),
            lease_time: None,
            t1: None,
            t2: None,
        };
        assert_eq!(
            describe(&l),
            "10.0.2.15/24 from 10.0.2.2, router none, DNS 10.0.2.3, lease infinite"
        );
    }
}
