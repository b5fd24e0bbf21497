//! Mounting what the installer reads and writes: partition 4 (ext4, read-write, at a
//! mount point of our own) and install media (iso9660, vfat, exfat, read-only). Every
//! mount is nosuid, nodev and noexec: nothing on these filesystems is ever run.
//!
//! Unmounting has no lazy (MNT_DETACH) fallback: after the database is written every
//! file on partition 4 is closed, so EBUSY means a bug, and a lazy unmount would hide it
//! while the data still sat in the page cache of a filesystem nobody can sync any more.

use nix::mount::{MntFlags, MsFlags};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Iso9660,
    Vfat,
    Exfat,
}

impl FsType {
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Iso9660 => "iso9660",
            FsType::Vfat => "vfat",
            FsType::Exfat => "exfat",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("creating mount point {target}: {source}")]
    MountPoint {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mounting {device} ({fstype}) on {target}: {source}")]
    Mount {
        device: PathBuf,
        target: PathBuf,
        fstype: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("unmounting {target} (from {device}): {source}")]
    Unmount {
        device: PathBuf,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A mounted filesystem. [`Mounted::unmount`] reports failure; dropping it unmounts
/// best effort (an error path must not leave partition 4 mounted under a reboot).
#[derive(Debug)]
pub struct Mounted {
    device: PathBuf,
    target: PathBuf,
    fstype: FsType,
    /// The mount point is ours (made by [`mount_private_ext4`]): remove it afterwards.
    remove_dir: bool,
    mounted: bool,
}

impl Mounted {
    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn device(&self) -> &Path {
        &self.device
    }

    pub fn fstype(&self) -> FsType {
        self.fstype
    }

    pub fn unmount(mut self) -> Result<(), MountError> {
        self.do_unmount()
    }

    /// Unmounts, retrying EBUSY every 20 ms for up to `limit`. For a FAT partition
    /// that held an ISO file: the loop device lets go of its backing file when its
    /// last opener closes, which can trail our LOOP_CLR_FD by a moment.
    pub fn unmount_waiting(mut self, limit: std::time::Duration) -> Result<(), MountError> {
        let started = std::time::Instant::now();
        loop {
            match self.do_unmount() {
                Err(MountError::Unmount { source, .. })
                    if source.raw_os_error() == Some(nix::libc::EBUSY)
                        && started.elapsed() < limit =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn do_unmount(&mut self) -> Result<(), MountError> {
        if !self.mounted {
            return Ok(());
        }
        nix::mount::umount2(&self.target, MntFlags::empty()).map_err(|e| MountError::Unmount {
            device: self.device.clone(),
            target: self.target.clone(),
            source: io::Error::from_raw_os_error(e as i32),
        })?;
        self.mounted = false;
        if self.remove_dir {
            let _ = std::fs::remove_dir(&self.target);
        }
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.do_unmount() {
            log::warn!("{e}");
        }
    }
}

fn mount(
    device: &Path,
    target: &Path,
    fstype: FsType,
    flags: MsFlags,
    remove_dir: bool,
) -> Result<Mounted, MountError> {
    let flags = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    nix::mount::mount(
        Some(device),
        target,
        Some(fstype.as_str()),
        flags,
        None::<&str>,
    )
    .map_err(|e| MountError::Mount {
        device: device.into(),
        target: target.into(),
        fstype: fstype.as_str(),
        source: io::Error::from_raw_os_error(e as i32),
    })?;
    Ok(Mounted {
        device: device.into(),
        target: target.into(),
        fstype,
        remove_dir,
        mounted: true,
    })
}

/// Makes a fresh, empty directory `base/ze-<label>-<pid>-<n>`, mode 0700.
pub fn temp_mount_point(base: &Path, label: &str) -> Result<PathBuf, MountError> {
    use std::os::unix::fs::DirBuilderExt;
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("ze-{label}-{}-{n}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(false)
        .create(&dir)
        .map_err(|source| MountError::MountPoint {
            target: dir.clone(),
            source,
        })?;
    Ok(dir)
}

/// Mounts the ext4 filesystem on `device` read-write at a new private directory under
/// `base` (e.g. `/run`); the directory goes away on unmount.
pub fn mount_private_ext4(device: &Path, base: &Path) -> Result<Mounted, MountError> {
    let target = temp_mount_point(base, "part")?;
    mount(device, &target, FsType::Ext4, MsFlags::empty(), true).inspect_err(|_| {
        let _ = std::fs::remove_dir(&target);
    })
}

/// Mounts `device` read-only at `target` (an existing directory).
pub fn mount_ro(device: &Path, target: &Path, fstype: FsType) -> Result<Mounted, MountError> {
    mount(device, target, fstype, MsFlags::MS_RDONLY, false)
}

/// Tries each filesystem type in turn, read-only, and returns the first that mounts.
/// EINVAL (not this filesystem) and ENODEV (no such filesystem in this kernel) move on
/// to the next type; any other error stops, as trying more would not help.
pub fn mount_ro_any(device: &Path, target: &Path, types: &[FsType]) -> Result<Mounted, MountError> {
    let mut last = None;
    for &t in types {
        match mount_ro(device, target, t) {
            Ok(m) => return Ok(m),
            Err(MountError::Mount { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(nix::libc::EINVAL | nix::libc::ENODEV)
                ) =>
            {
                last = Some(source);
            }
            Err(e) => return Err(e),
        }
    }
    Err(MountError::Mount {
        device: device.into(),
        target: target.into(),
        fstype: "any of the expected types",
        source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::InvalidInput)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_mount_points_are_fresh_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let a = temp_mount_point(t.path(), "part").unwrap();
        let b = temp_mount_point(t.path(), "part").unwrap();
        assert_ne!(a, b);
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let e = temp_mount_point(&t.path().join("missing"), "x").unwrap_err();
        assert!(e.to_string().starts_with("creating mount point "), "{e}");
    }

    #[test]
    fn a_failed_mount_names_device_target_and_type() {
        let t = tempfile::tempdir().unwrap();
        let dev = t.path().join("not-a-device");
        std::fs::write(&dev, b"").unwrap();
        // Fails as non-root (EPERM) and as root (not a block device): either way the
        // error carries all three.
        let e = mount_ro(&dev, t.path(), FsType::Iso9660).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "mounting {} (iso9660) on {}: ",
                dev.display(),
                t.path().display()
            )),
            "{msg}"
        );
    }
}
