//! ze-pack: builds what the installer boots from. `initrd` writes the newc cpio.gz with
//! `/init`, bundled kernel modules and extra files; later subcommands build PXE trees
//! and ISOs.
#![deny(unsafe_code)]

pub mod initrd;
pub mod iso;
pub mod kmod;
pub mod newc;
