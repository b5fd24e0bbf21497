//! ze-pack: builds what the installer boots from. `initrd` writes the newc cpio.gz with
//! `/init`, bundled kernel modules and extra files; `pxe` writes a static tree for
//! dnsmasq and nginx; later subcommands build ISOs.
#![deny(unsafe_code)]

pub mod initrd;
pub mod iso;
pub mod kmod;
pub mod newc;
pub mod pxe;
