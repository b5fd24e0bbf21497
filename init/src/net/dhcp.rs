//! The DHCPv4 client (RFC 2131) as a state machine that does no I/O.
//!
//! The caller feeds it the time (`now`, a [`Duration`] since any fixed origin) and the
//! DHCP messages it receives; it answers with a [`Step`]: messages to send, when to call
//! [`Client::poll`] next, and what happened. The transaction id and the random source
//! for retransmission jitter are injected, so a test replays an exchange exactly.
//! `net::dhcp_run` joins it to a packet socket and the real clock.
//!
//! ```text
//!            start                OFFER                  ACK
//!   INIT ──────────▶ SELECTING ──────────▶ REQUESTING ──────────▶ BOUND
//!    ▲  DISCOVER       │ ▲ ACK+rapid commit   │ NAK: INIT after 1 s  │ T1
//!    │                 │ └────────────────────┼─────────▶ BOUND      ▼
//!    │                 │ timeout: GaveUp      │ 4 REQUESTs: INIT   RENEWING ── ACK ─▶ BOUND
//!    │                 ▼                      ▼                      │ T2 (unicast)
//!    │               STOPPED               STOPPED               REBINDING ── ACK ─▶ BOUND
//!    └──────────────────────── lease expired or NAK ─────────────────┘ (broadcast)
//! ```
//!
//! docs/network.md describes the schedule, the filters and the fallbacks in prose.

pub mod wire;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
#[cfg(test)]
mod tests;

use crate::config::Mac;
use dhcproto::v4::{MessageType, Opcode};
use serde::Serialize;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;
use wire::{Identity, Reply, Request};

/// How long to try for a lease before giving up: DISCOVERs go out at about 0, 4, 12 and
/// 28 s, and the client gives up at 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 2131 §4.1: the first retransmission after 4 s, doubling up to 64 s, each
/// randomized by ±1 s.
pub const FIRST_RETRANSMIT: Duration = Duration::from_secs(4);
pub const MAX_RETRANSMIT: Duration = Duration::from_secs(64);
pub const JITTER: Duration = Duration::from_secs(1);
/// REQUESTs sent for one OFFER before starting over with a DISCOVER (RFC 2131 §3.1
/// step 5 leaves the number to the client; dhclient uses a similar budget).
pub const REQUEST_ATTEMPTS: u32 = 4;
/// Pause after a NAK before the next DISCOVER, so a confused server cannot make the
/// client spin (RFC 2131 §3.1 step 5 says "restart"; it does not say how soon).
pub const NAK_DELAY: Duration = Duration::from_secs(1);
/// RFC 2131 §4.4.5: in RENEWING and REBINDING, retransmit after half the remaining
/// time, but not more often than every 60 s.
pub const MIN_RENEW_RETRANSMIT: Duration = Duration::from_secs(60);
/// Shorter leases are treated as this long, so a server handing out 0-second leases
/// cannot make the client spin through RENEWING and REBINDING.
pub const MIN_LEASE_SECS: u32 = 10;
/// RFC 2131 §3.3: a lease time of all ones means infinite.
pub const INFINITE: u32 = u32::MAX;

/// A source of random numbers for retransmission jitter and new transaction ids.
pub trait Random {
    fn next_u32(&mut self) -> u32;
}

impl<F: FnMut() -> u32> Random for F {
    fn next_u32(&mut self) -> u32 {
        self()
    }
}

/// What the client sends and how patient it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub mac: Mac,
    /// Sent as option 12 (RFC 2132 §3.14) when set.
    pub hostname: Option<String>,
    /// Give up acquiring a lease this long after [`Client::start`] (or after a lease
    /// expired): [`Event::GaveUp`].
    pub timeout: Duration,
    /// Offer rapid commit (RFC 4039): a server that supports it answers the DISCOVER
    /// with an ACK directly.
    pub rapid_commit: bool,
}

impl Params {
    pub fn new(mac: Mac) -> Params {
        Params {
            mac,
            hostname: None,
            timeout: DEFAULT_TIMEOUT,
            rapid_commit: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not started, or waiting to restart after a NAK.
    Init,
    Selecting,
    Requesting,
    Bound,
    Renewing,
    Rebinding,
    /// Gave up, or released; the client does nothing more.
    Stopped,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Init => "INIT",
            State::Selecting => "SELECTING",
            State::Requesting => "REQUESTING",
            State::Bound => "BOUND",
            State::Renewing => "RENEWING",
            State::Rebinding => "REBINDING",
            State::Stopped => "STOPPED",
        })
    }
}

/// An address lease, as the installer uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub netmask: Ipv4Addr,
    /// The server sent no usable subnet mask; `prefix` is the address's classful
    /// default (as the kernel's ipconfig does).
    pub mask_defaulted: bool,
    /// The first router of option 3, if any.
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub server_id: Ipv4Addr,
    /// Seconds; `None` for an infinite lease (then `t1` and `t2` are `None` too).
    pub lease_time: Option<u32>,
    pub t1: Option<u32>,
    pub t2: Option<u32>,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// 255.255.255.255, Ethernet broadcast.
    Broadcast,
    /// A server; the caller resolves the link-layer address.
    Unicast(Ipv4Addr),
}

/// A DHCP message (UDP payload) to send from `src`:68 to `dest`:67.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub payload: Vec<u8>,
    pub src: Ipv4Addr,
    pub dest: Dest,
    pub msg_type: MessageType,
    pub xid: u32,
}

/// Something the caller should know about (and log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An OFFER was selected; a REQUEST for it went out.
    Offer {
        address: Ipv4Addr,
        server: Ipv4Addr,
    },
    Bound(Lease),
    /// The lease was extended in RENEWING or REBINDING (possibly by another server).
    Renewed(Lease),
    /// The server refused; any lease is gone and the client starts over.
    Nak {
        server: Option<Ipv4Addr>,
        message: Option<String>,
    },
    /// The lease ran out without a renewal; the client starts over.
    Expired,
    /// No lease within [`Params::timeout`]; the client stopped.
    GaveUp,
}

/// Why a received message changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    Malformed(wire::WireError),
    NotAReply,
    WrongXid,
    WrongMac,
    /// From a server other than the one selected.
    WrongServer(Option<Ipv4Addr>),
    /// A message type that means nothing in this state.
    Unexpected(MessageType, State),
    /// An OFFER or ACK the client cannot use.
    Unusable(&'static str),
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::Malformed(e) => write!(f, "malformed: {e}"),
            Ignored::NotAReply => f.write_str("not a BOOTREPLY"),
            Ignored::WrongXid => f.write_str("another transaction (xid)"),
            Ignored::WrongMac => f.write_str("another client (chaddr)"),
            Ignored::WrongServer(s) => match s {
                Some(s) => write!(f, "from {s}, not the selected server"),
                None => f.write_str("no server identifier"),
            },
            Ignored::Unexpected(t, s) => write!(f, "{} in {s}", name(*t)),
            Ignored::Unusable(why) => f.write_str(why),
        }
    }
}

/// The outcome of one call into the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    pub send: Vec<Outgoing>,
    /// Call [`Client::poll`] at this time (or earlier: it does nothing early). `None`:
    /// nothing is scheduled (stopped, or an infinite lease).
    pub wake_at: Option<Duration>,
    pub event: Option<Event>,
    pub ignored: Option<Ignored>,
}

/// Counters for the give-up message and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub discovers: u32,
    pub offers: u32,
    pub requests: u32,
    pub naks: u32,
}

/// The selected OFFER.
#[derive(Debug, Clone, Copy)]
struct Offer {
    address: Ipv4Addr,
    server: Ipv4Addr,
    lease_time: Option<u32>,
}

pub struct Client<R> {
    id: Identity,
    timeout: Duration,
    rng: R,
    state: State,
    xid: u32,
    /// Start of the current transaction (for `secs`).
    began: Duration,
    /// Give up acquiring at this time (INIT, SELECTING, REQUESTING).
    deadline: Duration,
    /// Transmissions of the current message so far, and when the next is due.
    sent: u32,
    next_tx: Duration,
    /// `secs` of the last DISCOVER: RFC 2131 §4.4.1 wants the REQUEST to repeat it.
    discover_secs: u16,
    /// When the last DISCOVER went out (a rapid-commit lease starts then).
    discover_at: Duration,
    /// When the first REQUEST of the current transaction went out. RFC 2131 §4.4.1: the
    /// lease runs from the time the request was sent, not from when the ACK came.
    request_at: Duration,
    restart_at: Option<Duration>,
    offer: Option<Offer>,
    lease: Option<Lease>,
    /// Start of the current lease.
    bound_at: Duration,
    stats: Stats,
}

impl<R: Random> Client<R> {
    /// A client in INIT; nothing happens until [`Client::start`].
    pub fn new(params: Params, xid: u32, rng: R) -> Client<R> {
        Client {
            id: Identity {
                mac: params.mac,
                hostname: params.hostname,
                rapid_commit: params.rapid_commit,
            },
            timeout: params.timeout,
            rng,
            state: State::Init,
            xid,
            began: Duration::ZERO,
            deadline: Duration::ZERO,
            sent: 0,
            next_tx: Duration::ZERO,
            discover_secs: 0,
            discover_at: Duration::ZERO,
            request_at: Duration::ZERO,
            restart_at: None,
            offer: None,
            lease: None,
            bound_at: Duration::ZERO,
            stats: Stats::default(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// The transaction id replies must carry.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// INIT → SELECTING: sends the first DISCOVER. Does nothing unless in INIT.
    pub fn start(&mut self, now: Duration) -> Step {
        let mut step = Step::default();
        if self.state == State::Init && self.restart_at.is_none() {
            self.deadline = now + self.timeout;
            self.discover(now, &mut step);
        }
        self.finish(step)
    }

    /// Acts on timers that are due at `now`: retransmissions, giving up, T1, T2, expiry.
    pub fn poll(&mut self, now: Duration) -> Step {
        let mut step = Step::default();
        let acquiring = matches!(self.state, State::Selecting | State::Requesting)
            || (self.state == State::Init && self.restart_at.is_some());
        if acquiring && now >= self.deadline {
            self.state = State::Stopped;
            self.restart_at = None;
            self.offer = None;
            step.event = Some(Event::GaveUp);
            return self.finish(step);
        }
        match self.state {
            State::Init if self.restart_at.is_some_and(|t| now >= t) => {
                self.restart_at = None;
                self.discover(now, &mut step);
            }
            State::Selecting if now >= self.next_tx => {
                let out = self.transmit(now, Request::Discover, self.secs(now));
                self.stats.discovers += 1;
                self.discover_at = now;
                step.send.push(out);
            }
            State::Requesting if now >= self.next_tx => {
                if self.sent >= REQUEST_ATTEMPTS {
                    // No answer to the REQUEST: forget the offer and start over.
                    self.xid = self.rng.next_u32();
                    self.discover(now, &mut step);
                } else if let Some(o) = self.offer {
                    step.send.push(self.request(now, o));
                }
            }
            State::Bound | State::Renewing | State::Rebinding => self.lease_timers(now, &mut step),
            _ => {}
        }
        self.finish(step)
    }

    /// Acts on a received DHCP message (the UDP payload).
    pub fn handle(&mut self, now: Duration, payload: &[u8]) -> Step {
        let mut step = Step::default();
        step.ignored = self.receive(now, payload, &mut step).err();
        self.finish(step)
    }

    /// Gives a held lease back (RFC 2131 §4.4.6) and stops.
    pub fn release(&mut self, now: Duration) -> Step {
        let mut step = Step::default();
        if let (Some(l), State::Bound | State::Renewing | State::Rebinding) =
            (&self.lease, self.state)
        {
            let (address, server) = (l.address, l.server_id);
            self.xid = self.rng.next_u32();
            self.began = now;
            step.send.push(self.message(
                Request::Release { address, server },
                Dest::Unicast(server),
                0,
            ));
        }
        self.lease = None;
        self.state = State::Stopped;
        self.finish(step)
    }

    fn receive(&mut self, now: Duration, payload: &[u8], step: &mut Step) -> Result<(), Ignored> {
        let reply = wire::parse(payload).map_err(Ignored::Malformed)?;
        if reply.op != Opcode::BootReply {
            return Err(Ignored::NotAReply);
        }
        if reply.xid != self.xid {
            return Err(Ignored::WrongXid);
        }
        if reply.htype != dhcproto::v4::HType::Eth
            || reply.hlen != 6
            || reply.chaddr != self.id.mac.0
        {
            return Err(Ignored::WrongMac);
        }
        let unexpected = Err(Ignored::Unexpected(reply.msg_type, self.state));
        match (self.state, reply.msg_type) {
            (State::Selecting, MessageType::Offer) => {
                let server = reply.server_id.ok_or(Ignored::Unusable(
                    "OFFER without server identifier (RFC 2131 §4.3.1 requires one)",
                ))?;
                if !usable_address(reply.yiaddr) {
                    return Err(Ignored::Unusable("OFFER of an unusable address"));
                }
                let offer = Offer {
                    address: reply.yiaddr,
                    server,
                    lease_time: reply.lease_time,
                };
                self.stats.offers += 1;
                self.offer = Some(offer);
                self.state = State::Requesting;
                self.sent = 0;
                self.request_at = now;
                step.send.push(self.request(now, offer));
                step.event = Some(Event::Offer {
                    address: offer.address,
                    server,
                });
                Ok(())
            }
            // RFC 4039 §4: an ACK carrying rapid commit answers our DISCOVER directly.
            (State::Selecting, MessageType::Ack) if reply.rapid_commit && self.id.rapid_commit => {
                let lease = lease_from(&reply, None)?;
                self.bind(lease, self.discover_at, false, step);
                Ok(())
            }
            (State::Requesting, MessageType::Ack | MessageType::Nak) => {
                let offer = self.offer.ok_or(Ignored::Unusable("no offer selected"))?;
                if reply.server_id != Some(offer.server) {
                    return Err(Ignored::WrongServer(reply.server_id));
                }
                if reply.msg_type == MessageType::Nak {
                    self.nak(now, &reply, step);
                } else {
                    let lease = lease_from(&reply, offer.lease_time)?;
                    self.bind(lease, self.request_at, false, step);
                }
                Ok(())
            }
            (State::Renewing | State::Rebinding, MessageType::Ack | MessageType::Nak) => {
                let ours = self.lease.as_ref().map(|l| l.server_id);
                // RENEWING talks to our server only; in REBINDING any server may answer
                // (RFC 2131 §4.4.5).
                if self.state == State::Renewing && reply.server_id != ours {
                    return Err(Ignored::WrongServer(reply.server_id));
                }
                if reply.msg_type == MessageType::Nak {
                    self.nak(now, &reply, step);
                } else {
                    let lease = lease_from(&reply, None)?;
                    self.bind(lease, self.request_at, true, step);
                }
                Ok(())
            }
            _ => unexpected,
        }
    }

    /// Enters SELECTING with a DISCOVER; a new acquisition keeps its deadline.
    fn discover(&mut self, now: Duration, step: &mut Step) {
        self.state = State::Selecting;
        self.offer = None;
        self.sent = 0;
        self.began = now;
        self.discover_secs = 0;
        let out = self.transmit(now, Request::Discover, 0);
        self.stats.discovers += 1;
        self.discover_at = now;
        step.send.push(out);
    }

    fn request(&mut self, now: Duration, o: Offer) -> Outgoing {
        self.stats.requests += 1;
        let kind = Request::Select {
            address: o.address,
            server: o.server,
        };
        self.transmit(now, kind, self.discover_secs)
    }

    /// Sends `kind` (broadcast) and schedules the next transmission per RFC 2131 §4.1.
    fn transmit(&mut self, now: Duration, kind: Request, secs: u16) -> Outgoing {
        let base = FIRST_RETRANSMIT
            .saturating_mul(1 << self.sent.min(8))
            .min(MAX_RETRANSMIT);
        self.next_tx = now + base - JITTER + self.jitter();
        self.sent += 1;
        if kind == Request::Discover {
            self.discover_secs = secs;
        }
        self.message(kind, Dest::Broadcast, secs)
    }

    /// Uniform in [0, 2 s] in whole milliseconds: with `base - 1 s` this is `base ± 1 s`.
    fn jitter(&mut self) -> Duration {
        let span = 2 * JITTER.as_millis() as u32 + 1;
        Duration::from_millis(u64::from(self.rng.next_u32() % span))
    }

    fn message(&self, kind: Request, dest: Dest, secs: u16) -> Outgoing {
        let src = match kind {
            Request::Extend { address } | Request::Release { address, .. } => address,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let msg_type = match kind {
            Request::Discover => MessageType::Discover,
            Request::Release { .. } => MessageType::Release,
            _ => MessageType::Request,
        };
        Outgoing {
            payload: wire::build(kind, &self.id, self.xid, secs),
            src,
            dest,
            msg_type,
            xid: self.xid,
        }
    }

    fn secs(&self, now: Duration) -> u16 {
        now.saturating_sub(self.began)
            .as_secs()
            .try_into()
            .unwrap_or(u16::MAX)
    }

    fn bind(&mut self, lease: Lease, start: Duration, renewed: bool, step: &mut Step) {
        self.state = State::Bound;
        self.bound_at = start;
        self.offer = None;
        self.restart_at = None;
        self.lease = Some(lease.clone());
        step.event = Some(match renewed {
            true => Event::Renewed(lease),
            false => Event::Bound(lease),
        });
    }

    fn nak(&mut self, now: Duration, reply: &Reply, step: &mut Step) {
        self.stats.naks += 1;
        if self.lease.take().is_some() {
            // A NAK while renewing ends the lease; the new acquisition gets its own
            // time budget.
            self.deadline = now + NAK_DELAY + self.timeout;
        }
        self.state = State::Init;
        self.offer = None;
        self.xid = self.rng.next_u32();
        self.restart_at = Some(now + NAK_DELAY);
        step.event = Some(Event::Nak {
            server: reply.server_id,
            message: reply.message.clone(),
        });
    }

    /// T1, T2 and expiry, whichever is due (a suspended machine may find several).
    fn lease_timers(&mut self, now: Duration, step: &mut Step) {
        let Some(l) = &self.lease else { return };
        let Some((t1, t2, end)) = self.deadlines(l) else {
            return; // infinite
        };
        let address = l.address;
        let server = l.server_id;
        if now >= end {
            self.lease = None;
            step.event = Some(Event::Expired);
            self.deadline = now + self.timeout;
            self.xid = self.rng.next_u32();
            self.discover(now, step);
        } else if now >= t2 && self.state != State::Rebinding {
            // RFC 2131 §4.4.5: at T2, broadcast to any server.
            self.state = State::Rebinding;
            self.begin_extend(now);
            step.send
                .push(self.extend(now, address, Dest::Broadcast, end));
        } else if now >= t1 && self.state == State::Bound {
            // RFC 2131 §4.4.5: at T1, unicast to the server that granted the lease.
            self.state = State::Renewing;
            self.begin_extend(now);
            step.send
                .push(self.extend(now, address, Dest::Unicast(server), t2));
        } else if self.state == State::Renewing && now >= self.next_tx {
            step.send
                .push(self.extend(now, address, Dest::Unicast(server), t2));
        } else if self.state == State::Rebinding && now >= self.next_tx {
            step.send
                .push(self.extend(now, address, Dest::Broadcast, end));
        }
    }

    fn begin_extend(&mut self, now: Duration) {
        self.xid = self.rng.next_u32();
        self.began = now;
        self.request_at = now;
        self.sent = 0;
    }

    /// A RENEWING/REBINDING REQUEST; the next one after half the time left until
    /// `until`, at least [`MIN_RENEW_RETRANSMIT`] (RFC 2131 §4.4.5).
    fn extend(
        &mut self,
        now: Duration,
        address: Ipv4Addr,
        dest: Dest,
        until: Duration,
    ) -> Outgoing {
        let half = until.saturating_sub(now) / 2;
        self.next_tx = now + half.max(MIN_RENEW_RETRANSMIT);
        self.sent += 1;
        self.stats.requests += 1;
        self.message(Request::Extend { address }, dest, self.secs(now))
    }

    /// (T1, T2, expiry) of `l` on the client's clock; `None` when infinite.
    fn deadlines(&self, l: &Lease) -> Option<(Duration, Duration, Duration)> {
        let at = |s: Option<u32>| s.map(|s| self.bound_at + Duration::from_secs(u64::from(s)));
        Some((at(l.t1)?, at(l.t2)?, at(l.lease_time)?))
    }

    fn wake_at(&self) -> Option<Duration> {
        match self.state {
            State::Init => self.restart_at.map(|t| t.min(self.deadline)),
            State::Selecting | State::Requesting => Some(self.next_tx.min(self.deadline)),
            State::Bound => {
                let (t1, _, _) = self.deadlines(self.lease.as_ref()?)?;
                Some(t1)
            }
            State::Renewing => {
                let (_, t2, _) = self.deadlines(self.lease.as_ref()?)?;
                Some(self.next_tx.min(t2))
            }
            State::Rebinding => {
                let (_, _, end) = self.deadlines(self.lease.as_ref()?)?;
                Some(self.next_tx.min(end))
            }
            State::Stopped => None,
        }
    }

    fn finish(&self, mut step: Step) -> Step {
        step.wake_at = self.wake_at();
        step
    }
}

/// An address a host can take: not 0.0.0.0, loopback, multicast, class E or broadcast.
fn usable_address(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.octets()[0] >= 224)
}

/// The classful prefix of `a` (RFC 791 §3.2; 0–127 A, 128–191 B, 192–223 C). The
/// kernel's ipconfig (net/ipv4/ipconfig.c, `ic_defaults`) falls back to the same when a
/// server sends no mask.
pub fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// The prefix length of a contiguous netmask; `None` for 0.0.0.0 or holes.
pub fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (ones > 0 && m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

fn prefix_mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

/// Builds the lease an ACK grants. `offered` is the OFFER's lease time, used when the
/// ACK leaves it out.
fn lease_from(reply: &Reply, offered: Option<u32>) -> Result<Lease, Ignored> {
    if !usable_address(reply.yiaddr) {
        return Err(Ignored::Unusable("ACK of an unusable address"));
    }
    let server_id = reply.server_id.ok_or(Ignored::Unusable(
        "ACK without server identifier (RFC 2131 §4.3.1 requires one)",
    ))?;
    let (prefix, mask_defaulted) = match reply.subnet_mask.and_then(mask_prefix) {
        Some(p) => (p, false),
        None => (classful_prefix(reply.yiaddr), true),
    };
    // A server that sends no lease time at all (BOOTP style) is taken as infinite.
    let lease_time = reply
        .lease_time
        .or(offered)
        .filter(|&t| t != INFINITE)
        .map(|t| t.max(MIN_LEASE_SECS));
    let (t1, t2) = match lease_time {
        None => (None, None),
        Some(l) => {
            // RFC 2131 §4.4.5: T1 defaults to 0.5 and T2 to 0.875 of the lease. Server
            // values are used only when they are in order (T1 ≤ T2 < lease).
            let d1 = l / 2;
            let d2 = (u64::from(l) * 7 / 8) as u32;
            match (reply.t1, reply.t2) {
                (Some(a), Some(b)) if a <= b && b < l => (Some(a), Some(b)),
                (Some(a), None) if a <= d2 => (Some(a), Some(d2)),
                (None, Some(b)) if d1 <= b && b < l => (Some(d1), Some(b)),
                _ => (Some(d1), Some(d2)),
            }
        }
    };
    Ok(Lease {
        address: reply.yiaddr,
        prefix,
        netmask: prefix_mask(prefix),
        mask_defaulted,
        router: reply.routers.iter().copied().find(|r| !r.is_unspecified()),
        dns: reply
            .dns
            .iter()
            .copied()
            .filter(|d| !d.is_unspecified())
            .collect(),
        domain: reply.domain.clone(),
        server_id,
        lease_time,
        t1,
        t2,
    })
}

/// `DHCPOFFER`, `DHCPACK`…: the names RFC 2131 and server logs use.
pub fn name(t: MessageType) -> String {
    match t {
        MessageType::Discover => "DHCPDISCOVER".into(),
        MessageType::Offer => "DHCPOFFER".into(),
        MessageType::Request => "DHCPREQUEST".into(),
        MessageType::Decline => "DHCPDECLINE".into(),
        MessageType::Ack => "DHCPACK".into(),
        MessageType::Nak => "DHCPNAK".into(),
        MessageType::Release => "DHCPRELEASE".into(),
        MessageType::Inform => "DHCPINFORM".into(),
        other => format!("DHCP message type {}", u8::from(other)),
    }
}
