//! The console logger.
//!
//! Every line goes to every console the kernel lists in `/sys/class/tty/console/active`
//! (a headless box's preferred console may be a dead VGA tty while serial works), and
//! also to every `console=` named on the command line: the kernel binds at most one
//! console per driver, so with `console=ttyS1 console=ttyS0` only ttyS1 becomes active
//! and ttyS0 would otherwise stay silent. A cmdline console's speed (`ttyS0,115200n8`) is
//! applied to the line. Each line is one `write` per console so lines from different
//! threads never interleave. Ordinary lines
//! carry an uptime stamp: `[ze-install] [+1.234s] text`. Contract lines — `FATAL:`,
//! `READY`, `DONE` — are printed bare (`[ze-install] FATAL: <stage>: <what>`) so anything
//! watching a console can match them exactly.
//!
//! The last [`RING`] lines are kept for the recovery console's diagnostics.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

pub const PREFIX: &str = "[ze-install]";
/// How many recent lines the ring buffer keeps.
pub const RING: usize = 50;

struct Sinks {
    outputs: Vec<Output>,
    ring: VecDeque<String>,
}

enum Output {
    Console { name: String, file: File },
    Stderr,
}

struct Logger {
    sinks: Mutex<Sinks>,
    /// `None` in PID 1: the monotonic clock then counts from boot, like the kernel's
    /// own stamps. In host mode, time since the process started.
    origin: Option<Instant>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Where log lines go.
pub enum Target<'a> {
    /// The consoles listed under `sys_root`/class/tty/console/active and the
    /// `console=` parameters of `cmdline`, opened from `dev_root`.
    Consoles {
        sys_root: &'a Path,
        dev_root: &'a Path,
        cmdline: &'a str,
    },
    /// Standard error (host mode).
    Stderr,
}

/// Installs the logger. Calling it again replaces the outputs (PID 1 does this after
/// mounting /sys and /dev, when the console list becomes readable).
pub fn init(target: Target<'_>, level: log::LevelFilter) {
    let outputs = match target {
        Target::Stderr => vec![Output::Stderr],
        Target::Consoles {
            sys_root,
            dev_root,
            cmdline,
        } => open_consoles(&console_list(sys_root, cmdline), dev_root),
    };
    let origin = match target_is_host(&outputs) {
        true => Some(Instant::now()),
        false => None,
    };
    let logger = LOGGER.get_or_init(|| Logger {
        sinks: Mutex::new(Sinks {
            outputs: Vec::new(),
            ring: VecDeque::with_capacity(RING),
        }),
        origin,
    });
    lock(logger).outputs = outputs;
    // set_logger fails only when already set, which is fine: it is the same logger.
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}

fn target_is_host(outputs: &[Output]) -> bool {
    outputs.iter().all(|o| matches!(o, Output::Stderr))
}

pub fn set_level(level: log::LevelFilter) {
    log::set_max_level(level);
}

/// Names of the consoles lines go to (for the log itself and diagnostics).
pub fn console_names() -> Vec<String> {
    LOGGER
        .get()
        .map(|l| {
            lock(l)
                .outputs
                .iter()
                .map(|o| match o {
                    Output::Console { name, .. } => name.clone(),
                    Output::Stderr => "stderr".into(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the active console list. Returns device names such as `ttyS0`, `tty0`.
pub fn active_consoles(sys_root: &Path) -> Vec<String> {
    std::fs::read_to_string(sys_root.join("class/tty/console/active"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A console to write to: device name and, from the command line, its options
/// (`115200n8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSpec {
    pub name: String,
    pub options: Option<String>,
}

/// The active consoles first (the kernel's order), then any other `console=` of the
/// command line, without duplicates.
pub fn console_list(sys_root: &Path, cmdline: &str) -> Vec<ConsoleSpec> {
    let from_cmdline: Vec<ConsoleSpec> = crate::config::cmdline::tokenize(cmdline)
        .into_iter()
        .filter(|p| p.key == "console")
        .filter_map(|p| p.value)
        .filter_map(|v| {
            let (name, options) = match v.split_once(',') {
                Some((n, o)) => (n.to_string(), Some(o.to_string())),
                None => (v, None),
            };
            // Only device names with line options (`ttyS0,115200n8`): not the
            // `uart8250,io,0x3f8` port form, not paths.
            let plain = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && options
                    .as_deref()
                    .is_none_or(|o| o.starts_with(|c: char| c.is_ascii_digit()));
            plain.then_some(ConsoleSpec { name, options })
        })
        .collect();
    let mut list: Vec<ConsoleSpec> = active_consoles(sys_root)
        .into_iter()
        .map(|name| {
            let options = from_cmdline
                .iter()
                .find(|c| c.name == name)
                .and_then(|c| c.options.clone());
            ConsoleSpec { name, options }
        })
        .collect();
    for c in from_cmdline {
        if !list.iter().any(|l| l.name == c.name) {
            list.push(c);
        }
    }
    list
}

/// The baud rate at the start of console options (`115200n8` → 115200).
pub fn console_speed(options: &str) -> Option<u32> {
    let digits: String = options.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn open_consoles(list: &[ConsoleSpec], dev_root: &Path) -> Vec<Output> {
    let mut outputs = Vec::new();
    for c in list {
        // O_NOCTTY: PID 1 must not acquire a controlling terminal by logging to it.
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY)
            .open(dev_root.join(&c.name));
        if let Ok(file) = opened {
            if let Some(speed) = c.options.as_deref().and_then(console_speed) {
                // Best effort: a pty or a regular file in a test is not a serial line.
                let _ = set_speed(&file, speed);
            }
            outputs.push(Output::Console {
                name: c.name.clone(),
                file,
            });
        }
    }
    if outputs.is_empty() {
        if let Ok(file) = OpenOptions::new()
            .write(true)
            .open(dev_root.join("console"))
        {
            outputs.push(Output::Console {
                name: "console".into(),
                file,
            });
        } else {
            outputs.push(Output::Stderr);
        }
    }
    outputs
}

/// The termios rate for a `console=` speed; `None` for one Linux consoles do not use.
pub fn baud_rate(speed: u32) -> Option<nix::sys::termios::BaudRate> {
    use nix::sys::termios::BaudRate;
    Some(match speed {
        9600 => BaudRate::B9600,
        19200 => BaudRate::B19200,
        38400 => BaudRate::B38400,
        57600 => BaudRate::B57600,
        115200 => BaudRate::B115200,
        230400 => BaudRate::B230400,
        460800 => BaudRate::B460800,
        921600 => BaudRate::B921600,
        _ => return None,
    })
}

/// Sets a serial line's speed, as the kernel would for a console it registered.
fn set_speed(file: &File, speed: u32) -> nix::Result<()> {
    use nix::sys::termios::{SetArg, cfsetspeed, tcgetattr, tcsetattr};
    let rate = baud_rate(speed).ok_or(nix::errno::Errno::EINVAL)?;
    let mut t = tcgetattr(file)?;
    cfsetspeed(&mut t, rate)?;
    tcsetattr(file, SetArg::TCSANOW, &t)
}

fn lock(l: &Logger) -> std::sync::MutexGuard<'_, Sinks> {
    // A panic while holding the lock must not silence the console for good.
    l.sinks.lock().unwrap_or_else(|e| e.into_inner())
}

fn uptime(l: &Logger) -> f64 {
    match l.origin {
        Some(t) => t.elapsed().as_secs_f64(),
        None => nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
            .unwrap_or(0.0),
    }
}

fn emit(body: &str) {
    let Some(l) = LOGGER.get() else {
        // Before init (or in unit tests): standard error, still one write per line.
        let _ = std::io::stderr().write_all(format!("{PREFIX} {body}\n").as_bytes());
        return;
    };
    let line = format!("{PREFIX} {body}\n");
    let mut sinks = lock(l);
    for out in &mut sinks.outputs {
        // Consoles are ttys: a write either goes through whole or fails; there is no one
        // else to tell about a failure, so it is dropped.
        let _ = match out {
            Output::Console { file, .. } => file.write_all(line.as_bytes()),
            Output::Stderr => std::io::stderr().write_all(line.as_bytes()),
        };
    }
    if sinks.ring.len() == RING {
        sinks.ring.pop_front();
    }
    sinks.ring.push_back(line.trim_end().to_string());
}

/// Prints a contract line (`FATAL: …`, `READY`, `DONE …`) regardless of the log level.
pub fn marker(body: &str) {
    emit(body);
}

/// Prints `[ze-install] FATAL: <stage>: <what>`.
pub fn fatal(stage: &str, what: &dyn std::fmt::Display) {
    marker(&format!("FATAL: {stage}: {what}"));
}

/// The last lines printed, oldest first.
pub fn recent() -> Vec<String> {
    LOGGER
        .get()
        .map(|l| lock(l).ring.iter().cloned().collect())
        .unwrap_or_default()
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            log::Level::Info => "",
            log::Level::Debug | log::Level::Trace => "debug: ",
        };
        emit(&format!("[+{:.3}s] {level}{}", uptime(self), record.args()));
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_console_list_is_split_on_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("class/tty/console");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("active"), "ttyS1 ttyS0\n").unwrap();
        assert_eq!(active_consoles(dir.path()), vec!["ttyS1", "ttyS0"]);
        assert!(active_consoles(Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn cmdline_consoles_join_the_active_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("class/tty/console");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("active"), "ttyS1\n").unwrap();
        let list = console_list(
            dir.path(),
            "console=tty0 console=ttyS1,115200n8 earlycon=uart8250,io,0x3f8 \
             console=uart8250,io,0x3f8 console=ttyS0,9600 console=/dev/x quiet",
        );
        let names: Vec<(&str, Option<&str>)> = list
            .iter()
            .map(|c| (c.name.as_str(), c.options.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("ttyS1", Some("115200n8")),
                ("tty0", None),
                ("ttyS0", Some("9600"))
            ]
        );
        assert_eq!(console_speed("115200n8"), Some(115200));
        assert_eq!(console_speed("n8"), None);
    }
}
