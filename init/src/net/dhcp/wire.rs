//! DHCPv4 messages on the wire: the requests the client sends, and the replies it reads.
//!
//! Encoding and the typed option values come from `dhcproto`. This module adds what that
//! crate leaves to its caller, found by reading its decoder (0.15):
//!
//! - **Option overload** (RFC 2131 §4.1, RFC 2132 §9.3): option 52 says the `file` and/or
//!   `sname` header fields carry more options. dhcproto keeps those fields as opaque
//!   bytes, so options there would be lost. We scan them ourselves.
//! - **Concatenation across fields** (RFC 3396 §5): instances of one option code are joined
//!   in the order options field, `file`, `sname`. dhcproto only joins *adjacent* instances
//!   within the options field.
//! - **One bad option costs only that option.** dhcproto stops decoding at the first option
//!   it cannot read (everything after it is silently dropped) and `debug_assert!`s on the
//!   length of a few options (80, 81, 93, 94…), which would panic a debug build on a
//!   hostile packet. So we decode only the options the client uses, after checking each
//!   one's length here, and hand dhcproto a clean, re-encoded options area.
//!
//! Nothing here panics on arbitrary input; the fuzz target `dhcp_client` checks that.

use crate::config::Mac;
use dhcproto::v4::{self, DhcpOption, DhcpOptions, Flags, HType, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use std::net::Ipv4Addr;

/// RFC 2131 §3: the magic cookie that starts the options field.
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Fixed header (236 bytes) plus the cookie.
pub const HEADER_LEN: usize = 240;
/// RFC 1542 §2.1: relay agents may drop a BOOTP message shorter than 300 bytes, so
/// requests are padded to that length.
pub const MIN_LEN: usize = 300;

const SNAME: std::ops::Range<usize> = 44..108;
const FILE: std::ops::Range<usize> = 108..236;

/// What the client asks for in option 55 (RFC 2132 §9.8): subnet mask, router, DNS,
/// domain name, lease time, T1, T2.
pub const PARAMETERS: [OptionCode; 7] = [
    OptionCode::SubnetMask,
    OptionCode::Router,
    OptionCode::DomainNameServer,
    OptionCode::DomainName,
    OptionCode::AddressLeaseTime,
    OptionCode::Renewal,
    OptionCode::Rebinding,
];

/// Why a received message is not a usable DHCP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0} bytes is shorter than a DHCP message ({HEADER_LEN})")]
    TooShort(usize),
    #[error("no DHCP magic cookie")]
    NoCookie,
    #[error("no message type option (53)")]
    NoMessageType,
    /// dhcproto rejected the rebuilt message. Its error is not kept: formatting it
    /// links more of hickory-proto into /init (24 KiB measured) for a message no one
    /// reads.
    #[error("undecodable header")]
    Decode,
}

/// A server's reply, reduced to what the client acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub op: Opcode,
    pub htype: HType,
    pub xid: u32,
    /// `hlen` as sent (not trusted: it may exceed the 16-byte field).
    pub hlen: u8,
    /// `chaddr` up to `hlen`, at most 16 bytes.
    pub chaddr: Vec<u8>,
    pub yiaddr: Ipv4Addr,
    pub msg_type: MessageType,
    pub server_id: Option<Ipv4Addr>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_time: Option<u32>,
    pub t1: Option<u32>,
    pub t2: Option<u32>,
    pub rapid_commit: bool,
    /// Option 56, the server's explanation (of a NAK, usually).
    pub message: Option<String>,
    /// Option 52's value when the reply used option overload.
    pub overload: Option<u8>,
}

/// Parses a DHCP message (a UDP payload). Never panics.
pub fn parse(payload: &[u8]) -> Result<Reply, WireError> {
    if payload.len() < HEADER_LEN {
        return Err(WireError::TooShort(payload.len()));
    }
    if payload[236..240] != MAGIC {
        return Err(WireError::NoCookie);
    }
    let mut found = Collected::default();
    found.scan(&payload[HEADER_LEN..]);
    // RFC 2132 §9.3: option 52 is only meaningful in the options field itself, so it is
    // read before the overloaded fields are scanned, and never again from them.
    let overload = match found.get(52) {
        Some([v @ 1..=3]) => Some(*v),
        _ => None,
    };
    if let Some(v) = overload {
        // RFC 3396 §5: options field first, then `file`, then `sname`.
        if v & 1 != 0 {
            found.scan(&payload[FILE]);
        }
        if v & 2 != 0 {
            found.scan(&payload[SNAME]);
        }
    }

    // Rebuild the message: the header (overloaded fields blanked, they hold no names),
    // the cookie, then only the options we use, each with a length we have checked.
    let mut clean = Vec::with_capacity(MIN_LEN);
    clean.extend_from_slice(&payload[..HEADER_LEN]);
    if let Some(v) = overload {
        if v & 1 != 0 {
            clean[FILE].fill(0);
        }
        if v & 2 != 0 {
            clean[SNAME].fill(0);
        }
    }
    for (code, value) in &found.options {
        if let Some(value) = usable(*code, value) {
            // RFC 3396 §5: a value over 255 bytes is split into consecutive instances,
            // which dhcproto joins again.
            let chunks: Vec<&[u8]> = match value.is_empty() {
                true => vec![&[][..]],
                false => value.chunks(255).collect(),
            };
            for chunk in chunks {
                clean.push(*code);
                clean.push(chunk.len() as u8);
                clean.extend_from_slice(chunk);
            }
        }
    }
    clean.push(255);

    let msg = v4::Message::decode(&mut Decoder::new(&clean)).map_err(|_| WireError::Decode)?;
    // Read chaddr ourselves: dhcproto's `chaddr()` slices the 16-byte field by the
    // untrusted `hlen` and panics when it is larger.
    let hlen = payload[2];
    let chaddr = payload[28..28 + usize::from(hlen.min(16))].to_vec();
    reply_from(&msg, hlen, chaddr, overload)
}

fn reply_from(
    msg: &v4::Message,
    hlen: u8,
    chaddr: Vec<u8>,
    overload: Option<u8>,
) -> Result<Reply, WireError> {
    let opts = msg.opts();
    let msg_type = match opts.get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => *t,
        _ => return Err(WireError::NoMessageType),
    };
    let ip = |code| match opts.get(code) {
        Some(DhcpOption::SubnetMask(a)) | Some(DhcpOption::ServerIdentifier(a)) => Some(*a),
        _ => None,
    };
    let ips = |code| match opts.get(code) {
        Some(DhcpOption::Router(v)) | Some(DhcpOption::DomainNameServer(v)) => v.clone(),
        _ => Vec::new(),
    };
    let secs = |code| match opts.get(code) {
        Some(DhcpOption::AddressLeaseTime(n))
        | Some(DhcpOption::Renewal(n))
        | Some(DhcpOption::Rebinding(n)) => Some(*n),
        _ => None,
    };
    let text = |code| match opts.get(code) {
        Some(DhcpOption::DomainName(s)) | Some(DhcpOption::Message(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(Reply {
        op: msg.opcode(),
        htype: msg.htype(),
        xid: msg.xid(),
        hlen,
        chaddr,
        yiaddr: msg.yiaddr(),
        msg_type,
        server_id: ip(OptionCode::ServerIdentifier),
        subnet_mask: ip(OptionCode::SubnetMask),
        routers: ips(OptionCode::Router),
        dns: ips(OptionCode::DomainNameServer),
        domain: text(OptionCode::DomainName),
        lease_time: secs(OptionCode::AddressLeaseTime),
        t1: secs(OptionCode::Renewal),
        t2: secs(OptionCode::Rebinding),
        rapid_commit: opts.contains(OptionCode::RapidCommit),
        message: text(OptionCode::Message),
        overload,
    })
}

/// Options as found on the wire, joined per code in order of first appearance.
#[derive(Default)]
struct Collected {
    options: Vec<(u8, Vec<u8>)>,
}

impl Collected {
    /// Reads code/length/value triples up to the End option or the end of `field`. A
    /// truncated last option ends the field (RFC 2131 §4.1 leaves no way to recover it).
    fn scan(&mut self, field: &[u8]) {
        let mut i = 0;
        while let Some(&code) = field.get(i) {
            match code {
                0 => i += 1,
                255 => break,
                _ => {
                    let Some(&len) = field.get(i + 1) else { break };
                    let Some(value) = field.get(i + 2..i + 2 + len as usize) else {
                        break;
                    };
                    // RFC 3396 §7: every instance of a code is part of one option.
                    match self.options.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, v)) => v.extend_from_slice(value),
                        None => self.options.push((code, value.to_vec())),
                    }
                    i += 2 + len as usize;
                }
            }
        }
    }

    fn get(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }
}

/// The options the client reads, if `value` is well formed for `code` (RFC 2132 gives
/// the lengths); text is made valid UTF-8 since dhcproto rejects anything else.
fn usable(code: u8, value: &[u8]) -> Option<Vec<u8>> {
    let n = value.len();
    let ok = match code {
        // subnet mask, server identifier; lease time, T1, T2
        1 | 54 | 51 | 58 | 59 => n == 4,
        // router, DNS servers: one or more addresses
        3 | 6 => n >= 4 && n.is_multiple_of(4),
        // message type
        53 => n == 1,
        // rapid commit (RFC 4039 §4): no value
        80 => n == 0,
        // domain name, message
        15 | 56 => {
            return (n > 0).then(|| String::from_utf8_lossy(value).into_owned().into_bytes());
        }
        _ => false,
    };
    ok.then(|| value.to_vec())
}

/// What a request is for; decides ciaddr, the broadcast flag and the options (RFC 2131
/// §4.4.1 table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Discover,
    /// SELECTING → REQUESTING: the chosen offer.
    Select {
        address: Ipv4Addr,
        server: Ipv4Addr,
    },
    /// RENEWING (unicast) and REBINDING (broadcast): ciaddr is the leased address, no
    /// requested-address or server-identifier option.
    Extend {
        address: Ipv4Addr,
    },
    /// RFC 2131 §4.4.6: give the address back.
    Release {
        address: Ipv4Addr,
        server: Ipv4Addr,
    },
}

/// The client's identity in every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub mac: Mac,
    pub hostname: Option<String>,
    pub rapid_commit: bool,
}

/// Encodes a request. `secs` is the time since the client began this exchange (RFC 2131
/// §2).
pub fn build(kind: Request, id: &Identity, xid: u32, secs: u16) -> Vec<u8> {
    let mut msg = empty_request();
    msg.set_xid(xid).set_secs(secs).set_chaddr(&id.mac.0);
    let mut opts = DhcpOptions::new();
    let (msg_type, broadcast) = match kind {
        Request::Discover => (MessageType::Discover, true),
        Request::Select { address, server } => {
            opts.insert(DhcpOption::RequestedIpAddress(address));
            opts.insert(DhcpOption::ServerIdentifier(server));
            (MessageType::Request, true)
        }
        Request::Extend { address } => {
            msg.set_ciaddr(address);
            (MessageType::Request, false)
        }
        Request::Release { address, server } => {
            msg.set_ciaddr(address);
            opts.insert(DhcpOption::ServerIdentifier(server));
            (MessageType::Release, false)
        }
    };
    // RFC 2131 §4.1: a client that cannot receive unicast before it has an address sets
    // BROADCAST. Ours could (packet socket), but relays and some servers need the flag to
    // deliver at all to an unconfigured host.
    if broadcast {
        msg.set_flags(Flags::default().set_broadcast());
    }
    opts.insert(DhcpOption::MessageType(msg_type));
    // RFC 2132 §9.14: type 1 (Ethernet) followed by the hardware address.
    let mut client_id = vec![1];
    client_id.extend_from_slice(&id.mac.0);
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    // RFC 2131 §4.4.6 table 5: a RELEASE asks for nothing.
    if !matches!(kind, Request::Release { .. }) {
        opts.insert(DhcpOption::ParameterRequestList(PARAMETERS.to_vec()));
        if let Some(h) = id.hostname.as_deref().filter(|h| !h.is_empty()) {
            opts.insert(DhcpOption::Hostname(h.to_string()));
        }
    }
    // RFC 4039 §4: the client offers rapid commit in its DISCOVER only.
    if kind == Request::Discover && id.rapid_commit {
        opts.insert(DhcpOption::RapidCommit);
    }
    msg.set_opts(opts);
    let mut out = msg
        .to_vec()
        .unwrap_or_else(|_| unreachable!("encoding into a Vec cannot fail"));
    if out.len() < MIN_LEN {
        out.resize(MIN_LEN, 0); // Pad options after End
    }
    out
}

/// An empty BOOTREQUEST. Built by decoding a blank header rather than with
/// `Message::default()`, which draws an xid from `rand`'s thread RNG: that would pull
/// the RNG into `/init` and call getrandom(2), which can block in early boot on
/// kernels without a seeded pool. The xid is ours to choose anyway.
fn empty_request() -> v4::Message {
    let mut blank = [0u8; HEADER_LEN + 1];
    blank[0] = 1; // BOOTREQUEST
    blank[1] = 1; // Ethernet
    blank[2] = 6;
    blank[236..240].copy_from_slice(&MAGIC);
    blank[HEADER_LEN] = 255;
    v4::Message::decode(&mut Decoder::new(&blank))
        .unwrap_or_else(|_| unreachable!("a blank header always decodes"))
}

/// Server replies for tests and the fuzz harness: what dnsmasq would send, built with
/// dhcproto so the client's parser is checked against an independent encoder.
#[cfg(any(test, feature = "fuzzing"))]
pub mod server {
    use super::*;

    /// One reply; every field has the value a plain dnsmasq setup would use.
    #[derive(Debug, Clone)]
    pub struct ServerReply {
        pub msg_type: MessageType,
        pub xid: u32,
        pub mac: Mac,
        pub yiaddr: Ipv4Addr,
        pub server_id: Option<Ipv4Addr>,
        pub mask: Option<Ipv4Addr>,
        pub routers: Vec<Ipv4Addr>,
        pub dns: Vec<Ipv4Addr>,
        pub lease_time: Option<u32>,
        pub t1: Option<u32>,
        pub t2: Option<u32>,
        pub rapid_commit: bool,
        pub message: Option<String>,
    }

    impl ServerReply {
        pub fn new(msg_type: MessageType, xid: u32, mac: Mac) -> ServerReply {
            ServerReply {
                msg_type,
                xid,
                mac,
                yiaddr: Ipv4Addr::new(10, 77, 0, 100),
                server_id: Some(Ipv4Addr::new(10, 77, 0, 1)),
                mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                routers: vec![Ipv4Addr::new(10, 77, 0, 1)],
                dns: vec![Ipv4Addr::new(10, 77, 0, 1)],
                lease_time: Some(3600),
                t1: None,
                t2: None,
                rapid_commit: false,
                message: None,
            }
        }

        pub fn encode(&self) -> Vec<u8> {
            let mut msg = empty_request();
            msg.set_opcode(Opcode::BootReply)
                .set_xid(self.xid)
                .set_chaddr(&self.mac.0)
                .set_flags(Flags::default().set_broadcast());
            if self.msg_type != MessageType::Nak {
                msg.set_yiaddr(self.yiaddr);
            }
            let o = msg.opts_mut();
            o.insert(DhcpOption::MessageType(self.msg_type));
            if let Some(s) = self.server_id {
                o.insert(DhcpOption::ServerIdentifier(s));
            }
            if let Some(m) = self.mask {
                o.insert(DhcpOption::SubnetMask(m));
            }
            if !self.routers.is_empty() {
                o.insert(DhcpOption::Router(self.routers.clone()));
            }
            if !self.dns.is_empty() {
                o.insert(DhcpOption::DomainNameServer(self.dns.clone()));
            }
            if let Some(t) = self.lease_time {
                o.insert(DhcpOption::AddressLeaseTime(t));
            }
            if let Some(t) = self.t1 {
                o.insert(DhcpOption::Renewal(t));
            }
            if let Some(t) = self.t2 {
                o.insert(DhcpOption::Rebinding(t));
            }
            if self.rapid_commit {
                o.insert(DhcpOption::RapidCommit);
            }
            if let Some(m) = &self.message {
                o.insert(DhcpOption::Message(m.clone()));
            }
            msg.to_vec().expect("encoding into a Vec")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::server::ServerReply;
    use super::*;

    const MAC: Mac = Mac([0x02, 0x5a, 0x45, 0, 0, 1]);

    fn id(hostname: Option<&str>) -> Identity {
        Identity {
            mac: MAC,
            hostname: hostname.map(str::to_string),
            rapid_commit: true,
        }
    }

    fn decoded(bytes: &[u8]) -> v4::Message {
        v4::Message::decode(&mut Decoder::new(bytes)).unwrap()
    }

    #[test]
    fn discover_carries_identity_flags_and_is_padded() {
        let b = build(Request::Discover, &id(Some("node7")), 0x1234_5678, 3);
        assert_eq!(b.len(), MIN_LEN);
        let m = decoded(&b);
        assert_eq!(m.opcode(), Opcode::BootRequest);
        assert_eq!(m.xid(), 0x1234_5678);
        assert_eq!(m.secs(), 3);
        assert!(m.flags().broadcast());
        assert_eq!(m.chaddr(), &MAC.0);
        assert_eq!(m.htype(), HType::Eth);
        let o = m.opts();
        assert_eq!(o.msg_type(), Some(MessageType::Discover));
        assert_eq!(
            o.get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![
                1, 0x02, 0x5a, 0x45, 0, 0, 1
            ]))
        );
        assert_eq!(
            o.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("node7".into()))
        );
        assert!(o.contains(OptionCode::RapidCommit));
        assert_eq!(
            o.get(OptionCode::ParameterRequestList),
            Some(&DhcpOption::ParameterRequestList(PARAMETERS.to_vec()))
        );
    }

    #[test]
    fn select_request_names_the_offer_and_server() {
        let a = Ipv4Addr::new(10, 0, 0, 5);
        let s = Ipv4Addr::new(10, 0, 0, 1);
        let m = decoded(&build(
            Request::Select {
                address: a,
                server: s,
            },
            &id(None),
            7,
            0,
        ));
        assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(m.flags().broadcast());
        let o = m.opts();
        assert_eq!(o.msg_type(), Some(MessageType::Request));
        assert_eq!(
            o.get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(a))
        );
        assert_eq!(
            o.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(s))
        );
        assert!(!o.contains(OptionCode::RapidCommit));
        assert!(!o.contains(OptionCode::Hostname));
    }

    #[test]
    fn renewal_request_uses_ciaddr_without_server_or_requested_address() {
        let a = Ipv4Addr::new(10, 0, 0, 5);
        let m = decoded(&build(Request::Extend { address: a }, &id(None), 7, 0));
        assert_eq!(m.ciaddr(), a);
        assert!(!m.flags().broadcast());
        assert!(!m.opts().contains(OptionCode::RequestedIpAddress));
        assert!(!m.opts().contains(OptionCode::ServerIdentifier));
    }

    #[test]
    fn release_names_server_and_asks_for_nothing() {
        let m = decoded(&build(
            Request::Release {
                address: Ipv4Addr::new(10, 0, 0, 5),
                server: Ipv4Addr::new(10, 0, 0, 1),
            },
            &id(Some("h")),
            7,
            0,
        ));
        assert_eq!(m.opts().msg_type(), Some(MessageType::Release));
        assert!(!m.opts().contains(OptionCode::ParameterRequestList));
        assert!(!m.opts().contains(OptionCode::Hostname));
    }

    #[test]
    fn reply_fields_round_trip_through_dhcproto() {
        let mut r = ServerReply::new(MessageType::Offer, 42, MAC);
        r.t1 = Some(100);
        r.t2 = Some(200);
        r.dns = vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)];
        let p = parse(&r.encode()).unwrap();
        assert_eq!(p.op, Opcode::BootReply);
        assert_eq!(p.xid, 42);
        assert_eq!(p.chaddr, MAC.0);
        assert_eq!(p.msg_type, MessageType::Offer);
        assert_eq!(p.yiaddr, Ipv4Addr::new(10, 77, 0, 100));
        assert_eq!(p.server_id, Some(Ipv4Addr::new(10, 77, 0, 1)));
        assert_eq!(p.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(p.dns.len(), 2);
        assert_eq!(
            (p.lease_time, p.t1, p.t2),
            (Some(3600), Some(100), Some(200))
        );
        assert_eq!(p.overload, None);
    }

    /// A reply laid out by hand: header, cookie, then `options`.
    fn raw(options: &[u8], sname: &[u8], file: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0] = 2;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&9u32.to_be_bytes());
        b[16..20].copy_from_slice(&[10, 0, 0, 9]);
        b[28..34].copy_from_slice(&MAC.0);
        b[SNAME.start..SNAME.start + sname.len()].copy_from_slice(sname);
        b[FILE.start..FILE.start + file.len()].copy_from_slice(file);
        b[236..240].copy_from_slice(&MAGIC);
        b.extend_from_slice(options);
        b
    }

    #[test]
    fn overloaded_file_and_sname_are_read_in_rfc3396_order() {
        // Options field: type ACK, overload=3, and the first DNS server. `file` holds
        // the second DNS server and the lease time; `sname` the third DNS server, the
        // router and the mask.
        let opts = [53, 1, 5, 52, 1, 3, 6, 4, 1, 1, 1, 1, 255];
        let file = [6, 4, 2, 2, 2, 2, 51, 4, 0, 0, 0x0e, 0x10, 255];
        let sname = [
            6, 4, 3, 3, 3, 3, 3, 4, 10, 0, 0, 1, 1, 4, 255, 255, 0, 0, 255,
        ];
        let p = parse(&raw(&opts, &sname, &file)).unwrap();
        assert_eq!(p.overload, Some(3));
        assert_eq!(p.msg_type, MessageType::Ack);
        assert_eq!(
            p.dns,
            vec![
                Ipv4Addr::new(1, 1, 1, 1),
                Ipv4Addr::new(2, 2, 2, 2),
                Ipv4Addr::new(3, 3, 3, 3)
            ]
        );
        assert_eq!(p.routers, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(p.subnet_mask, Some(Ipv4Addr::new(255, 255, 0, 0)));
        assert_eq!(p.lease_time, Some(3600));
    }

    #[test]
    fn fields_are_not_options_without_the_overload_option() {
        let file = [51, 4, 0, 0, 0x0e, 0x10, 255];
        let p = parse(&raw(&[53, 1, 2, 255], &[], &file)).unwrap();
        assert_eq!(p.lease_time, None);
        // An overload option inside an overloaded field does not count either.
        let file = [52, 1, 2, 255];
        let sname = [51, 4, 0, 0, 0, 1, 255];
        let p = parse(&raw(&[53, 1, 2, 52, 1, 1, 255], &sname, &file)).unwrap();
        assert_eq!(p.lease_time, None);
    }

    #[test]
    fn a_malformed_option_costs_only_itself() {
        // Rapid commit with a value (dhcproto would debug-assert), a 3-byte mask, then a
        // good router and lease time after them.
        let opts = [
            53, 1, 5, 80, 2, 0, 0, 1, 3, 255, 255, 255, 3, 4, 10, 0, 0, 1, 51, 4, 0, 0, 0, 60, 81,
            1, 0, 94, 0, 255,
        ];
        let p = parse(&raw(&opts, &[], &[])).unwrap();
        assert!(!p.rapid_commit);
        assert_eq!(p.subnet_mask, None);
        assert_eq!(p.routers, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(p.lease_time, Some(60));
    }

    #[test]
    fn long_options_split_by_rfc3396_are_joined() {
        let mut opts = vec![
            53, 1, 5, 6, 4, 1, 1, 1, 1, 3, 4, 10, 0, 0, 1, 6, 4, 2, 2, 2, 2,
        ];
        opts.push(255);
        let p = parse(&raw(&opts, &[], &[])).unwrap();
        assert_eq!(
            p.dns,
            vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)]
        );
    }

    #[test]
    fn truncated_and_foreign_messages_are_errors_not_panics() {
        assert_eq!(parse(&[]), Err(WireError::TooShort(0)));
        assert_eq!(parse(&[0; 239]), Err(WireError::TooShort(239)));
        assert_eq!(parse(&[0; 300]), Err(WireError::NoCookie));
        // No message type; an option running past the end of the packet.
        assert_eq!(
            parse(&raw(&[1, 4, 255, 255], &[], &[])),
            Err(WireError::NoMessageType)
        );
        let p = parse(&raw(&[53, 1, 2, 6, 200, 1, 2], &[], &[])).unwrap();
        assert!(p.dns.is_empty());
    }

    #[test]
    fn oversized_hlen_does_not_panic() {
        let mut b = raw(&[53, 1, 2, 255], &[], &[]);
        b[2] = 255;
        let p = parse(&b).unwrap();
        assert_eq!((p.hlen, p.chaddr.len()), (255, 16));
    }

    #[test]
    fn non_utf8_text_is_kept_lossily() {
        let p = parse(&raw(&[53, 1, 6, 56, 3, b'n', 0xff, b'o', 255], &[], &[])).unwrap();
        assert_eq!(p.message.as_deref(), Some("n\u{fffd}o"));
    }
}
