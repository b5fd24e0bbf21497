//! The binaries under test, built once per test process with the same commands the
//! Makefile uses, so a scenario never boots a stale `/init`.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub const MUSL: &str = "x86_64-unknown-linux-musl";

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(crate::workspace_root());
    c
}

fn build(args: &[&str]) -> Result<()> {
    let st = cargo()
        .arg("build")
        .args(args)
        .status()
        .context("running cargo build")?;
    if !st.success() {
        bail!("cargo build {} failed", args.join(" "));
    }
    Ok(())
}

/// The release `ze-init` for the initrd (static musl), optionally with extra features.
pub fn ze_init_with(features: &[&str]) -> Result<PathBuf> {
    static PLAIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let target_dir = crate::workspace_root().join("target");
    if features.is_empty() {
        return PLAIN
            .get_or_init(|| {
                build(&["--release", "--target", MUSL, "-p", "ze-init"])
                    .map(|_| target_dir.join(MUSL).join("release/ze-init"))
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(anyhow::Error::msg);
    }
    // A separate target dir keeps feature builds from replacing the release binary.
    let dir = target_dir.join("features");
    let f = features.join(",");
    build(&[
        "--release",
        "--target",
        MUSL,
        "-p",
        "ze-init",
        "--features",
        &f,
        "--target-dir",
        dir.to_str().unwrap(),
    ])?;
    Ok(dir.join(MUSL).join("release/ze-init"))
}

pub fn ze_init() -> Result<PathBuf> {
    ze_init_with(&[])
}

/// `ze-init` built for the host (debug profile), for host-mode tests such as
/// `ze-init dhcp`: quick to rebuild, and the same code as `/init`.
pub fn ze_init_host() -> Result<PathBuf> {
    static P: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    P.get_or_init(|| {
        build(&["-p", "ze-init"])
            .map(|_| crate::workspace_root().join("target/debug/ze-init"))
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// The `ze-pack` host binary.
pub fn ze_pack() -> Result<PathBuf> {
    static P: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    P.get_or_init(|| {
        build(&["--release", "-p", "ze-pack"])
            .map(|_| crate::workspace_root().join("target/release/ze-pack"))
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Packs an initrd with `ze-pack initrd` for `kernel` (its modules with the `qemu`
/// profile, or none for a kernel with built-in drivers), plus `extra` arguments.
pub fn initrd(
    out: &std::path::Path,
    init: &std::path::Path,
    kernel: &crate::kernel::Kernel,
    extra: &[&str],
) -> Result<PathBuf> {
    let mut c = Command::new(ze_pack()?);
    c.arg("initrd")
        .arg("--init")
        .arg(init)
        .arg("--out")
        .arg(out);
    if let Some(m) = &kernel.modules {
        c.arg("--modules").arg(m);
    }
    c.args(extra);
    let o = c.output().context("running ze-pack")?;
    if !o.status.success() {
        bail!(
            "ze-pack initrd failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(out.to_path_buf())
}
