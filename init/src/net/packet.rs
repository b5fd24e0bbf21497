//! IPv4 + UDP framing for the DHCP client, which sends and receives whole IP packets on
//! a packet socket (`sys::packet`) because it has no address to bind a UDP socket to.
//! Pure: building and parsing only. Parsing never panics on arbitrary bytes.

use std::net::Ipv4Addr;

pub const CLIENT_PORT: u16 = 68;
pub const SERVER_PORT: u16 = 67;

const IP_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const PROTO_UDP: u8 = 17;
/// RFC 791: a TTL for packets that never leave the link (relays forward by re-sending).
const TTL: u8 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("{0} bytes is too short for its headers")]
    Truncated(usize),
    #[error("IP version {0}, not 4")]
    NotIpv4(u8),
    #[error("IP header length {0} is invalid")]
    BadHeaderLength(usize),
    #[error("IP total length {total} does not fit the {got} bytes received")]
    BadTotalLength { total: usize, got: usize },
    #[error("IP header checksum mismatch")]
    IpChecksum,
    #[error("a fragment (DHCP replies are never fragmented in practice)")]
    Fragment,
    #[error("IP protocol {0}, not UDP")]
    NotUdp(u8),
    #[error("UDP length {0} is invalid")]
    BadUdpLength(usize),
    #[error("UDP checksum mismatch")]
    UdpChecksum,
    #[error("UDP port {0}, not the DHCP client port")]
    WrongPort(u16),
}

/// A parsed UDP datagram, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

/// Builds an IPv4 packet carrying one UDP datagram, with both checksums. DHCP messages
/// are far below any MTU, so there is no fragmentation.
pub fn build(
    src: Ipv4Addr,
    src_port: u16,
    dst: Ipv4Addr,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = UDP_HEADER + payload.len();
    let total = IP_HEADER + udp_len;
    let mut p = Vec::with_capacity(total);
    // RFC 791 §3.1: version 4, IHL 5; TOS 0; total length; id 0 with DF clear (nothing
    // here is ever fragmented); flags/offset 0; TTL; protocol; checksum (below).
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, TTL, PROTO_UDP, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = checksum(&[&p[..IP_HEADER]]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    // RFC 768: source port, destination port, length, checksum over the pseudo-header.
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let c = match udp_checksum(src, dst, &p[IP_HEADER..]) {
        // RFC 768: a computed 0 is sent as all ones (0 means "no checksum").
        0 => 0xffff,
        c => c,
    };
    p[IP_HEADER + 6..IP_HEADER + 8].copy_from_slice(&c.to_be_bytes());
    p
}

/// Parses an IPv4 packet carrying UDP. Bytes after the IP total length (Ethernet
/// padding, which a packet socket still delivers) are ignored. `verify_udp_checksum`
/// is false when the kernel says the checksum was never computed (a packet from a local
/// veth or virtio peer with checksum offload: `TP_STATUS_CSUMNOTREADY`).
pub fn parse(packet: &[u8], verify_udp_checksum: bool) -> Result<Datagram<'_>, PacketError> {
    let got = packet.len();
    let first = *packet.first().ok_or(PacketError::Truncated(got))?;
    if first >> 4 != 4 {
        return Err(PacketError::NotIpv4(first >> 4));
    }
    if got < IP_HEADER {
        return Err(PacketError::Truncated(got));
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < IP_HEADER || ihl > got {
        return Err(PacketError::BadHeaderLength(ihl));
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total < ihl || total > got {
        return Err(PacketError::BadTotalLength { total, got });
    }
    // A correct header sums to 0xffff, i.e. its checksum folds to 0. The kernel checks
    // this only after packet sockets have had their copy, so it is ours to do.
    if checksum(&[&packet[..ihl]]) != 0 {
        return Err(PacketError::IpChecksum);
    }
    let flags_offset = u16::from_be_bytes([packet[6], packet[7]]);
    // More-fragments set, or a non-zero offset.
    if flags_offset & 0x3fff != 0 {
        return Err(PacketError::Fragment);
    }
    if packet[9] != PROTO_UDP {
        return Err(PacketError::NotUdp(packet[9]));
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let udp = &packet[ihl..total];
    if udp.len() < UDP_HEADER {
        return Err(PacketError::Truncated(got));
    }
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < UDP_HEADER || udp_len > udp.len() {
        return Err(PacketError::BadUdpLength(udp_len));
    }
    let udp = &udp[..udp_len];
    let sent = u16::from_be_bytes([udp[6], udp[7]]);
    // RFC 768: 0 means the sender computed none.
    if verify_udp_checksum && sent != 0 && udp_checksum(src, dst, udp) != 0 {
        return Err(PacketError::UdpChecksum);
    }
    Ok(Datagram {
        src,
        dst,
        src_port: u16::from_be_bytes([udp[0], udp[1]]),
        dst_port: u16::from_be_bytes([udp[2], udp[3]]),
        payload: &udp[UDP_HEADER..],
    })
}

/// The DHCP message in `packet` if it is UDP to the client port.
pub fn dhcp_payload(packet: &[u8], verify_udp_checksum: bool) -> Result<&[u8], PacketError> {
    let d = parse(packet, verify_udp_checksum)?;
    if d.dst_port != CLIENT_PORT {
        return Err(PacketError::WrongPort(d.dst_port));
    }
    Ok(d.payload)
}

/// RFC 768 checksum: over the pseudo-header (source, destination, protocol, UDP
/// length) and the datagram. Over a datagram whose checksum field is filled in, a
/// correct one gives 0.
fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let len = (udp.len() as u16).to_be_bytes();
    let pseudo = [0, PROTO_UDP, len[0], len[1]];
    checksum(&[&src.octets(), &dst.octets(), &pseudo, udp])
}

/// RFC 1071: the one's complement of the one's complement sum of 16-bit words. The
/// parts are summed as one byte stream (each part but the last has even length).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut words = part.chunks_exact(2);
        for w in &mut words {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u32::from(*last) << 8;
        }
        // Fold as we go so a long part cannot overflow.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    const DST: Ipv4Addr = Ipv4Addr::BROADCAST;

    #[test]
    fn built_packet_parses_back_with_valid_checksums() {
        let p = build(SRC, SERVER_PORT, DST, CLIENT_PORT, b"hello dhcp");
        assert_eq!(p.len(), 20 + 8 + 10);
        let d = parse(&p, true).unwrap();
        assert_eq!((d.src, d.dst), (SRC, DST));
        assert_eq!((d.src_port, d.dst_port), (67, 68));
        assert_eq!(d.payload, b"hello dhcp");
        assert_eq!(dhcp_payload(&p, true).unwrap(), b"hello dhcp");
    }

    #[test]
    fn checksums_match_independently_computed_values() {
        // A DHCPDISCOVER-sized datagram from 0.0.0.0:68 to 255.255.255.255:67. The
        // expected values were computed separately with Python's sum-and-fold (RFC 1071):
        // IP header 0x79a6, UDP (pseudo-header + 300 zero bytes) 0xfcff.
        let p = build(Ipv4Addr::UNSPECIFIED, 68, DST, 67, &[0u8; 300]);
        assert_eq!(&p[..4], &[0x45, 0, 0x01, 0x48]);
        assert_eq!(u16::from_be_bytes([p[10], p[11]]), 0x79a6);
        assert_eq!(u16::from_be_bytes([p[26], p[27]]), 0xfcff);
    }

    #[test]
    fn odd_length_payload_checksums() {
        let p = build(SRC, 67, DST, 68, b"odd");
        assert!(parse(&p, true).is_ok());
    }

    #[test]
    fn ethernet_padding_after_total_length_is_ignored() {
        let mut p = build(SRC, 67, DST, 68, b"x");
        p.extend_from_slice(&[0; 17]);
        assert_eq!(parse(&p, true).unwrap().payload, b"x");
    }

    #[test]
    fn corrupted_packets_are_rejected() {
        let good = build(SRC, 67, DST, 68, b"payload!");
        let mut p = good.clone();
        p[12] ^= 1; // source address: IP checksum breaks
        assert_eq!(parse(&p, true), Err(PacketError::IpChecksum));
        let mut p = good.clone();
        let last = p.len() - 1;
        p[last] ^= 1;
        assert_eq!(parse(&p, true), Err(PacketError::UdpChecksum));
        // …unless the kernel says the checksum was never filled in.
        assert!(parse(&p, false).is_ok());
        let mut p = good.clone();
        p[26] = 0;
        p[27] = 0; // "no checksum"
        assert!(parse(&p, true).is_ok());
        assert_eq!(
            parse(&good[..good.len() - 1], true),
            Err(PacketError::BadTotalLength {
                total: good.len(),
                got: good.len() - 1
            })
        );
        let mut p = good.clone();
        p[0] = 0x65;
        assert_eq!(parse(&p, true), Err(PacketError::NotIpv4(6)));
        let p = build(SRC, 67, DST, 69, b"x");
        assert_eq!(dhcp_payload(&p, true), Err(PacketError::WrongPort(69)));
    }

    #[test]
    fn fragments_and_other_protocols_are_rejected() {
        let fix = |mut p: Vec<u8>| {
            p[10] = 0;
            p[11] = 0;
            let c = checksum(&[&p[..20]]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p
        };
        let mut p = build(SRC, 67, DST, 68, b"x");
        p[6] = 0x20; // more fragments
        assert_eq!(parse(&fix(p), true), Err(PacketError::Fragment));
        let mut p = build(SRC, 67, DST, 68, b"x");
        p[9] = 6;
        assert_eq!(parse(&fix(p), true), Err(PacketError::NotUdp(6)));
        let mut p = build(SRC, 67, DST, 68, b"x");
        p[0] = 0x44; // IHL 4
        assert_eq!(parse(&p, true), Err(PacketError::BadHeaderLength(16)));
    }

    #[test]
    fn arbitrary_short_inputs_never_panic() {
        for len in 0..64 {
            for fill in [0u8, 0x45, 0xff] {
                let mut p = vec![fill; len];
                if len > 0 {
                    p[0] = 0x45;
                }
                let _ = parse(&p, true);
            }
        }
    }
}
