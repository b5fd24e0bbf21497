//! Fault injection for tests (cargo feature `fault-injection`): `ze.fault=<stage>[:<how>]`
//! on the command line makes the install fail at a named stage, so the QEMU tests can
//! reach the recovery console's paths (a FATAL, a panic in the install thread, a panic
//! in a helper thread) without breaking anything for real.
//!
//! Without the feature [`point`] is `Ok(())`, [`arm`] does nothing and no code reads the
//! key (a release build warns `unknown key ze.fault ignored`): a shipped `/init` cannot
//! be made to fail on purpose.

use crate::boot::Fatal;

/// The parameter.
pub const KEY: &str = "ze.fault";

/// The stages with a fault point, in the order the HTTP install reaches them:
/// `config` right after the configuration is read, `network` before the network stage,
/// `disk` before the disk plan, `write` before the download starts.
pub const STAGES: &[&str] = &["config", "network", "disk", "write"];

/// What happens at the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// The stage returns a FATAL.
    Error,
    /// The install thread panics.
    Panic,
    /// A helper thread (`fault-injection`) panics while the install goes on, as a
    /// panicking DHCP keeper or write-pipeline thread would.
    ThreadPanic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub stage: &'static str,
    pub how: How,
}

/// `<stage>`, `<stage>:error`, `<stage>:panic`, `<stage>:thread-panic`, or `panic` /
/// `thread-panic` alone (at `config`, the first point).
#[cfg(any(feature = "fault-injection", test))]
pub fn parse(value: &str) -> Result<Fault, String> {
    let (stage, how) = match value {
        "panic" | "thread-panic" | "error" => ("config", value),
        v => v.split_once(':').unwrap_or((v, "error")),
    };
    let stage = STAGES
        .iter()
        .copied()
        .find(|s| *s == stage)
        .ok_or_else(|| format!("unknown stage {stage:?}; use {}", STAGES.join(", ")))?;
    let how = match how {
        "error" => How::Error,
        "panic" => How::Panic,
        "thread-panic" => How::ThreadPanic,
        h => {
            return Err(format!(
                "unknown fault {h:?}; use error, panic or thread-panic"
            ));
        }
    };
    Ok(Fault { stage, how })
}

#[cfg(feature = "fault-injection")]
mod armed {
    use super::*;
    use std::sync::OnceLock;

    static ARMED: OnceLock<Fault> = OnceLock::new();

    pub fn arm(cmdline: &str) {
        let Some(value) = crate::config::cmdline::tokenize(cmdline)
            .into_iter()
            .rev()
            .find(|p| p.key == KEY)
            .and_then(|p| p.value)
        else {
            return;
        };
        match parse(&value) {
            Ok(f) => {
                log::warn!("fault injection: {KEY}={value} armed (test build)");
                let _ = ARMED.set(f);
            }
            Err(e) => log::warn!("fault injection: {KEY}={value} ignored: {e}"),
        }
    }

    pub fn point(stage: &'static str) -> Result<(), Fatal> {
        let Some(f) = ARMED.get().filter(|f| f.stage == stage) else {
            return Ok(());
        };
        match f.how {
            How::Error => Err(Fatal::new(stage, format!("injected fault ({KEY}={stage})"))),
            How::Panic => panic!("injected fault ({KEY}={stage}:panic)"),
            How::ThreadPanic => {
                let t = std::thread::Builder::new()
                    .name("fault-injection".into())
                    .spawn(move || panic!("injected fault ({KEY}={stage}:thread-panic)"));
                // Joined so the panic is reported before the install goes on, which
                // keeps the tests' order of events fixed; the join's Err is the panic.
                if let Ok(t) = t {
                    let _ = t.join();
                }
                Ok(())
            }
        }
    }
}

/// Reads `ze.fault` from the command line (PID 1, at start).
#[cfg(feature = "fault-injection")]
pub fn arm(cmdline: &str) {
    armed::arm(cmdline)
}

/// A named fault point: fails, panics or panics a helper thread when `ze.fault` names
/// this stage.
#[cfg(feature = "fault-injection")]
pub fn point(stage: &'static str) -> Result<(), Fatal> {
    armed::point(stage)
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn arm(_cmdline: &str) {}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_stage: &'static str) -> Result<(), Fatal> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_values_name_a_stage_and_how() {
        let f = |stage, how| Ok(Fault { stage, how });
        assert_eq!(parse("network"), f("network", How::Error));
        assert_eq!(parse("disk:error"), f("disk", How::Error));
        assert_eq!(parse("write:panic"), f("write", How::Panic));
        assert_eq!(
            parse("network:thread-panic"),
            f("network", How::ThreadPanic)
        );
        assert_eq!(parse("panic"), f("config", How::Panic));
        assert_eq!(parse("thread-panic"), f("config", How::ThreadPanic));
        assert!(parse("nowhere").unwrap_err().contains("unknown stage"));
        assert!(parse("disk:explode").unwrap_err().contains("unknown fault"));
    }

    #[cfg(not(feature = "fault-injection"))]
    #[test]
    fn without_the_feature_no_point_fires() {
        arm("ze.fault=config");
        for s in STAGES {
            assert_eq!(point(s), Ok(()));
        }
    }
}
