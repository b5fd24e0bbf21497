//! Builds fake sysfs, /dev and /proc trees for tests: the same layout the kernel makes
//! (`/sys/block/<name>` links into `/sys/devices/…`, `device/subsystem` links naming
//! the bus), so the code under test follows the same links it follows on hardware.
//! Not used by `/init` itself; public so integration tests (`ze-init plan`) can build
//! trees too.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The bus a fake disk hangs off; decides its path under `/sys/devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    Nvme,
    Virtio,
    Sata,
    Sas,
    /// virtio-scsi: a SCSI disk behind a virtio host adapter.
    Scsi,
    Usb,
    Mmc,
    Xen,
    /// `/sys/devices/virtual/block/<name>` with no `device` link (loop, dm, md, zram…).
    Virtual,
}

/// A fake disk, described with builder methods and created by [`Fixture::add`].
#[derive(Debug, Clone)]
pub struct Disk {
    name: String,
    bus: Bus,
    bytes: u64,
    removable: bool,
    read_only: bool,
    vendor: String,
    model: String,
    serial: String,
    wwid: String,
    rotational: Option<bool>,
    /// (number, start bytes, size bytes)
    parts: Vec<(u32, u64, u64)>,
    /// (partition number or 0 for the disk, holder name)
    holders: Vec<(u32, String)>,
}

impl Disk {
    pub fn new(name: &str, bus: Bus, bytes: u64) -> Disk {
        Disk {
            name: name.into(),
            bus,
            bytes,
            removable: false,
            read_only: false,
            vendor: String::new(),
            model: String::new(),
            serial: String::new(),
            wwid: String::new(),
            rotational: None,
            parts: Vec::new(),
            holders: Vec::new(),
        }
    }
    pub fn removable(mut self) -> Disk {
        self.removable = true;
        self
    }
    pub fn read_only(mut self) -> Disk {
        self.read_only = true;
        self
    }
    pub fn model(mut self, vendor: &str, model: &str) -> Disk {
        self.vendor = vendor.into();
        self.model = model.into();
        self
    }
    /// `serial` (virtio's block attribute, NVMe's controller attribute).
    pub fn serial(mut self, serial: &str) -> Disk {
        self.serial = serial.into();
        self
    }
    /// `wwid` (NVMe `eui.…`, SCSI `naa.…`).
    pub fn wwid(mut self, wwid: &str) -> Disk {
        self.wwid = wwid.into();
        self
    }
    pub fn rotational(mut self, r: bool) -> Disk {
        self.rotational = Some(r);
        self
    }
    pub fn partition(mut self, number: u32, start: u64, size: u64) -> Disk {
        self.parts.push((number, start, size));
        self
    }
    /// Something stacked on the disk (`on` = 0) or on partition `on`.
    pub fn holder(mut self, on: u32, holder: &str) -> Disk {
        self.holders.push((on, holder.into()));
        self
    }
}

/// A temp-dir tree with `sys/`, `dev/` and `proc/`.
pub struct Fixture {
    pub sys: PathBuf,
    pub dev: PathBuf,
    pub proc: PathBuf,
    next_major: Cell<u32>,
    devs: RefCell<HashMap<String, String>>,
}

fn write(path: &Path, value: &str) {
    fs::create_dir_all(path.parent().expect("path has a parent")).expect("mkdir");
    fs::write(path, format!("{value}\n")).expect("write fixture attribute");
}

fn symlink(target: &Path, link: &Path) {
    fs::create_dir_all(link.parent().expect("link has a parent")).expect("mkdir");
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

impl Fixture {
    pub fn new(base: &Path) -> Fixture {
        let f = Fixture {
            sys: base.join("sys"),
            dev: base.join("dev"),
            proc: base.join("proc"),
            next_major: Cell::new(200),
            devs: RefCell::new(HashMap::new()),
        };
        for d in [&f.sys.join("block"), &f.dev, &f.proc.join("self")] {
            fs::create_dir_all(d).expect("mkdir fixture root");
        }
        // An empty mount table unless a test adds mounts.
        write(&f.proc.join("self/mountinfo"), "");
        f
    }

    /// `major:minor` given to a disk or partition by [`Fixture::add`].
    pub fn dev_of(&self, name: &str) -> String {
        self.devs.borrow()[name].clone()
    }

    /// Directory of the device that owns the block device, per bus, as the kernel lays
    /// it out.
    fn parent_dir(&self, d: &Disk, slot: u32) -> (PathBuf, Option<&'static str>) {
        let pci = self
            .sys
            .join("devices/pci0000:00")
            .join(format!("0000:00:{slot:02x}.0"));
        match d.bus {
            Bus::Nvme => (pci.join("nvme/nvme0"), Some("class/nvme")),
            Bus::Virtio => (pci.join("virtio1"), Some("bus/virtio")),
            Bus::Sata => (pci.join("ata1/host0/target0:0:0/0:0:0:0"), Some("bus/scsi")),
            Bus::Sas => (
                pci.join("host0/port-0:0/end_device-0:0/target0:0:0/0:0:0:0"),
                Some("bus/scsi"),
            ),
            Bus::Scsi => (
                pci.join("virtio2/host2/target2:0:0/2:0:0:0"),
                Some("bus/scsi"),
            ),
            Bus::Usb => (
                pci.join("usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0"),
                Some("bus/scsi"),
            ),
            Bus::Mmc => (
                self.sys
                    .join("devices/platform/fe320000.mmc/mmc_host/mmc1/mmc1:0001"),
                Some("bus/mmc"),
            ),
            Bus::Xen => (self.sys.join("devices/vbd-51712"), Some("bus/xen")),
            Bus::Virtual => (self.sys.join("devices/virtual"), None),
        }
    }

    /// Creates the disk's sysfs entries.
    pub fn add(&self, d: Disk) -> &Fixture {
        let major = self.next_major.get();
        self.next_major.set(major + 1);
        let (parent, subsystem) = self.parent_dir(&d, major - 199);
        let dir = parent.join("block").join(&d.name);
        fs::create_dir_all(&dir).expect("mkdir disk");
        symlink(&dir, &self.sys.join("block").join(&d.name));
        let dev = format!("{major}:0");
        self.devs.borrow_mut().insert(d.name.clone(), dev.clone());
        write(&dir.join("dev"), &dev);
        write(&dir.join("size"), &(d.bytes / 512).to_string());
        write(&dir.join("removable"), if d.removable { "1" } else { "0" });
        write(&dir.join("ro"), if d.read_only { "1" } else { "0" });
        write(&dir.join("queue/logical_block_size"), "512");
        if let Some(r) = d.rotational {
            write(&dir.join("queue/rotational"), if r { "1" } else { "0" });
        }
        fs::create_dir_all(dir.join("holders")).expect("mkdir holders");
        if let Some(sub) = subsystem {
            let bus = self.sys.join(sub);
            fs::create_dir_all(&bus).expect("mkdir bus");
            symlink(&parent, &dir.join("device"));
            symlink(&bus, &parent.join("subsystem"));
            match d.bus {
                Bus::Mmc => write(&parent.join("name"), &d.model),
                Bus::Nvme => {
                    write(&parent.join("model"), &d.model);
                    write(&parent.join("serial"), &d.serial);
                }
                _ => {
                    if !d.vendor.is_empty() {
                        write(&parent.join("vendor"), &d.vendor);
                    }
                    if !d.model.is_empty() {
                        write(&parent.join("model"), &d.model);
                    }
                }
            }
            if !d.wwid.is_empty() {
                let at = if d.bus == Bus::Nvme {
                    dir.join("wwid")
                } else {
                    parent.join("wwid")
                };
                write(&at, &d.wwid);
            }
            if d.bus == Bus::Virtio && !d.serial.is_empty() {
                write(&dir.join("serial"), &d.serial);
            }
        }
        for (n, start, size) in &d.parts {
            let pname = crate::disk::partition::partition_name(&d.name, *n);
            let p = dir.join(&pname);
            write(&p.join("partition"), &n.to_string());
            let pdev = format!("{major}:{n}");
            write(&p.join("dev"), &pdev);
            write(&p.join("start"), &(start / 512).to_string());
            write(&p.join("size"), &(size / 512).to_string());
            fs::create_dir_all(p.join("holders")).expect("mkdir holders");
            self.devs.borrow_mut().insert(pname, pdev);
        }
        for (on, holder) in &d.holders {
            let base = if *on == 0 {
                dir.clone()
            } else {
                dir.join(crate::disk::partition::partition_name(&d.name, *on))
            };
            let target = self.sys.join("devices/virtual/block").join(holder);
            fs::create_dir_all(&target).expect("mkdir holder");
            symlink(&target, &base.join("holders").join(holder));
        }
        self
    }

    /// A `/dev` symlink such as `disk/by-id/x` → `../../sda`.
    pub fn link(&self, rel: &str, target: &str) -> &Fixture {
        symlink(Path::new(target), &self.dev.join(rel));
        self
    }

    /// A plain file standing in for a device node.
    pub fn node(&self, name: &str) -> &Fixture {
        write(&self.dev.join(name), "");
        self
    }

    /// Records `device` (a name known to the fixture) mounted on `target` in
    /// `/proc/self/mountinfo`, the way the kernel prints it.
    pub fn mounted(&self, device: &str, target: &str) -> &Fixture {
        let dev = self.dev_of(device);
        let path = self.proc.join("self/mountinfo");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open mountinfo");
        let esc = target.replace(' ', "\\040");
        writeln!(
            f,
            "40 1 {dev} / {esc} rw,relatime shared:1 - ext4 /dev/{device} rw"
        )
        .expect("write mountinfo");
        self
    }

    /// Writes `/proc/swaps` with `devices` as active swap partitions.
    pub fn swaps(&self, devices: &[&str]) -> &Fixture {
        let mut s = String::from("Filename\tType\tSize\tUsed\tPriority\n");
        for d in devices {
            s.push_str(&format!("/dev/{d}\tpartition\t1048572\t0\t-2\n"));
        }
        fs::write(self.proc.join("swaps"), s).expect("write swaps");
        self
    }
}
