//! `ze-pack initrd`: `/init`, the module bundle, and extra files, as one reproducible
//! newc cpio.gz.

use crate::kmod::{self, Tree};
use crate::newc::Archive;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use ze_init::modules::{BUNDLE_DIR, INDEX_FILE};

/// Everything `ze-pack initrd` takes.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub init: PathBuf,
    pub modules: Option<PathBuf>,
    /// `none`, `qemu` or `hardware`; `None` means qemu when a tree is given.
    pub profile: Option<String>,
    pub extra_modules: Vec<String>,
    /// (source, destination inside the initrd)
    pub files: Vec<(PathBuf, String)>,
    /// A kldload answers file, baked as /etc/kldload/autoinstall.env.
    pub answers: Option<PathBuf>,
}

/// What was packed, for the caller to print.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub modules: Vec<String>,
    pub missing: Vec<String>,
    pub entries: usize,
    pub kernel: Option<String>,
}

/// Parses `SRC:DEST`.
pub fn parse_file_arg(s: &str) -> Result<(PathBuf, String)> {
    let (src, dest) = s
        .rsplit_once(':')
        .with_context(|| format!("--file {s:?}: expected SRC:DEST"))?;
    if src.is_empty() || dest.is_empty() {
        bail!("--file {s:?}: expected SRC:DEST");
    }
    crate::newc::archive_path(dest).with_context(|| format!("--file {s:?}"))?;
    Ok((PathBuf::from(src), dest.to_string()))
}

pub fn build(spec: &Spec, mtime: u32) -> Result<(Vec<u8>, Summary)> {
    let mut a = Archive::new(mtime);
    let mut summary = Summary::default();
    let init = std::fs::read(&spec.init)
        .with_context(|| format!("reading init binary {}", spec.init.display()))?;
    if !init.starts_with(b"\x7fELF") {
        bail!("{} is not an ELF executable", spec.init.display());
    }
    a.add_file("/init", init, 0o755)?;
    // Mount points PID 1 needs before devtmpfs exists.
    for d in ["/dev", "/proc", "/sys", "/run", "/tmp"] {
        a.add_dir(d)?;
    }

    let profile = spec.profile.clone().unwrap_or_else(|| {
        if spec.modules.is_some() {
            "qemu"
        } else {
            "none"
        }
        .to_string()
    });
    let (wanted, always) = kmod::profile(&profile)?;
    let wanted: Vec<String> = wanted
        .iter()
        .map(|s| s.to_string())
        .chain(spec.extra_modules.iter().cloned())
        .collect();
    match &spec.modules {
        None if !wanted.is_empty() || !always.is_empty() => {
            bail!("--profile {profile} and --module need --modules <tree>")
        }
        None => {}
        Some(tree_path) => {
            let tree = Tree::open(tree_path)?;
            let always: Vec<String> = always.iter().map(|s| s.to_string()).collect();
            // Profile modules a kernel flavour lacks are reported; named ones must exist.
            for m in &spec.extra_modules {
                kmod::resolve(&tree, std::slice::from_ref(m), &[], true)?;
            }
            let bundle = kmod::resolve(&tree, &wanted, &always, false)?;
            let dir = format!("/{BUNDLE_DIR}");
            for (file, data) in bundle.files {
                a.add_file(&format!("{dir}/{file}"), data, 0o644)?;
            }
            let index = serde_json::to_vec_pretty(&bundle.index)?;
            a.add_file(&format!("{dir}/{INDEX_FILE}"), index, 0o644)?;
            summary.modules = bundle
                .index
                .modules
                .iter()
                .map(|m| m.name.clone())
                .collect();
            summary.missing = bundle.missing;
            summary.kernel = Some(tree.release);
        }
    }

    if let Some(answers) = &spec.answers {
        let data = std::fs::read(answers)
            .with_context(|| format!("reading answers file {}", answers.display()))?;
        a.add_file("/etc/kldload/autoinstall.env", data, 0o600)?;
    }
    for (src, dest) in &spec.files {
        let data = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(src)?.permissions().mode();
            if m & 0o111 != 0 { 0o755 } else { 0o644 }
        };
        a.add_file(dest, data, mode)?;
    }
    summary.entries = a.paths().len();
    Ok((a.to_gzip()?, summary))
}
