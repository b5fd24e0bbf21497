//! The kernel's `ip=` parameter (Documentation/admin-guide/nfs/nfsroot.rst):
//!
//! `ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`
//!
//! We use it for two things: `ip=dhcp` (and the kernel's synonyms), and the static form
//! with autoconf `off`/`none`, which we apply ourselves without DHCP. Fields after
//! `autoconf` are optional; the NTP server is accepted and ignored.

use super::Mac;
use serde::{Serialize, Serializer};
use std::fmt;
use std::net::Ipv4Addr;

/// How the installer configures its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum IpConfig {
    /// DHCP, on every candidate interface or only on `device`.
    Dhcp {
        device: Option<Device>,
    },
    Static(StaticIp),
}

impl Default for IpConfig {
    fn default() -> Self {
        IpConfig::Dhcp { device: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaticIp {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    /// The interface; `None` means the first usable ethernet interface.
    pub device: Option<Device>,
    pub dns: Vec<Ipv4Addr>,
}

/// An interface, by kernel name (`ip=`, `KLDLOAD_NET_IFACE=eth0`) or by MAC address
/// (`KLDLOAD_NET_IFACE=52:54:00:12:34:56`). The initrd has no udev, so names are the
/// kernel's (`eth0`), not systemd's predictable names (`enp1s0`); a MAC is the stable
/// choice. Prints and serializes as the bare name or the MAC with colons (a name cannot
/// contain `:`, so the two never collide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    Name(String),
    Mac(Mac),
}

impl Device {
    /// A MAC address (six hex octets, `:` or `-`) or else a valid interface name.
    pub fn parse(s: &str) -> Option<Device> {
        if let Some(m) = Mac::parse(s) {
            return Some(Device::Mac(m));
        }
        valid_ifname(s).then(|| Device::Name(s.to_string()))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Name(n) => f.write_str(n),
            Device::Mac(m) => write!(f, "{m}"),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

const FIELDS: [&str; 10] = [
    "client-ip",
    "server-ip",
    "gw-ip",
    "netmask",
    "hostname",
    "device",
    "autoconf",
    "dns0-ip",
    "dns1-ip",
    "ntp0-ip",
];

/// Parses the value of `ip=`. The error names the field (1-based, as the kernel
/// documentation counts them) and what is wrong with it.
pub fn parse(value: &str) -> Result<IpConfig, String> {
    match value {
        // The kernel's DHCP spellings. `off`/`none` tell the *kernel* not to configure
        // anything; the installer still needs a network, so it runs its own DHCP.
        "dhcp" | "on" | "any" | "off" | "none" => return Ok(IpConfig::Dhcp { device: None }),
        "" => return Err("empty value; expected dhcp or the static form".into()),
        _ => {}
    }
    let fields: Vec<&str> = value.split(':').collect();
    if fields.len() < 7 {
        return Err(format!(
            "{value:?} has {} fields; the static form is <client>::<gw>:<netmask>:<host>:<dev>:off",
            fields.len()
        ));
    }
    if fields.len() > FIELDS.len() {
        return Err(format!(
            "{value:?} has {} fields; at most {} are defined",
            fields.len(),
            FIELDS.len()
        ));
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or("");
    let bad = |i: usize, why: &str| format!("field {} ({}) {:?} {why}", i + 1, FIELDS[i], field(i));
    let addr = |i: usize| -> Result<Option<Ipv4Addr>, String> {
        match field(i) {
            "" => Ok(None),
            s => s
                .parse::<Ipv4Addr>()
                .map(Some)
                .map_err(|_| bad(i, "is not an IPv4 address")),
        }
    };

    let device = match field(5) {
        "" => None,
        // The kernel's ip= names an interface; a MAC cannot be written here anyway
        // (its colons are field separators).
        d if valid_ifname(d) => Some(Device::Name(d.to_string())),
        _ => return Err(bad(5, "is not an interface name")),
    };
    let hostname = match field(4) {
        "" => None,
        h if valid_hostname(h) => Some(h.to_string()),
        _ => return Err(bad(4, "is not a valid host name")),
    };
    let client = addr(0)?;
    addr(1)?; // server-ip: validated, unused (we find our server through ze.server)
    match field(6) {
        "off" | "none" | "" => {}
        "dhcp" | "on" | "any" | "both" | "bootp" | "rarp" if client.is_none() => {
            return Ok(IpConfig::Dhcp { device });
        }
        "dhcp" | "on" | "any" | "both" | "bootp" | "rarp" => {
            return Err(bad(
                6,
                "asks for autoconfiguration but a client address is given; use off",
            ));
        }
        _ => return Err(bad(6, "must be off, none or dhcp")),
    }
    let Some(address) = client else {
        return Err(bad(0, "is required for a static configuration"));
    };
    let gateway = addr(2)?;
    let prefix = match field(3) {
        // The kernel falls back to the classful mask when none is given; so do we.
        "" => classful_prefix(address),
        m => {
            let mask: Ipv4Addr = m.parse().map_err(|_| bad(3, "is not a netmask"))?;
            mask_to_prefix(mask).ok_or_else(|| bad(3, "is not a contiguous netmask"))?
        }
    };
    let mut dns = Vec::new();
    for i in [7, 8] {
        if let Some(a) = addr(i)? {
            dns.push(a);
        }
    }
    addr(9)?;
    Ok(IpConfig::Static(StaticIp {
        address,
        prefix,
        gateway,
        hostname,
        device,
        dns,
    }))
}

/// `255.255.255.0` → 24; `None` when the ones are not contiguous.
pub fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let prefix = bits.leading_ones();
    (bits.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// Linux interface names: 1–15 bytes, no `/`, `:` or whitespace (dev_valid_name()).
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

/// RFC 1123 host name (labels of letters, digits and inner hyphens).
pub fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_spellings() {
        for v in ["dhcp", "on", "any", "off", "none"] {
            assert_eq!(parse(v), Ok(IpConfig::Dhcp { device: None }), "{v}");
        }
    }

    #[test]
    fn static_form_from_the_spec() {
        let c = parse("10.0.2.15::10.0.2.2:255.255.255.0:node1:eth0:off").unwrap();
        assert_eq!(
            c,
            IpConfig::Static(StaticIp {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                hostname: Some("node1".into()),
                device: Some(Device::Name("eth0".into())),
                dns: vec![],
            })
        );
    }

    #[test]
    fn static_with_dns_and_no_gateway_or_device() {
        let c = parse("192.168.1.5:::255.255.0.0:::none:1.1.1.1:8.8.8.8:9.9.9.9").unwrap();
        let IpConfig::Static(s) = c else { panic!() };
        assert_eq!(s.prefix, 16);
        assert_eq!(s.gateway, None);
        assert_eq!(s.device, None);
        assert_eq!(
            s.dns,
            vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)]
        );
    }

    #[test]
    fn missing_netmask_is_classful() {
        let IpConfig::Static(s) = parse("10.1.2.3::::::off").unwrap() else {
            panic!()
        };
        assert_eq!(s.prefix, 8);
        let IpConfig::Static(s) = parse("192.168.9.9::::::off").unwrap() else {
            panic!()
        };
        assert_eq!(s.prefix, 24);
    }

    #[test]
    fn device_pinned_dhcp() {
        assert_eq!(
            parse(":::::eth1:dhcp"),
            Ok(IpConfig::Dhcp {
                device: Some(Device::Name("eth1".into()))
            })
        );
    }

    #[test]
    fn device_is_a_mac_in_either_form_or_else_a_name() {
        let mac = Mac::parse("52:54:00:ab:cd:ef").unwrap();
        assert_eq!(Device::parse("52-54-00-AB-CD-EF"), Some(Device::Mac(mac)));
        assert_eq!(Device::parse("52:54:00:ab:cd:ef"), Some(Device::Mac(mac)));
        assert_eq!(Device::parse("eth0"), Some(Device::Name("eth0".into())));
        assert_eq!(Device::parse("eth/0"), None);
        assert_eq!(Device::parse(""), None);
        assert_eq!(
            serde_json::to_string(&Device::Mac(mac)).unwrap(),
            "\"52:54:00:ab:cd:ef\""
        );
    }

    #[test]
    fn each_malformed_field_is_named() {
        let cases = [
            (
                "10.0.2.300::10.0.2.2:255.255.255.0:h:eth0:off",
                "field 1 (client-ip)",
            ),
            (
                "10.0.2.15:x:10.0.2.2:255.255.255.0:h:eth0:off",
                "field 2 (server-ip)",
            ),
            ("10.0.2.15::gw:255.255.255.0:h:eth0:off", "field 3 (gw-ip)"),
            (
                "10.0.2.15::10.0.2.2:255.0.255.0:h:eth0:off",
                "field 4 (netmask)",
            ),
            ("10.0.2.15::10.0.2.2:24:h:eth0:off", "field 4 (netmask)"),
            (
                "10.0.2.15::10.0.2.2:255.255.255.0:-h:eth0:off",
                "field 5 (hostname)",
            ),
            (
                "10.0.2.15::10.0.2.2:255.255.255.0:h:eth/0:off",
                "field 6 (device)",
            ),
            (
                "10.0.2.15::10.0.2.2:255.255.255.0:h:eth0:maybe",
                "field 7 (autoconf)",
            ),
            (
                "10.0.2.15::10.0.2.2:255.255.255.0:h:eth0:dhcp",
                "field 7 (autoconf)",
            ),
            ("::10.0.2.2:255.255.255.0:h:eth0:off", "field 1 (client-ip)"),
            (
                "10.0.2.15::10.0.2.2:255.255.255.0:h:eth0:off:dns",
                "field 8 (dns0-ip)",
            ),
        ];
        for (v, want) in cases {
            let err = parse(v).unwrap_err();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn wrong_field_counts() {
        assert!(
            parse("10.0.2.15::10.0.2.2")
                .unwrap_err()
                .contains("3 fields")
        );
        assert!(
            parse("a:b:c:d:e:f:g:h:i:j:k")
                .unwrap_err()
                .contains("at most 10")
        );
        assert!(parse("").is_err());
    }

    #[test]
    fn mask_prefixes() {
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 254, 0)), Some(23));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}
