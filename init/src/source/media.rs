//! Finding the install medium: every whole disk and partition under `/sys/block` is
//! looked at until one holds the medium this boot was made for, polling for up to
//! [`MEDIA_WAIT`] because USB storage and SCSI CD-ROMs appear asynchronously.
//!
//! Each round:
//! 1. every device not looked at yet (or whose size or `dev` changed, or that could not
//!    be read: a CD tray that got a disc) is probed by signature; an iso9660 filesystem is mounted read-only at a
//!    private mount point and judged;
//! 2. every FAT/exFAT filesystem of the round is mounted and its `*.iso` and `*/*.iso`
//!    files are judged through read-only loop devices (Ventoy, [`super::ventoy`]).
//!
//! Whatever did not match is unmounted and detached before the next device. Every
//! device and file looked at is logged with the reason it was rejected, and the FATAL
//! after the timeout lists them all.
//!
//! The system calls sit behind [`MediaOps`], the clock behind [`Clock`], so the scan
//! runs in unit tests on fixture directories.

use super::iso::Rejection;
use super::probe::{self, Signature};
use super::ventoy;
use crate::boot::Fatal;
use crate::sys::mount::FsType;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the scan waits for the medium. USB storage settles about a second after
/// the controller (usb-storage's `delay_use`), a SCSI CD-ROM within a few; 30 s covers
/// slow hubs and enclosures with margin and matches `ze.wait`'s default.
pub const MEDIA_WAIT: Duration = Duration::from_secs(30);
/// Between rounds. A round only probes devices it has not seen, so this is cheap.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// A mount or a loop device the scan holds. [`Held::release`] reports failure;
/// dropping releases best effort and logs.
pub struct Held {
    /// The mount point (a filesystem's root) or the loop device node.
    pub path: PathBuf,
    release: Option<Box<dyn FnOnce() -> Result<(), String> + Send>>,
}

impl Held {
    pub fn new(
        path: PathBuf,
        release: impl FnOnce() -> Result<(), String> + Send + 'static,
    ) -> Held {
        Held {
            path,
            release: Some(Box::new(release)),
        }
    }

    pub fn release(mut self) -> Result<(), String> {
        match self.release.take() {
            Some(r) => r(),
            None => Ok(()),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(r) = self.release.take()
            && let Err(e) = r()
        {
            log::warn!("media: {e}");
        }
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({})", self.path.display())
    }
}

/// What the scan asks of the system.
pub trait MediaOps {
    /// The first [`probe::HEAD`] bytes of a device or file.
    fn read_head(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        probe::read_head(path)
    }
    /// Mounts `device` read-only at a fresh private directory; `Held::path` is its root.
    fn mount(&mut self, device: &Path, fs: FsType) -> Result<Held, String>;
    /// Attaches `file` read-only to a loop device; `Held::path` is the device node.
    fn attach(&mut self, file: &Path) -> Result<Held, String>;
}

/// Time for the poll loop.
pub trait Clock {
    fn elapsed(&self) -> Duration;
    fn sleep(&mut self, d: Duration);
}

pub struct RealClock(Instant);

impl RealClock {
    pub fn start() -> RealClock {
        RealClock(Instant::now())
    }
}

impl Clock for RealClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// The real system: mounts under `run_root`, loop devices under `dev_root`.
pub struct KernelOps<'a> {
    pub dev_root: &'a Path,
    pub run_root: &'a Path,
}

impl MediaOps for KernelOps<'_> {
    fn mount(&mut self, device: &Path, fs: FsType) -> Result<Held, String> {
        use crate::sys::mount::{MountError, mount_ro, temp_mount_point};
        let dir = temp_mount_point(self.run_root, "media").map_err(|e| e.to_string())?;
        match mount_ro(device, &dir, fs) {
            Ok(m) => {
                let at = dir.clone();
                Ok(Held::new(dir, move || {
                    m.unmount_waiting(Duration::from_secs(2))
                        .map_err(|e| e.to_string())?;
                    std::fs::remove_dir(&at).map_err(|e| format!("removing {}: {e}", at.display()))
                }))
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(match e {
                    MountError::Mount { source, .. }
                        if source.raw_os_error() == Some(nix::libc::ENODEV) =>
                    {
                        format!("{source}: this kernel has no {} support", fs.as_str())
                    }
                    MountError::Mount { source, .. } => source.to_string(),
                    other => other.to_string(),
                })
            }
        }
    }

    fn attach(&mut self, file: &Path) -> Result<Held, String> {
        use crate::sys::loopdev::{LoopDevice, LoopOptions};
        let lo = LoopDevice::attach(
            self.dev_root,
            file,
            &LoopOptions {
                read_only: true,
                ..LoopOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(Held::new(lo.path().to_path_buf(), move || {
            lo.detach().map_err(|e| e.to_string())
        }))
    }
}

/// One device or file the scan looked at, and why it is not the medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Looked {
    pub what: String,
    pub why: Rejection,
}

impl Looked {
    /// Logs the rejection and keeps it for the final FATAL.
    pub fn note(looked: &mut Vec<Looked>, what: &str, why: Rejection) {
        log::info!("media: {what}: {why}");
        looked.push(Looked {
            what: what.to_string(),
            why,
        });
    }
}

/// A judge's answer other than a match: try the next medium, or stop the install.
#[derive(Debug)]
pub enum Judged {
    Rejected(Rejection),
    Fatal(Fatal),
}

impl From<Rejection> for Judged {
    fn from(r: Rejection) -> Judged {
        Judged::Rejected(r)
    }
}

/// How the medium was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An iso9660 filesystem on a disk or partition (a CD, a `dd`-written stick).
    Device,
    /// An ISO file on a FAT/exFAT partition, through a loop device.
    IsoFile {
        partition: PathBuf,
        file: String,
        loop_device: PathBuf,
    },
}

/// The medium, once found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Medium {
    /// For messages: `/dev/sr0`, `/dev/sdb1:/ventoy/ze.iso`.
    pub label: String,
    /// The device holding the iso9660 filesystem (a loop device for an ISO file).
    pub device: PathBuf,
    pub via: Via,
    /// The disks that must never be targets: the one holding the medium or the ISO file.
    pub exclude: Vec<String>,
}

/// A match: the judge's value, the medium, and the mounts that stay until dropped.
#[derive(Debug)]
pub struct Found<T> {
    pub value: T,
    pub medium: Medium,
    /// The iso9660 filesystem's mount point.
    pub root: PathBuf,
    pub looked: Vec<Looked>,
    /// Released front to back: the ISO mount, then (Ventoy) the loop device and the
    /// partition's mount.
    held: Vec<Held>,
}

impl<T> Found<T> {
    /// Unmounts and detaches everything; returns the failures (the caller logs them).
    pub fn release(self) -> Vec<String> {
        self.held
            .into_iter()
            .filter_map(|h| h.release().err())
            .collect()
    }
}

#[derive(Debug)]
pub enum FindError {
    /// Nothing matched within the wait; every device and file looked at, with why.
    NotFound {
        media_id: String,
        waited: Duration,
        looked: Vec<Looked>,
    },
    /// The judge stopped the install (a bad answers file on the right medium).
    Fatal(Fatal),
}

impl std::fmt::Display for FindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FindError::NotFound {
                media_id,
                waited,
                looked,
            } => {
                write!(
                    f,
                    "no install medium with ze.media-id={media_id} within {} s; ",
                    waited.as_secs()
                )?;
                if looked.is_empty() {
                    return f.write_str("no disk, partition or CD-ROM appeared");
                }
                let list: Vec<String> = looked
                    .iter()
                    .map(|l| format!("{}: {}", l.what, l.why))
                    .collect();
                write!(f, "looked at {}: {}", looked.len(), list.join("; "))
            }
            FindError::Fatal(fatal) => write!(f, "{fatal}"),
        }
    }
}

/// One place a medium can be.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    name: String,
    /// The whole disk it belongs to (itself for a disk).
    disk: String,
    dev: String,
    size: u64,
}

/// Block devices a medium can live on: disks, partitions, CD-ROMs and device-mapper
/// devices (a Ventoy-style mapping); never our own loop devices or RAM-backed ones.
fn places(sys_root: &Path) -> Vec<Place> {
    let skip = |n: &str| {
        let digit_after = |p: &str| {
            n.strip_prefix(p)
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        };
        ["loop", "ram", "zram", "nbd", "mtdblock", "fd", "md"]
            .iter()
            .any(|p| digit_after(p))
            || (n.starts_with("mmcblk") && (n.contains("boot") || n.contains("rpmb")))
    };
    let mut out = Vec::new();
    for d in crate::disk::scan(sys_root) {
        if skip(&d.name) {
            continue;
        }
        out.push(Place {
            name: d.name.clone(),
            disk: d.name.clone(),
            dev: d.dev.clone(),
            size: d.size,
        });
        for p in &d.partitions {
            out.push(Place {
                name: p.name.clone(),
                disk: d.name.clone(),
                dev: p.dev.clone(),
                size: p.size,
            });
        }
    }
    out
}

/// Looks for the medium until `judge` accepts one or `wait` passes. `judge` gets the
/// mounted iso9660 root and a label for messages; it returns its value, a rejection
/// (the scan goes on) or a FATAL (the scan stops).
pub fn find<T>(
    sys_root: &Path,
    dev_root: &Path,
    media_id: &str,
    ops: &mut dyn MediaOps,
    clock: &mut dyn Clock,
    wait: Duration,
    judge: &mut dyn FnMut(&Path, &str) -> Result<T, Judged>,
) -> Result<Found<T>, FindError> {
    let start = clock.elapsed();
    // (name, dev, size) of every device looked at: a few dozen, a Vec will do.
    let mut seen: Vec<(String, String, u64)> = Vec::new();
    let mut looked: Vec<Looked> = Vec::new();
    loop {
        let mut fat = Vec::new();
        for p in places(sys_root) {
            if seen
                .iter()
                .any(|(n, d, z)| *n == p.name && *d == p.dev && *z == p.size)
            {
                continue;
            }
            seen.retain(|(n, _, _)| *n != p.name);
            seen.push((p.name.clone(), p.dev.clone(), p.size));
            let device = dev_root.join(&p.name);
            let label = format!("/dev/{}", p.name);
            if p.size == 0 {
                Looked::note(&mut looked, &label, Rejection::Empty);
                continue;
            }
            let sig = match ops.read_head(&device) {
                Ok(h) => probe::identify(&h),
                Err(e) => {
                    // An empty CD-ROM tray (ENOMEDIUM) or a device still settling: read
                    // it again next round, but say so only once.
                    seen.retain(|(n, _, _)| *n != p.name);
                    let why = Rejection::Unreadable(e.to_string());
                    if !looked.iter().any(|l| l.what == label && l.why == why) {
                        Looked::note(&mut looked, &label, why);
                    }
                    continue;
                }
            };
            match sig {
                Signature::Iso9660 => {}
                Signature::Vfat | Signature::Exfat => {
                    let fs = if sig == Signature::Vfat {
                        FsType::Vfat
                    } else {
                        FsType::Exfat
                    };
                    fat.push((p, device, label, fs));
                    continue;
                }
                other => {
                    Looked::note(
                        &mut looked,
                        &label,
                        Rejection::NotIso9660(other.as_str().into()),
                    );
                    continue;
                }
            }
            let mounted = match ops.mount(&device, FsType::Iso9660) {
                Ok(h) => h,
                Err(error) => {
                    let why = Rejection::Mount {
                        fs: FsType::Iso9660.as_str(),
                        error,
                    };
                    Looked::note(&mut looked, &label, why);
                    continue;
                }
            };
            match judge(&mounted.path, &label) {
                Ok(value) => {
                    log::info!(
                        "media: found the install medium on {label} after {} ms",
                        (clock.elapsed() - start).as_millis()
                    );
                    return Ok(Found {
                        value,
                        medium: Medium {
                            label,
                            device,
                            via: Via::Device,
                            exclude: vec![p.disk],
                        },
                        root: mounted.path.clone(),
                        looked,
                        held: vec![mounted],
                    });
                }
                Err(Judged::Rejected(r)) => {
                    Looked::note(&mut looked, &label, r);
                    if let Err(e) = mounted.release() {
                        log::warn!("media: {e}");
                    }
                }
                Err(Judged::Fatal(f)) => return Err(FindError::Fatal(f)),
            }
        }
        // Phase 2: ISO files on FAT/exFAT, once no device held the medium itself.
        for (p, device, label, fs) in fat {
            let found = ventoy::examine(ops, &device, &label, fs, judge, &mut looked)
                .map_err(FindError::Fatal)?;
            if let Some(f) = found {
                let label = format!("{label}:/{}", f.file);
                log::info!(
                    "media: found the install medium in {label} (loop device {}) after {} ms",
                    f.loop_device.display(),
                    (clock.elapsed() - start).as_millis()
                );
                return Ok(Found {
                    value: f.value,
                    medium: Medium {
                        label,
                        device: f.loop_device.clone(),
                        via: Via::IsoFile {
                            partition: device,
                            file: f.file,
                            loop_device: f.loop_device,
                        },
                        exclude: vec![p.disk],
                    },
                    root: f.root,
                    looked,
                    held: f.held,
                });
            }
        }
        let waited = clock.elapsed() - start;
        if waited >= wait {
            return Err(FindError::NotFound {
                media_id: media_id.to_string(),
                waited,
                looked,
            });
        }
        clock.sleep(POLL_EVERY.min(wait - waited));
    }
}

#[cfg(test)]
mod tests;
