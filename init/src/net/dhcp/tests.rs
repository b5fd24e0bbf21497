//! Replayed exchanges with a fixed clock, xid and jitter source. Server replies are
//! built with dhcproto (`wire::server`), independently of the client's own encoder.

use super::wire::server::ServerReply;
use super::wire::{self, HEADER_LEN, MAGIC};
use super::*;
use dhcproto::v4::{DhcpOption, Message, OptionCode};
use dhcproto::{Decodable, Decoder};
use std::collections::VecDeque;

const MAC: Mac = Mac([0x02, 0x5a, 0x45, 0x00, 0x00, 0x01]);
const XID: u32 = 0x1111_1111;
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const OFFERED: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

/// A random source that returns `draws` in order, then 1000 forever. For jitter, a draw
/// `d` means an offset of `d - 1000` ms, so 1000 is "no jitter".
fn rng(draws: &[u32]) -> impl FnMut() -> u32 {
    let mut q: VecDeque<u32> = draws.iter().copied().collect();
    move || q.pop_front().unwrap_or(1000)
}

fn client_with(params: Params, draws: &[u32]) -> Client<impl FnMut() -> u32> {
    Client::new(params, XID, rng(draws))
}

fn client() -> Client<impl FnMut() -> u32> {
    client_with(Params::new(MAC), &[])
}

fn reply(t: MessageType, xid: u32) -> ServerReply {
    ServerReply::new(t, xid, MAC)
}

fn decode(o: &Outgoing) -> Message {
    Message::decode(&mut Decoder::new(&o.payload)).unwrap()
}

fn only(step: &Step) -> &Outgoing {
    assert_eq!(step.send.len(), 1, "{step:?}");
    &step.send[0]
}

fn bound_lease(step: &Step) -> Lease {
    match &step.event {
        Some(Event::Bound(l)) => l.clone(),
        other => panic!("expected Bound, got {other:?} ({:?})", step.ignored),
    }
}

/// Polls at each wake time until nothing is scheduled (at most 50 polls); returns the
/// last wake time.
fn run_timers<R: Random>(c: &mut Client<R>, mut t: Duration) -> Duration {
    for _ in 0..50 {
        match c.poll(t).wake_at {
            Some(w) => t = w,
            None => return t,
        }
    }
    panic!("still scheduling at {t:?} in {}", c.state());
}

/// Runs DISCOVER → OFFER → REQUEST → ACK at t=0 with `ack` as the ACK.
fn bind_with<R: Random>(c: &mut Client<R>, ack: &ServerReply) -> Lease {
    c.start(s(0.0));
    c.handle(s(0.0), &reply(MessageType::Offer, c.xid()).encode());
    bound_lease(&c.handle(s(0.0), &ack.encode()))
}

#[test]
fn happy_path_discover_offer_request_ack_binds() {
    let mut c = client();
    let step = c.start(s(0.0));
    let d = only(&step);
    assert_eq!(
        (d.msg_type, d.dest, d.src),
        (
            MessageType::Discover,
            Dest::Broadcast,
            Ipv4Addr::UNSPECIFIED
        )
    );
    assert_eq!(decode(d).xid(), XID);
    assert_eq!(c.state(), State::Selecting);
    assert_eq!(step.wake_at, Some(s(4.0)));

    let step = c.handle(s(0.010), &reply(MessageType::Offer, XID).encode());
    assert_eq!(
        step.event,
        Some(Event::Offer {
            address: OFFERED,
            server: SERVER
        })
    );
    let r = decode(only(&step));
    assert_eq!(r.opts().msg_type(), Some(MessageType::Request));
    assert_eq!(
        r.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert_eq!(
        r.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(r.xid(), XID);
    assert_eq!(c.state(), State::Requesting);

    let step = c.handle(s(0.020), &reply(MessageType::Ack, XID).encode());
    let l = bound_lease(&step);
    assert!(step.send.is_empty());
    assert_eq!(
        l,
        Lease {
            address: OFFERED,
            prefix: 24,
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            mask_defaulted: false,
            router: Some(SERVER),
            dns: vec![SERVER],
            domain: None,
            server_id: SERVER,
            lease_time: Some(3600),
            t1: Some(1800),
            t2: Some(3150),
        }
    );
    assert_eq!(c.state(), State::Bound);
    assert_eq!(c.lease(), Some(&l));
    // The lease runs from the REQUEST (t=0.010), so T1 falls at 1800.010 s.
    assert_eq!(step.wake_at, Some(s(1800.010)));
}

#[test]
fn lost_offers_retransmit_at_4_12_28_then_give_up_at_30() {
    let mut c = client();
    assert_eq!(c.start(s(0.0)).wake_at, Some(s(4.0)));
    // Early polls do nothing.
    let early = c.poll(s(3.999));
    assert!(early.send.is_empty() && early.event.is_none());
    assert_eq!(early.wake_at, Some(s(4.0)));
    let mut times = Vec::new();
    let mut t = s(4.0);
    loop {
        let step = c.poll(t);
        if step.event == Some(Event::GaveUp) {
            assert!(step.send.is_empty());
            assert_eq!(step.wake_at, None);
            break;
        }
        let d = only(&step);
        assert_eq!(d.msg_type, MessageType::Discover);
        // The same transaction: same xid; `secs` counts from the first DISCOVER.
        assert_eq!(decode(d).xid(), XID);
        assert_eq!(
            Duration::from_secs(u64::from(decode(d).secs())),
            Duration::from_secs(t.as_secs())
        );
        times.push(t);
        t = step.wake_at.unwrap();
        assert!(times.len() < 10, "no give-up: {times:?}");
    }
    assert_eq!(times, vec![s(4.0), s(12.0), s(28.0)]);
    assert_eq!(t, s(30.0));
    assert_eq!(c.state(), State::Stopped);
    assert_eq!(c.stats().discovers, 4);
    assert_eq!(c.poll(s(100.0)), Step::default());
}

#[test]
fn retransmit_jitter_comes_from_the_random_source() {
    // Offsets -1000 ms, +1000 ms, +250 ms on 4, 8 and 16 s.
    let mut c = client_with(Params::new(MAC), &[0, 2000, 1250]);
    let w1 = c.start(s(0.0)).wake_at.unwrap();
    assert_eq!(w1, s(3.0));
    let w2 = c.poll(w1).wake_at.unwrap();
    assert_eq!(w2, s(3.0 + 9.0));
    let w3 = c.poll(w2).wake_at.unwrap();
    assert_eq!(w3, s(12.0 + 16.25));
}

#[test]
fn retransmit_interval_doubles_up_to_64_seconds() {
    let mut params = Params::new(MAC);
    params.timeout = Duration::from_secs(400);
    let mut c = client_with(params, &[]);
    let mut t = c.start(s(0.0)).wake_at.unwrap();
    let mut gaps = vec![t];
    for _ in 0..6 {
        let next = c.poll(t).wake_at.unwrap();
        gaps.push(next - t);
        t = next;
    }
    let secs: Vec<u64> = gaps.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, vec![4, 8, 16, 32, 64, 64, 64]);
}

#[test]
fn lowered_timeout_gives_up_on_time() {
    let mut params = Params::new(MAC);
    params.timeout = Duration::from_secs(3);
    let mut c = client_with(params, &[]);
    assert_eq!(c.start(s(0.0)).wake_at, Some(s(3.0)));
    assert_eq!(c.poll(s(3.0)).event, Some(Event::GaveUp));
    assert_eq!(c.stats().discovers, 1);
}

#[test]
fn nak_restarts_discovery_after_a_delay_with_a_new_xid() {
    let mut c = client_with(Params::new(MAC), &[1000, 1000, 0xabcd]);
    c.start(s(0.0));
    c.handle(s(0.1), &reply(MessageType::Offer, XID).encode());
    let mut nak = reply(MessageType::Nak, XID);
    nak.message = Some("wrong network".into());
    let step = c.handle(s(0.2), &nak.encode());
    assert_eq!(
        step.event,
        Some(Event::Nak {
            server: Some(SERVER),
            message: Some("wrong network".into())
        })
    );
    assert!(step.send.is_empty());
    assert_eq!(c.state(), State::Init);
    assert_eq!(step.wake_at, Some(s(1.2)));
    assert!(c.poll(s(1.1)).send.is_empty());
    let step = c.poll(s(1.2));
    let d = only(&step);
    assert_eq!(d.msg_type, MessageType::Discover);
    assert_eq!(decode(d).xid(), 0xabcd);
    assert_eq!(c.state(), State::Selecting);
    // A late reply to the old transaction no longer counts.
    let step = c.handle(s(1.3), &reply(MessageType::Offer, XID).encode());
    assert_eq!(step.ignored, Some(Ignored::WrongXid));
    // The give-up bound still counts from the first DISCOVER.
    assert_eq!(step.wake_at, Some(s(5.2)));
    assert_eq!(run_timers(&mut c, s(5.2)), s(30.0));
    assert_eq!(c.state(), State::Stopped);
}

#[test]
fn wrong_xid_and_wrong_mac_are_ignored() {
    let mut c = client();
    c.start(s(0.0));
    let step = c.handle(s(0.1), &reply(MessageType::Offer, XID + 1).encode());
    assert_eq!(step.ignored, Some(Ignored::WrongXid));
    assert!(step.send.is_empty() && step.event.is_none());
    let mut other = reply(MessageType::Offer, XID);
    other.mac = Mac([0x02, 0, 0, 0, 0, 9]);
    let step = c.handle(s(0.1), &other.encode());
    assert_eq!(step.ignored, Some(Ignored::WrongMac));
    assert_eq!(c.state(), State::Selecting);
    // Our own DISCOVER, looped back, is not a reply.
    let own = c.poll(s(4.0)).send.remove(0);
    assert_eq!(
        c.handle(s(4.0), &own.payload).ignored,
        Some(Ignored::NotAReply)
    );
    assert_eq!(
        c.handle(s(4.0), b"junk").ignored,
        Some(Ignored::Malformed(wire::WireError::TooShort(4)))
    );
}

#[test]
fn second_servers_offer_and_ack_are_ignored_after_selection() {
    let mut c = client();
    c.start(s(0.0));
    c.handle(s(0.1), &reply(MessageType::Offer, XID).encode());
    let mut second = reply(MessageType::Offer, XID);
    second.server_id = Some(OTHER);
    second.yiaddr = Ipv4Addr::new(10, 77, 0, 200);
    let step = c.handle(s(0.15), &second.encode());
    assert_eq!(
        step.ignored,
        Some(Ignored::Unexpected(MessageType::Offer, State::Requesting))
    );
    second.msg_type = MessageType::Ack;
    let step = c.handle(s(0.2), &second.encode());
    assert_eq!(step.ignored, Some(Ignored::WrongServer(Some(OTHER))));
    // A NAK from the other server does not cancel our request either.
    second.msg_type = MessageType::Nak;
    assert_eq!(
        c.handle(s(0.2), &second.encode()).ignored,
        Some(Ignored::WrongServer(Some(OTHER)))
    );
    assert_eq!(c.state(), State::Requesting);
    let l = bound_lease(&c.handle(s(0.3), &reply(MessageType::Ack, XID).encode()));
    assert_eq!((l.address, l.server_id), (OFFERED, SERVER));
}

#[test]
fn offer_without_server_identifier_is_not_selected() {
    let mut c = client();
    c.start(s(0.0));
    let mut o = reply(MessageType::Offer, XID);
    o.server_id = None;
    assert!(matches!(
        c.handle(s(0.1), &o.encode()).ignored,
        Some(Ignored::Unusable(_))
    ));
    let mut o = reply(MessageType::Offer, XID);
    o.yiaddr = Ipv4Addr::UNSPECIFIED;
    assert!(matches!(
        c.handle(s(0.1), &o.encode()).ignored,
        Some(Ignored::Unusable(_))
    ));
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn rapid_commit_ack_binds_from_selecting() {
    let mut c = client();
    let d = decode(only(&c.start(s(0.0))));
    assert!(d.opts().contains(OptionCode::RapidCommit));
    let mut ack = reply(MessageType::Ack, XID);
    ack.rapid_commit = true;
    let step = c.handle(s(0.005), &ack.encode());
    let l = bound_lease(&step);
    assert_eq!(l.address, OFFERED);
    assert!(step.send.is_empty());
    assert_eq!(c.state(), State::Bound);
    // The lease runs from the DISCOVER.
    assert_eq!(step.wake_at, Some(s(1800.0)));
}

#[test]
fn ack_without_rapid_commit_is_ignored_while_selecting() {
    let mut c = client();
    c.start(s(0.0));
    let step = c.handle(s(0.1), &reply(MessageType::Ack, XID).encode());
    assert_eq!(
        step.ignored,
        Some(Ignored::Unexpected(MessageType::Ack, State::Selecting))
    );
    // And a rapid-commit ACK when we did not offer rapid commit.
    let mut params = Params::new(MAC);
    params.rapid_commit = false;
    let mut c = client_with(params, &[]);
    assert!(
        !decode(only(&c.start(s(0.0))))
            .opts()
            .contains(OptionCode::RapidCommit)
    );
    let mut ack = reply(MessageType::Ack, XID);
    ack.rapid_commit = true;
    assert!(c.handle(s(0.1), &ack.encode()).ignored.is_some());
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn lease_without_router_has_none_and_serializes_null() {
    let mut c = client();
    let mut ack = reply(MessageType::Ack, XID);
    ack.routers.clear();
    ack.dns.clear();
    let l = bind_with(&mut c, &ack);
    assert_eq!(l.router, None);
    assert!(l.dns.is_empty());
    let json = serde_json::to_value(&l).unwrap();
    assert_eq!(json["router"], serde_json::Value::Null);
    assert_eq!(json["address"], "10.77.0.100");
    assert_eq!(json["netmask"], "255.255.255.0");
    assert_eq!(json["lease_time"], 3600);
}

/// An ACK whose router, DNS and lease time sit in the `file` and `sname` fields.
fn overloaded_ack(xid: u32) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b[0] = 2;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[16..20].copy_from_slice(&OFFERED.octets());
    b[28..34].copy_from_slice(&MAC.0);
    // sname (44..108): DNS servers and the mask.
    let sname = [
        6, 8, 10, 77, 0, 53, 10, 77, 0, 54, 1, 4, 255, 255, 0, 0, 255,
    ];
    b[44..44 + sname.len()].copy_from_slice(&sname);
    // file (108..236): router and lease time.
    let file = [3, 4, 10, 77, 0, 254, 51, 4, 0, 0, 0x02, 0x58, 255];
    b[108..108 + file.len()].copy_from_slice(&file);
    b[236..240].copy_from_slice(&MAGIC);
    b.extend_from_slice(&[53, 1, 5, 54, 4, 10, 77, 0, 1, 52, 1, 3, 255]);
    b
}

#[test]
fn overloaded_options_in_file_and_sname_make_the_lease() {
    let mut c = client();
    c.start(s(0.0));
    c.handle(s(0.0), &reply(MessageType::Offer, XID).encode());
    let l = bound_lease(&c.handle(s(0.0), &overloaded_ack(XID)));
    assert_eq!(l.router, Some(Ipv4Addr::new(10, 77, 0, 254)));
    assert_eq!(
        l.dns,
        vec![Ipv4Addr::new(10, 77, 0, 53), Ipv4Addr::new(10, 77, 0, 54)]
    );
    assert_eq!((l.prefix, l.mask_defaulted), (16, false));
    assert_eq!(
        (l.lease_time, l.t1, l.t2),
        (Some(600), Some(300), Some(525))
    );
}

#[test]
fn missing_mask_falls_back_to_the_classful_prefix() {
    for (addr, prefix) in [
        (Ipv4Addr::new(10, 1, 2, 3), 8),
        (Ipv4Addr::new(172, 16, 5, 4), 16),
        (Ipv4Addr::new(192, 168, 1, 50), 24),
    ] {
        let mut c = client();
        let mut ack = reply(MessageType::Ack, XID);
        ack.mask = None;
        ack.yiaddr = addr;
        let l = bind_with(&mut c, &ack);
        assert_eq!(
            (l.address, l.prefix, l.mask_defaulted),
            (addr, prefix, true)
        );
    }
    // A mask with holes is no better than none.
    let mut c = client();
    let mut ack = reply(MessageType::Ack, XID);
    ack.mask = Some(Ipv4Addr::new(255, 0, 255, 0));
    let l = bind_with(&mut c, &ack);
    assert_eq!(
        (l.prefix, l.netmask, l.mask_defaulted),
        (8, Ipv4Addr::new(255, 0, 0, 0), true)
    );
    // /32 is a real mask (some clouds hand out host routes).
    let mut c = client();
    let mut ack = reply(MessageType::Ack, XID);
    ack.mask = Some(Ipv4Addr::BROADCAST);
    assert_eq!(bind_with(&mut c, &ack).prefix, 32);
}

#[test]
fn hostname_is_sent_in_discover_and_request_when_configured() {
    let mut params = Params::new(MAC);
    params.hostname = Some("kld-node-7".into());
    let mut c = client_with(params, &[]);
    let want = Some(&DhcpOption::Hostname("kld-node-7".into()));
    assert_eq!(
        decode(only(&c.start(s(0.0))))
            .opts()
            .get(OptionCode::Hostname),
        want
    );
    let step = c.handle(s(0.0), &reply(MessageType::Offer, XID).encode());
    assert_eq!(decode(only(&step)).opts().get(OptionCode::Hostname), want);
    // Without one, no option 12.
    let mut c = client();
    assert!(
        !decode(only(&c.start(s(0.0))))
            .opts()
            .contains(OptionCode::Hostname)
    );
}

#[test]
fn request_repeats_the_discover_secs_and_is_retransmitted_then_abandoned() {
    let mut params = Params::new(MAC);
    params.timeout = Duration::from_secs(300);
    let mut c = client_with(params, &[]);
    c.start(s(0.0));
    c.poll(s(4.0));
    c.poll(s(12.0));
    let step = c.handle(s(13.5), &reply(MessageType::Offer, XID).encode());
    // RFC 2131 §4.4.1: same `secs` as the DISCOVER that got the offer (sent at 12 s).
    assert_eq!(decode(only(&step)).secs(), 12);
    let mut t = step.wake_at.unwrap();
    let mut sent = vec![s(13.5)];
    for _ in 0..10 {
        let step = c.poll(t);
        if only(&step).msg_type == MessageType::Discover {
            break;
        }
        sent.push(t);
        t = step.wake_at.unwrap();
    }
    assert_eq!(sent, vec![s(13.5), s(17.5), s(25.5), s(41.5)]);
    assert_eq!(t, s(73.5));
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn renew_at_t1_unicasts_then_rebinds_at_t2_then_expires() {
    let mut c = client();
    let mut ack = reply(MessageType::Ack, XID);
    ack.lease_time = Some(1000);
    let l = bind_with(&mut c, &ack);
    assert_eq!((l.t1, l.t2), (Some(500), Some(875)));

    assert!(c.poll(s(499.9)).send.is_empty());
    let step = c.poll(s(500.0));
    let r = only(&step);
    assert_eq!(c.state(), State::Renewing);
    assert_eq!(
        (r.msg_type, r.dest, r.src),
        (MessageType::Request, Dest::Unicast(SERVER), OFFERED)
    );
    let m = decode(r);
    assert_eq!(m.ciaddr(), OFFERED);
    assert!(!m.flags().broadcast());
    // Next try after half the time to T2, (875-500)/2 = 187.5 s.
    assert_eq!(step.wake_at, Some(s(687.5)));
    let step = c.poll(s(687.5));
    assert_eq!(only(&step).dest, Dest::Unicast(SERVER));
    assert_eq!(step.wake_at, Some(s(781.25)));
    // Half of the 93.75 s left is under the 60 s floor: the next try is 60 s later…
    assert_eq!(c.poll(s(781.25)).wake_at, Some(s(841.25)));
    // …and then T2 comes first.
    assert_eq!(c.poll(s(841.25)).wake_at, Some(s(875.0)));

    let step = c.poll(s(875.0));
    assert_eq!(c.state(), State::Rebinding);
    let r = only(&step);
    assert_eq!((r.dest, r.src), (Dest::Broadcast, OFFERED));
    assert_eq!(decode(r).ciaddr(), OFFERED);
    assert_eq!(step.wake_at, Some(s(937.5)));
    c.poll(s(937.5));
    let step = c.poll(s(997.5));
    assert_eq!(step.wake_at, Some(s(1000.0)));

    let step = c.poll(s(1000.0));
    assert_eq!(step.event, Some(Event::Expired));
    assert_eq!(c.lease(), None);
    assert_eq!(only(&step).msg_type, MessageType::Discover);
    assert_eq!(c.state(), State::Selecting);
    // A fresh acquisition with its own give-up bound.
    assert_eq!(run_timers(&mut c, step.wake_at.unwrap()), s(1030.0));
}

#[test]
fn renewal_ack_extends_the_lease_from_the_renewing_request() {
    let mut c = client_with(Params::new(MAC), &[1000, 1000, 0x2222]);
    let mut ack = reply(MessageType::Ack, XID);
    ack.lease_time = Some(1000);
    bind_with(&mut c, &ack);
    let step = c.poll(s(500.0));
    let xid = decode(only(&step)).xid();
    assert_eq!(xid, 0x2222, "renewal is a new transaction");
    // A reply from another server is not ours while RENEWING.
    let mut other = reply(MessageType::Ack, xid);
    other.server_id = Some(OTHER);
    assert_eq!(
        c.handle(s(500.1), &other.encode()).ignored,
        Some(Ignored::WrongServer(Some(OTHER)))
    );
    let mut renewed = reply(MessageType::Ack, xid);
    renewed.lease_time = Some(1000);
    let step = c.handle(s(500.2), &renewed.encode());
    assert!(matches!(step.event, Some(Event::Renewed(ref l)) if l.lease_time == Some(1000)));
    assert_eq!(c.state(), State::Bound);
    assert_eq!(step.wake_at, Some(s(1000.0)));
}

#[test]
fn any_server_may_answer_while_rebinding() {
    let mut c = client();
    let mut ack = reply(MessageType::Ack, XID);
    ack.lease_time = Some(1000);
    bind_with(&mut c, &ack);
    c.poll(s(500.0));
    let step = c.poll(s(875.0));
    let xid = decode(only(&step)).xid();
    let mut other = reply(MessageType::Ack, xid);
    other.server_id = Some(OTHER);
    let step = c.handle(s(876.0), &other.encode());
    assert!(matches!(step.event, Some(Event::Renewed(ref l)) if l.server_id == OTHER));
}

#[test]
fn nak_while_renewing_drops_the_lease() {
    let mut c = client();
    let mut ack = reply(MessageType::Ack, XID);
    ack.lease_time = Some(1000);
    bind_with(&mut c, &ack);
    let xid = decode(only(&c.poll(s(500.0)))).xid();
    let step = c.handle(s(500.1), &reply(MessageType::Nak, xid).encode());
    assert!(matches!(step.event, Some(Event::Nak { .. })));
    assert_eq!(c.lease(), None);
    assert_eq!(c.state(), State::Init);
    assert_eq!(only(&c.poll(s(501.1))).msg_type, MessageType::Discover);
}

#[test]
fn server_t1_t2_are_used_when_consistent() {
    let cases = [
        ((Some(100), Some(200)), (100, 200)),
        // T2 beyond the lease, T1 after T2: defaults.
        ((Some(100), Some(5000)), (500, 875)),
        ((Some(300), Some(200)), (500, 875)),
        ((Some(100), None), (100, 875)),
        ((None, Some(900)), (500, 900)),
    ];
    for ((t1, t2), want) in cases {
        let mut c = client();
        let mut ack = reply(MessageType::Ack, XID);
        ack.lease_time = Some(1000);
        ack.t1 = t1;
        ack.t2 = t2;
        let l = bind_with(&mut c, &ack);
        assert_eq!((l.t1, l.t2), (Some(want.0), Some(want.1)), "{t1:?} {t2:?}");
    }
}

#[test]
fn infinite_and_missing_lease_times_schedule_nothing() {
    for lease_time in [Some(INFINITE), None] {
        let mut c = client();
        c.start(s(0.0));
        let mut offer = reply(MessageType::Offer, XID);
        offer.lease_time = lease_time;
        c.handle(s(0.0), &offer.encode());
        let mut ack = reply(MessageType::Ack, XID);
        ack.lease_time = lease_time;
        let step = c.handle(s(0.0), &ack.encode());
        let l = bound_lease(&step);
        assert_eq!((l.lease_time, l.t1, l.t2), (None, None, None));
        assert_eq!(step.wake_at, None);
    }
}

#[test]
fn ack_without_lease_time_takes_the_offers() {
    let mut c = client();
    c.start(s(0.0));
    let mut offer = reply(MessageType::Offer, XID);
    offer.lease_time = Some(7200);
    c.handle(s(0.0), &offer.encode());
    let mut ack = reply(MessageType::Ack, XID);
    ack.lease_time = None;
    assert_eq!(
        bound_lease(&c.handle(s(0.0), &ack.encode())).lease_time,
        Some(7200)
    );
}

#[test]
fn tiny_leases_are_stretched_to_the_minimum() {
    let mut c = client();
    let mut ack = reply(MessageType::Ack, XID);
    ack.lease_time = Some(0);
    let l = bind_with(&mut c, &ack);
    assert_eq!((l.lease_time, l.t1, l.t2), (Some(10), Some(5), Some(8)));
}

#[test]
fn release_unicasts_to_the_server_and_stops() {
    let mut c = client();
    bind_with(&mut c, &reply(MessageType::Ack, XID));
    let step = c.release(s(10.0));
    let r = only(&step);
    assert_eq!(
        (r.msg_type, r.dest, r.src),
        (MessageType::Release, Dest::Unicast(SERVER), OFFERED)
    );
    assert_eq!(decode(r).ciaddr(), OFFERED);
    assert_eq!((c.state(), step.wake_at), (State::Stopped, None));
    // Nothing to release before a lease.
    let mut c = client();
    c.start(s(0.0));
    assert!(c.release(s(1.0)).send.is_empty());
}

#[test]
fn unexpected_messages_in_bound_change_nothing() {
    let mut c = client();
    bind_with(&mut c, &reply(MessageType::Ack, XID));
    let step = c.handle(s(1.0), &reply(MessageType::Nak, XID).encode());
    assert_eq!(
        step.ignored,
        Some(Ignored::Unexpected(MessageType::Nak, State::Bound))
    );
    assert_eq!(c.state(), State::Bound);
}

#[test]
fn masks_and_prefixes() {
    assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
    assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
    assert_eq!(mask_prefix(Ipv4Addr::new(128, 0, 0, 0)), Some(1));
    assert_eq!(mask_prefix(Ipv4Addr::new(0, 0, 0, 0)), None);
    assert_eq!(mask_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    assert_eq!(prefix_mask(20), Ipv4Addr::new(255, 255, 240, 0));
    assert_eq!(prefix_mask(32), Ipv4Addr::BROADCAST);
}
#[test]
fn captured_corpus_replays_without_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/dhcp_client");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        super::fuzz::run(&data);
        n += 1;
    }
    assert!(n >= 6, "corpus has only {n} files");
}

#[test]
fn captured_replies_reach_the_deep_paths() {
    // The captures carry the fuzz harness's xid, MAC and server, so an OFFER moves a
    // SELECTING client on and an ACK binds a REQUESTING one.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/dhcp_client");
    let mut seen = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let Ok(payload) = crate::net::packet::dhcp_payload(&data, true) else {
            continue;
        };
        let (which, want) = if name.contains("offer") {
            (0, State::Requesting)
        } else if name.contains("ack") {
            (1, State::Bound)
        } else if name.contains("nak") {
            (1, State::Init)
        } else {
            continue;
        };
        let (mut c, now) = super::fuzz::client_in(which);
        let step = c.handle(now, payload);
        assert_eq!(c.state(), want, "{name}: {:?}", step.ignored);
        seen.push(name);
    }
    seen.sort();
    assert!(seen.iter().any(|n| n.contains("offer")), "{seen:?}");
    assert!(seen.iter().any(|n| n.contains("ack")), "{seen:?}");
    assert!(seen.iter().any(|n| n.contains("nak")), "{seen:?}");
}
