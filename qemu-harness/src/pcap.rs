//! Reading the packet captures QEMU writes with `-object filter-dump` (classic pcap,
//! Ethernet frames), to judge what a guest really sent rather than what it logged.

use anyhow::{Result, bail};
use std::net::Ipv4Addr;

/// One IPv4 packet (TCP or UDP) as seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// 6 = TCP, 17 = UDP.
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

impl Packet {
    /// DHCP/BOOTP in either direction (UDP 67/68).
    pub fn is_dhcp(&self) -> bool {
        self.protocol == 17
            && [67, 68]
                .iter()
                .any(|p| *p == self.src_port || *p == self.dst_port)
    }
}

/// Every IPv4 TCP/UDP packet in a pcap file's bytes; other frames are skipped.
pub fn parse(data: &[u8]) -> Result<Vec<Packet>> {
    if data.len() < 24 {
        bail!("not a pcap file: {} bytes", data.len());
    }
    let le = match &data[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] => false,
        m => bail!("not a pcap file (magic {m:02x?})"),
    };
    let u32_at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let linktype = u32_at(data, 20);
    if linktype != 1 {
        bail!("pcap link type {linktype}, expected Ethernet (1)");
    }
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= data.len() {
        let caplen = u32_at(data, i + 8) as usize;
        let start = i + 16;
        let Some(frame) = data.get(start..start + caplen) else {
            bail!("truncated packet record at byte {i}");
        };
        if let Some(p) = ipv4(frame) {
            out.push(p);
        }
        i = start + caplen;
    }
    Ok(out)
}

fn ipv4(frame: &[u8]) -> Option<Packet> {
    let be16 = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    if frame.len() < 14 || be16(frame, 12) != 0x0800 {
        return None;
    }
    let ip = &frame[14..];
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)).min(ip.len());
    let protocol = ip[9];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = ip.get(ihl..total)?;
    let (hdr, src_port, dst_port) = match protocol {
        17 if l4.len() >= 8 => (8, be16(l4, 0), be16(l4, 2)),
        6 if l4.len() >= 20 => (usize::from(l4[12] >> 4) * 4, be16(l4, 0), be16(l4, 2)),
        _ => return None,
    };
    Some(Packet {
        src,
        dst,
        protocol,
        src_port,
        dst_port,
        payload: l4.get(hdr..)?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(proto: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x00]);
        let l4_len = if proto == 6 { 20 } else { 8 } + payload.len();
        let total = 20 + l4_len;
        f.extend([
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            proto,
            0,
            0,
        ]);
        f.extend([10, 0, 2, 15, 10, 0, 2, 2]);
        f.extend(sport.to_be_bytes());
        f.extend(dport.to_be_bytes());
        if proto == 6 {
            f.extend([0u8; 8]);
            f.extend([0x50, 0x18, 0, 0, 0, 0, 0, 0]);
        } else {
            f.extend([0, (8 + payload.len()) as u8, 0, 0]);
        }
        f.extend(payload);
        f
    }

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        p.extend([0u8; 8]);
        p.extend(65535u32.to_le_bytes());
        p.extend(1u32.to_le_bytes());
        for f in frames {
            p.extend([0u8; 8]);
            p.extend((f.len() as u32).to_le_bytes());
            p.extend((f.len() as u32).to_le_bytes());
            p.extend(f);
        }
        p
    }

    #[test]
    fn finds_dhcp_and_http_payloads() {
        let data = pcap(&[
            frame(17, 68, 67, b"\x01\x01\x06\x00"),
            frame(6, 40000, 8080, b"GET /install/image/b.img HTTP/1.1\r\n"),
            vec![0u8; 10],
        ]);
        let p = parse(&data).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].is_dhcp());
        assert!(!p[1].is_dhcp());
        assert_eq!(p[1].src, Ipv4Addr::new(10, 0, 2, 15));
        assert!(p[1].payload.starts_with(b"GET /install/image/b.img"));
    }

    #[test]
    fn rejects_other_files() {
        assert!(parse(b"hello").is_err());
        assert!(parse(&[0u8; 40]).is_err());
    }
}
