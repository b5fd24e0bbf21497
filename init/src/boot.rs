//! The install as one linear sequence of stages, top to bottom. A stage that must
//! succeed returns its error with `?` and becomes the single FATAL line; a best-effort
//! stage logs a warning and the sequence goes on.

use crate::config::{self, Parsed};
use crate::{disk, logger, modules, net};
use std::fmt;
use std::path::PathBuf;

/// The roots of the real (or fixture) system. Only `main`/`pid1` name the real paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
    /// Where the packer's module bundle lives.
    pub bundle: PathBuf,
}

impl Env {
    pub fn real() -> Env {
        Env {
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            dev_root: "/dev".into(),
            bundle: PathBuf::from("/").join(modules::BUNDLE_DIR),
        }
    }
}

/// A stage's failure: printed once as `[ze-install] FATAL: <stage>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    pub stage: &'static str,
    pub message: String,
}

impl Fatal {
    pub fn new(stage: &'static str, message: impl fmt::Display) -> Fatal {
        Fatal {
            stage,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.stage, self.message)
    }
}

/// Reads and validates the kernel command line.
pub fn configure(env: &Env) -> Result<Parsed, Fatal> {
    let path = env.proc_root.join("cmdline");
    let line = std::fs::read_to_string(&path)
        .map_err(|e| Fatal::new("config", format!("reading {}: {e}", path.display())))?;
    let parsed = config::from_cmdline(&line).map_err(|e| Fatal::new("config", e))?;
    logger::set_level(parsed.config.log.to_filter());
    for w in &parsed.warnings {
        log::warn!("{w}");
    }
    Ok(parsed)
}

/// Loads the bundled modules the hardware needs. Best effort: the caller only warns.
pub fn load_modules(env: &Env) -> Result<modules::Report, String> {
    if !env.bundle.exists() {
        log::info!("no bundled modules (kernel with built-in drivers)");
        return Ok(modules::Report::default());
    }
    let index = modules::read_index(&env.bundle).map_err(|e| {
        format!(
            "reading {}: {e}",
            env.bundle.join(modules::INDEX_FILE).display()
        )
    })?;
    let running = crate::sys::kernel_release();
    if index.kernel != running {
        log::warn!(
            "modules were bundled for kernel {} but {running} is running; they will not load",
            index.kernel
        );
    }
    let started = std::time::Instant::now();
    let report = modules::coldplug(
        &index,
        &env.bundle,
        &env.sys_root,
        &mut modules::KernelLoader,
        modules::Settle::default(),
    );
    log::info!(
        "modules: {} loaded, {} failed, {} rounds, {} ms",
        report.loaded.len(),
        report.failed.len(),
        report.rounds,
        started.elapsed().as_millis()
    );
    Ok(report)
}

/// Prints what the machine has: disks, interfaces, and the configuration.
pub fn print_inventory(env: &Env, parsed: &Parsed) {
    let disks = disk::scan(&env.sys_root);
    log::info!("block devices: {}", disks.len());
    for d in &disks {
        log::info!(
            "  disk {:<10} {:>10}  removable={} ro={}  model={}",
            d.name,
            disk::human_size(d.size),
            u8::from(d.removable),
            u8::from(d.read_only),
            if d.model.is_empty() { "-" } else { &d.model }
        );
    }
    let nics = net::interfaces(&env.sys_root);
    log::info!("network interfaces: {}", nics.len());
    for n in &nics {
        log::info!(
            "  nic  {:<10} mac={} driver={} state={}",
            n.name,
            n.mac,
            if n.driver.is_empty() { "-" } else { &n.driver },
            n.operstate
        );
    }
    let json = serde_json::to_string(&parsed.config).unwrap_or_default();
    log::info!("config: {json}");
}

/// The whole sequence. Until the network and install stages land it ends after the
/// inventory, and the caller prints READY and powers off.
pub fn run(env: &Env) -> Result<(), Fatal> {
    let parsed = configure(env)?;
    if let Err(e) = load_modules(env) {
        log::warn!("loading modules: {e}");
    }
    print_inventory(env, &parsed);
    Ok(())
}
