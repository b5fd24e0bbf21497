//! Host mode: the installer's stages as an ordinary command, for tests, benchmarks and
//! operators checking a command line before they boot it.
//!
//! ```text
//! ze-init plan [--cmdline "…"] [--<key> VALUE]… [--answers FILE] [--sys-root DIR] [--dev-root DIR] [--proc-root DIR]
//! ze-init install --cmdline "…" --target PATH [--no-database]
//! ze-init install --cmdline "ze.source=iso ze.media-id=… ze.image=…" --media DIR --target PATH
//! ze-init net --cmdline "…" [--interfaces IF,IF…]
//! ze-init dhcp --interface IF [--hostname H] [--timeout SECS] [--no-rapid-commit] [--hold SECS]
//! ```
//!
//! Every `ze.<key>` parameter is also a flag `--<key>` (`--server 10.0.2.2`, `--port
//! 8080`), as are `--ip` and `--kldload-answers`; flags are applied after `--cmdline`, so
//! they win. `--answers FILE` is read as the initrd's answers file; host mode reads no
//! answers file without it.

use crate::boot::{self, Env, Fatal};
use crate::config::{self, KEYS};
use crate::{disk, logger};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: ze-init <command> [options]

commands:
  plan      print the parsed configuration and the disk decision as JSON; writes nothing
  install   download the image (or, with ze.source=iso, read it from --media) and
            write it to --target (no reboot, no power-off)
  net       run the network stage (links, DHCP or static, probe) and print the choice
            as JSON; meant for a network namespace
  dhcp      run DHCP on one interface and print the lease as JSON; configures nothing
            (ze-init dhcp --help for its options)

options:
  --cmdline \"…\"        kernel command line to use (default: none; PID 1 reads /proc/cmdline)
  --<key> VALUE        any ze.<key> parameter, e.g. --server 10.0.2.2 --port 8080
  --ip VALUE           the kernel ip= parameter
  --kldload-answers V  kldload.answers=
  --answers FILE       a kldload answers file, read as the initrd's (below the command line)
  --sys-root DIR       sysfs root (default /sys)
  --dev-root DIR       /dev root (default /dev)
  --proc-root DIR      procfs root (default /proc)
  --target PATH        install: the block device or file to write (a missing file is
                       created; ze.target's rules do not apply); other commands: ze.target
  --no-database        install: write the image only (no database fetch or injection)
  --media DIR          install with ze.source=iso: the root of a mounted or extracted
                       install medium (it must hold /ze-install/…); checked as at boot
  --interfaces A,B     net: use exactly these interfaces, whatever their kind (veth in
                       a test namespace); default: ethernet hardware, or ze.mac's
";

/// Parsed host-mode arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub command: String,
    /// The effective command line: `--cmdline` plus the flags turned into parameters.
    pub cmdline: String,
    /// `--answers FILE`: ranks as the initrd's answers file.
    pub answers: Option<PathBuf>,
    pub env: Env,
    pub target: Option<PathBuf>,
    /// install: skip fetching and injecting the database (an image without partition 4,
    /// benchmarks).
    pub no_database: bool,
    /// install with ze.source=iso: the medium's root directory.
    pub media: Option<PathBuf>,
    /// net: exactly these interfaces.
    pub interfaces: Option<Vec<String>>,
}

pub fn parse_args(argv: Vec<OsString>) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(argv);
    let mut command = None;
    let mut cmdline = String::new();
    let mut extra = Vec::new();
    let mut env = Env::real();
    let mut target = None;
    let mut answers = None;
    let mut no_database = false;
    let mut media = None;
    let mut interfaces = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Value(v) if command.is_none() => command = Some(v.string().map_err(|e| e.to_string())?),
            Long("cmdline") => {
                cmdline = p
                    .value()
                    .map_err(|e| e.to_string())?
                    .string()
                    .map_err(|e| e.to_string())?
            }
            Long("sys-root") => env.sys_root = PathBuf::from(p.value().map_err(|e| e.to_string())?),
            Long("dev-root") => env.dev_root = PathBuf::from(p.value().map_err(|e| e.to_string())?),
            Long("proc-root") => {
                env.proc_root = PathBuf::from(p.value().map_err(|e| e.to_string())?)
            }
            // For install, --target is where to write (a file or a device, no ze.target
            // rules); for every other command it is the ze.target flag.
            Long("target") if command.as_deref() == Some("install") => {
                target = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?))
            }
            Long("answers") => answers = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?)),
            Long("no-database") => no_database = true,
            Long("media") => media = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?)),
            Long("interfaces") => {
                let v = p
                    .value()
                    .map_err(|e| e.to_string())?
                    .string()
                    .map_err(|e| e.to_string())?;
                interfaces = Some(v.split(',').map(str::to_string).collect())
            }
            Long("help") | Short('h') => return Err(String::new()),
            Long(flag) => {
                let key = match flag {
                    "ip" => "ip".to_string(),
                    "kldload-answers" => "kldload.answers".to_string(),
                    k if KEYS.iter().any(|(n, _)| n.strip_prefix("ze.") == Some(k)) => {
                        format!("ze.{k}")
                    }
                    _ => return Err(format!("unknown option --{flag}")),
                };
                let value = p
                    .value()
                    .map_err(|e| e.to_string())?
                    .string()
                    .map_err(|e| e.to_string())?;
                // Quote so a value with spaces stays one parameter.
                extra.push(format!("\"{key}={value}\""));
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let command = command.ok_or_else(|| "missing command".to_string())?;
    if !extra.is_empty() {
        cmdline = format!("{cmdline} {}", extra.join(" "));
    }
    Ok(Args {
        command,
        cmdline,
        answers,
        env,
        target,
        no_database,
        media,
        interfaces,
    })
}

/// Runs a host command; returns the process exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    logger::init(logger::Target::Stderr, log::LevelFilter::Info);
    if argv.first().is_some_and(|a| a == "dhcp") {
        return dhcp_main(argv[1..].to_vec());
    }
    let args = match parse_args(argv) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("ze-init: {e}\n\n{USAGE}");
            return 2;
        }
    };
    let result = match args.command.as_str() {
        "plan" => plan(&args),
        "install" => install(&args),
        "net" => net(&args),
        other => {
            eprintln!("ze-init: unknown command {other:?}\n\n{USAGE}");
            return 2;
        }
    };
    match result {
        Ok(()) => 0,
        Err(f) => {
            logger::fatal(f.stage, &f.message);
            1
        }
    }
}

/// The configuration from `--answers` and `--cmdline`/flags, warnings logged.
fn configure(args: &Args) -> Result<boot::Configured, Fatal> {
    boot::configure_from(args.answers.as_deref().map(|p| (p, true)), &args.cmdline)
}

fn plan(args: &Args) -> Result<(), Fatal> {
    let configured = configure(args)?;
    let mut parsed = configured.parsed;
    if let (Some(a), true) = (
        &parsed.config.answers,
        configured.builder.url_answers_pending(),
    ) {
        let what = match a {
            config::Answers::Auto => "the per-machine answers file".to_string(),
            config::Answers::Url(u) => u.clone(),
        };
        let w = format!(
            "kldload.answers: {what} is fetched at boot, once the network is up; this plan does not include it"
        );
        log::warn!("{w}");
        parsed.warnings.push(w);
    }
    // The disk decision as PID 1 would make it (no install media to exclude yet: the
    // ISO source finds it at run time).
    let decision = disk::plan(
        disk::Roots::from(&args.env),
        disk::Request {
            mode: parsed.config.source.into(),
            target: parsed.config.target.as_deref(),
            exclude: &[],
        },
    );
    for line in decision.log_lines() {
        log::info!("{line}");
    }
    let doc = serde_json::json!({
        "config": parsed.config,
        "sources": parsed.sources,
        "warnings": parsed.warnings,
        "disk": decision,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).expect("JSON of plain data")
    );
    Ok(())
}

fn install(args: &Args) -> Result<(), Fatal> {
    let mut configured = configure(args)?;
    let target = args
        .target
        .as_deref()
        .ok_or_else(|| Fatal::new("disk", "host mode needs --target PATH"))?;
    match (configured.parsed.config.source, &args.media) {
        (config::Source::Iso, _) => return install_from_media(args, &mut configured, target),
        (config::Source::Http, Some(_)) => {
            return Err(Fatal::new(
                "config",
                "--media: reading the image from a medium needs ze.source=iso",
            ));
        }
        (config::Source::Http, None) => {}
    }
    let parsed = configured.parsed;
    let cfg = &parsed.config;
    if cfg.server.is_none() {
        // Only possible while a kldload.answers file could still supply ZE_SERVER.
        return Err(Fatal::new(
            "config",
            "ze.server: is required when ze.source=http",
        ));
    }
    let report = host_reporter(args, cfg);
    let result = host_install(args, cfg, target, &report);
    if let Err(f) = &result {
        report.failed(&f.to_string());
    }
    report.finish(std::time::Duration::from_secs(3));
    result
}

/// Host mode reports only when `ze.report` names a URL (an operator's machine is not
/// an install target on the server's status page). The document is named after the
/// first interface with a MAC.
fn host_reporter(args: &Args, cfg: &config::Config) -> crate::status::Reporter {
    use crate::status::{Machine, Reporter, document_url};
    let config::Report::Url(prefix) = &cfg.report else {
        return Reporter::off();
    };
    let mac = crate::net::interfaces(&args.env.sys_root)
        .into_iter()
        .map(|i| i.mac)
        .find(|m| !m.is_empty() && m != "00:00:00:00:00:00")
        .unwrap_or_else(|| "host".into());
    let r = Reporter::start(
        Some(document_url(prefix, &mac)),
        Machine::read(&args.env.sys_root),
    );
    r.image(&cfg.image);
    r.stage(crate::status::Stage::Plan);
    r
}

fn host_install(
    args: &Args,
    cfg: &config::Config,
    target: &std::path::Path,
    report: &crate::status::Reporter,
) -> Result<(), Fatal> {
    use crate::install;
    let client = install::client(cfg);
    let expected = install::expected_digest(cfg, &client)?;
    let database = match args.no_database {
        true => None,
        false => Some(install::fetch_database(&client)?),
    };
    let progress = std::sync::Arc::new(crate::write::Progress::new());
    report.download(progress.clone());
    let (outcome, written) =
        install::download_and_write(cfg, &client, target, expected, &progress)?;
    let kind = written.kind();
    // The exclusive handle must go before the partition table is re-read.
    drop(written);
    if let Some(db) = &database {
        report.stage(crate::status::Stage::Inject);
        if let Err(f) = host_inject(args, target, kind, db) {
            install::unbootable(target);
            return Err(f);
        }
    }
    let done = install::done_line(&cfg.image, &outcome);
    logger::marker(&done);
    report.done(&done);
    Ok(())
}

/// `ze-init install` with `ze.source=iso`: the medium is a directory (a mounted or
/// extracted ISO). It is checked exactly as at boot — media-id, answers file, manifest,
/// image, sidecar — and written in the same single pass; no scan, nothing to exclude.
fn install_from_media(
    args: &Args,
    c: &mut boot::Configured,
    target: &std::path::Path,
) -> Result<(), Fatal> {
    use crate::install;
    use crate::source::media::Judged;
    let media = args.media.as_deref().ok_or_else(|| {
        Fatal::new(
            "media",
            "host mode with ze.source=iso needs --media DIR (the root of a mounted or extracted install medium)",
        )
    })?;
    boot::skip_url_answers(c)?;
    let media_id = boot::required_media_id(c)?;
    let label = media.display().to_string();
    let (merged, contents) =
        boot::judge_medium(c, media, &label, &media_id).map_err(|j| match j {
            Judged::Rejected(r) => Fatal::new("media", format!("{label}: {r}")),
            Judged::Fatal(f) => f,
        })?;
    *c = merged;
    let cfg = &c.parsed.config;
    let expected = install::media_digest(cfg, &contents);
    let progress = crate::write::Progress::new();
    let (outcome, written) = install::write_from_media(&contents, target, expected, &progress)?;
    drop(written);
    logger::marker(&install::done_line(&cfg.image, &outcome));
    Ok(())
}

/// `ze-init net`: the network stage alone, on this (namespace's) network.
fn net(args: &Args) -> Result<(), Fatal> {
    let parsed = configure(args)?.parsed;
    let s = crate::net::real::settings(&parsed.config, args.interfaces.clone())
        .ok_or_else(|| Fatal::new("config", "ze.server: is required for the network stage"))?;
    let (chosen, _keeper) = crate::net::real::bring_up(&s, &args.env.sys_root, &args.env.dev_root)
        .map_err(|e| Fatal::new("network", e))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&chosen).expect("JSON of plain data")
    );
    Ok(())
}

/// Host mode's database step: partition 4 of a device or a file, through a loop device
/// when needed. Attaching loop devices and mounting need root; without it the step is
/// skipped with a warning (the image itself is complete and verified).
fn host_inject(
    args: &Args,
    target: &std::path::Path,
    kind: crate::write::target::Kind,
    db: &[u8],
) -> Result<(), Fatal> {
    use crate::install::{Written, inject_database};
    use crate::write::target::Kind;
    if !nix::unistd::geteuid().is_root() {
        log::warn!(
            "database not injected into {}: mounting partition {} needs root",
            target.display(),
            crate::install::DATABASE_PARTITION
        );
        return Ok(());
    }
    let base = std::env::temp_dir();
    let (sys, dev) = (&args.env.sys_root, &args.env.dev_root);
    match kind {
        Kind::BlockDevice => {
            let real = std::fs::canonicalize(target)
                .map_err(|e| Fatal::new("inject", format!("{}: {e}", target.display())))?;
            let name = real
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let disk = disk::read_device(sys, &name);
            inject_database(Written::Disk(&disk), sys, dev, &base, db)?;
        }
        Kind::CreatedFile | Kind::ExistingFile => {
            inject_database(Written::File(target), sys, dev, &base, db)?;
        }
    }
    Ok(())
}

const DHCP_USAGE: &str = "usage: ze-init dhcp --interface IF [options]

Runs only the DHCP exchange on IF (bringing the link up if it is down), configures
nothing, and prints {\"interface\", \"mac\", \"lease\", \"elapsed_ms\", …} as JSON. Exit 1
with a FATAL line when no lease comes within the timeout.

options:
  --interface IF       the interface (required)
  --hostname H         send H as the DHCP hostname (option 12)
  --timeout SECS       give up after SECS whole seconds (default 30)
  --no-rapid-commit    do not offer rapid commit (RFC 4039)
  --hold SECS          keep the lease for SECS seconds (renewing as needed) before
                       printing; the JSON then lists the events seen
  --sys-root DIR       sysfs root (default /sys)
  --dev-root DIR       /dev root, for urandom on kernels before 5.6 (default /dev)
";

/// Arguments of `ze-init dhcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpArgs {
    pub interface: String,
    pub hostname: Option<String>,
    pub timeout: Duration,
    pub rapid_commit: bool,
    pub hold: Option<Duration>,
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
}

pub fn parse_dhcp_args(argv: Vec<OsString>) -> Result<DhcpArgs, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(argv);
    let mut a = DhcpArgs {
        interface: String::new(),
        hostname: None,
        timeout: crate::net::dhcp::DEFAULT_TIMEOUT,
        rapid_commit: true,
        hold: None,
        sys_root: "/sys".into(),
        dev_root: "/dev".into(),
    };
    // Whole seconds: parsing floats would link the float parser into /init for nothing.
    let secs = |p: &mut lexopt::Parser, flag: &str| -> Result<Duration, String> {
        let v = p
            .value()
            .map_err(|e| e.to_string())?
            .string()
            .map_err(|e| e.to_string())?;
        match v.parse::<u64>() {
            Ok(s @ 1..=86400) => Ok(Duration::from_secs(s)),
            _ => Err(format!(
                "--{flag}: {v:?} is not a whole number of seconds (1-86400)"
            )),
        }
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("interface") | Short('i') => {
                a.interface = p
                    .value()
                    .map_err(|e| e.to_string())?
                    .string()
                    .map_err(|e| e.to_string())?
            }
            Long("hostname") => {
                a.hostname = Some(
                    p.value()
                        .map_err(|e| e.to_string())?
                        .string()
                        .map_err(|e| e.to_string())?,
                )
            }
            Long("timeout") => a.timeout = secs(&mut p, "timeout")?,
            Long("hold") => a.hold = Some(secs(&mut p, "hold")?),
            Long("no-rapid-commit") => a.rapid_commit = false,
            Long("sys-root") => a.sys_root = p.value().map_err(|e| e.to_string())?.into(),
            Long("dev-root") => a.dev_root = p.value().map_err(|e| e.to_string())?.into(),
            Long("help") | Short('h') => return Err(String::new()),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if a.interface.is_empty() {
        return Err("--interface is required".into());
    }
    Ok(a)
}

fn dhcp_main(argv: Vec<OsString>) -> i32 {
    let args = match parse_dhcp_args(argv) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{DHCP_USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("ze-init dhcp: {e}\n\n{DHCP_USAGE}");
            return 2;
        }
    };
    match dhcp(&args) {
        Ok(doc) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("JSON of plain data")
            );
            0
        }
        Err(f) => {
            logger::fatal(f.stage, &f.message);
            1
        }
    }
}

/// `ze-init dhcp`: the exchange alone, timed from the moment the link is (brought) up.
fn dhcp(args: &DhcpArgs) -> Result<serde_json::Value, Fatal> {
    use crate::net::dhcp_run::{self, Interface, Options, Seed};
    let fatal = |e: &dyn std::fmt::Display| Fatal::new("network", e);
    let iface = Interface::from_sysfs(&args.sys_root, &args.interface).map_err(|e| fatal(&e))?;
    let start = Instant::now();
    let brought_up = crate::sys::packet::set_link_up(&iface.name)
        .map_err(|e| fatal(&format!("{}: bringing the link up: {e}", iface.name)))?;
    let mut opts = Options::new(Seed::from_kernel(&args.dev_root, iface.mac));
    opts.hostname = args.hostname.clone();
    opts.timeout = args.timeout;
    opts.rapid_commit = args.rapid_commit;
    let acquired = dhcp_run::acquire(&iface, &opts).map_err(|e| fatal(&e))?;
    let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    let mut doc = serde_json::json!({
        "interface": iface.name,
        "mac": iface.mac,
        "lease": acquired.lease(),
        "elapsed_ms": (elapsed_ms * 1000.0).round() / 1000.0,
        "link_brought_up": brought_up,
    });
    if let Some(hold) = args.hold {
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = events.clone();
        let keeper = acquired.keep(move |ev| {
            let name = match ev {
                crate::net::dhcp::Event::Offer { .. } => "offer",
                crate::net::dhcp::Event::Bound(_) => "bound",
                crate::net::dhcp::Event::Renewed(_) => "renewed",
                crate::net::dhcp::Event::Nak { .. } => "nak",
                crate::net::dhcp::Event::Expired => "expired",
                crate::net::dhcp::Event::GaveUp => "gave_up",
            };
            seen.lock().unwrap_or_else(|e| e.into_inner()).push(name);
        });
        let until = Instant::now() + hold;
        // Holding for the requested time is the command's job, not a wait for a
        // condition; the keeper thread does the work meanwhile.
        while Instant::now() < until && keeper.is_running() {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
        }
        doc["lease"] = serde_json::json!(keeper.lease());
        doc["events"] = serde_json::json!(*events.lock().unwrap_or_else(|e| e.into_inner()));
        keeper.stop();
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, String> {
        parse_args(v.iter().map(OsString::from).collect())
    }

    #[test]
    fn flags_become_parameters_after_the_cmdline() {
        let a = args(&[
            "plan",
            "--cmdline",
            "ze.server=10.0.0.1 ze.port=1",
            "--port",
            "8080",
            "--media-id",
            "x",
            "--sys-root",
            "/tmp/sys",
        ])
        .unwrap();
        assert_eq!(a.command, "plan");
        assert_eq!(
            a.cmdline,
            "ze.server=10.0.0.1 ze.port=1 \"ze.port=8080\" \"ze.media-id=x\""
        );
        assert_eq!(a.env.sys_root, PathBuf::from("/tmp/sys"));
        assert_eq!(
            config::from_cmdline(&a.cmdline).unwrap_err().key,
            "ze.media-id"
        );
    }

    fn dhcp_args(v: &[&str]) -> Result<DhcpArgs, String> {
        parse_dhcp_args(v.iter().map(OsString::from).collect())
    }

    #[test]
    fn dhcp_flags_parse_with_defaults() {
        let a = dhcp_args(&["--interface", "eth1"]).unwrap();
        assert_eq!(a.interface, "eth1");
        assert_eq!(a.timeout, Duration::from_secs(30));
        assert!(a.rapid_commit && a.hostname.is_none() && a.hold.is_none());
        let a = dhcp_args(&[
            "-i",
            "veth0",
            "--hostname",
            "n1",
            "--timeout",
            "2",
            "--no-rapid-commit",
            "--hold",
            "9",
        ])
        .unwrap();
        assert_eq!(a.hostname.as_deref(), Some("n1"));
        assert_eq!(a.timeout, Duration::from_secs(2));
        assert_eq!(a.hold, Some(Duration::from_secs(9)));
        assert!(!a.rapid_commit);
        assert_eq!(dhcp_args(&[]).unwrap_err(), "--interface is required");
        assert!(
            dhcp_args(&["-i", "x", "--timeout", "0"])
                .unwrap_err()
                .contains("--timeout")
        );
        assert!(dhcp_args(&["-i", "x", "--timeout", "2.5"]).is_err());
        assert!(dhcp_args(&["-i", "x", "--bogus"]).is_err());
    }

    #[test]
    fn unknown_flags_and_missing_command_are_errors() {
        assert_eq!(
            args(&["plan", "--colour", "x"]).unwrap_err(),
            "unknown option --colour"
        );
        assert_eq!(args(&[]).unwrap_err(), "missing command");
        assert_eq!(args(&["--help"]).unwrap_err(), "");
    }
}
