//! Debian packages fetched without installing them: `apt-get download` (no root needed
//! for that step) and `dpkg -x`. The stock kernel and the iPXE binaries come this way.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An unpacked package.
pub struct Unpacked {
    /// The downloaded `.deb`.
    pub deb: PathBuf,
    /// Where its files are (`<tmp>/x`).
    pub root: PathBuf,
}

/// Downloads `pkg` into `tmp` (emptied first) and unpacks it into `<tmp>/x`.
pub fn download_and_unpack(pkg: &str, tmp: &Path) -> Result<Unpacked> {
    let _ = std::fs::remove_dir_all(tmp);
    std::fs::create_dir_all(tmp)?;
    let st = Command::new("apt-get")
        .args(["download", "-q", pkg])
        .current_dir(tmp)
        .status()
        .with_context(|| format!("running apt-get download {pkg}"))?;
    if !st.success() {
        bail!("apt-get download {pkg} failed (run `apt-get update`?)");
    }
    let deb = std::fs::read_dir(tmp)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download produced no .deb")?;
    let root = tmp.join("x");
    let st = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .context("running dpkg -x")?;
    if !st.success() {
        bail!("dpkg -x {} failed", deb.display());
    }
    Ok(Unpacked { deb, root })
}
