//! What the running system uses: mounted filesystems (`<proc>/self/mountinfo`, or
//! `<proc>/mounts` on a kernel without it) and active swap (`<proc>/swaps`). The disk
//! plan refuses a disk any of whose partitions shows up here.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct MountsError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the mounted device (mountinfo only). btrfs and other filesystems
    /// report an anonymous `0:N` here, which is why the source is matched too.
    pub dev: Option<String>,
    /// What was mounted, as given to mount(2): `/dev/sda2`, `/dev/disk/by-uuid/…`, `proc`.
    pub source: String,
    pub target: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub mounts: Vec<MountEntry>,
    /// Swap devices (or files) from `/proc/swaps`.
    pub swaps: Vec<String>,
}

/// mountinfo and /proc/mounts escape space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo` (proc(5)): `id parent major:minor root target options
/// [optional fields…] - fstype source superoptions`.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            if sep < 6 || f.len() < sep + 3 {
                return None;
            }
            Some(MountEntry {
                dev: Some(f[2].to_string()),
                source: unescape(f[sep + 2]),
                target: unescape(f[4]),
            })
        })
        .collect()
}

/// Parses `/proc/mounts` (fstab format): `source target fstype options 0 0`.
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            Some(MountEntry {
                dev: None,
                source: unescape(f.next()?),
                target: unescape(f.next()?),
            })
        })
        .collect()
}

/// Parses `/proc/swaps`: a header line, then `filename type size used priority`.
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(unescape))
        .collect()
}

/// Reads the mount table and the swap list under `proc_root`. A missing `swaps` (no
/// swap support) is an empty list; an unreadable mount table is an error, because
/// without it no disk can be shown to be unused.
pub fn read(proc_root: &Path) -> Result<Usage, MountsError> {
    let info = proc_root.join("self/mountinfo");
    let mounts = match std::fs::read_to_string(&info) {
        Ok(t) => parse_mountinfo(&t),
        Err(_) => {
            let path = proc_root.join("mounts");
            let t = std::fs::read_to_string(&path).map_err(|source| MountsError {
                path: path.clone(),
                source,
            })?;
            parse_mounts(&t)
        }
    };
    let swaps = std::fs::read_to_string(proc_root.join("swaps"))
        .map(|t| parse_swaps(&t))
        .unwrap_or_default();
    Ok(Usage { mounts, swaps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_and_escapes() {
        let t = "36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw\n\
                 22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                 garbage line\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0],
            MountEntry {
                dev: Some("98:0".into()),
                source: "/dev/root".into(),
                target: "/mnt/my disk".into()
            }
        );
        assert_eq!(m[1].source, "proc");
    }

    #[test]
    fn proc_mounts_and_swaps() {
        let m = parse_mounts("/dev/sda2 /boot ext4 rw 0 0\n");
        assert_eq!(m[0].source, "/dev/sda2");
        assert_eq!(m[0].target, "/boot");
        assert_eq!(m[0].dev, None);
        let s = parse_swaps("Filename Type Size Used Priority\n/dev/sdb3 partition 10 0 -2\n");
        assert_eq!(s, vec!["/dev/sdb3"]);
    }

    #[test]
    fn falls_back_to_proc_mounts_and_fails_without_either() {
        let d = tempfile::tempdir().unwrap();
        let err = read(d.path()).unwrap_err();
        assert!(err.to_string().contains("mounts"), "{err}");
        std::fs::write(d.path().join("mounts"), "/dev/vda1 / ext4 rw 0 0\n").unwrap();
        let u = read(d.path()).unwrap();
        assert_eq!(u.mounts[0].source, "/dev/vda1");
        assert!(u.swaps.is_empty());
    }
}
