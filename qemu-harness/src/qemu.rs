//! Booting a kernel and initrd under QEMU (TCG: nested KVM hangs on this kind of
//! machine) with every serial port captured to a file, and waiting for markers on them
//! with hard timeouts. QEMU is killed on timeout and when the handle is dropped.
//!
//! A guest can also boot from the network (`-boot n`: SeaBIOS runs the NIC's iPXE
//! option ROM, or OVMF its own PXE client) on a tap device inside a network namespace
//! ([`Vm::in_netns`]), and take keystrokes on its first serial port
//! ([`Vm::serial_input`], [`Running::send`]).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// OVMF from Debian's `ovmf` package: firmware code (read-only) and the template of its
/// variable store (copied per run, the guest writes it).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveKind {
    /// virtio-blk (`/dev/vdX` in the guest).
    Virtio,
    /// IDE CD-ROM on the PIIX controller (`/dev/sr0`).
    Cdrom,
    /// IDE hard disk (`/dev/sdX` through libata).
    Ide,
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
    /// The `-device` driver and its own options: `virtio-net-pci`, or
    /// `virtio-net-pci,romfile=` for a NIC without its iPXE option ROM.
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

    /// A virtio NIC on the tap device `ifname`, which must exist (created with
    /// `ip tuntap` in the namespace QEMU runs in) so QEMU runs no ifup script.
    pub fn tap(ifname: &str, mac: &str) -> Nic {
        Nic {
            netdev: format!("tap,ifname={ifname},script=no,downscript=no"),
            model: "virtio-net-pci".into(),
            mac: Some(mac.to_string()),
        }
    }
}

/// How the guest starts.
#[derive(Debug, Clone)]
pub enum Boot {
    /// QEMU loads the kernel and initrd itself (`-kernel`, `-initrd`, `-append`).
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
    },
    /// The firmware boots from the network (`-boot n`).
    Network,
}

/// The guest's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default; net-boots through the NIC's option ROM (iPXE).
    #[default]
    Bios,
    /// OVMF ([`OVMF_CODE`]); net-boots with its own UEFI PXE client when the NIC has no
    /// option ROM.
    Uefi,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct Vm {
    pub boot: Boot,
    pub firmware: Firmware,
    pub memory_mb: u32,
    /// Serial ports, each captured to `ttyS<i>.log` in the run directory.
    pub serials: usize,
    /// Port 0 also takes input ([`Running::send`]): a socket beside its log file.
    pub serial_input: bool,
    /// Run QEMU inside this network namespace (`ip netns exec`), where its tap
    /// devices are.
    pub netns: Option<String>,
    pub drives: Vec<Drive>,
    pub nics: Vec<Nic>,
    pub extra: Vec<String>,
}

impl Vm {
    pub fn new(kernel: &Path, initrd: &Path, append: &str) -> Vm {
        Vm::with_boot(Boot::Kernel {
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            append: append.to_string(),
        })
    }

    /// A guest that boots from the network, as a machine set to PXE-boot does.
    pub fn netboot() -> Vm {
        Vm::with_boot(Boot::Network)
    }

    fn with_boot(boot: Boot) -> Vm {
        Vm {
            boot,
            firmware: Firmware::Bios,
            memory_mb: 512,
            serials: 1,
            serial_input: false,
            netns: None,
            drives: Vec::new(),
            nics: Vec::new(),
            extra: Vec::new(),
        }
    }

    pub fn firmware(mut self, firmware: Firmware) -> Vm {
        self.firmware = firmware;
        self
    }

    pub fn serial_input(mut self) -> Vm {
        self.serial_input = true;
        self
    }

    pub fn in_netns(mut self, ns: &crate::netns::Netns) -> Vm {
        self.netns = Some(ns.name().to_string());
        self
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
        match &self.boot {
            Boot::Kernel {
                kernel,
                initrd,
                append,
            } => a.extend([
                "-kernel".into(),
                kernel.display().to_string(),
                "-initrd".into(),
                initrd.display().to_string(),
                "-append".into(),
                append.clone(),
            ]),
            Boot::Network => a.extend(["-boot".into(), "n".into()]),
        }
        if self.firmware == Firmware::Uefi {
            a.push("-drive".into());
            a.push(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
            a.push("-drive".into());
            a.push(format!(
                "if=pflash,format=raw,file={}",
                dir.join("OVMF_VARS.fd").display()
            ));
        }
        for i in 0..self.serials {
            let log = dir.join(format!("ttyS{i}.log"));
            if i == 0 && self.serial_input {
                // The log file records everything, whether or not the socket has a
                // client; wait=off lets the guest run before anyone connects.
                a.push("-chardev".into());
                a.push(format!(
                    "socket,id=ttyS0,path={},server=on,wait=off,logfile={}",
                    dir.join("ttyS0.sock").display(),
                    log.display()
                ));
                a.push("-serial".into());
                a.push("chardev:ttyS0".into());
            } else {
                a.push("-serial".into());
                a.push(format!("file:{}", log.display()));
            }
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
        if self.firmware == Firmware::Uefi {
            std::fs::copy(OVMF_VARS, dir.join("OVMF_VARS.fd"))
                .with_context(|| format!("copying {OVMF_VARS} (Debian's ovmf)"))?;
        }
        let args = self.args(dir);
        std::fs::write(dir.join("qemu.cmdline"), args.join("\n"))?;
        let out = std::fs::File::create(dir.join("qemu.log"))?;
        // `ip netns exec` execs QEMU, so the child is QEMU itself either way.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "qemu-system-x86_64"]);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        let child = cmd
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
            input: self.serial_input.then(|| dir.join("ttyS0.sock")),
            socket: None,
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
    /// The socket of port 0 when it takes input.
    input: Option<PathBuf>,
    socket: Option<std::os::unix::net::UnixStream>,
    started: Instant,
    status: Option<ExitStatus>,
}

impl Running {
    /// Types `bytes` on serial port 0 (the guest must have been started with
    /// [`Vm::serial_input`]). The first call connects, waiting up to 5 s for QEMU to
    /// create the socket.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let path = self
            .input
            .clone()
            .context("ttyS0 takes no input (Vm::serial_input)")?;
        if self.socket.is_none() {
            let deadline = Instant::now() + Duration::from_secs(5);
            let s = loop {
                match std::os::unix::net::UnixStream::connect(&path) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() >= deadline => {
                        bail!("connecting to {}: {e}", path.display())
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            };
            // The guest's output also comes down the socket (the log file has it too).
            // Unread, it would fill the socket buffer and stall the guest's UART, so a
            // thread drains it until QEMU closes the socket.
            let mut r = s.try_clone()?;
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(std::io::Read::read(&mut r, &mut buf), Ok(n) if n > 0) {}
            });
            self.socket = Some(s);
        }
        let s = self.socket.as_mut().expect("connected above");
        s.write_all(bytes)?;
        s.flush()?;
        Ok(())
    }

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
