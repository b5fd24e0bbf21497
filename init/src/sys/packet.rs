//! A packet socket (AF_PACKET, SOCK_DGRAM) bound to one interface, for the DHCP client.
//!
//! Why not a UDP socket on port 68:
//! - it works before the interface has an address (the kernel would not route a UDP
//!   reply to an address it does not have, and a server that ignores the BROADCAST flag
//!   unicasts the OFFER to the offered address);
//! - several interfaces can run DHCP at once without fighting over port 68;
//! - nothing depends on the routing table, which the network stage is still building.
//!
//! SOCK_DGRAM means the kernel adds and strips the Ethernet header: we send and receive
//! IPv4 packets. A classic BPF filter (as busybox udhcpc and dhclient attach) lets only
//! unfragmented UDP to port 68 through, so the socket stays cheap while a kept lease
//! shares the link with a multi-gigabyte download.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::libc;

/// `ETH_P_IP` in network byte order, as `sll_protocol` and `socket(2)` want it.
const ETH_P_IP_BE: u16 = (libc::ETH_P_IP as u16).to_be();

/// From `<linux/if_packet.h>`: the auxiliary data option and the status bit saying the
/// checksum of a received packet was left to hardware and never filled in (a local
/// veth/virtio peer with offload). The libc crate does not export these for every
/// target we build.
const PACKET_AUXDATA: libc::c_int = 8;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;

/// `struct tpacket_auxdata` (`<linux/if_packet.h>`).
#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// Ethernet broadcast.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// One received packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The IPv4 packet.
    pub packet: Vec<u8>,
    /// The link-layer source (the server, or the relay that forwarded its reply).
    pub src_mac: [u8; 6],
    /// The kernel says the UDP checksum was never computed; do not verify it.
    pub checksum_unset: bool,
}

/// A packet socket on one interface.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

/// The BPF program: accept IPv4/UDP, not a fragment, destination port 68. Offsets are
/// from the IP header: for SOCK_DGRAM, net/packet/af_packet.c runs the filter with the
/// link-layer header already pulled.
fn filter() -> [libc::sock_filter; 9] {
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LDX_MSH: u16 = 0xb1; // BPF_LDX | BPF_B | BPF_MSH: X = 4 * (P[k] & 0xf)
    const LD_H_IND: u16 = 0x48; // BPF_LD | BPF_H | BPF_IND: A = P[X + k]
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // Jump offsets count from the next instruction; 8 is "drop".
    [
        op(LD_B_ABS, 0, 0, 9),        // 0: A = protocol
        op(JEQ_K, 0, 6, 17),          // 1: UDP, else drop
        op(LD_H_ABS, 0, 0, 6),        // 2: A = flags | fragment offset
        op(JSET_K, 4, 0, 0x3fff),     // 3: more-fragments or an offset: drop
        op(LDX_MSH, 0, 0, 0),         // 4: X = IP header length
        op(LD_H_IND, 0, 0, 2),        // 5: A = UDP destination port
        op(JEQ_K, 0, 1, 68),          // 6: port 68, else drop
        op(RET_K, 0, 0, 0x0004_0000), // 7: accept (up to 256 KiB)
        op(RET_K, 0, 0, 0),           // 8: drop
    ]
}

impl PacketSocket {
    /// Opens a packet socket on interface `ifindex` receiving IPv4 packets to UDP port
    /// 68. The filter is attached before the socket is bound to a protocol, so nothing
    /// unfiltered is ever queued.
    pub fn open(ifindex: u32) -> io::Result<PacketSocket> {
        let ifindex = i32::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index"))?;
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let prog = filter();
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
        setsockopt(&fd, libc::SOL_PACKET, PACKET_AUXDATA, &1 as &libc::c_int)?;
        let addr = sockaddr_ll(ifindex, [0; 6]);
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd, ifindex })
    }

    /// Sends one IPv4 packet to `dst_mac` (the kernel adds the Ethernet header).
    pub fn send(&self, packet: &[u8], dst_mac: [u8; 6]) -> io::Result<()> {
        let addr = sockaddr_ll(self.ifindex, dst_mac);
        // SAFETY: `packet` is valid for `packet.len()` bytes; `addr` is a valid
        // sockaddr_ll of the size passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` for a packet. `Ok(None)` on timeout (or a signal).
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<Received>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Round up so a 0.5 ms wait does not become a busy 0 ms poll.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `pfd` is one valid pollfd and we pass a count of 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        if n == 0 {
            return Ok(None);
        }
        self.recv_ready()
    }

    fn recv_ready(&self) -> io::Result<Option<Received>> {
        // Ethernet jumbo frames stay below 9216 bytes; a longer packet is truncated and
        // then fails to parse, which is the right outcome for a DHCP client.
        let mut buf = vec![0u8; 9216];
        // u64 storage keeps the control buffer aligned for cmsghdr.
        let mut control = [0u64; 16];
        // SAFETY: all-zero is a valid sockaddr_ll (plain integers and arrays).
        let mut from: libc::sockaddr_ll = unsafe { zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr; the pointers are set below.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>() as _;
        // SAFETY: every pointer in `msg` refers to a live local buffer of the stated
        // length; MSG_DONTWAIT keeps a spurious wakeup from blocking.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        buf.truncate(n as usize);
        let mut checksum_unset = false;
        // SAFETY: `msg` was filled in by recvmsg; CMSG_FIRSTHDR/NXTHDR only walk within
        // msg_control/msg_controllen, and each header's data is read only when its
        // level, type and length say it holds a whole tpacket_auxdata.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let h = &*c;
                if h.cmsg_level == libc::SOL_PACKET
                    && h.cmsg_type == PACKET_AUXDATA
                    && h.cmsg_len as usize
                        >= libc::CMSG_LEN(size_of::<TpacketAuxdata>() as u32) as usize
                {
                    let aux: TpacketAuxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<TpacketAuxdata>());
                    checksum_unset = aux.tp_status & TP_STATUS_CSUMNOTREADY != 0;
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let mut src_mac = [0u8; 6];
        if from.sll_halen == 6 {
            src_mac.copy_from_slice(&from.sll_addr[..6]);
        }
        Ok(Some(Received {
            packet: buf,
            src_mac,
            checksum_unset,
        }))
    }
}

fn sockaddr_ll(ifindex: i32, mac: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid sockaddr_ll (plain integers and arrays).
    let mut a: libc::sockaddr_ll = unsafe { zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = ETH_P_IP_BE;
    a.sll_ifindex = ifindex;
    a.sll_halen = 6;
    a.sll_addr[..6].copy_from_slice(&mac);
    a
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T and the length passed is size_of::<T>().
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets IFF_UP on `ifname` if it is not set (`ip link set IF up`). For the host command
/// `ze-init dhcp`; the network stage brings links up through netlink.
pub fn set_link_up(ifname: &str) -> io::Result<bool> {
    let name = ifname.as_bytes();
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { zeroed() };
    if name.is_empty() || name.len() >= req.ifr_name.len() || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name",
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, a valid
    // ifreq that outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(false);
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::packet;
    use std::net::Ipv4Addr;

    /// Runs the filter the way the kernel would, for the instructions it uses.
    fn run(prog: &[libc::sock_filter], p: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |k: usize| p.get(k).copied().map(u32::from);
        let half = |k: usize| Some(u32::from(u16::from_be_bytes([*p.get(k)?, *p.get(k + 1)?])));
        loop {
            let i = prog[pc];
            let k = i.k as usize;
            pc += 1;
            match i.code {
                0x30 => {
                    a = match byte(k) {
                        Some(v) => v,
                        None => return 0,
                    }
                }
                0x28 => {
                    a = match half(k) {
                        Some(v) => v,
                        None => return 0,
                    }
                }
                0x48 => {
                    a = match half(x as usize + k) {
                        Some(v) => v,
                        None => return 0,
                    }
                }
                0xb1 => {
                    x = match byte(k) {
                        Some(v) => 4 * (v & 0xf),
                        None => return 0,
                    }
                }
                0x15 => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                0x45 => pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
                0x06 => return i.k,
                c => panic!("opcode {c:#x} not modelled"),
            }
        }
    }

    fn fix_ip_checksum(p: &mut [u8]) {
        p[10] = 0;
        p[11] = 0;
        let mut sum: u32 = p[..20]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }

    #[test]
    fn filter_passes_only_unfragmented_udp_to_port_68() {
        let prog = filter();
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let to = |port| packet::build(a, 67, Ipv4Addr::BROADCAST, port, b"dhcp");
        assert_ne!(run(&prog, &to(68)), 0);
        assert_eq!(run(&prog, &to(67)), 0);
        let mut tcp = to(68);
        tcp[9] = 6;
        assert_eq!(run(&prog, &tcp), 0);
        let mut frag = to(68);
        frag[6] = 0x20;
        assert_eq!(run(&prog, &frag), 0);
        let mut later = to(68);
        later[7] = 1;
        assert_eq!(run(&prog, &later), 0);
        // Don't-fragment alone is fine.
        let mut df = to(68);
        df[6] = 0x40;
        assert_ne!(run(&prog, &df), 0);
        // With IP options the port moves; the filter follows the header length.
        let plain = to(68);
        let mut opts = plain[..20].to_vec();
        opts[0] = 0x46;
        opts.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        opts.extend_from_slice(&plain[20..]);
        fix_ip_checksum(&mut opts);
        assert_ne!(run(&prog, &opts), 0);
        assert!(run(&prog, &[0x45]) == 0);
        // Every jump lands inside the program.
        for (i, ins) in prog.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + usize::from(ins.jt.max(ins.jf)) < prog.len(), "{i}");
            }
        }
    }
}
