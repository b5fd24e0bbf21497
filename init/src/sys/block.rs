//! Block-device ioctls and syncs, behind safe wrappers. The raw ioctls live in the
//! private `ioctl` module (coreos-installer's layout); everything public takes a
//! [`BlockDev`] and returns a [`BlockError`] naming the device and the OS error.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

mod ioctl {
    // Request numbers from include/uapi/linux/fs.h.
    use nix::{ioctl_none, ioctl_read_bad, ioctl_write_ptr_bad, request_code_none};
    ioctl_read_bad!(
        /// BLKGETSIZE64 = _IOR(0x12, 114, size_t); the kernel writes a u64.
        blkgetsize64,
        nix::request_code_read!(0x12, 114, std::mem::size_of::<nix::libc::size_t>()),
        u64
    );
    ioctl_read_bad!(
        /// BLKSSZGET = _IO(0x12, 104): the logical sector size, as an int.
        blksszget,
        request_code_none!(0x12, 104),
        nix::libc::c_int
    );
    ioctl_read_bad!(
        /// BLKROGET = _IO(0x12, 94): 1 when the device is read-only.
        blkroget,
        request_code_none!(0x12, 94),
        nix::libc::c_int
    );
    ioctl_none!(
        /// BLKRRPART = _IO(0x12, 95): re-read the partition table.
        blkrrpart,
        0x12,
        95
    );
    ioctl_none!(
        /// BLKFLSBUF = _IO(0x12, 97): write back and drop the device's page cache.
        blkflsbuf,
        0x12,
        97
    );
    ioctl_write_ptr_bad!(
        /// BLKZEROOUT = _IO(0x12, 127): zero `[start, len]` bytes.
        blkzeroout,
        request_code_none!(0x12, 127),
        [u64; 2]
    );
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("opening {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a block device")]
    NotBlock { path: PathBuf },
    #[error("{op} on {path}: {source}")]
    Ioctl {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{op} {path}: {source}")]
    Sync {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// How to open a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// O_EXCL on a block device: fails with EBUSY while any partition is mounted or
    /// held, and keeps others from claiming it. BLKRRPART must then go through this
    /// same handle (the kernel refuses a re-read from a second, non-exclusive opener).
    WriteExclusive,
}

/// An open block device.
#[derive(Debug)]
pub struct BlockDev {
    file: File,
    path: PathBuf,
}

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl BlockDev {
    /// Opens `path`, which must be a block device.
    pub fn open(path: &Path, access: Access) -> Result<BlockDev, BlockError> {
        let mut o = OpenOptions::new();
        o.read(true);
        match access {
            Access::Read => {}
            Access::Write => {
                o.write(true);
            }
            Access::WriteExclusive => {
                o.write(true).custom_flags(nix::libc::O_EXCL);
            }
        }
        let file = o.open(path).map_err(|source| BlockError::Open {
            path: path.into(),
            source,
        })?;
        let is_block = file
            .metadata()
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        if !is_block {
            return Err(BlockError::NotBlock { path: path.into() });
        }
        Ok(BlockDev {
            file,
            path: path.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, for reads and writes.
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn into_file(self) -> File {
        self.file
    }

    fn ioctl_err(&self, op: &'static str, e: nix::errno::Errno) -> BlockError {
        BlockError::Ioctl {
            op,
            path: self.path.clone(),
            source: errno(e),
        }
    }

    /// Size in bytes (BLKGETSIZE64).
    pub fn size(&self) -> Result<u64, BlockError> {
        let mut v: u64 = 0;
        // SAFETY: the fd is open for the lifetime of `self.file`, and `v` is a live u64
        // the kernel writes exactly 8 bytes into.
        unsafe { ioctl::blkgetsize64(self.file.as_raw_fd(), &mut v) }
            .map_err(|e| self.ioctl_err("BLKGETSIZE64", e))?;
        Ok(v)
    }

    /// Logical sector size in bytes (BLKSSZGET).
    pub fn logical_sector_size(&self) -> Result<u64, BlockError> {
        let mut v: nix::libc::c_int = 0;
        // SAFETY: open fd; the kernel writes one int into `v`.
        unsafe { ioctl::blksszget(self.file.as_raw_fd(), &mut v) }
            .map_err(|e| self.ioctl_err("BLKSSZGET", e))?;
        Ok(v as u64)
    }

    /// Whether the kernel marks the device read-only (BLKROGET).
    pub fn read_only(&self) -> Result<bool, BlockError> {
        let mut v: nix::libc::c_int = 0;
        // SAFETY: open fd; the kernel writes one int into `v`.
        unsafe { ioctl::blkroget(self.file.as_raw_fd(), &mut v) }
            .map_err(|e| self.ioctl_err("BLKROGET", e))?;
        Ok(v != 0)
    }

    /// Asks the kernel to re-read the partition table (BLKRRPART). EBUSY while a
    /// partition is open elsewhere; EINVAL on a device without partition scanning.
    pub fn reread_partitions(&self) -> Result<(), BlockError> {
        // SAFETY: open fd; BLKRRPART takes no argument.
        unsafe { ioctl::blkrrpart(self.file.as_raw_fd()) }
            .map_err(|e| self.ioctl_err("BLKRRPART", e))?;
        Ok(())
    }

    /// Writes back and drops the device's buffer cache (BLKFLSBUF), so later reads
    /// come from the medium.
    pub fn flush_buffers(&self) -> Result<(), BlockError> {
        // SAFETY: open fd; BLKFLSBUF takes no argument.
        unsafe { ioctl::blkflsbuf(self.file.as_raw_fd()) }
            .map_err(|e| self.ioctl_err("BLKFLSBUF", e))?;
        Ok(())
    }

    /// Zeroes `len` bytes at `offset` (BLKZEROOUT; both multiples of the logical sector
    /// size). Unlike discard, this promises zeroes when read back; the kernel writes
    /// zero pages itself when the device has no write-zeroes command.
    pub fn zero_range(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        let range = [offset, len];
        // SAFETY: open fd; `range` is a live [u64; 2] the kernel only reads.
        unsafe { ioctl::blkzeroout(self.file.as_raw_fd(), &range) }
            .map_err(|e| self.ioctl_err("BLKZEROOUT", e))?;
        Ok(())
    }

    /// fsync(2): data and metadata, and a cache flush to the medium.
    pub fn fsync(&self) -> Result<(), BlockError> {
        self.file.sync_all().map_err(|source| BlockError::Sync {
            op: "fsync",
            path: self.path.clone(),
            source,
        })
    }

    /// fdatasync(2).
    pub fn fdatasync(&self) -> Result<(), BlockError> {
        self.file.sync_data().map_err(|source| BlockError::Sync {
            op: "fdatasync",
            path: self.path.clone(),
            source,
        })
    }
}

/// fsyncs a file by path (e.g. after writing and before renaming it).
pub fn fsync_path(path: &Path) -> Result<(), BlockError> {
    let sync = |source| BlockError::Sync {
        op: "fsync",
        path: path.into(),
        source,
    };
    File::open(path).and_then(|f| f.sync_all()).map_err(sync)
}

/// fsyncs a directory, making a rename or a new entry in it durable.
pub fn fsync_dir(dir: &Path) -> Result<(), BlockError> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY)
        .open(dir)
        .map_err(|source| BlockError::Sync {
            op: "opening directory",
            path: dir.into(),
            source,
        })?;
    f.sync_all().map_err(|source| BlockError::Sync {
        op: "fsync",
        path: dir.into(),
        source,
    })
}

/// Whether `path` is a block device node (following symlinks).
pub fn is_block_device(path: &Path) -> io::Result<bool> {
    Ok(std::fs::metadata(path)?.file_type().is_block_device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_not_block_devices() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert!(!is_block_device(&f).unwrap());
        assert!(is_block_device(&t.path().join("missing")).is_err());
        let e = BlockDev::open(&f, Access::Read).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{} is not a block device", f.display())
        );
        let e = BlockDev::open(&t.path().join("missing"), Access::Write).unwrap_err();
        assert!(e.to_string().starts_with("opening "), "{e}");
        fsync_path(&f).unwrap();
        fsync_dir(t.path()).unwrap();
        assert!(fsync_dir(&f).is_err(), "a file is not a directory");
    }
}
