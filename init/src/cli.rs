//! Host mode: the installer's stages as an ordinary command, for tests, benchmarks and
//! operators checking a command line before they boot it.
//!
//! ```text
//! ze-init plan [--cmdline "…"] [--<key> VALUE]… [--sys-root DIR] [--dev-root DIR] [--proc-root DIR]
//! ```
//!
//! Every `ze.<key>` parameter is also a flag `--<key>` (`--server 10.0.2.2`, `--port
//! 8080`), as are `--ip` and `--kldload-answers`; flags are applied after `--cmdline`, so
//! they win.

use crate::boot::{Env, Fatal};
use crate::config::{self, KEYS};
use crate::{disk, logger};
use std::ffi::OsString;
use std::path::PathBuf;

const USAGE: &str = "usage: ze-init <command> [options]

commands:
  plan      print the parsed configuration and the disk decision as JSON; writes nothing

options:
  --cmdline \"…\"        kernel command line to use (default: none; PID 1 reads /proc/cmdline)
  --<key> VALUE        any ze.<key> parameter, e.g. --server 10.0.2.2 --port 8080
  --ip VALUE           the kernel ip= parameter
  --kldload-answers V  kldload.answers=
  --sys-root DIR       sysfs root (default /sys)
  --dev-root DIR       /dev root (default /dev)
  --proc-root DIR      procfs root (default /proc)
";

/// Parsed host-mode arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub command: String,
    /// The effective command line: `--cmdline` plus the flags turned into parameters.
    pub cmdline: String,
    pub env: Env,
}

pub fn parse_args(argv: Vec<OsString>) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(argv);
    let mut command = None;
    let mut cmdline = String::new();
    let mut extra = Vec::new();
    let mut env = Env::real();
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
        env,
    })
}

/// Runs a host command; returns the process exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    logger::init(logger::Target::Stderr, log::LevelFilter::Info);
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

fn plan(args: &Args) -> Result<(), Fatal> {
    let parsed = config::from_cmdline(&args.cmdline).map_err(|e| Fatal::new("config", e))?;
    logger::set_level(parsed.config.log.to_filter());
    for w in &parsed.warnings {
        log::warn!("{w}");
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
        "warnings": parsed.warnings,
        "disk": decision,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).expect("JSON of plain data")
    );
    Ok(())
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
