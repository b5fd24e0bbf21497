//! The network stage: links, DHCP, netlink, the server probe and the policy that picks
//! the interface. This file also reads interfaces as sysfs describes them.

pub mod dhcp;
pub mod dhcp_run;
pub mod netlink;
pub mod packet;
pub mod probe;
pub mod real;
pub mod stage;

use crate::disk::attr;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    /// Bound driver (`virtio_net`, `e1000e`), empty when none.
    pub driver: String,
    pub operstate: String,
    /// ARPHRD type from `type` (1 = ethernet).
    pub arp_type: u32,
}

/// Every interface under `sys_root`/class/net except loopback, sorted by name.
pub fn interfaces(sys_root: &Path) -> Vec<Interface> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(sys_root.join("class/net")) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "lo" {
            continue;
        }
        let dir = e.path();
        let driver = std::fs::read_link(dir.join("device/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .unwrap_or_default();
        out.push(Interface {
            mac: attr(&dir, "address"),
            operstate: attr(&dir, "operstate"),
            arp_type: attr(&dir, "type").parse().unwrap_or(0),
            driver,
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_skip_loopback_and_read_driver_link() {
        let sys = tempfile::tempdir().unwrap();
        let net = sys.path().join("class/net");
        for (n, mac) in [("lo", "00:00:00:00:00:00"), ("eth0", "52:54:00:12:34:56")] {
            std::fs::create_dir_all(net.join(n)).unwrap();
            std::fs::write(net.join(n).join("address"), format!("{mac}\n")).unwrap();
            std::fs::write(net.join(n).join("type"), "1\n").unwrap();
        }
        let drv = sys.path().join("bus/virtio/drivers/virtio_net");
        std::fs::create_dir_all(&drv).unwrap();
        std::fs::create_dir_all(net.join("eth0/device")).unwrap();
        std::os::unix::fs::symlink(&drv, net.join("eth0/device/driver")).unwrap();
        let i = interfaces(sys.path());
        assert_eq!(i.len(), 1);
        assert_eq!(i[0].name, "eth0");
        assert_eq!(i[0].mac, "52:54:00:12:34:56");
        assert_eq!(i[0].driver, "virtio_net");
        assert_eq!(i[0].arp_type, 1);
    }
}
