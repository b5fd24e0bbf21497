//! Streaming writeback: start writing a range to the device as soon as it is written,
//! and later wait for it and drop it from the page cache. A multi-GiB image then never
//! piles up as dirty memory to be flushed all at once at the end, disk I/O overlaps the
//! download, and the cache is left to the rest of the system (the pattern `dd
//! oflag=direct` gets by bypassing the cache, without its alignment rules).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

fn sync_file_range(f: &File, offset: u64, len: u64, flags: u32) -> io::Result<()> {
    // SAFETY: sync_file_range only reads its integer arguments; the fd is open for the
    // duration of the call.
    let r = unsafe { nix::libc::sync_file_range(f.as_raw_fd(), offset as i64, len as i64, flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to start writing `[offset, offset+len)` back now; does not wait.
pub fn start(f: &File, offset: u64, len: u64) -> io::Result<()> {
    sync_file_range(f, offset, len, nix::libc::SYNC_FILE_RANGE_WRITE)
}

/// Waits until `[offset, offset+len)` is written back, then drops it from the page
/// cache. Durability still needs the final fsync (metadata, the device's cache).
pub fn finish(f: &File, offset: u64, len: u64) -> io::Result<()> {
    use nix::libc::{
        SYNC_FILE_RANGE_WAIT_AFTER, SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE,
    };
    sync_file_range(
        f,
        offset,
        len,
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER,
    )?;
    nix::fcntl::posix_fadvise(
        f,
        offset as i64,
        len as i64,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .map_err(io::Error::from)
}
