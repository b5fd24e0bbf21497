//! The body of the `dhcp_client` fuzz target (`fuzz/fuzz_targets/dhcp_client.rs`), kept
//! here so a unit test can replay the checked-in corpus with plain `cargo test`.
//!
//! One input is one received packet, as the packet socket delivers it (an IPv4 packet).
//! It goes through `net::packet` and, when that accepts it, into a client in every state
//! that reads replies. The raw bytes are also fed to the clients directly as a DHCP
//! message, so the fuzzer reaches the DHCP parser without having to find valid IP and
//! UDP checksums first. The constants match `fuzz/corpus/dhcp_client.gen.sh`, so the
//! captured replies there pass the xid, chaddr and server filters and reach the deep
//! paths.

use super::wire::server::ServerReply;
use super::{Client, Params, State};
use crate::config::Mac;
use crate::net::packet;
use dhcproto::v4::MessageType;
use std::net::Ipv4Addr;
use std::time::Duration;

pub const XID: u32 = 0x5a45_5a45;
pub const MAC: Mac = Mac([0x02, 0x5a, 0x45, 0x00, 0x00, 0x01]);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// Feeds `data` to clients in each state; panics only on a bug.
pub fn run(data: &[u8]) {
    let mut payloads: Vec<&[u8]> = vec![data];
    for verify in [true, false] {
        if let Ok(p) = packet::dhcp_payload(data, verify) {
            payloads.push(p);
        }
    }
    for payload in payloads {
        for which in 0..6 {
            let (mut c, now) = client_in(which);
            let step = c.handle(now, payload);
            check(&c, &step, now);
            let step = c.handle(now, payload);
            check(&c, &step, now);
            // Timers must still run from wherever the packet left the client.
            let mut t = now;
            for _ in 0..8 {
                let step = c.poll(t);
                check(&c, &step, t);
                let Some(w) = step.wake_at else { break };
                t = w.max(t + Duration::from_millis(1));
            }
        }
    }
}

fn check<R: super::Random>(c: &Client<R>, step: &super::Step, now: Duration) {
    if let Some(w) = step.wake_at {
        assert!(w >= now, "wake_at {w:?} before now {now:?}");
    }
    match c.state() {
        State::Bound | State::Renewing | State::Rebinding => assert!(c.lease().is_some()),
        _ => {}
    }
}

fn reply(t: MessageType, xid: u32) -> Vec<u8> {
    ServerReply::new(t, xid, MAC).encode()
}

/// 0 SELECTING, 1 REQUESTING, 2 BOUND, 3 RENEWING, 4 REBINDING, 5 SELECTING without
/// rapid commit; with the time at which the client is in that state.
pub fn client_in(which: u8) -> (Client<impl FnMut() -> u32>, Duration) {
    let mut params = Params::new(MAC);
    params.rapid_commit = which != 5;
    params.hostname = Some("fuzz".into());
    // Every new transaction reuses XID, so captured replies match in every state.
    let mut c = Client::new(params, XID, || XID);
    let mut now = Duration::from_secs(1);
    c.start(now);
    if which == 0 || which == 5 {
        return (c, now);
    }
    c.handle(now, &reply(MessageType::Offer, XID));
    if which == 1 {
        return (c, now);
    }
    c.handle(now, &reply(MessageType::Ack, XID));
    if which == 2 {
        return (c, now);
    }
    // Lease 3600 s: T1 at 1800 s, T2 at 3150 s after the REQUEST.
    now += Duration::from_secs(1800);
    c.poll(now);
    if which == 3 {
        return (c, now);
    }
    now += Duration::from_secs(1350);
    c.poll(now);
    (c, now)
}
