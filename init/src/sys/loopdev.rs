//! Loop devices without losetup: LOOP_CTL_GET_FREE on `/dev/loop-control`, then
//! LOOP_CONFIGURE (Linux 5.8+) with offset, size limit and flags in one call, or on an
//! older kernel LOOP_SET_FD + LOOP_SET_STATUS64. Used for partition N of a disk whose
//! partition node never appeared, and (read-only, whole file) for ISO files on a Ventoy
//! partition.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `struct loop_info64` (include/uapi/linux/loop.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

impl LoopInfo64 {
    fn zeroed() -> LoopInfo64 {
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        }
    }
}

mod ioctl {
    // Request numbers from include/uapi/linux/loop.h ('L' = 0x4C).
    use super::{LoopConfig, LoopInfo64};
    use nix::{ioctl_none_bad, ioctl_read_bad, ioctl_write_int_bad, ioctl_write_ptr_bad};
    ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    ioctl_write_int_bad!(loop_set_fd, 0x4C00);
    ioctl_none_bad!(loop_clr_fd, 0x4C01);
    ioctl_write_ptr_bad!(loop_set_status64, 0x4C04, LoopInfo64);
    ioctl_read_bad!(loop_get_status64, 0x4C05, LoopInfo64);
    ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("opening {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{op} on {device} (backing {backing}): {source}")]
    Ioctl {
        op: &'static str,
        device: PathBuf,
        backing: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{device} did not appear after LOOP_CTL_GET_FREE")]
    NoNode { device: PathBuf },
    #[error("no free loop device for {backing} after {tries} tries (others kept taking them)")]
    Busy { backing: PathBuf, tries: u32 },
    #[error(
        "{device} reports offset {got_offset} size limit {got_limit}, asked {offset} and {limit}"
    )]
    Mismatch {
        device: PathBuf,
        offset: u64,
        limit: u64,
        got_offset: u64,
        got_limit: u64,
    },
}

/// Which ioctls attach the backing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// LOOP_CONFIGURE, falling back to the old pair when the kernel does not know it.
    #[default]
    Auto,
    /// LOOP_SET_FD + LOOP_SET_STATUS64 only (tests use it to exercise the old path).
    Legacy,
}

/// How to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopOptions {
    /// Byte offset into the backing file.
    pub offset: u64,
    /// Bytes from the offset; 0 means to the end of the backing file.
    pub size_limit: u64,
    /// Opens the backing file read-only and marks the loop device read-only (ISO files).
    pub read_only: bool,
    /// Detach by itself when the last user (our handle, a mount) closes it, so a crash
    /// or a forgotten detach leaves nothing attached.
    pub autoclear: bool,
    pub method: Method,
}

impl Default for LoopOptions {
    /// The whole file, read-write, autoclear.
    fn default() -> LoopOptions {
        LoopOptions {
            offset: 0,
            size_limit: 0,
            read_only: false,
            autoclear: true,
            method: Method::Auto,
        }
    }
}

/// An attached loop device. Dropping it without [`LoopDevice::detach`] detaches too
/// (best effort, errors ignored).
#[derive(Debug)]
pub struct LoopDevice {
    file: Option<File>,
    path: PathBuf,
    backing: PathBuf,
    number: u32,
    writable: bool,
}

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Waits for devtmpfs to make `/dev/loopN` after LOOP_CTL_GET_FREE created the device.
fn open_node(path: &Path, write: bool) -> Result<File, LoopError> {
    let started = Instant::now();
    loop {
        match OpenOptions::new().read(true).write(write).open(path) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if started.elapsed() > Duration::from_secs(2) {
                    return Err(LoopError::NoNode {
                        device: path.into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(LoopError::Open {
                    path: path.into(),
                    source,
                });
            }
        }
    }
}

impl LoopDevice {
    /// Attaches `backing` (a file or a block device) to a free loop device under
    /// `dev_root`.
    pub fn attach(
        dev_root: &Path,
        backing: &Path,
        opts: &LoopOptions,
    ) -> Result<LoopDevice, LoopError> {
        let backing_file = OpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .open(backing)
            .map_err(|source| LoopError::Open {
                path: backing.into(),
                source,
            })?;
        let ctl_path = dev_root.join("loop-control");
        let ctl = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&ctl_path)
            .map_err(|source| LoopError::Open {
                path: ctl_path.clone(),
                source,
            })?;
        let mut info = LoopInfo64::zeroed();
        info.lo_offset = opts.offset;
        info.lo_sizelimit = opts.size_limit;
        info.lo_flags = if opts.autoclear {
            LO_FLAGS_AUTOCLEAR
        } else {
            0
        } | if opts.read_only {
            LO_FLAGS_READ_ONLY
        } else {
            0
        };
        let name = backing.as_os_str().as_encoded_bytes();
        let n = name.len().min(63);
        info.lo_file_name[..n].copy_from_slice(&name[..n]);

        const TRIES: u32 = 8;
        let mut method = opts.method;
        for _ in 0..TRIES {
            // SAFETY: `ctl` is an open loop-control fd; the ioctl takes no argument and
            // returns the number of a free (possibly new) loop device.
            let number = unsafe { ioctl::loop_ctl_get_free(ctl.as_raw_fd()) }.map_err(|e| {
                LoopError::Ioctl {
                    op: "LOOP_CTL_GET_FREE",
                    device: ctl_path.clone(),
                    backing: backing.into(),
                    source: errno(e),
                }
            })? as u32;
            let path = dev_root.join(format!("loop{number}"));
            let file = open_node(&path, !opts.read_only)?;
            let fail = |op, e| LoopError::Ioctl {
                op,
                device: path.clone(),
                backing: backing.into(),
                source: errno(e),
            };
            use nix::errno::Errno;
            if method == Method::Auto {
                let config = LoopConfig {
                    fd: backing_file.as_raw_fd() as u32,
                    block_size: 0,
                    info,
                    reserved: [0; 8],
                };
                // SAFETY: both fds are open; `config` is a live, fully initialised
                // struct loop_config the kernel only reads.
                match unsafe { ioctl::loop_configure(file.as_raw_fd(), &config) } {
                    Ok(_) => {}
                    // Someone else took this device between GET_FREE and now.
                    Err(Errno::EBUSY) => continue,
                    // A kernel before 5.8 does not know LOOP_CONFIGURE.
                    Err(Errno::EINVAL | Errno::ENOTTY) => {
                        log::debug!("LOOP_CONFIGURE unsupported; using LOOP_SET_FD");
                        method = Method::Legacy;
                    }
                    Err(e) => return Err(fail("LOOP_CONFIGURE", e)),
                }
            }
            if method == Method::Legacy {
                // SAFETY: both fds are open; LOOP_SET_FD takes the backing fd by value.
                match unsafe { ioctl::loop_set_fd(file.as_raw_fd(), backing_file.as_raw_fd()) } {
                    Ok(_) => {}
                    Err(Errno::EBUSY) => continue,
                    Err(e) => return Err(fail("LOOP_SET_FD", e)),
                }
                // SAFETY: open fd; `info` is a live struct loop_info64 the kernel reads.
                if let Err(e) = unsafe { ioctl::loop_set_status64(file.as_raw_fd(), &info) } {
                    // SAFETY: open fd; undoes the LOOP_SET_FD above.
                    let _ = unsafe { ioctl::loop_clr_fd(file.as_raw_fd()) };
                    return Err(fail("LOOP_SET_STATUS64", e));
                }
            }
            let dev = LoopDevice {
                file: Some(file),
                path,
                backing: backing.into(),
                number,
                writable: !opts.read_only,
            };
            dev.verify(opts)?;
            return Ok(dev);
        }
        Err(LoopError::Busy {
            backing: backing.into(),
            tries: TRIES,
        })
    }

    /// Checks the kernel took the offset and limit (LOOP_GET_STATUS64).
    fn verify(&self, opts: &LoopOptions) -> Result<(), LoopError> {
        let mut got = LoopInfo64::zeroed();
        let fd = self.file.as_ref().expect("attached").as_raw_fd();
        // SAFETY: open fd; the kernel fills `got`, a live struct loop_info64.
        unsafe { ioctl::loop_get_status64(fd, &mut got) }.map_err(|e| LoopError::Ioctl {
            op: "LOOP_GET_STATUS64",
            device: self.path.clone(),
            backing: self.backing.clone(),
            source: errno(e),
        })?;
        if got.lo_offset != opts.offset || got.lo_sizelimit != opts.size_limit {
            return Err(LoopError::Mismatch {
                device: self.path.clone(),
                offset: opts.offset,
                limit: opts.size_limit,
                got_offset: got.lo_offset,
                got_limit: got.lo_sizelimit,
            });
        }
        Ok(())
    }

    /// `/dev/loopN` (under the dev root given to attach).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn number(&self) -> u32 {
        self.number
    }

    /// Flushes what was written through the loop device to the backing file, then
    /// detaches (LOOP_CLR_FD). While something else (a mount) still has it open, the
    /// kernel only marks it autoclear and detaches it when that user closes it.
    pub fn detach(mut self) -> Result<(), LoopError> {
        let file = self.file.take().expect("attached");
        let fail = |op, source| LoopError::Ioctl {
            op,
            device: self.path.clone(),
            backing: self.backing.clone(),
            source,
        };
        if self.writable {
            file.sync_all().map_err(|e| fail("fsync", e))?;
        }
        // SAFETY: open fd; LOOP_CLR_FD takes no argument.
        match unsafe { ioctl::loop_clr_fd(file.as_raw_fd()) } {
            // ENXIO: already detached (autoclear beat us to it).
            Ok(_) | Err(nix::errno::Errno::ENXIO) => Ok(()),
            Err(e) => Err(fail("LOOP_CLR_FD", errno(e))),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // SAFETY: open fd; LOOP_CLR_FD takes no argument. Best effort on drop.
            let _ = unsafe { ioctl::loop_clr_fd(file.as_raw_fd()) };
        }
    }
}
