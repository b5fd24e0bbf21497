//! A per-scenario working directory under `target/qemu-runs/`. It holds the serial logs,
//! QEMU's own output and the disk images; it is removed when the scenario passes and
//! kept (with its path printed) when it fails, or always with `ZE_KEEP=1`.

use std::path::{Path, PathBuf};

pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(name: &str) -> RunDir {
        let path = crate::workspace_root().join("target/qemu-runs").join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating run directory");
        RunDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("ZE_KEEP").is_some() {
            eprintln!("kept run directory {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
