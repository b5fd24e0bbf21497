//! The install as one linear sequence of stages, top to bottom. A stage that must
//! succeed returns its error with `?` and becomes the single FATAL line; a best-effort
//! stage logs a warning and the sequence goes on.

use crate::config::{self, Source};
use crate::config::{ConfigBuilder, ConfigError, MergeError, Parsed, answers};
use crate::{disk, fault, install, logger, modules, net, status, write};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The roots of the real (or fixture) system. Only `main`/`pid1` name the real paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
    /// Where the packer's module bundle lives.
    pub bundle: PathBuf,
    /// The answers file baked into the initrd (`ze-pack initrd --answers`); absent is fine.
    pub answers: PathBuf,
    /// Where private mount points are made (a tmpfs).
    pub run_root: PathBuf,
    /// Written with the lease's DNS servers, when set (PID 1 only).
    pub resolv_conf: Option<PathBuf>,
}

impl Env {
    pub fn real() -> Env {
        Env {
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            dev_root: "/dev".into(),
            bundle: PathBuf::from("/").join(modules::BUNDLE_DIR),
            answers: answers::INITRD_PATH.into(),
            run_root: "/run".into(),
            resolv_conf: Some("/etc/resolv.conf".into()),
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

/// The configuration so far, and every source it was built from, so that a source that
/// arrives later (ISO media, the `kldload.answers` file) is merged at its own rank.
#[derive(Debug, Clone)]
pub struct Configured {
    pub builder: ConfigBuilder,
    pub parsed: Parsed,
}

impl Configured {
    /// After the ISO media is mounted: merge its `/ze-install/autoinstall.env`
    /// ([`answers::ISO_PATH`]) if it has one. `file` names it in messages, e.g.
    /// `"/ze-install/autoinstall.env on /dev/sr0"`.
    pub fn merge_iso_answers(&mut self, file: &str, bytes: &[u8]) -> Result<(), Fatal> {
        let parsed = self
            .builder
            .merge_iso_answers(file, bytes)
            .map_err(merge_fatal)?;
        log::info!("answers: merged {file}");
        self.update(parsed);
        Ok(())
    }

    /// After the network is up and [`answers::fetch_answers`] found a file: merge it. If
    /// `self.parsed.config.ip` changed, the network stage must apply the new one.
    pub fn merge_url_answers(&mut self, url: &str, bytes: &[u8]) -> Result<(), Fatal> {
        let parsed = self
            .builder
            .merge_url_answers(url, bytes)
            .map_err(merge_fatal)?;
        log::info!("answers: merged {url}");
        self.update(parsed);
        Ok(())
    }

    /// `kldload.answers=auto` found no file (404 on every URL): settle without one.
    pub fn no_url_answers(&mut self) -> Result<(), Fatal> {
        let parsed = self.builder.no_url_answers().map_err(config_fatal)?;
        log::info!("answers: no per-machine or default answers file on the server");
        self.update(parsed);
        Ok(())
    }

    fn update(&mut self, parsed: Parsed) {
        report(Some(&self.parsed), &parsed);
        self.parsed = parsed;
    }
}

fn config_fatal(e: ConfigError) -> Fatal {
    Fatal::new("config", e)
}

fn merge_fatal(e: MergeError) -> Fatal {
    Fatal::new("config", e)
}

/// Applies the log level and logs the warnings `before` did not already have.
fn report(before: Option<&Parsed>, parsed: &Parsed) {
    // The recovery console's policy follows the newest configuration.
    crate::rescue::remember(&parsed.config);
    logger::set_level(parsed.config.log.to_filter());
    for w in &parsed.warnings {
        if !before.is_some_and(|b| b.warnings.contains(w)) {
            log::warn!("{w}");
        }
    }
}

/// Reads an answers file into `builder` as the initrd's. A missing file is fine when
/// `required` is false (PID 1: most initrds have none).
pub fn read_initrd_answers(
    builder: &mut ConfigBuilder,
    path: &Path,
    required: bool,
) -> Result<(), Fatal> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            log::debug!("answers: no {}", path.display());
            return Ok(());
        }
        Err(e) => {
            return Err(Fatal::new(
                "config",
                format!("reading {}: {e}", path.display()),
            ));
        }
    };
    let name = path.display().to_string();
    builder
        .add_initrd_answers(&name, &bytes)
        .map_err(|e| Fatal::new("config", e))?;
    log::info!("answers: read {name}");
    Ok(())
}

/// Reads the initrd's answers file and the kernel command line, and validates them.
pub fn configure(env: &Env) -> Result<Configured, Fatal> {
    let path = env.proc_root.join("cmdline");
    let line = std::fs::read_to_string(&path)
        .map_err(|e| Fatal::new("config", format!("reading {}: {e}", path.display())))?;
    configure_from(Some((&env.answers, false)), &line)
}

/// Builds the configuration from an answers file read as the initrd's (`(path,
/// required)`; a missing optional file is fine) and a command line, applies the log level
/// and logs the warnings. PID 1 and host mode share it.
pub fn configure_from(answers: Option<(&Path, bool)>, cmdline: &str) -> Result<Configured, Fatal> {
    let mut builder = ConfigBuilder::new();
    if let Some((path, required)) = answers {
        read_initrd_answers(&mut builder, path, required)?;
    }
    builder.add_cmdline(cmdline);
    let parsed = builder.build().map_err(config_fatal)?;
    report(None, &parsed);
    Ok(Configured { builder, parsed })
}

/// Loads the bundled modules the hardware needs. Best effort: the caller only warns.
/// Returns the coldplug state, for drivers of devices that appear later (`None`
/// without a bundle).
pub fn load_modules(env: &Env) -> Result<Option<modules::Plug>, String> {
    if !env.bundle.exists() {
        log::info!("no bundled modules (kernel with built-in drivers)");
        return Ok(None);
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
    let mut plug = modules::Plug::new(index, &env.bundle, &env.sys_root);
    plug.coldplug(&mut modules::KernelLoader, modules::Settle::default());
    let report = &plug.report;
    log::info!(
        "modules: {} loaded, {} failed, {} rounds, {} ms",
        report.loaded.len(),
        report.failed.len(),
        report.rounds,
        started.elapsed().as_millis()
    );
    Ok(Some(plug))
}

/// The media scan's clock: between looks it loads the drivers of devices that appeared
/// since coldplug. A USB stick enumerates a second or more after its host controller's
/// driver loads, and on a stock kernel its SCSI disk then needs sd_mod.
struct HotplugClock<'a> {
    clock: crate::source::media::RealClock,
    plug: Option<&'a mut modules::Plug>,
}

impl crate::source::media::Clock for HotplugClock<'_> {
    fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }
    fn sleep(&mut self, d: Duration) {
        self.clock.sleep(d);
        if let Some(plug) = self.plug.as_deref_mut() {
            plug.hotplug(&mut modules::KernelLoader);
        }
    }
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
    let json = serde_json::to_string(&parsed.sources).unwrap_or_default();
    log::debug!("config sources: {json}");
}

/// How PID 1 ends a successful run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An HTTP install: boot the new system.
    Reboot,
    /// An ISO install (never reboot with the media in), or a dry run.
    PowerOff,
}

/// The whole sequence, top to bottom.
pub fn run(env: &Env) -> Result<Finish, Fatal> {
    let mut configured = configure(env)?;
    fault::point("config")?;
    let mut plug = load_modules(env).unwrap_or_else(|e| {
        log::warn!("loading modules: {e}");
        None
    });
    print_inventory(env, &configured.parsed);
    match configured.parsed.config.source {
        Source::Http => http_install(env, &mut configured),
        Source::Iso => iso_install(env, &mut configured, plug.as_mut()),
    }
}

/// The PXE install: network, per-machine answers, disk decision, download and write,
/// database, reboot. From the moment the network is up the machine reports its status.
fn http_install(env: &Env, c: &mut Configured) -> Result<Finish, Fatal> {
    fault::point("network")?;
    let (chosen, mut lease) = network(env, &c.parsed.config)?;
    if let Some(a) = c.parsed.config.answers.clone()
        && c.builder.url_answers_pending()
    {
        let before = c.parsed.config.ip.clone();
        fetch_url_answers(env, c, &a, &chosen)?;
        if c.parsed.config.ip != before {
            log::info!("network: the answers file changed the network configuration; applying it");
            drop(lease.take());
            if let Ok(mut nl) = net::netlink::RtNetlink::open() {
                let idx = net::netlink::Netlink::links(&mut nl)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|l| l.name == chosen.interface)
                    .map(|l| l.index);
                if let Some(i) = idx
                    && let Err(e) = net::netlink::Netlink::flush(&mut nl, i)
                {
                    log::warn!("network: flushing {}: {e}", chosen.interface);
                }
            }
            lease = network(env, &c.parsed.config)?.1;
        }
    }
    let cfg = c.parsed.config.clone();
    let report = reporter(env, &cfg, &chosen);
    let result = http_write(env, &cfg, &report);
    match &result {
        Ok(_) => {}
        Err(f) => report.failed(&f.to_string()),
    }
    report.finish(Duration::from_secs(3));
    drop(lease);
    result
}

/// The status reporter for this install (a no-op without `ze.report`).
fn reporter(env: &Env, cfg: &config::Config, chosen: &net::stage::Chosen) -> status::Reporter {
    let url = cfg
        .report_prefix()
        .map(|p| status::document_url(&p, &chosen.mac));
    let r = status::Reporter::start(url, status::Machine::read(&env.sys_root));
    r.network(status::Network {
        interface: chosen.interface.clone(),
        mac: chosen.mac.clone(),
        address: chosen.address.map(|a| match chosen.prefix {
            Some(p) => format!("{a}/{p}"),
            None => a.to_string(),
        }),
        method: chosen.method.into(),
    });
    r.image(&cfg.image);
    r.stage(status::Stage::Plan);
    r
}

/// Disk decision, download and write, database: everything after the network.
fn http_write(env: &Env, cfg: &config::Config, report: &status::Reporter) -> Result<Finish, Fatal> {
    fault::point("disk")?;
    let decision = disk::plan(
        disk::Roots::from(env),
        disk::Request {
            mode: disk::Mode::Http,
            target: cfg.target.as_deref(),
            exclude: &[],
        },
    );
    for line in decision.log_lines() {
        log::info!("{line}");
    }
    let decision_json = serde_json::to_value(&decision).unwrap_or_default();
    let disk = decision.into_target().map_err(|e| Fatal::new("disk", e))?;
    let target = env.dev_root.join(&disk.name);
    report.disk(&target.display().to_string(), decision_json);

    let client = install::client(cfg);
    let expected = install::expected_digest(cfg, &client)?;
    let database = install::fetch_database(&client)?;
    if cfg.dry_run {
        let dl = client
            .open(&install::image_path(&cfg.image))
            .map_err(|e| Fatal::new("download", e))?;
        if let Some(total) = dl.total() {
            disk::check_fits(&disk, total).map_err(|e| Fatal::new("disk", e))?;
        }
        log::info!(
            "dry run: would write {} to {} and inject {} bytes of database; nothing written",
            dl.url(),
            target.display(),
            database.len()
        );
        logger::marker("READY");
        return Ok(Finish::PowerOff);
    }
    fault::point("write")?;
    let progress = Arc::new(write::Progress::new());
    report.download(progress.clone());
    let (outcome, written) =
        install::download_and_write(cfg, &client, &target, expected, &progress)?;
    // The exclusive handle goes before the partition table is re-read.
    drop(written);
    report.stage(status::Stage::Inject);
    if let Err(f) = install::inject_database(
        install::Written::Disk(&disk),
        &env.sys_root,
        &env.dev_root,
        &env.run_root,
        &database,
    ) {
        install::unbootable(&target);
        return Err(f);
    }
    let done = install::done_line(&cfg.image, &outcome);
    logger::marker(&done);
    report.done(&done);
    Ok(Finish::Reboot)
}

// --- ISO install (docs/iso.md) ---

/// `ze.media-id`, which an ISO install cannot do without.
pub fn required_media_id(c: &Configured) -> Result<String, Fatal> {
    c.parsed
        .config
        .media_id
        .clone()
        .ok_or_else(|| Fatal::new("config", "ze.media-id: is required when ze.source=iso"))
}

/// The ISO/USB/Ventoy install: find the medium (and merge its answers file), decide the
/// disk with the medium excluded, write the image in one verified pass, power off.
fn iso_install(
    env: &Env,
    c: &mut Configured,
    plug: Option<&mut modules::Plug>,
) -> Result<Finish, Fatal> {
    use crate::source::media::{self, FindError, KernelOps, RealClock};
    skip_url_answers(c)?;
    let media_id = required_media_id(c)?;
    log::info!(
        "media: looking for ze.media-id={media_id} on every disk, partition and CD-ROM (up to {} s)",
        media::MEDIA_WAIT.as_secs()
    );
    let mut ops = KernelOps {
        dev_root: &env.dev_root,
        run_root: &env.run_root,
    };
    let before = c.clone();
    let found = media::find(
        &env.sys_root,
        &env.dev_root,
        &media_id,
        &mut ops,
        &mut HotplugClock {
            clock: RealClock::start(),
            plug,
        },
        media::MEDIA_WAIT,
        &mut |root, label| judge_medium(&before, root, label, &media_id),
    )
    .map_err(|e| match e {
        FindError::Fatal(f) => f,
        other => Fatal::new("media", other),
    })?;
    let (configured, contents) = found.value.clone();
    *c = configured;
    let cfg = c.parsed.config.clone();
    log::info!(
        "media: {} holds {} ({} stored, {}), sha256 {} from its sidecar",
        found.medium.label,
        contents.name,
        disk::human_size(contents.stored_bytes),
        contents
            .image_bytes
            .map(|n| format!("{} written", disk::human_size(n)))
            .unwrap_or_else(|| "written size unknown".into()),
        contents.sha256
    );

    let decision = disk::plan(
        disk::Roots::from(env),
        disk::Request {
            mode: disk::Mode::Iso,
            target: cfg.target.as_deref(),
            exclude: &found.medium.exclude,
        },
    );
    for line in decision.log_lines() {
        log::info!("{line}");
    }
    let disk = decision.into_target().map_err(|e| Fatal::new("disk", e))?;
    if let Some(n) = contents.image_bytes {
        disk::check_fits(&disk, n).map_err(|e| Fatal::new("disk", e))?;
    }
    let target = env.dev_root.join(&disk.name);
    let expected = install::media_digest(&cfg, &contents);
    if cfg.dry_run {
        log::info!(
            "dry run: would write {} from {} to {}; nothing written",
            contents.name,
            found.medium.label,
            target.display()
        );
        logger::marker("READY");
        return Ok(Finish::PowerOff);
    }
    let progress = write::Progress::new();
    let (outcome, written) = install::write_from_media(&contents, &target, expected, &progress)?;
    drop(written);
    logger::marker(&install::done_line(&cfg.image, &outcome));
    for e in found.release() {
        log::warn!("media: {e}");
    }
    // Never reboot with the medium still in: the firmware would boot it again.
    Ok(Finish::PowerOff)
}

/// An ISO install has no network: a `kldload.answers` file is not fetched, and the
/// configuration is settled (and checked) without it. Host mode shares it.
pub fn skip_url_answers(c: &mut Configured) -> Result<(), Fatal> {
    if !c.builder.url_answers_pending() {
        return Ok(());
    }
    log::warn!(
        "kldload.answers is not fetched by an ISO install (no network); put the file on the medium (ze-pack iso --answers)"
    );
    let parsed = c.builder.no_url_answers().map_err(config_fatal)?;
    c.update(parsed);
    Ok(())
}

/// Whether the medium mounted at `root` is this boot's: its media-id, then its answers
/// file merged at its rank (it may name the disk, or even the image), then the image
/// and its sidecar. A bad answers file on the right medium stops the install. Host mode
/// (`ze-init install --media DIR`) judges its directory with it too.
pub fn judge_medium(
    c: &Configured,
    root: &Path,
    label: &str,
    media_id: &str,
) -> Result<(Configured, crate::source::iso::Contents), crate::source::media::Judged> {
    use crate::source::{iso, media::Judged};
    iso::identify(root, media_id)?;
    let mut merged = c.clone();
    if let Some(bytes) = iso::answers(root)? {
        merged
            .merge_iso_answers(&format!("{} on {label}", answers::ISO_PATH), &bytes)
            .map_err(Judged::Fatal)?;
    }
    let contents = iso::contents(root, &merged.parsed.config.image)?;
    Ok((merged, contents))
}

// --- end ISO install ---

/// The network stage; the DHCP lease (if any) stays alive while the keeper lives.
fn network(
    env: &Env,
    cfg: &config::Config,
) -> Result<(net::stage::Chosen, Option<net::dhcp_run::Keeper>), Fatal> {
    let settings = net::real::settings(cfg, None).ok_or_else(|| {
        Fatal::new(
            "config",
            "ze.server: is required (the network stage probes it)",
        )
    })?;
    let (chosen, keeper) = net::real::bring_up(&settings, &env.sys_root, &env.dev_root)
        .map_err(|e| Fatal::new("network", e))?;
    log::info!(
        "network: using {} ({}) {} {}/{} via {} in {} ms",
        chosen.interface,
        chosen.mac,
        chosen.method,
        chosen
            .address
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into()),
        chosen
            .prefix
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into()),
        chosen
            .gateway
            .map(|g| g.to_string())
            .unwrap_or_else(|| "-".into()),
        chosen.elapsed_ms
    );
    if let Some(path) = &env.resolv_conf
        && let Err(e) = net::real::write_resolv_conf(path, &chosen.dns)
    {
        log::warn!("writing {}: {e}", path.display());
    }
    Ok((chosen, keeper))
}

/// `kldload.answers=`: fetch the per-machine (or given) answers file and merge it.
fn fetch_url_answers(
    env: &Env,
    c: &mut Configured,
    a: &config::Answers,
    chosen: &net::stage::Chosen,
) -> Result<(), Fatal> {
    use config::answers::{MAX_BYTES, Reply, answers_urls, fetch_answers};
    let cfg = &c.parsed.config;
    let boot = config::Mac::parse(&chosen.mac);
    let others: Vec<config::Mac> = net::interfaces(&env.sys_root)
        .into_iter()
        .filter(|i| i.name != chosen.interface)
        .filter_map(|i| config::Mac::parse(&i.mac))
        .collect();
    let urls = answers_urls(a, cfg.server, cfg.port, boot, &others);
    let got = fetch_answers(a, &urls, |url| {
        crate::source::http::get_small(url, MAX_BYTES as u64, std::time::Duration::from_secs(10))
            .map(|(status, body)| Reply { status, body })
    })
    .map_err(|e| Fatal::new("config", e))?;
    match got {
        Some((url, bytes)) => c.merge_url_answers(&url, &bytes),
        None => c.no_url_answers(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path, cmdline: &str, answers: Option<&str>) -> Env {
        std::fs::write(dir.join("cmdline"), cmdline).unwrap();
        let file = dir.join("autoinstall.env");
        if let Some(a) = answers {
            std::fs::write(&file, a).unwrap();
        }
        Env {
            proc_root: dir.into(),
            sys_root: dir.join("sys"),
            dev_root: dir.join("dev"),
            bundle: dir.join("bundle"),
            answers: file,
            run_root: dir.join("run"),
            resolv_conf: None,
        }
    }

    #[test]
    fn configure_reads_the_initrd_answers_file_below_the_cmdline() {
        let dir = tempfile::tempdir().unwrap();
        let e = env(
            dir.path(),
            "ze.server=10.0.2.2 ze.image=cmd.img\n",
            Some("ZE_IMAGE=file.img\nKLDLOAD_DISK=/dev/vdb\n"),
        );
        let c = configure(&e).unwrap();
        assert_eq!(c.parsed.config.image, "cmd.img");
        assert_eq!(c.parsed.config.target.as_deref(), Some("/dev/vdb"));
        let by = &c.parsed.sources["target"];
        assert_eq!(by.origin.file.as_deref(), e.answers.to_str());
    }

    #[test]
    fn configure_without_an_answers_file_is_the_cmdline_alone() {
        let dir = tempfile::tempdir().unwrap();
        let c = configure(&env(dir.path(), "ze.server=10.0.2.2", None)).unwrap();
        assert_eq!(c.parsed.config.target, None);
    }

    #[test]
    fn a_bad_initrd_answers_file_is_a_config_fatal_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let e = env(
            dir.path(),
            "ze.server=10.0.2.2",
            Some("A=1\nKLDLOAD_DISK=/dev/sda1\n"),
        );
        let f = configure(&e).unwrap_err();
        assert_eq!(f.stage, "config");
        assert_eq!(
            f.message,
            format!(
                "KLDLOAD_DISK ({} line 2): \"/dev/sda1\" is a partition; give the whole disk",
                e.answers.display()
            )
        );
    }

    #[test]
    fn an_iso_install_settles_without_the_answers_url() {
        let dir = tempfile::tempdir().unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        let mut c = configure(&env(
            dir.path(),
            &format!("ze.source=iso ze.media-id={id} kldload.answers=http://10.0.0.1/a.env"),
            None,
        ))
        .unwrap();
        assert!(c.builder.url_answers_pending());
        skip_url_answers(&mut c).unwrap();
        assert!(!c.builder.url_answers_pending());
        assert_eq!(c.parsed.config.media_id.as_deref(), Some(id));
    }

    #[test]
    fn later_sources_merge_at_their_own_rank() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = configure(&env(
            dir.path(),
            "ze.server=10.0.2.2 kldload.answers=auto ze.image=cmd.img",
            Some("KLDLOAD_DISK=/dev/vda\n"),
        ))
        .unwrap();
        c.merge_iso_answers("iso", b"KLDLOAD_DISK=/dev/vdb\n")
            .unwrap();
        assert_eq!(c.parsed.config.target.as_deref(), Some("/dev/vdb"));
        c.merge_url_answers(
            "http://s/a.env",
            b"KLDLOAD_DISK=/dev/vdc\nZE_IMAGE=url.img\n",
        )
        .unwrap();
        assert_eq!(c.parsed.config.target.as_deref(), Some("/dev/vdc"));
        assert_eq!(c.parsed.config.image, "cmd.img");
        let f = c
            .merge_url_answers("http://s/a.env", b"ZE_PORT=0\n")
            .unwrap_err();
        assert!(
            f.message.starts_with("ZE_PORT (http://s/a.env line 1)"),
            "{f}"
        );
    }
}
