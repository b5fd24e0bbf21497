//! Where the image goes: a block device, or (host mode) a regular file.
//!
//! Zero runs are handled per kind: on a block device they become BLKZEROOUT, which is
//! correct everywhere (it reads back as zeroes, unlike discard) and fast where the device
//! has a write-zeroes command; on a file we created they become holes (the file started
//! empty, so skipping is exact); on a file that existed they are written, since its old
//! contents would otherwise show through.

use crate::sys;
use crate::sys::block::{Access, BlockDev};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

/// The size of the region written last (and zeroed on failure): the partition tables
/// and boot code of an MBR or GPT disk live in it.
pub const HEAD: u64 = 1 << 20;

/// Streaming writeback window: each window's writeback starts when it is full, and the
/// window two behind is waited for and dropped from the cache.
const WINDOW: u64 = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    BlockDevice,
    /// A regular file this run created: unwritten ranges read as zeroes.
    CreatedFile,
    ExistingFile,
}

#[derive(Debug)]
pub struct Target {
    file: File,
    /// The same descriptor as `file` for a block device, for its ioctls.
    block: Option<BlockDev>,
    path: PathBuf,
    kind: Kind,
    /// Capacity in bytes for a block device.
    size: Option<u64>,
    /// Streaming writeback: windows below `kicked` have been started, below `settled`
    /// written back and dropped from the cache.
    kicked: u64,
    settled: u64,
}

impl Target {
    /// Opens `path` for writing: a block device (exclusively: the kernel refuses while
    /// a partition is mounted or held), an existing file, or a new file.
    pub fn open(path: &Path) -> io::Result<Target> {
        let (file, kind) = match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_block_device() => {
                let bd = BlockDev::open(path, Access::WriteExclusive).map_err(io::Error::other)?;
                let size = bd.size().map_err(io::Error::other)?;
                return Ok(Target {
                    file: bd.file().try_clone()?,
                    block: Some(bd),
                    path: path.to_path_buf(),
                    kind: Kind::BlockDevice,
                    size: Some(size),
                    kicked: HEAD,
                    settled: HEAD,
                });
            }
            Ok(m) if m.is_file() => (
                OpenOptions::new().read(true).write(true).open(path)?,
                Kind::ExistingFile,
            ),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a block device or a regular file",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)?,
                Kind::CreatedFile,
            ),
            Err(e) => return Err(e),
        };
        let size = match kind {
            // A non-empty file stands for a disk of its size (a VM's disk image); an
            // empty one grows with the image.
            Kind::ExistingFile => Some(file.metadata()?.len()).filter(|l| *l > 0),
            _ => None,
        };
        Ok(Target {
            file,
            block: None,
            path: path.to_path_buf(),
            kind,
            size,
            kicked: HEAD,
            settled: HEAD,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Capacity of a block device or a non-empty existing file; `None` for a file that
    /// grows (until its filesystem is full).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    fn check_bounds(&self, offset: u64, len: u64) -> io::Result<()> {
        match self.size {
            Some(size) if offset + len > size => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("the image is larger than the device ({} bytes)", size),
            )),
            _ => Ok(()),
        }
    }

    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_bounds(offset, data.len() as u64)?;
        self.file.write_all_at(data, offset)?;
        self.stream(offset + data.len() as u64);
        Ok(())
    }

    /// Streaming writeback after a sequential write reached `end`. Best effort: a
    /// filesystem without sync_file_range only loses the overlap, the final fsync
    /// still makes everything durable.
    fn stream(&mut self, end: u64) {
        while end >= self.kicked + WINDOW {
            let _ = sys::writeback::start(&self.file, self.kicked, WINDOW);
            self.kicked += WINDOW;
            if self.kicked - self.settled > 2 * WINDOW {
                let _ = sys::writeback::finish(&self.file, self.settled, WINDOW);
                self.settled += WINDOW;
            }
        }
    }

    /// Makes `[offset, offset+len)` read as zeroes. `offset` and `len` are multiples of
    /// 4096 when called from the pipeline; other ranges are written as zeroes.
    pub fn zero(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.check_bounds(offset, len)?;
        match self.kind {
            Kind::CreatedFile => Ok(()),
            Kind::BlockDevice if offset.is_multiple_of(512) && len.is_multiple_of(512) => self
                .block
                .as_ref()
                .expect("a block device target has its BlockDev")
                .zero_range(offset, len)
                .map_err(io::Error::other),
            _ => self.write_zeroes(offset, len),
        }
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        static Z: [u8; 65536] = [0; 65536];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(Z.len() as u64) as usize;
            self.file.write_all_at(&Z[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Writes everything to stable storage.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Sets the final length of a file we created (trailing zeroes stay a hole). A
    /// file that existed keeps its size, like a disk: it may be a VM's disk image.
    pub fn set_len(&mut self, len: u64) -> io::Result<()> {
        match self.kind {
            Kind::CreatedFile => self.file.set_len(len),
            _ => Ok(()),
        }
    }

    /// Before a restart from byte 0: a created file goes back to empty so holes stay
    /// exact.
    pub fn reset(&mut self) -> io::Result<()> {
        (self.kicked, self.settled) = (HEAD, HEAD);
        if self.kind == Kind::CreatedFile {
            self.file.set_len(0)?;
            self.write_zeroes(0, HEAD)?;
        }
        Ok(())
    }

    /// Makes the target unbootable: zeroes the first MiB (protective MBR, primary GPT,
    /// boot code) and, on a target with a fixed size, the last MiB too (the backup GPT
    /// firmware falls back to when the primary is gone), then flushes.
    pub fn invalidate(&mut self) -> io::Result<()> {
        let head = match self.size {
            Some(s) => HEAD.min(s),
            None => HEAD,
        };
        self.write_zeroes(0, head)?;
        if let Some(size) = self.size
            && size > 2 * HEAD
        {
            let tail = (size - HEAD) & !4095;
            self.write_zeroes(tail, size - tail)?;
        }
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_file_skips_zero_ranges_and_existing_file_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new.img");
        let mut t = Target::open(&p).unwrap();
        assert_eq!(t.kind(), Kind::CreatedFile);
        t.write_at(0, b"abc").unwrap();
        t.zero(4096, 8192).unwrap();
        t.set_len(12288).unwrap();
        let data = std::fs::read(&p).unwrap();
        assert_eq!(&data[..3], b"abc");
        assert!(data[3..].iter().all(|b| *b == 0));
        drop(t);

        let q = dir.path().join("old.img");
        std::fs::write(&q, vec![0xFFu8; 16384]).unwrap();
        let mut t = Target::open(&q).unwrap();
        assert_eq!(t.kind(), Kind::ExistingFile);
        t.zero(4096, 8192).unwrap();
        let data = std::fs::read(&q).unwrap();
        assert!(data[4096..12288].iter().all(|b| *b == 0));
        assert!(data[..4096].iter().all(|b| *b == 0xFF));
        assert!(data[12288..].iter().all(|b| *b == 0xFF));
    }

    #[test]
    fn invalidate_zeroes_the_first_and_last_mib_of_a_fixed_size_target() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("old.img");
        std::fs::write(&q, vec![0xAAu8; 3 << 20]).unwrap();
        let mut t = Target::open(&q).unwrap();
        t.invalidate().unwrap();
        let data = std::fs::read(&q).unwrap();
        assert!(data[..1 << 20].iter().all(|b| *b == 0));
        assert!(data[1 << 20..2 << 20].iter().all(|b| *b == 0xAA));
        assert!(data[2 << 20..].iter().all(|b| *b == 0));
    }

    #[test]
    fn directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Target::open(dir.path()).is_err());
    }
}
