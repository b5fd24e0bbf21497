//! Prerequisites of the QEMU and root tiers. A missing one skips the test locally and
//! fails it under `CI=true`, so CI can never go green by skipping.

use std::process::Command;

pub fn is_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Whether `cmd` is on PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Checks every command; on a miss, panics under CI and returns false otherwise.
pub fn require(cmds: &[&str]) -> bool {
    let missing: Vec<&str> = cmds.iter().copied().filter(|c| !have(c)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("missing {} (make deps installs them)", missing.join(", "));
    assert!(!is_ci(), "{msg}; required under CI=true");
    eprintln!("SKIP: {msg}");
    false
}

/// Checks that `path` exists (`what` says which package provides it); on a miss,
/// panics under CI and returns false otherwise.
pub fn require_path(path: &std::path::Path, what: &str) -> bool {
    if path.exists() {
        return true;
    }
    let msg = format!("missing {} ({what})", path.display());
    assert!(!is_ci(), "{msg}; required under CI=true");
    eprintln!("SKIP: {msg}");
    false
}

/// Root is needed for network namespaces and loop devices.
pub fn require_root() -> bool {
    if nix_is_root() {
        return true;
    }
    assert!(!is_ci(), "this test needs root under CI=true");
    eprintln!("SKIP: needs root");
    false
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
