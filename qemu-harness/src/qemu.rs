//! Booting a kernel and initrd under QEMU (TCG: nested KVM hangs on this kind of
//! machine) with every serial port captured to a file, and waiting for markers on them
//! with hard timeouts. QEMU is killed on timeout and when the handle is dropped.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveKind {
    /// virtio-blk (`/dev/vdX` in the guest).
    Virtio,
    /// IDE CD-ROM on the PIIX controller (`/dev/sr0`).
    Cdrom,
    /// IDE hard disk (`/dev/sdX` through libata).
    Ide,
    /// A USB stick (usb-storage on an xHCI controller, `/dev/sdX`, removable).
    Usb,
}

#[derive(Debug, Clone)]
pub struct Drive {
    pub path: PathBuf,
    pub kind: DriveKind,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub struct Nic {
    /// The `-netdev` options after the id, e.g. `user` or `user,restrict=on`.
    pub netdev: String,
    pub model: String,
    pub mac: Option<String>,
}

impl Nic {
    pub fn user() -> Nic {
        Nic {
            netdev: "user".into(),
            model: "virtio-net-pci".into(),
            mac: None,
        }
    }
}

/// Firmware that boots the guest from its drives instead of QEMU's `-kernel`.
#[derive(Debug, Clone)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default, in `-boot order=` (`d` CD-ROM, `c` first disk).
    Bios { order: String },
    /// OVMF (UEFI, Debian's `ovmf`): the code read-only and a private copy of the
    /// variable store, so runs never share NVRAM.
    Ovmf { code: PathBuf, vars: PathBuf },
}

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

impl Firmware {
    /// OVMF with a fresh copy of its variable store in `dir`.
    pub fn ovmf(dir: &Path) -> Result<Firmware> {
        let vars = dir.join("OVMF_VARS.fd");
        std::fs::copy(OVMF_VARS, &vars).with_context(|| format!("copying {OVMF_VARS}"))?;
        Ok(Firmware::Ovmf {
            code: OVMF_CODE.into(),
            vars,
        })
    }
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct Vm {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
    pub memory_mb: u32,
    /// Serial ports, each captured to `ttyS<i>.log` in the run directory.
    pub serials: usize,
    pub drives: Vec<Drive>,
    pub nics: Vec<Nic>,
    pub extra: Vec<String>,
    /// Boot through firmware from the drives; `kernel`, `initrd` and `append` unused.
    pub firmware: Option<Firmware>,
}

impl Vm {
    pub fn new(kernel: &Path, initrd: &Path, append: &str) -> Vm {
        Vm {
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            append: append.to_string(),
            memory_mb: 512,
            serials: 1,
            drives: Vec::new(),
            nics: Vec::new(),
            extra: Vec::new(),
            firmware: None,
        }
    }

    /// A guest that boots through `firmware` from its drives (an installer ISO's GRUB).
    pub fn from_firmware(firmware: Firmware) -> Vm {
        Vm {
            firmware: Some(firmware),
            ..Vm::new(Path::new(""), Path::new(""), "")
        }
    }

    pub fn drive(mut self, path: &Path, kind: DriveKind) -> Vm {
        self.drives.push(Drive {
            path: path.to_path_buf(),
            kind,
            read_only: false,
        });
        self
    }

    pub fn nic(mut self, nic: Nic) -> Vm {
        self.nics.push(nic);
        self
    }

    /// The full QEMU command line.
    pub fn args(&self, dir: &Path) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-machine".into(),
            "pc".into(),
            "-m".into(),
            self.memory_mb.to_string(),
            "-nographic".into(),
            "-no-reboot".into(),
            "-monitor".into(),
            "none".into(),
        ];
        match &self.firmware {
            None => a.extend([
                "-kernel".into(),
                self.kernel.display().to_string(),
                "-initrd".into(),
                self.initrd.display().to_string(),
                "-append".into(),
                self.append.clone(),
            ]),
            Some(Firmware::Bios { order }) => a.extend(["-boot".into(), format!("order={order}")]),
            Some(Firmware::Ovmf { code, vars }) => a.extend([
                "-drive".into(),
                format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    code.display()
                ),
                "-drive".into(),
                format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
            ]),
        }
        for i in 0..self.serials {
            a.push("-serial".into());
            a.push(format!(
                "file:{}",
                dir.join(format!("ttyS{i}.log")).display()
            ));
        }
        for (i, d) in self.drives.iter().enumerate() {
            let ro = if d.read_only { ",readonly=on" } else { "" };
            let path = d.path.display();
            match d.kind {
                DriveKind::Virtio => {
                    a.push("-drive".into());
                    a.push(format!("file={path},format=raw,if=virtio,id=d{i}{ro}"));
                }
                DriveKind::Cdrom => {
                    a.push("-drive".into());
                    a.push(format!("file={path},format=raw,media=cdrom,if=ide,id=d{i}"));
                }
                DriveKind::Ide => {
                    a.push("-drive".into());
                    a.push(format!("file={path},format=raw,if=ide,id=d{i}{ro}"));
                }
                DriveKind::Usb => {
                    if !a.iter().any(|x| x == "qemu-xhci,id=xhci") {
                        a.push("-device".into());
                        a.push("qemu-xhci,id=xhci".into());
                    }
                    a.push("-drive".into());
                    a.push(format!("file={path},format=raw,if=none,id=d{i}{ro}"));
                    a.push("-device".into());
                    a.push(format!("usb-storage,bus=xhci.0,drive=d{i},removable=on"));
                }
            }
        }
        if self.nics.is_empty() {
            a.push("-nic".into());
            a.push("none".into());
        }
        for (i, n) in self.nics.iter().enumerate() {
            a.push("-netdev".into());
            a.push(format!("{},id=n{i}", n.netdev));
            a.push("-device".into());
            let mac = n
                .mac
                .as_ref()
                .map(|m| format!(",mac={m}"))
                .unwrap_or_default();
            a.push(format!("{},netdev=n{i}{mac}", n.model));
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts QEMU with its logs in `dir`.
    pub fn start(&self, dir: &Path) -> Result<Running> {
        let args = self.args(dir);
        std::fs::write(dir.join("qemu.cmdline"), args.join("\n"))?;
        let out = std::fs::File::create(dir.join("qemu.log"))?;
        let child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting qemu-system-x86_64")?;
        Ok(Running {
            child,
            dir: dir.to_path_buf(),
            serials: self.serials,
            started: Instant::now(),
            status: None,
        })
    }
}

/// A running guest.
pub struct Running {
    child: Child,
    dir: PathBuf,
    serials: usize,
    started: Instant,
    status: Option<ExitStatus>,
}

impl Running {
    /// Everything serial port `i` has printed so far.
    pub fn serial(&self, i: usize) -> String {
        assert!(i < self.serials, "ttyS{i} is not captured");
        std::fs::read_to_string(self.dir.join(format!("ttyS{i}.log"))).unwrap_or_default()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// QEMU's exit status if it has exited, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.poll_exit().ok().flatten()
    }

    fn poll_exit(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    fn tail(&self, i: usize) -> String {
        let s = self.serial(i);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until serial port `i` shows `needle`. Fails when QEMU exits first or the
    /// timeout passes (then QEMU is killed).
    pub fn wait_for(&mut self, i: usize, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.serial(i).contains(needle) {
                return Ok(());
            }
            if let Some(st) = self.poll_exit()? {
                // The file may have been written just before the exit.
                if self.serial(i).contains(needle) {
                    return Ok(());
                }
                bail!(
                    "QEMU exited ({st}) before ttyS{i} showed {needle:?}; last lines:\n{}",
                    self.tail(i)
                );
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "timed out after {timeout:?} waiting for {needle:?} on ttyS{i}; last lines:\n{}",
                    self.tail(i)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for QEMU to exit by itself (the guest powered off or rebooted under
    /// `-no-reboot`). On timeout QEMU is killed and this fails.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.poll_exit()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "QEMU did not exit within {timeout:?}; last lines:\n{}",
                    self.tail(0)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if self.poll_exit().ok().flatten().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A sparse blank disk image of `size` bytes.
pub fn blank_disk(path: &Path, size: u64) -> Result<()> {
    let f = std::fs::File::create(path)?;
    f.set_len(size)?;
    Ok(())
}
