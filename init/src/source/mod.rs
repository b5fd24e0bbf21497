//! Where image bytes come from. Each source yields a reader of the image as stored (a
//! gzip image stays compressed: the digest covers the stored bytes).
//!
//! - [`http`]: the install server (PXE).
//! - [`media`]: finding the ISO medium on a disk, partition or CD-ROM ([`iso`] is its
//!   contract, [`probe`] the signatures, [`ventoy`] ISO files on FAT/exFAT).

pub mod http;
pub mod iso;
pub mod media;
pub mod probe;
pub mod ventoy;

use std::io;

/// Returned (inside an `io::Error`) by a source that could not resume and started over
/// from byte 0 — a server that ignores `Range`. The reader then yields the image from
/// its first byte, and the pipeline must restart its hash, decoder and write position.
#[derive(Debug)]
pub struct Restarted;

impl std::fmt::Display for Restarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the source restarted from byte 0")
    }
}

impl std::error::Error for Restarted {}

pub fn restarted() -> io::Error {
    io::Error::other(Restarted)
}

pub fn is_restart(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<Restarted>())
}
