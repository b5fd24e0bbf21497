//! Block-device ioctls, as safe wrappers.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

mod ioctl {
    // <linux/fs.h>: BLKGETSIZE64 _IOR(0x12,114,size_t), BLKZEROOUT _IO(0x12,127) taking
    // a u64[2] {start, len}, BLKRRPART _IO(0x12,95).
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
    nix::ioctl_none!(blkrrpart, 0x12, 95);
}

/// Size of a block device in bytes.
pub fn size(f: &File) -> io::Result<u64> {
    let mut n: u64 = 0;
    // SAFETY: the fd is open for the duration of the call and `n` is a valid u64 the
    // kernel writes into.
    unsafe { ioctl::blkgetsize64(f.as_raw_fd(), &mut n) }.map_err(io::Error::from)?;
    Ok(n)
}

/// Zeroes `len` bytes at `offset` (both multiples of 512). The kernel uses the device's
/// write-zeroes command where it has one and writes zero pages otherwise, so the result
/// reads back as zeroes on every device (discard does not promise that).
pub fn zero_out(f: &File, offset: u64, len: u64) -> io::Result<()> {
    let range = [offset, len];
    // SAFETY: the fd is open and `range` is a valid [u64; 2] that outlives the call.
    unsafe { ioctl::blkzeroout(f.as_raw_fd(), &range) }.map_err(io::Error::from)?;
    Ok(())
}

/// Asks the kernel to re-read the partition table.
pub fn reread_partitions(f: &File) -> io::Result<()> {
    // SAFETY: the fd is open; BLKRRPART takes no argument.
    unsafe { ioctl::blkrrpart(f.as_raw_fd()) }.map_err(io::Error::from)?;
    Ok(())
}
