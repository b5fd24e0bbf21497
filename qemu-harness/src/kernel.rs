//! The kernels the scenarios boot. The stock Debian kernel: exactly the package that
//! `linux-image-cloud-amd64` depends on, fetched with `apt-get download` and unpacked
//! with `dpkg -x` into the cache (neither needs root); its drivers are modules the
//! initrd bundles. The custom kernel: built from `kernel-configs/` with every driver
//! built in (see [`crate::kbuild`]), booted with a module-free initrd.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// A kernel image and the module tree that goes with it.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// Root of the extracted package (holds `lib/modules/<release>`), or `None` for a
    /// kernel with everything built in.
    pub modules: Option<PathBuf>,
    pub release: String,
}

/// The metapackage whose dependency we fetch; `ZE_KERNEL_META` overrides it
/// (`linux-image-amd64` for the generic flavour).
pub fn meta_package() -> String {
    std::env::var("ZE_KERNEL_META").unwrap_or_else(|_| "linux-image-cloud-amd64".into())
}

/// The versioned package `meta` depends on, from `apt-cache depends`.
pub fn resolve_package(meta: &str) -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", meta])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_depends(&text).with_context(|| {
        format!(
            "apt-cache depends {meta} names no linux-image package (run `apt-get update`?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// First `Depends: linux-image-…` line of `apt-cache depends` output.
pub fn parse_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends: "))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && !p.starts_with('<'))
        .map(str::to_string)
}

/// The stock kernel ([`meta_package`]), downloaded and unpacked once into the cache.
pub fn stock() -> Result<Kernel> {
    debian(&meta_package())
}

/// The kernel Debian's metapackage `meta` depends on (`linux-image-amd64` for the
/// generic flavour, whose modules include USB storage, which the cloud flavour lacks),
/// downloaded and unpacked once into the cache.
pub fn debian(meta: &str) -> Result<Kernel> {
    static K: Mutex<BTreeMap<String, Result<Kernel, String>>> = Mutex::new(BTreeMap::new());
    let mut got = K.lock().unwrap_or_else(|e| e.into_inner());
    got.entry(meta.to_string())
        .or_insert_with(|| {
            fetch(&crate::cache_dir().join("kernel"), meta).map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The custom kernel of `profile` (`qemu` or `hardware`), built once into the cache
/// (`make kernel PROFILE=…` builds the same one) and reused while its inputs are
/// unchanged. It has no modules.
pub fn custom(profile: &str) -> Result<Kernel> {
    static K: Mutex<BTreeMap<String, Result<Kernel, String>>> = Mutex::new(BTreeMap::new());
    let mut built = K.lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(profile.to_string())
        .or_insert_with(|| {
            crate::kbuild::build(&crate::kbuild::Options::new(profile))
                .and_then(|o| {
                    Ok(Kernel {
                        vmlinuz: o.bzimage.context("the build produced no bzImage")?,
                        modules: None,
                        release: o.release.unwrap_or_default(),
                    })
                })
                .map_err(|e| format!("building the {profile} kernel: {e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

fn fetch(cache: &Path, meta: &str) -> Result<Kernel> {
    std::fs::create_dir_all(cache)?;
    let pkg = resolve_package(meta)?;
    let dest = cache.join(&pkg);
    // Parallel test processes share the cache: one downloads, the others wait.
    let lock = std::fs::File::create(cache.join(".lock"))?;
    lock.lock()?;
    if !dest.join(".complete").exists() {
        let tmp = cache.join(format!(".tmp-{}", std::process::id()));
        let x = crate::deb::download_and_unpack(&pkg, &tmp)?.root;
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&x, &dest)?;
        std::fs::write(dest.join(".complete"), &pkg)?;
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let vmlinuz = std::fs::read_dir(dest.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .context("package has no boot/vmlinuz-*")?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    Ok(Kernel {
        vmlinuz,
        modules: Some(dest),
        release,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_line_is_found() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-48-cloud-amd64\n";
        assert_eq!(
            parse_depends(out).as_deref(),
            Some("linux-image-6.1.0-48-cloud-amd64")
        );
        let alt = "x\n |Depends: <linux-image-virtual>\n  Depends: linux-image-6.1.0-9-amd64\n";
        assert_eq!(
            parse_depends(alt).as_deref(),
            Some("linux-image-6.1.0-9-amd64")
        );
        assert_eq!(parse_depends("x\n  Depends: libc6\n"), None);
    }
}
