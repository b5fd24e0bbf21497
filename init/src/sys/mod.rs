//! System calls that cannot run in a unit test: mount, reboot, finit_module, and the
//! block and loop ioctls. This is the only module allowed to contain `unsafe`; every
//! unsafe block carries a `SAFETY:` comment.
#![allow(unsafe_code)]

pub mod block;
pub mod loopdev;
pub mod mount;
pub mod packet;
pub mod writeback;

use nix::errno::Errno;
use std::fs::File;
use std::io;
use std::path::Path;

/// A filesystem PID 1 mounts before anything else.
pub struct ApiMount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub data: Option<&'static str>,
}

/// proc, sys, devtmpfs and a tmpfs /run, in the order later stages need them.
pub const API_MOUNTS: &[ApiMount] = &[
    ApiMount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        data: None,
    },
    ApiMount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        data: None,
    },
    ApiMount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        data: Some("mode=0755"),
    },
    ApiMount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        data: Some("mode=0755,size=16m"),
    },
];

/// Mounts the API filesystems. EBUSY means the kernel (or an earlier init) already
/// mounted it, which is fine. Returns the failures; the caller logs them once the
/// console logger exists.
pub fn mount_api_filesystems() -> Vec<String> {
    use nix::mount::{MsFlags, mount};
    let mut failures = Vec::new();
    for m in API_MOUNTS {
        if let Err(e) = std::fs::create_dir_all(m.target) {
            failures.push(format!("creating {}: {e}", m.target));
            continue;
        }
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        match mount(Some(m.source), m.target, Some(m.fstype), flags, m.data) {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(e) => failures.push(format!("mounting {} on {}: {e}", m.fstype, m.target)),
        }
    }
    failures
}

/// How PID 1 ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    PowerOff,
    Reboot,
}

/// Syncs and powers off or reboots. Never returns: if reboot(2) fails, PID 1 must still
/// not exit (that would panic the kernel), so it sleeps forever.
pub fn halt(how: Halt) -> ! {
    use nix::sys::reboot::{RebootMode, reboot};
    nix::unistd::sync();
    let mode = match how {
        Halt::PowerOff => RebootMode::RB_POWER_OFF,
        Halt::Reboot => RebootMode::RB_AUTOBOOT,
    };
    let err = reboot(mode).err();
    crate::logger::marker(&format!("FATAL: halt: reboot(2) failed: {err:?}"));
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Loads a kernel module from a file with finit_module(2).
pub fn finit_module(path: &Path) -> io::Result<()> {
    use nix::kmod::{ModuleInitFlags, finit_module};
    let f = File::open(path)?;
    match finit_module(&f, c"", ModuleInitFlags::empty()) {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Fills `buf` from the kernel's RNG with getrandom(2) and `GRND_INSECURE` (Linux 5.6+):
/// never blocks and never waits for entropy. For values that must differ between
/// machines but need not be secret (DHCP transaction ids, retransmission jitter).
/// Reading /dev/urandom instead costs up to a second in early boot: on 6.x kernels it
/// first runs the jitter-entropy loop until the pool is initialized.
pub fn random_insecure(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the pointer and length describe `rest`, a live, writable slice; the
        // kernel writes at most that many bytes.
        let n = unsafe {
            nix::libc::getrandom(
                rest.as_mut_ptr().cast(),
                rest.len(),
                nix::libc::GRND_INSECURE,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}
