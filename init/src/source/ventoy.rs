//! ISO files on a FAT or exFAT partition (a Ventoy data partition, or any USB stick an
//! operator copied the ISO onto): `*.iso` and `*/*.iso`, each attached read-only to a
//! loop device, mounted, and judged like a medium on a device.

use super::iso::Rejection;
use super::media::{Held, Judged, Looked, MediaOps};
use super::probe::{self, Signature};
use crate::boot::Fatal;
use crate::sys::mount::FsType;
use std::path::{Path, PathBuf};

/// `*.iso` and `*/*.iso` under `root`, as relative paths (`ze.iso`, `isos/ze.iso`),
/// sorted. The extension matches in any case (FAT keeps the case it was given); names
/// starting with `.` are skipped (macOS leaves `._ze.iso` resource forks on FAT sticks).
pub fn iso_files(root: &Path) -> Vec<String> {
    fn listed(dir: &Path) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let is_dir = e.file_type().ok()?.is_dir();
                (!name.starts_with('.')).then_some((name, is_dir))
            })
            .collect();
        crate::disk::small_sort(&mut out, &|a, b| a.0.cmp(&b.0));
        out
    }
    let is_iso = |n: &str| {
        n.len() > 4
            && n.is_char_boundary(n.len() - 4)
            && n[n.len() - 4..].eq_ignore_ascii_case(".iso")
    };
    let mut out = Vec::new();
    for (name, is_dir) in listed(root) {
        if is_dir {
            for (inner, inner_dir) in listed(&root.join(&name)) {
                if !inner_dir && is_iso(&inner) {
                    out.push(format!("{name}/{inner}"));
                }
            }
        } else if is_iso(&name) {
            out.push(name);
        }
    }
    crate::disk::small_sort(&mut out, &|a, b| a.cmp(b));
    out
}

/// A medium found inside an ISO file.
pub struct InFile<T> {
    pub value: T,
    /// The file's path on the partition (`ventoy/ze.iso`).
    pub file: String,
    /// The ISO's mount point.
    pub root: PathBuf,
    pub loop_device: PathBuf,
    /// The ISO mount, the loop device, the partition's mount: released in this order.
    pub held: Vec<Held>,
}

/// Mounts the FAT/exFAT filesystem on `device` and judges each ISO file on it. Every
/// file that is not the medium is noted in `looked` (as `<label>:/<file>`) and released
/// before the next; so is the partition when none matched.
pub fn examine<T>(
    ops: &mut dyn MediaOps,
    device: &Path,
    label: &str,
    fs: FsType,
    judge: &mut dyn FnMut(&Path, &str) -> Result<T, Judged>,
    looked: &mut Vec<Looked>,
) -> Result<Option<InFile<T>>, Fatal> {
    let part = match ops.mount(device, fs) {
        Ok(h) => h,
        Err(error) => {
            Looked::note(
                looked,
                label,
                Rejection::Mount {
                    fs: fs.as_str(),
                    error,
                },
            );
            return Ok(None);
        }
    };
    let files = iso_files(&part.path);
    if files.is_empty() {
        Looked::note(looked, label, Rejection::NoIsoFiles { fs: fs.as_str() });
        release(part);
        return Ok(None);
    }
    for file in files {
        let what = format!("{label}:/{file}");
        let path = part.path.join(&file);
        match ops.read_head(&path).map(|h| probe::identify(&h)) {
            Ok(Signature::Iso9660) => {}
            Ok(other) => {
                Looked::note(looked, &what, Rejection::NotIso9660(other.as_str().into()));
                continue;
            }
            Err(e) => {
                Looked::note(looked, &what, Rejection::Unreadable(e.to_string()));
                continue;
            }
        }
        let lo = match ops.attach(&path) {
            Ok(h) => h,
            Err(e) => {
                Looked::note(looked, &what, Rejection::Loop(e));
                continue;
            }
        };
        let iso = match ops.mount(&lo.path, FsType::Iso9660) {
            Ok(h) => h,
            Err(error) => {
                Looked::note(
                    looked,
                    &what,
                    Rejection::Mount {
                        fs: FsType::Iso9660.as_str(),
                        error,
                    },
                );
                release(lo);
                continue;
            }
        };
        match judge(&iso.path, &what) {
            Ok(value) => {
                return Ok(Some(InFile {
                    value,
                    file,
                    root: iso.path.clone(),
                    loop_device: lo.path.clone(),
                    held: vec![iso, lo, part],
                }));
            }
            Err(Judged::Rejected(r)) => {
                Looked::note(looked, &what, r);
                release(iso);
                release(lo);
            }
            Err(Judged::Fatal(f)) => return Err(f),
        }
    }
    release(part);
    Ok(None)
}

/// Releases `h` now, logging a failure (the scan goes on either way).
fn release(h: Held) {
    if let Err(e) = h.release() {
        log::warn!("media: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_files_are_found_at_the_top_and_one_level_down() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in ["ventoy", "isos", "deep/er", ".Trashes"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for f in [
            "b.iso",
            "A.ISO",
            "notes.txt",
            "x.iso.part",
            "._b.iso",
            "ventoy/ze.iso",
            "isos/old.Iso",
            "isos/readme",
            "deep/er/too-deep.iso",
            ".Trashes/gone.iso",
        ] {
            std::fs::write(r.join(f), b"").unwrap();
        }
        // A directory named like an ISO is not one.
        std::fs::create_dir_all(r.join("dir.iso")).unwrap();
        assert_eq!(
            iso_files(r),
            ["A.ISO", "b.iso", "isos/old.Iso", "ventoy/ze.iso"]
        );
        assert!(iso_files(&r.join("missing")).is_empty());
    }
}
