//! The QEMU harness: fetch a stock Debian kernel, build the initrd with `ze-pack`, boot
//! it under TCG, and judge the result from outside — the serial console's lines, QEMU's
//! exit, and (in later scenarios) the bytes on the virtual disks. `netns` builds
//! isolated networks with real servers for the root-tier network tests; `pxe` puts a
//! `ze-pack pxe` tree behind dnsmasq and nginx there.
#![deny(unsafe_code)]

pub mod artifacts;
pub mod bench_iso;
pub mod deb;
pub mod exfat;
pub mod fixture;
pub mod kbuild;
pub mod kconfig;
pub mod kernel;
pub mod media;
pub mod netns;
pub mod pcap;
pub mod prereq;
pub mod pxe;
pub mod qemu;
pub mod rundir;
pub mod server;

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate has a parent directory")
        .to_path_buf()
}

/// Where downloads and builds are cached: `$ZE_CACHE`, else `<workspace>/target/ze-cache`.
pub fn cache_dir() -> std::path::PathBuf {
    std::env::var_os("ZE_CACHE")
        .map(Into::into)
        .unwrap_or_else(|| workspace_root().join("target/ze-cache"))
}
