//! The recovery console's diagnostics: what an operator at a headless box needs to see
//! why the install failed. Interfaces (MAC, driver, carrier, operstate, addresses), PCI
//! network devices no driver took (vendor:device and modalias, and whether the
//! initrd's module bundle has anything for them), the routing table, the disk plan's
//! table, and the last log lines. Pure over the sysfs/dev/proc roots and a [`Netlink`],
//! so fixture trees and the recording fake stand in for the machine.

use crate::disk;
use crate::modules::Index;
use crate::net::netlink::{Addr, Link, Netlink, NetlinkError, Route};
use std::path::Path;

/// What the report reads.
pub struct Inputs<'a> {
    pub roots: disk::Roots<'a>,
    /// The disk plan is shown as the failed install would have made it.
    pub mode: disk::Mode,
    pub target: Option<&'a str>,
    /// The initrd's module bundle, when it has one.
    pub bundle: Option<&'a Index>,
    /// The log's last lines, oldest first ([`crate::logger::recent`]).
    pub recent: &'a [String],
}

/// What rtnetlink said, or why it could not be asked.
pub struct NetState {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub routes: Vec<Route>,
    pub error: Option<String>,
}

impl NetState {
    pub fn read(nl: &mut dyn Netlink) -> NetState {
        fn get<T>(r: Result<Vec<T>, NetlinkError>, errors: &mut Vec<String>) -> Vec<T> {
            r.unwrap_or_else(|e| {
                errors.push(e.to_string());
                Vec::new()
            })
        }
        let mut errors = Vec::new();
        let links = get(nl.links(), &mut errors);
        let addrs = get(nl.addresses(), &mut errors);
        let routes = get(nl.routes(), &mut errors);
        NetState {
            links,
            addrs,
            routes,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    /// Nothing known: rtnetlink could not be opened.
    pub fn unavailable(why: String) -> NetState {
        NetState {
            links: Vec::new(),
            addrs: Vec::new(),
            routes: Vec::new(),
            error: Some(why),
        }
    }
}

/// The whole report, one line per entry, section headers first.
pub fn report(i: &Inputs<'_>, net: &NetState) -> Vec<String> {
    let mut out = Vec::new();
    out.push("== interfaces ==".into());
    out.extend(interfaces(i.roots.sys, net));
    out.push("== PCI network devices without a driver ==".into());
    out.extend(unbound_nics(i.roots.sys, i.bundle));
    out.push("== routes ==".into());
    out.extend(routes(net));
    out.push("== disk plan ==".into());
    let decision = disk::plan(
        i.roots,
        disk::Request {
            mode: i.mode,
            target: i.target,
            exclude: &[],
        },
    );
    out.extend(decision.log_lines().into_iter().map(|l| format!("  {l}")));
    out.push(format!("== last {} log lines ==", i.recent.len()));
    out.extend(i.recent.iter().map(|l| format!("  {l}")));
    out.push("== end of diagnostics ==".into());
    out
}

fn interfaces(sys: &Path, net: &NetState) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = &net.error {
        out.push(format!("  (rtnetlink: {e}; addresses and routes unknown)"));
    }
    let nics = crate::net::interfaces(sys);
    if nics.is_empty() {
        out.push("  none (no network interface besides lo)".into());
    }
    for n in &nics {
        let dir = sys.join("class/net").join(&n.name);
        // Reading `carrier` fails (EINVAL) while the link is administratively down.
        let carrier = disk::attr(&dir, "carrier");
        let addrs: Vec<String> = net
            .links
            .iter()
            .find(|l| l.name == n.name)
            .map(|l| {
                net.addrs
                    .iter()
                    .filter(|a| a.index == l.index)
                    .map(|a| format!("{}/{}", a.address, a.prefix))
                    .collect()
            })
            .unwrap_or_default();
        out.push(format!(
            "  {}  mac={}  driver={}  carrier={}  operstate={}  addr={}",
            n.name,
            dash(&n.mac),
            dash(&n.driver),
            dash(&carrier),
            dash(&n.operstate),
            if addrs.is_empty() {
                "-".into()
            } else {
                addrs.join(",")
            }
        ));
    }
    out
}

/// PCI class 0x02xxxx is "network controller" (PCI Code and ID Assignment spec §1.3).
const PCI_CLASS_NETWORK: u32 = 0x02;

fn unbound_nics(sys: &Path, bundle: Option<&Index>) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(sys.join("bus/pci/devices")) else {
        return vec!["  (no PCI bus in sysfs)".into()];
    };
    let mut devices: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    devices.sort();
    for dev in devices {
        let class = disk::attr(&dev, "class");
        let class = u32::from_str_radix(class.trim_start_matches("0x"), 16).unwrap_or(0);
        if class >> 16 != PCI_CLASS_NETWORK || dev.join("driver").exists() {
            continue;
        }
        let hex = |name| disk::attr(&dev, name).trim_start_matches("0x").to_string();
        let modalias = disk::attr(&dev, "modalias");
        let slot = dev
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(format!(
            "  {slot}  {}:{}  class=0x{class:06x}  modalias={}",
            hex("vendor"),
            hex("device"),
            dash(&modalias)
        ));
        let matching: Vec<&str> = bundle
            .map(|b| b.matching(&modalias).map(|m| m.name.as_str()).collect())
            .unwrap_or_default();
        out.push(if matching.is_empty() {
            "    no driver bound: the kernel or initrd lacks a matching module (build the \
             driver into the kernel, or add it to the initrd's module profile)"
                .into()
        } else {
            format!(
                "    no driver bound, though the initrd's module {} matches: it failed to \
                 load or to bind (see the log)",
                matching.join(", ")
            )
        });
    }
    if out.is_empty() {
        out.push("  none (every PCI network device has a driver)".into());
    }
    out
}

fn routes(net: &NetState) -> Vec<String> {
    if net.routes.is_empty() {
        return vec!["  none".into()];
    }
    let dev = |i: Option<u32>| {
        i.and_then(|i| net.links.iter().find(|l| l.index == i))
            .map(|l| l.name.clone())
            .unwrap_or_else(|| "-".into())
    };
    net.routes
        .iter()
        .map(|r| {
            let dest = if r.is_default() {
                "default".to_string()
            } else {
                format!("{}/{}", r.destination, r.prefix)
            };
            let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            format!("  {dest}{via} dev {} metric {}", dev(r.oif), r.metric)
        })
        .collect()
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::fixture::{Bus, Disk, Fixture};
    use crate::modules::Module;
    use crate::net::netlink::Fake;
    use std::net::Ipv4Addr;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, v: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{v}\n")).unwrap();
    }

    /// A PCI device under /sys/devices/pci0000:00 with the bus link, and, for a NIC
    /// with a driver, its net interface.
    fn pci(sys: &Path, slot: &str, vendor: &str, device: &str, class: &str, driver: Option<&str>) {
        let dev = sys.join("devices/pci0000:00").join(slot);
        write(&dev.join("vendor"), &format!("0x{vendor}"));
        write(&dev.join("device"), &format!("0x{device}"));
        write(&dev.join("class"), class);
        write(
            &dev.join("modalias"),
            &format!(
                "pci:v0000{}d0000{}sv00001AF4sd00001100bc{}sc00i00",
                vendor.to_uppercase(),
                device.to_uppercase(),
                &class[2..4]
            ),
        );
        std::fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
        symlink(&dev, sys.join("bus/pci/devices").join(slot)).unwrap();
        if let Some(d) = driver {
            let drv = sys.join("bus/pci/drivers").join(d);
            std::fs::create_dir_all(&drv).unwrap();
            symlink(&drv, dev.join("driver")).unwrap();
        }
    }

    fn nic(sys: &Path, name: &str, mac: &str, driver: &str, carrier: Option<&str>) {
        let dir = sys.join("class/net").join(name);
        write(&dir.join("address"), mac);
        write(
            &dir.join("operstate"),
            if carrier.is_some() { "up" } else { "down" },
        );
        write(&dir.join("type"), "1");
        if let Some(c) = carrier {
            write(&dir.join("carrier"), c);
        }
        let drv = sys.join("bus/virtio/drivers").join(driver);
        std::fs::create_dir_all(&drv).unwrap();
        std::fs::create_dir_all(dir.join("device")).unwrap();
        symlink(&drv, dir.join("device/driver")).unwrap();
    }

    fn link(index: u32, name: &str) -> Link {
        Link {
            index,
            name: name.into(),
            mac: String::new(),
            ether: true,
            kind: None,
            up: true,
            carrier: true,
        }
    }

    #[test]
    fn report_names_interfaces_the_driverless_nic_routes_disks_and_log() {
        let base = tempfile::tempdir().unwrap();
        let fx = Fixture::new(base.path());
        fx.add(Disk::new("vda", Bus::Virtio, 64 << 20));
        let sys = &fx.sys;
        nic(sys, "eth0", "52:54:00:12:34:56", "virtio_net", Some("1"));
        nic(sys, "eth1", "52:54:00:00:00:02", "virtio_net", None);
        pci(
            sys,
            "0000:00:03.0",
            "1af4",
            "1000",
            "0x020000",
            Some("virtio-pci"),
        );
        pci(sys, "0000:00:04.0", "8086", "100e", "0x020000", None);
        // Not a network device: no line even without a driver.
        pci(sys, "0000:00:05.0", "8086", "2922", "0x010601", None);

        let mut nl = Fake {
            links: vec![link(2, "eth0"), link(3, "eth1")],
            addrs: vec![Addr {
                index: 2,
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
            }],
            routes: vec![
                Route {
                    destination: Ipv4Addr::UNSPECIFIED,
                    prefix: 0,
                    gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                    oif: Some(2),
                    metric: 100,
                    table: 254,
                },
                Route {
                    destination: Ipv4Addr::new(10, 0, 2, 0),
                    prefix: 24,
                    gateway: None,
                    oif: Some(2),
                    metric: 0,
                    table: 254,
                },
            ],
            calls: Vec::new(),
        };
        let recent = vec!["[ze-install] FATAL: network: no interface reaches".to_string()];
        let lines = report(
            &Inputs {
                roots: disk::Roots {
                    sys: &fx.sys,
                    dev: &fx.dev,
                    proc: &fx.proc,
                },
                mode: disk::Mode::Http,
                target: None,
                bundle: None,
                recent: &recent,
            },
            &NetState::read(&mut nl),
        );
        let text = lines.join("\n");
        let expect = [
            "== interfaces ==",
            "  eth0  mac=52:54:00:12:34:56  driver=virtio_net  carrier=1  operstate=up  addr=10.0.2.15/24",
            "  eth1  mac=52:54:00:00:00:02  driver=virtio_net  carrier=-  operstate=down  addr=-",
            "== PCI network devices without a driver ==",
            "  0000:00:04.0  8086:100e  class=0x020000  modalias=pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
            "    no driver bound: the kernel or initrd lacks a matching module (build the driver into the kernel, or add it to the initrd's module profile)",
            "== routes ==",
            "  default via 10.0.2.2 dev eth0 metric 100",
            "  10.0.2.0/24 dev eth0 metric 0",
            "== disk plan ==",
            "== last 1 log lines ==",
            "  [ze-install] FATAL: network: no interface reaches",
            "== end of diagnostics ==",
        ];
        for e in expect {
            assert!(lines.iter().any(|l| l == e), "missing {e:?} in:\n{text}");
        }
        // Sections in order; the bound NIC and the SATA controller are not listed.
        let pos = |s: &str| lines.iter().position(|l| l == s).unwrap();
        assert!(pos("== interfaces ==") < pos("== PCI network devices without a driver =="));
        assert!(pos("== routes ==") < pos("== disk plan =="));
        assert!(
            !text.contains("1af4:1000") && !text.contains("8086:2922"),
            "{text}"
        );
        let disk_line = lines
            .iter()
            .find(|l| l.contains(" vda "))
            .unwrap_or_else(|| panic!("no vda in:\n{text}"));
        assert!(
            disk_line.contains("64.0 MiB") && disk_line.contains("taken"),
            "{disk_line}"
        );
        assert!(
            lines.iter().any(|l| l == "  disk plan: target /dev/vda"),
            "{text}"
        );
    }

    #[test]
    fn a_bundled_module_that_matches_but_is_not_bound_is_named() {
        let base = tempfile::tempdir().unwrap();
        let fx = Fixture::new(base.path());
        pci(&fx.sys, "0000:00:04.0", "8086", "100e", "0x020000", None);
        let bundle = Index {
            kernel: "6.1.0".into(),
            modules: vec![Module {
                name: "e1000".into(),
                file: "e1000.ko".into(),
                depends: vec![],
                softdeps: vec![],
                aliases: vec!["pci:v00008086d0000100Esv*sd*bc*sc*i*".into()],
                always: false,
            }],
        };
        let lines = unbound_nics(&fx.sys, Some(&bundle));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].contains("the initrd's module e1000 matches"),
            "{lines:?}"
        );
    }

    #[test]
    fn without_netlink_or_nics_the_report_says_so() {
        let base = tempfile::tempdir().unwrap();
        let fx = Fixture::new(base.path());
        let lines = report(
            &Inputs {
                roots: disk::Roots {
                    sys: &fx.sys,
                    dev: &fx.dev,
                    proc: &fx.proc,
                },
                mode: disk::Mode::Iso,
                target: Some("/dev/vdz"),
                bundle: None,
                recent: &[],
            },
            &NetState::unavailable("Permission denied".into()),
        );
        let text = lines.join("\n");
        assert!(text.contains("(rtnetlink: Permission denied; addresses and routes unknown)"));
        assert!(
            text.contains("  none (no network interface besides lo)"),
            "{text}"
        );
        assert!(text.contains("  (no PCI bus in sysfs)"), "{text}");
        assert!(text.contains("== routes ==\n  none"), "{text}");
        assert!(text.contains("ze.target=/dev/vdz"), "{text}");
        assert!(text.contains("== last 0 log lines =="), "{text}");
    }
}
