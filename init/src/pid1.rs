//! Life as PID 1: mount the API filesystems, open the consoles, run the install, and
//! never exit (an exiting PID 1 panics the kernel).
//!
//! The install runs in its own thread (`install`); this thread only supervises. Every
//! outcome reaches it as an [`Event`]: the install's result, or — sent by the panic hook
//! from whichever thread panicked (the install, the write pipeline, the DHCP keeper…) —
//! the panic's FATAL. Any failure opens the recovery console here, on a thread no
//! install work can block, and its answer (retry, reboot, power off) is carried out
//! here.

use crate::boot::{self, Env, Fatal, Finish};
use crate::rescue::{self, Action, Failure};
use crate::sys::{self, Halt};
use crate::{fault, logger};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// What the supervisor waits for.
enum Event {
    /// An install attempt returned.
    Done {
        attempt: u32,
        result: Result<Finish, Fatal>,
    },
    /// A thread panicked; the hook already printed the FATAL line.
    Panic(Fatal),
}

static EVENTS: OnceLock<Sender<Event>> = OnceLock::new();

/// The install thread gets the stack the kernel gives PID 1's main thread (8 MiB),
/// not Rust's 2 MiB default, so moving it off the main thread changes nothing.
const INSTALL_STACK: usize = 8 << 20;

/// std's message when a `thread::scope` re-raises a scoped thread's panic in its owner
/// (the write pipeline): the first panic was already reported.
const SCOPED_PANIC: &str = "a scoped thread panicked";

pub fn run() -> ! {
    let mount_failures = sys::mount_api_filesystems();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    logger::init(
        logger::Target::Consoles {
            sys_root: Path::new("/sys"),
            dev_root: Path::new("/dev"),
            cmdline: &cmdline,
        },
        log::LevelFilter::Info,
    );
    let (tx, rx) = mpsc::channel();
    let _ = EVENTS.set(tx);
    install_panic_hook();
    log::info!(
        "ze-init {} starting as PID 1 on kernel {}; consoles: {}",
        env!("CARGO_PKG_VERSION"),
        sys::kernel_release(),
        logger::console_names().join(" ")
    );
    for f in mount_failures {
        log::warn!("{f}");
    }
    fault::arm(&cmdline);
    let env = Arc::new(Env::real());
    let mut state = State {
        session: rescue::Session::new(),
        failures: Vec::new(),
        attempt: 0,
    };
    // supervise() only ends by halting; this catches a panic in the supervisor or the
    // recovery console itself (the hook printed it), the one place left that could
    // otherwise unwind out of main.
    let _ = panic::catch_unwind(AssertUnwindSafe(|| supervise(&env, &rx, &mut state)));
    logger::marker("recovery console failed; rebooting in 30 s");
    std::thread::sleep(rescue::UNATTENDED_DELAY);
    sys::halt(Halt::Reboot)
}

struct State {
    session: rescue::Session,
    failures: Vec<Failure>,
    attempt: u32,
}

/// Runs install attempts until one finishes (halt) or the recovery console says to
/// reboot or power off.
fn supervise(env: &Arc<Env>, rx: &Receiver<Event>, st: &mut State) -> ! {
    loop {
        st.attempt += 1;
        let attempt = st.attempt;
        let worker = match start(env, attempt) {
            Ok(w) => Some(w),
            Err(fatal) => {
                logger::fatal(fatal.stage, &fatal.message);
                st.failures.push(Failure { attempt, fatal });
                None
            }
        };
        if worker.is_some() {
            let fatal = outcome(rx, attempt);
            st.failures.push(Failure { attempt, fatal });
        }
        let can_retry = || match &worker {
            Some(w) if !w.is_finished() => Err(format!(
                "attempt {attempt}'s install thread is still running (a helper thread \
                 panicked); wait for it to stop, or reboot"
            )),
            _ => Ok(()),
        };
        match rescue::enter(env, &mut st.session, &st.failures, &can_retry) {
            Action::Retry => collect_late(rx, &mut st.failures),
            Action::Reboot { after } => {
                std::thread::sleep(after);
                sys::halt(Halt::Reboot)
            }
            Action::PowerOff => sys::halt(Halt::PowerOff),
        }
    }
}

/// Starts attempt `attempt` of the whole sequence in the `install` thread.
fn start(env: &Arc<Env>, attempt: u32) -> Result<JoinHandle<()>, Fatal> {
    let env = env.clone();
    std::thread::Builder::new()
        .name("install".into())
        .stack_size(INSTALL_STACK)
        .spawn(move || {
            // A panic ends the thread here; the hook has reported it.
            let result = boot::run(&env);
            if let Err(f) = &result {
                logger::fatal(f.stage, &f.message);
            }
            send(Event::Done { attempt, result });
        })
        .map_err(|e| Fatal::new("pid1", format!("cannot start the install thread: {e}")))
}

/// Waits for attempt `attempt` to finish: halts on success, returns the first failure.
fn outcome(rx: &Receiver<Event>, attempt: u32) -> Fatal {
    loop {
        match rx.recv() {
            Ok(Event::Done { attempt: a, result }) if a == attempt => match result {
                Ok(Finish::Reboot) => sys::halt(Halt::Reboot),
                Ok(Finish::PowerOff) => sys::halt(Halt::PowerOff),
                Err(fatal) => return fatal,
            },
            Ok(Event::Done { attempt: a, result }) => log::warn!(
                "attempt {a} ended late ({}); ignored",
                match result {
                    Ok(_) => "finished".to_string(),
                    Err(f) => f.to_string(),
                }
            ),
            Ok(Event::Panic(fatal)) => return fatal,
            // EVENTS keeps a sender alive for good, so this cannot happen.
            Err(_) => return Fatal::new("pid1", "the install's event channel closed"),
        }
    }
}

/// Before a retry: whatever failed while the console was up is kept with the others.
fn collect_late(rx: &Receiver<Event>, failures: &mut Vec<Failure>) {
    let attempt = failures.last().map_or(0, |f| f.attempt);
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Event::Done {
                attempt: a,
                result: Err(fatal),
            } => failures.push(Failure { attempt: a, fatal }),
            Event::Done { result: Ok(_), .. } => {}
            Event::Panic(fatal) => failures.push(Failure { attempt, fatal }),
        }
    }
}

fn send(ev: Event) {
    if let Some(tx) = EVENTS.get() {
        let _ = tx.send(ev);
    }
}

/// Prints `[ze-install] FATAL: panic: <message> at <file:line> (thread <name>)` on every
/// console, for a panic in any thread, and hands it to the supervisor, which opens the
/// recovery console.
fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-text payload)".into());
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        if msg == SCOPED_PANIC {
            log::info!("thread {name} stopped: {msg} (its FATAL line is above)");
            return;
        }
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let fatal = Fatal::new(
            "panic",
            format!("{}{at} (thread {name})", msg.replace('\n', " | ")),
        );
        logger::fatal(fatal.stage, &fatal.message);
        send(Event::Panic(fatal));
    }));
}
