//! rtnetlink: links, IPv4 addresses and routes. The policy code talks to the
//! [`Netlink`] trait; [`RtNetlink`] is the kernel, and tests use a recording fake.
//!
//! Built on netlink-packet-route + netlink-sys (the maintained message types and a
//! plain blocking socket) rather than hand-written framing; see docs/network.md for the
//! size it costs.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use serde::Serialize;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Hardware address, lowercase with colons; empty when none.
    pub mac: String,
    /// ARPHRD_ETHER.
    pub ether: bool,
    /// The virtual link kind (`veth`, `bridge`…); `None` for hardware.
    pub kind: Option<String>,
    pub up: bool,
    pub carrier: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Addr {
    pub index: u32,
    pub address: Ipv4Addr,
    pub prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub metric: u32,
    pub table: u32,
}

impl Route {
    pub fn is_default(&self) -> bool {
        self.prefix == 0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct NetlinkError {
    pub op: String,
    pub source: io::Error,
}

fn err(op: impl Into<String>, source: io::Error) -> NetlinkError {
    NetlinkError {
        op: op.into(),
        source,
    }
}

/// What the network stage needs from rtnetlink.
pub trait Netlink {
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError>;
    /// IPv4 addresses.
    fn addresses(&mut self) -> Result<Vec<Addr>, NetlinkError>;
    /// IPv4 routes of the main table.
    fn routes(&mut self) -> Result<Vec<Route>, NetlinkError>;
    fn set_up(&mut self, index: u32) -> Result<(), NetlinkError>;
    fn add_address(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError>;
    fn add_default_route(
        &mut self,
        index: u32,
        gateway: Ipv4Addr,
        metric: u32,
    ) -> Result<(), NetlinkError>;
    fn del_address(&mut self, a: &Addr) -> Result<(), NetlinkError>;
    fn del_route(&mut self, r: &Route) -> Result<(), NetlinkError>;

    /// Removes every IPv4 route through and address on `index`.
    fn flush(&mut self, index: u32) -> Result<(), NetlinkError> {
        for r in self.routes()? {
            if r.oif == Some(index) {
                self.del_route(&r)?;
            }
        }
        for a in self.addresses()? {
            if a.index == index {
                self.del_address(&a)?;
            }
        }
        Ok(())
    }
}

/// The kernel's rtnetlink over a NETLINK_ROUTE socket.
pub struct RtNetlink {
    socket: Socket,
    seq: u32,
}

impl RtNetlink {
    pub fn open() -> io::Result<RtNetlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(RtNetlink { socket, seq: 0 })
    }

    /// Sends one request and collects the replies: the dump's messages, or nothing for
    /// an acknowledged change. A kernel error becomes the `io::Error` of its errno.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        let mut out = Vec::new();
        let mut rx = vec![0u8; 64 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut rx[..], 0)?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if msg.header.sequence_number != self.seq {
                    // A late reply to an earlier request; not ours.
                    off += len.max(1);
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
            if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
                return Ok(out);
            }
        }
    }
}

fn mac_string(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn link_from(m: LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        mac: String::new(),
        ether: m.header.link_layer_type == LinkLayerType::Ether,
        kind: None,
        up: m.header.flags.contains(LinkFlags::Up),
        carrier: m.header.flags.contains(LinkFlags::LowerUp),
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Address(b) => l.mac = mac_string(&b),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(kind_name(&k));
                    }
                }
            }
            _ => {}
        }
    }
    l
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Other(s) => s.clone(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

impl Netlink for RtNetlink {
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let replies = self
            .request(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                NLM_F_REQUEST | NLM_F_DUMP,
            )
            .map_err(|e| err("listing links", e))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from(l)),
                _ => None,
            })
            .collect())
    }

    fn addresses(&mut self) -> Result<Vec<Addr>, NetlinkError> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        let replies = self
            .request(
                RouteNetlinkMessage::GetAddress(req),
                NLM_F_REQUEST | NLM_F_DUMP,
            )
            .map_err(|e| err("listing addresses", e))?;
        let mut out = Vec::new();
        for m in replies {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if a.header.family != AddressFamily::Inet {
                continue;
            }
            let local = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Local(IpAddr::V4(v)) => Some(*v),
                _ => None,
            });
            let addr = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(IpAddr::V4(v)) => Some(*v),
                _ => None,
            });
            if let Some(address) = local.or(addr) {
                out.push(Addr {
                    index: a.header.index,
                    address,
                    prefix: a.header.prefix_len,
                });
            }
        }
        Ok(out)
    }

    fn routes(&mut self) -> Result<Vec<Route>, NetlinkError> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let replies = self
            .request(
                RouteNetlinkMessage::GetRoute(req),
                NLM_F_REQUEST | NLM_F_DUMP,
            )
            .map_err(|e| err("listing routes", e))?;
        let mut out = Vec::new();
        for m in replies {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            if r.header.address_family != AddressFamily::Inet || r.header.kind != RouteType::Unicast
            {
                continue;
            }
            let mut route = Route {
                destination: Ipv4Addr::UNSPECIFIED,
                prefix: r.header.destination_prefix_length,
                gateway: None,
                oif: None,
                metric: 0,
                table: r.header.table.into(),
            };
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => route.destination = *d,
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => route.gateway = Some(*g),
                    RouteAttribute::Oif(o) => route.oif = Some(*o),
                    RouteAttribute::Priority(p) => route.metric = *p,
                    RouteAttribute::Table(t) => route.table = *t,
                    _ => {}
                }
            }
            if route.table == u32::from(RouteHeader::RT_TABLE_MAIN) {
                out.push(route);
            }
        }
        Ok(out)
    }

    fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(m), NLM_F_REQUEST | NLM_F_ACK)
            .map(|_| ())
            .map_err(|e| err(format!("setting link {index} up"), e))
    }

    fn add_address(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes
            .push(AddressAttribute::Local(IpAddr::V4(address)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(address)));
        if prefix < 31 {
            let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            let bcast = Ipv4Addr::from(u32::from(address) | host_bits);
            m.attributes.push(AddressAttribute::Broadcast(bcast));
        }
        match self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(()),
            Err(e) => Err(err(format!("adding {address}/{prefix} to link {index}"), e)),
        }
    }

    fn add_default_route(
        &mut self,
        index: u32,
        gateway: Ipv4Addr,
        metric: u32,
    ) -> Result<(), NetlinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Dhcp;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(index));
        m.attributes.push(RouteAttribute::Priority(metric));
        match self.request(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(()),
            Err(e) => Err(err(
                format!("adding default route via {gateway} on link {index}"),
                e,
            )),
        }
    }

    fn del_address(&mut self, a: &Addr) -> Result<(), NetlinkError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = a.prefix;
        m.header.index = a.index;
        m.attributes
            .push(AddressAttribute::Local(IpAddr::V4(a.address)));
        self.request(
            RouteNetlinkMessage::DelAddress(m),
            NLM_F_REQUEST | NLM_F_ACK,
        )
        .map(|_| ())
        .or_else(ignore_gone)
        .map_err(|e| {
            err(
                format!("removing {}/{} from link {}", a.address, a.prefix, a.index),
                e,
            )
        })
    }

    fn del_route(&mut self, r: &Route) -> Result<(), NetlinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.destination_prefix_length = r.prefix;
        m.header.scope = RouteScope::NoWhere;
        if r.prefix > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(
                    r.destination,
                )));
        }
        if let Some(g) = r.gateway {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(g)));
        }
        if let Some(o) = r.oif {
            m.attributes.push(RouteAttribute::Oif(o));
        }
        m.attributes.push(RouteAttribute::Priority(r.metric));
        self.request(RouteNetlinkMessage::DelRoute(m), NLM_F_REQUEST | NLM_F_ACK)
            .map(|_| ())
            .or_else(ignore_gone)
            .map_err(|e| err(format!("removing route {}/{}", r.destination, r.prefix), e))
    }
}

/// Deleting something already gone (the kernel removed a prefix route with its
/// address) is success.
fn ignore_gone(e: io::Error) -> io::Result<()> {
    match e.raw_os_error() {
        Some(nix::libc::ESRCH) | Some(nix::libc::EADDRNOTAVAIL) | Some(nix::libc::ENODEV) => Ok(()),
        _ => Err(e),
    }
}

/// A recording fake for the policy tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct Fake {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub routes: Vec<Route>,
    pub calls: Vec<String>,
}

#[cfg(test)]
impl Netlink for Fake {
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        Ok(self.links.clone())
    }
    fn addresses(&mut self) -> Result<Vec<Addr>, NetlinkError> {
        Ok(self.addrs.clone())
    }
    fn routes(&mut self) -> Result<Vec<Route>, NetlinkError> {
        Ok(self.routes.clone())
    }
    fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.calls.push(format!("up {index}"));
        if let Some(l) = self.links.iter_mut().find(|l| l.index == index) {
            l.up = true;
        }
        Ok(())
    }
    fn add_address(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        self.calls.push(format!("addr {index} {address}/{prefix}"));
        self.addrs.push(Addr {
            index,
            address,
            prefix,
        });
        let net = u32::from(address) & !u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        self.routes.push(Route {
            destination: Ipv4Addr::from(net),
            prefix,
            gateway: None,
            oif: Some(index),
            metric: 0,
            table: 254,
        });
        Ok(())
    }
    fn add_default_route(
        &mut self,
        index: u32,
        gateway: Ipv4Addr,
        metric: u32,
    ) -> Result<(), NetlinkError> {
        self.calls
            .push(format!("route {index} via {gateway} metric {metric}"));
        self.routes.push(Route {
            destination: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            gateway: Some(gateway),
            oif: Some(index),
            metric,
            table: 254,
        });
        Ok(())
    }
    fn del_address(&mut self, a: &Addr) -> Result<(), NetlinkError> {
        self.calls
            .push(format!("deladdr {} {}/{}", a.index, a.address, a.prefix));
        self.addrs.retain(|x| x != a);
        Ok(())
    }
    fn del_route(&mut self, r: &Route) -> Result<(), NetlinkError> {
        self.calls.push(format!(
            "delroute {:?} {}/{}",
            r.oif, r.destination, r.prefix
        ));
        self.routes.retain(|x| x != r);
        Ok(())
    }
}
