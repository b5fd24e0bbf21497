//! Block devices as sysfs describes them, and the decision which one to install on.
//! Everything here is pure over a sysfs root (plus a /dev and a /proc root where links
//! and mounts matter), so fixtures in a temp dir stand in for real hardware.
//!
//! - [`scan`]: every `/sys/block` entry with its transport, partitions and holders.
//! - [`plan`]: candidates, ranking, `ze.target`, refusals, and the decision table.
//! - [`partition`]: partition node names, the wait after BLKRRPART, and the loop fallback.
//! - [`gpt`]: partition ranges read back from the table just written.
//! - [`mounts`]: what `/proc` says is mounted or used as swap.

pub mod byid;
#[doc(hidden)]
pub mod fixture;
pub mod gpt;
pub mod mounts;
pub mod partition;
pub mod plan;

pub use plan::{Decision, Mode, PlanError, Request, Roots, Row, Verdict, check_fits, plan};

use serde::Serialize;
use std::cmp::Ordering;
use std::path::Path;

/// How a disk is attached, as far as sysfs tells. The order of [`Transport::rank`] is
/// kldload's: NVMe, virtio, SCSI/SATA/SAS, MMC, others; then USB (see docs/disks.md) and
/// the virtual devices that are never candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Nvme,
    Virtio,
    Sata,
    Sas,
    Scsi,
    Mmc,
    Xen,
    Other,
    Usb,
    /// loop, ram, dm, md, zram, nbd…: made by the kernel, not a piece of hardware.
    Virtual,
}

impl Transport {
    /// Lower ranks first.
    pub fn rank(self) -> u8 {
        match self {
            Transport::Nvme => 0,
            Transport::Virtio => 1,
            Transport::Sata | Transport::Sas | Transport::Scsi => 2,
            Transport::Mmc => 3,
            Transport::Xen | Transport::Other => 4,
            Transport::Usb => 5,
            Transport::Virtual => 6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Nvme => "nvme",
            Transport::Virtio => "virtio",
            Transport::Sata => "sata",
            Transport::Sas => "sas",
            Transport::Scsi => "scsi",
            Transport::Mmc => "mmc",
            Transport::Xen => "xen",
            Transport::Other => "other",
            Transport::Usb => "usb",
            Transport::Virtual => "virtual",
        }
    }
}

/// What kind of storage sits behind the transport (kldload shows SSD, HDD, Virtual).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    Ssd,
    Hdd,
    /// A hypervisor's disk: virtio-blk reports rotational=1 whatever backs it.
    Virtual,
    Unknown,
}

impl Media {
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Ssd => "ssd",
            Media::Hdd => "hdd",
            Media::Virtual => "virtual",
            Media::Unknown => "-",
        }
    }
}

/// One partition of a disk, from `/sys/block/<disk>/<part>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub name: String,
    pub number: u32,
    /// `major:minor`.
    pub dev: String,
    /// Byte offset and length (sysfs counts 512-byte sectors whatever the block size).
    pub start: u64,
    pub size: u64,
}

/// One entry of /sys/block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    pub name: String,
    pub size: u64,
    pub removable: bool,
    pub read_only: bool,
    pub model: String,
    pub transport: Transport,
    pub media: Media,
    /// `major:minor`, empty when sysfs has no `dev`.
    pub dev: String,
    pub logical_block_size: u64,
    pub partitions: Vec<Partition>,
    /// Whatever is stacked on the disk or its partitions: `dm-0`, `md0 (on sda1)`.
    pub holders: Vec<String>,
}

/// Reads a sysfs attribute, trimmed; empty when absent.
pub fn attr(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The last component of a symlink's target (`device/subsystem` → `scsi`).
fn link_name(path: &Path) -> String {
    std::fs::read_link(path)
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// Devices that are never install targets, by kernel name, with what the table calls
/// them: kernel-made block devices, optical and floppy drives, eMMC hardware areas.
pub fn never_disk(name: &str) -> Option<&'static str> {
    const PREFIXES: &[(&str, &str)] = &[
        ("loop", "a loop device"),
        ("ram", "a RAM disk"),
        ("dm-", "a device-mapper device"),
        ("sr", "an optical drive"),
        ("fd", "a floppy drive"),
        ("md", "software RAID (md)"),
        ("zram", "a compressed RAM disk (zram)"),
        ("mtdblock", "MTD flash"),
        ("nbd", "a network block device"),
    ];
    let digit_follows = |rest: &str| rest.starts_with(|c: char| c.is_ascii_digit());
    for (prefix, what) in PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            // md0 and md127, but not a hypothetical "mdisk"; dm- is already unambiguous.
            if *prefix == "dm-" || digit_follows(rest) {
                return Some(what);
            }
        }
    }
    // mmcblk0boot0/1 are eMMC hardware boot areas, mmcblk0rpmb the replay-protected block.
    if let Some(rest) = name.strip_prefix("mmcblk") {
        if rest.contains("boot") {
            return Some("an eMMC boot partition");
        }
        if rest.contains("rpmb") {
            return Some("an eMMC RPMB area");
        }
    }
    None
}

/// Transport from sysfs: the `device/subsystem` link names the bus, and the resolved
/// device path tells SATA (`/ataN/`), SAS (`/end_device-`) and USB (`/usbN/`) apart
/// among SCSI disks.
fn transport(sys_root: &Path, name: &str, dir: &Path) -> Transport {
    let subsystem = link_name(&dir.join("device/subsystem"));
    // Relative to the sysfs root, so a fixture's temp-dir name cannot look like a bus.
    let root = std::fs::canonicalize(sys_root).unwrap_or_default();
    let path = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| {
            p.strip_prefix(&root)
                .ok()
                .map(|r| format!("/{}", r.display()))
        })
        .unwrap_or_default();
    let kernel_made = ["loop", "ram", "dm-", "md", "zram", "nbd"]
        .iter()
        .any(|p| name.starts_with(p));
    if path.starts_with("/devices/virtual/") || (path.is_empty() && kernel_made) {
        return Transport::Virtual;
    }
    if name.starts_with("nvme") || subsystem.starts_with("nvme") {
        return Transport::Nvme;
    }
    // Before SCSI: a USB stick is a SCSI disk behind a USB host.
    if path.contains("/usb") {
        return Transport::Usb;
    }
    match subsystem.as_str() {
        "virtio" => Transport::Virtio,
        "mmc" => Transport::Mmc,
        "xen" => Transport::Xen,
        "scsi" if path.contains("/ata") => Transport::Sata,
        "scsi" if path.contains("/end_device-") || path.contains("/sas_") => Transport::Sas,
        "scsi" => Transport::Scsi,
        _ if name.starts_with("mmcblk") => Transport::Mmc,
        _ if name.starts_with("vd") => Transport::Virtio,
        _ if name.starts_with("xvd") => Transport::Xen,
        _ => Transport::Other,
    }
}

fn media(t: Transport, dir: &Path) -> Media {
    match t {
        Transport::Virtio | Transport::Xen => Media::Virtual,
        Transport::Virtual => Media::Unknown,
        _ => match attr(dir, "queue/rotational").as_str() {
            "0" => Media::Ssd,
            "1" => Media::Hdd,
            _ => Media::Unknown,
        },
    }
}

/// Vendor and model as a person reads them. virtio's `device/vendor` is a PCI id
/// (`0x1af4`) and libata's is the literal `ATA`: neither says anything.
fn model(t: Transport, dir: &Path) -> String {
    if t == Transport::Mmc {
        return attr(dir, "device/name");
    }
    let vendor = attr(dir, "device/vendor");
    let vendor_is_noise = vendor == "ATA"
        || (vendor.starts_with("0x") && vendor[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    [
        if vendor_is_noise {
            String::new()
        } else {
            vendor
        },
        attr(dir, "device/model"),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(" ")
}

fn holders(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join("holders"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    small_sort(&mut out, &|a, b| natural_cmp(a, b));
    out
}

fn partitions(dir: &Path) -> (Vec<Partition>, Vec<String>) {
    let mut parts = Vec::new();
    let mut held = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        // A partition is a subdirectory with a `partition` attribute (its number).
        let Ok(number) = attr(&p, "partition").parse::<u32>() else {
            continue;
        };
        let name = e.file_name().to_string_lossy().into_owned();
        for h in holders(&p) {
            held.push(format!("{h} (on {name})"));
        }
        parts.push(Partition {
            number,
            dev: attr(&p, "dev"),
            start: attr(&p, "start").parse::<u64>().unwrap_or(0) * 512,
            size: attr(&p, "size").parse::<u64>().unwrap_or(0) * 512,
            name,
        });
    }
    small_sort(&mut parts, &|a, b| a.number.cmp(&b.number));
    (parts, held)
}

/// Reads one `/sys/block/<name>` entry.
pub fn read_device(sys_root: &Path, name: &str) -> BlockDevice {
    let dir = sys_root.join("block").join(name);
    let t = transport(sys_root, name, &dir);
    let (partitions, part_holders) = partitions(&dir);
    let mut all_holders = holders(&dir);
    all_holders.extend(part_holders);
    BlockDevice {
        name: name.to_string(),
        // `size` is always in 512-byte sectors, whatever the logical block size.
        size: attr(&dir, "size").parse::<u64>().unwrap_or(0) * 512,
        removable: attr(&dir, "removable") == "1",
        read_only: attr(&dir, "ro") == "1",
        model: model(t, &dir),
        transport: t,
        media: media(t, &dir),
        dev: attr(&dir, "dev"),
        logical_block_size: attr(&dir, "queue/logical_block_size")
            .parse()
            .unwrap_or(512),
        partitions,
        holders: all_holders,
    }
}

/// Every device under `sys_root`/block, in natural name order.
pub fn scan(sys_root: &Path) -> Vec<BlockDevice> {
    let Ok(entries) = std::fs::read_dir(sys_root.join("block")) else {
        return Vec::new();
    };
    let mut out: Vec<BlockDevice> = entries
        .flatten()
        .map(|e| read_device(sys_root, &e.file_name().to_string_lossy()))
        .collect();
    small_sort(&mut out, &|a, b| natural_cmp(&a.name, &b.name));
    out
}

/// A stable insertion sort for the few dozen devices a machine has. Each `sort_by`
/// call site with its own closure instantiates the standard library's driftsort anew
/// (~6 KiB each in the static `/init`); this is one small copy per element type.
pub fn small_sort<T>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> Ordering) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && cmp(&v[j - 1], &v[j]) == Ordering::Greater {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// Kernel disk-name order: `sdb < sdaa` (the letters count in bijective base 26, so a
/// shorter run comes first) and `nvme2n1 < nvme10n1` (digit runs compare as numbers).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    // The driver prefix compares as text, so `sda` and `sdaa` share the prefix `sd`
    // and only the letter suffix counts by length. Other names: the leading letters.
    const PREFIXES: &[&str] = &["mmcblk", "nvme", "xvd", "sd", "vd", "hd"];
    fn split(n: &str) -> (&str, &str) {
        if let Some(p) = PREFIXES.iter().find(|p| n.starts_with(*p)) {
            return n.split_at(p.len());
        }
        n.split_at(
            n.find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(n.len()),
        )
    }
    let ((pa, ra), (pb, rb)) = (split(a), split(b));
    pa.cmp(pb).then_with(|| {
        let (xa, xb) = (runs(ra), runs(rb));
        for ((da, sa), (db, sb)) in xa.iter().zip(&xb) {
            let o = match (da, db) {
                (true, true) => {
                    let (ta, tb) = (sa.trim_start_matches('0'), sb.trim_start_matches('0'));
                    ta.len().cmp(&tb.len()).then(ta.cmp(tb))
                }
                (false, false) => sa.len().cmp(&sb.len()).then(sa.cmp(sb)),
                // A digit run sorts before a letter run at the same place.
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        xa.len().cmp(&xb.len()).then(a.cmp(b))
    })
}

/// `1.5 GiB`, `512 B`: sizes for humans, binary units.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests;
