//! `/dev/disk/by-id/…` and `/dev/disk/by-path/…` names.
//!
//! On a live system udev makes these links and [`resolve`] follows them. The initrd has
//! no udev, so devtmpfs has no `/dev/disk` at all: there [`synthesize`] derives the
//! names udev's `60-persistent-storage.rules` would give, for the forms sysfs holds
//! verbatim (virtio serial, NVMe model/serial and wwid, SCSI/SATA WWN, virtio and NVMe
//! PCI paths). Forms that need udev's helper programs (`ata-<model>_<serial>` reads the
//! full ATA model through ATA IDENTIFY, which sysfs truncates) are not derived; the
//! refusal then says so.

use super::BlockDevice;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Follows `path` (an absolute `/dev/…` path) through symlinks under `dev_root`, as the
/// kernel would under `/dev`, and returns the final path relative to `/dev` (`sda`).
/// Relative targets (`../../sda`) resolve against the link's directory; absolute ones
/// (`/dev/sda`) against `dev_root`. The final node need not exist (a fixture has no
/// device nodes); a missing `/dev/disk/…` link is `NotFound`.
pub fn resolve(dev_root: &Path, path: &str) -> io::Result<String> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let mut rel = PathBuf::from(
        path.strip_prefix("/dev/")
            .ok_or_else(|| invalid(format!("{path} is not under /dev")))?,
    );
    for hop in 0..16 {
        let full = dev_root.join(&rel);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(m) => m,
            // Where a link points, or a plain `/dev/sda`, may lack a node (a fixture, a
            // slow devtmpfs): the name is what counts. A missing link is an error.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && (hop > 0 || rel.components().count() == 1) =>
            {
                return Ok(rel.to_string_lossy().into_owned());
            }
            Err(e) => return Err(e),
        };
        if !meta.file_type().is_symlink() {
            return Ok(rel.to_string_lossy().into_owned());
        }
        let target = std::fs::read_link(&full)?;
        let joined = if target.is_absolute() {
            target
                .strip_prefix("/dev")
                .map_err(|_| invalid(format!("{} points outside /dev", full.display())))?
                .to_path_buf()
        } else {
            rel.parent().unwrap_or(Path::new("")).join(target)
        };
        rel = normalize(&joined)
            .ok_or_else(|| invalid(format!("{} points outside /dev", full.display())))?;
    }
    Err(invalid(format!("{path}: too many levels of links")))
}

/// Lexical `..` removal; `None` when the path climbs above its root.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// udev's `string_escape=replace` for IDs, roughly: trim, and turn each run of
/// whitespace (or a `/`) into one `_`.
fn id_escape(s: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in s.trim().chars() {
        if c.is_whitespace() || c == '/' {
            gap = true;
        } else {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c);
        }
    }
    out
}

/// The PCI address (`0000:00:04.0`) closest to the device in its sysfs path.
fn pci_address(dir: &Path) -> Option<String> {
    let real = std::fs::canonicalize(dir).ok()?;
    let is_pci = |s: &str| {
        let b = s.as_bytes();
        b.len() == 12
            && b[4] == b':'
            && b[7] == b':'
            && b[10] == b'.'
            && s.chars()
                .enumerate()
                .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
    };
    real.components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str().map(str::to_string),
            _ => None,
        })
        .rfind(|s| is_pci(s))
}

/// The `disk/by-id/…` and `disk/by-path/…` names (relative to `/dev`) udev would give
/// this whole disk. Partition N adds `-partN` to each.
pub fn synthesize(sys_root: &Path, d: &BlockDevice) -> Vec<String> {
    use super::{Transport, attr};
    let dir = sys_root.join("block").join(&d.name);
    let mut ids = Vec::new();
    let mut paths = Vec::new();
    match d.transport {
        Transport::Virtio => {
            let serial = attr(&dir, "serial");
            if !serial.is_empty() {
                ids.push(format!("virtio-{}", id_escape(&serial)));
            }
            if let Some(pci) = pci_address(&dir) {
                paths.push(format!("virtio-pci-{pci}"));
                paths.push(format!("pci-{pci}"));
            }
        }
        Transport::Nvme => {
            let wwid = attr(&dir, "wwid");
            if !wwid.is_empty() {
                ids.push(format!("nvme-{}", id_escape(&wwid)));
            }
            let (model, serial) = (attr(&dir, "device/model"), attr(&dir, "device/serial"));
            if !model.is_empty() && !serial.is_empty() {
                ids.push(format!("nvme-{}_{}", id_escape(&model), id_escape(&serial)));
            }
            let nsid = d.name.rsplit('n').next().unwrap_or("1");
            if let Some(pci) = pci_address(&dir) {
                paths.push(format!("pci-{pci}-nvme-{nsid}"));
            }
        }
        _ => {}
    }
    // SCSI, SATA, SAS, USB: VPD page 0x83's NAA id, which udev turns into wwn-0x….
    if let Some(naa) = attr(&dir, "device/wwid").strip_prefix("naa.") {
        ids.push(format!("wwn-0x{}", naa.to_ascii_lowercase()));
    }
    ids.into_iter()
        .map(|s| format!("disk/by-id/{s}"))
        .chain(paths.into_iter().map(|s| format!("disk/by-path/{s}")))
        .collect()
}

/// Finds a synthesized name among `disks`: the disk's name, or its partition's for a
/// `-partN` name.
pub fn find(sys_root: &Path, disks: &[BlockDevice], rel: &str) -> Option<String> {
    for d in disks {
        for name in synthesize(sys_root, d) {
            if name == rel {
                return Some(d.name.clone());
            }
            if let Some(n) = rel
                .strip_prefix(name.as_str())
                .and_then(|r| r.strip_prefix("-part"))
                .and_then(|n| n.parse::<u32>().ok())
            {
                return Some(super::partition::partition_name(&d.name, n));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::fixture::{Bus, Disk, Fixture};

    #[test]
    fn resolve_follows_relative_absolute_and_chained_links() {
        let t = tempfile::tempdir().unwrap();
        let fx = Fixture::new(t.path());
        fx.node("sda")
            .link("disk/by-id/ata-X", "../../sda")
            .link("disk/by-id/abs", "/dev/sdb")
            .link("disk/by-path/chain", "../by-id/ata-X")
            .link("disk/by-id/escape", "../../../etc/passwd");
        assert_eq!(resolve(&fx.dev, "/dev/disk/by-id/ata-X").unwrap(), "sda");
        assert_eq!(resolve(&fx.dev, "/dev/disk/by-id/abs").unwrap(), "sdb");
        assert_eq!(resolve(&fx.dev, "/dev/disk/by-path/chain").unwrap(), "sda");
        assert_eq!(resolve(&fx.dev, "/dev/sdc").unwrap(), "sdc");
        assert_eq!(
            resolve(&fx.dev, "/dev/disk/by-id/missing")
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            resolve(&fx.dev, "/dev/disk/by-id/escape")
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn synthesizes_udev_names_from_sysfs() {
        let t = tempfile::tempdir().unwrap();
        let fx = Fixture::new(t.path());
        fx.add(Disk::new("vda", Bus::Virtio, 1 << 30).serial("ZE-DISK-1"))
            .add(
                Disk::new("nvme0n1", Bus::Nvme, 1 << 30)
                    .model("", "Samsung SSD 980  PRO 1TB ")
                    .serial(" S5GXNF0R123456 ")
                    .wwid("eui.002538b111b2c3d4"),
            )
            .add(Disk::new("sda", Bus::Sata, 1 << 30).wwid("naa.5000C500A1B2C3D4"));
        let disks = crate::disk::scan(&fx.sys);
        let names = |n: &str| synthesize(&fx.sys, disks.iter().find(|d| d.name == n).unwrap());
        assert_eq!(
            names("vda"),
            vec![
                "disk/by-id/virtio-ZE-DISK-1",
                "disk/by-path/virtio-pci-0000:00:01.0",
                "disk/by-path/pci-0000:00:01.0"
            ]
        );
        assert_eq!(
            names("nvme0n1"),
            vec![
                "disk/by-id/nvme-eui.002538b111b2c3d4",
                "disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456",
                "disk/by-path/pci-0000:00:02.0-nvme-1"
            ]
        );
        assert_eq!(names("sda"), vec!["disk/by-id/wwn-0x5000c500a1b2c3d4"]);
        assert_eq!(
            find(&fx.sys, &disks, "disk/by-id/virtio-ZE-DISK-1-part4").as_deref(),
            Some("vda4")
        );
        assert_eq!(find(&fx.sys, &disks, "disk/by-id/virtio-nope"), None);
    }
}
