//! Life as PID 1: mount the API filesystems, open the consoles, run the install, and
//! never exit (an exiting PID 1 panics the kernel).

use crate::boot::{self, Env};
use crate::logger;
use crate::sys::{self, Halt};
use std::panic;
use std::path::Path;

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
    let env = Env::real();
    match panic::catch_unwind(|| boot::run(&env)) {
        Ok(Ok(boot::Finish::Reboot)) => sys::halt(Halt::Reboot),
        Ok(Ok(boot::Finish::PowerOff)) => sys::halt(Halt::PowerOff),
        Ok(Err(fatal)) => {
            logger::fatal(fatal.stage, &fatal.message);
            // The recovery console replaces this power-off (recovery issue).
            sys::halt(Halt::PowerOff)
        }
        // The hook already printed the FATAL line.
        Err(_) => sys::halt(Halt::PowerOff),
    }
}

/// Prints `[ze-install] FATAL: panic: <message> at <file:line>` on every console, for a
/// panic in any thread.
fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-text payload)".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        logger::fatal(
            "panic",
            &format!("{}{at} (thread {name})", msg.replace('\n', " | ")),
        );
        if name != "main" {
            // A helper thread's panic would otherwise leave PID 1 waiting on it forever.
            sys::halt(Halt::PowerOff);
        }
    }));
}
