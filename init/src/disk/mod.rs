//! Block devices as sysfs describes them. Everything here is pure over a sysfs root so
//! fixtures in a temp dir stand in for real hardware.

use serde::Serialize;
use std::path::Path;

/// One entry of /sys/block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    pub name: String,
    pub size: u64,
    pub removable: bool,
    pub read_only: bool,
    pub model: String,
}

/// Reads a sysfs attribute, trimmed; empty when absent.
pub fn attr(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Every device under `sys_root`/block, sorted by name.
pub fn scan(sys_root: &Path) -> Vec<BlockDevice> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(sys_root.join("block")) else {
        return out;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        // `size` is always in 512-byte sectors, whatever the logical block size.
        let size = attr(&dir, "size").parse::<u64>().unwrap_or(0) * 512;
        let model = [attr(&dir, "device/vendor"), attr(&dir, "device/model")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        out.push(BlockDevice {
            name,
            size,
            removable: attr(&dir, "removable") == "1",
            read_only: attr(&dir, "ro") == "1",
            model,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
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
mod tests {
    use super::*;

    fn dev(sys: &Path, name: &str, files: &[(&str, &str)]) {
        let d = sys.join("block").join(name);
        for (f, v) in files {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{v}\n")).unwrap();
        }
    }

    #[test]
    fn scan_reads_size_flags_and_model() {
        let sys = tempfile::tempdir().unwrap();
        dev(
            sys.path(),
            "sda",
            &[
                ("size", "2048"),
                ("removable", "1"),
                ("ro", "0"),
                ("device/vendor", "SanDisk "),
                ("device/model", "Cruzer Blade    "),
            ],
        );
        dev(
            sys.path(),
            "vda",
            &[("size", "4194304"), ("removable", "0"), ("ro", "1")],
        );
        let d = scan(sys.path());
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0],
            BlockDevice {
                name: "sda".into(),
                size: 1024 * 1024,
                removable: true,
                read_only: false,
                model: "SanDisk Cruzer Blade".into()
            }
        );
        assert_eq!(d[1].size, 2 << 30);
        assert!(d[1].read_only);
        assert_eq!(d[1].model, "");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(511), "511 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(2 << 30), "2.0 GiB");
    }
}
