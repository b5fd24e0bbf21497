//! Booting a kernel and initrd under QEMU (TCG: nested KVM hangs on this kind of
//! machine) with every serial port captured to a file, and waiting for markers on them
//! with hard timeouts. QEMU is killed on timeout and when the handle is dropped.
//!
//! A guest can also boot from the network (`-boot n`: SeaBIOS runs the NIC's iPXE
//! option ROM, or OVMF its own PXE client) on a tap device inside a network namespace
//! ([`Vm::in_netns`]).
//!
//! A serial port can also be made interactive ([`Vm::interactive_serial`]): QEMU then
//! serves it on a unix socket the harness connects to before the guest starts, its
//! output is still captured to the same file, and a test types on it with
//! [`Running::send`] and waits for answers with [`Running::expect`].

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
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
    /// The firmware boots from the drives: SeaBIOS in `-boot order=` (`d` the CD-ROM,
    /// `c` the first disk); OVMF by its own boot order (an installer ISO's GRUB).
    Drives { order: String },
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
    /// Serial ports the test can type on (served on `ttyS<i>.sock`).
    pub interactive: Vec<usize>,
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
            interactive: Vec::new(),
            netns: None,
            drives: Vec::new(),
            nics: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// A guest whose firmware boots from its drives (`order` for SeaBIOS, see
    /// [`Boot::Drives`]); with [`Firmware::Uefi`] OVMF finds the bootable drive itself.
    pub fn boot_drives(order: &str) -> Vm {
        Vm::with_boot(Boot::Drives {
            order: order.to_string(),
        })
    }

    pub fn firmware(mut self, firmware: Firmware) -> Vm {
        self.firmware = firmware;
        self
    }

    /// Makes ttyS`i` interactive: QEMU serves it on a unix socket (and waits for the
    /// harness to connect before it starts the guest, so no output is lost); the output
    /// is captured to `ttyS<i>.log` as for the other ports.
    pub fn interactive_serial(mut self, i: usize) -> Vm {
        self.serials = self.serials.max(i + 1);
        if !self.interactive.contains(&i) {
            self.interactive.push(i);
        }
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
            Boot::Drives { order } => a.extend(["-boot".into(), format!("order={order}")]),
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
            if self.interactive.contains(&i) {
                a.push("-chardev".into());
                a.push(format!(
                    "socket,id=ser{i},path={},server=on,wait=on",
                    socket_path(dir, i).display()
                ));
                a.push("-serial".into());
                a.push(format!("chardev:ser{i}"));
                continue;
            }
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
        for &i in &self.interactive {
            let sock = socket_path(dir, i);
            // sockaddr_un holds 108 bytes with the terminating NUL.
            if sock.as_os_str().len() > 107 {
                bail!("{} is too long for a unix socket", sock.display());
            }
            let _ = std::fs::remove_file(&sock);
        }
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
        let mut run = Running {
            child,
            dir: dir.to_path_buf(),
            serials: self.serials,
            started: Instant::now(),
            status: None,
            ports: BTreeMap::new(),
            cursors: vec![0; self.serials],
        };
        for &i in &self.interactive {
            let port = run.connect(i)?;
            run.ports.insert(i, port);
        }
        Ok(run)
    }
}

fn socket_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("ttyS{i}.sock"))
}

/// The harness's end of an interactive serial port.
struct Port {
    writer: UnixStream,
    /// Copies the guest's output into `ttyS<i>.log` until QEMU closes the socket.
    reader: Option<JoinHandle<()>>,
}

/// A running guest.
pub struct Running {
    child: Child,
    dir: PathBuf,
    serials: usize,
    started: Instant,
    status: Option<ExitStatus>,
    ports: BTreeMap<usize, Port>,
    /// Per port, where the next [`Running::expect`] starts looking.
    cursors: Vec<usize>,
}

impl Running {
    /// Connects to interactive port `i` once QEMU has made its socket (QEMU starts the
    /// guest only after that).
    fn connect(&mut self, i: usize) -> Result<Port> {
        let sock = socket_path(&self.dir, i);
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(e) => {
                    if let Some(st) = self.poll_exit()? {
                        bail!(
                            "QEMU exited ({st}) before ttyS{i}'s socket took a connection: {}",
                            std::fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default()
                        );
                    }
                    if Instant::now() >= deadline {
                        self.kill();
                        bail!("connecting to {}: {e}", sock.display());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let mut from = stream.try_clone()?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("ttyS{i}.log")))?;
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || log.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        Ok(Port {
            writer: stream,
            reader: Some(reader),
        })
    }

    /// Types `text` on interactive serial port `i` (`\r` ends a line, as a terminal's
    /// Enter key does).
    pub fn send(&mut self, i: usize, text: &str) -> Result<()> {
        let port = self
            .ports
            .get_mut(&i)
            .with_context(|| format!("ttyS{i} is not interactive"))?;
        port.writer
            .write_all(text.as_bytes())
            .with_context(|| format!("typing on ttyS{i}"))
    }

    /// Waits until port `i` shows `needle` after what earlier `expect` calls matched,
    /// and returns the text from there up to and including it. A menu printed twice is
    /// matched twice. Fails (and kills QEMU) on timeout, and fails when QEMU exits first.
    pub fn expect(&mut self, i: usize, needle: &str, timeout: Duration) -> Result<String> {
        self.poll_serial(i, needle, timeout, |run, log| {
            let mut from = run.cursors[i].min(log.len());
            // A character cut at the end of the last read may have grown since.
            while !log.is_char_boundary(from) {
                from -= 1;
            }
            let end = from + log[from..].find(needle)? + needle.len();
            run.cursors[i] = end;
            Some(log[from..end].to_string())
        })
    }

    /// Reads serial port `i` every 50 ms until `found` accepts it, QEMU exits (after one
    /// last look: the file may have been written just before the exit), or `timeout`
    /// passes (then QEMU is killed). `needle` is for the messages.
    fn poll_serial<T>(
        &mut self,
        i: usize,
        needle: &str,
        timeout: Duration,
        mut found: impl FnMut(&mut Running, &str) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.poll_exit()?;
            let log = self.serial(i);
            if let Some(v) = found(self, &log) {
                return Ok(v);
            }
            if let Some(st) = exited {
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

    /// Everything serial port `i` has printed so far.
    pub fn serial(&self, i: usize) -> String {
        assert!(i < self.serials, "ttyS{i} is not captured");
        // Lossy: a stray byte on a serial line must not hide everything else.
        std::fs::read(self.dir.join(format!("ttyS{i}.log")))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
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
            if self.status.is_some() {
                self.join_readers();
            }
        }
        Ok(self.status)
    }

    /// Once QEMU is gone its sockets are closed: the readers have seen everything, and
    /// joining them makes the log files complete.
    fn join_readers(&mut self) {
        for p in self.ports.values_mut() {
            if let Some(r) = p.reader.take() {
                let _ = r.join();
            }
        }
    }

    fn tail(&self, i: usize) -> String {
        let s = self.serial(i);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until serial port `i` shows `needle`. Fails when QEMU exits first or the
    /// timeout passes (then QEMU is killed).
    pub fn wait_for(&mut self, i: usize, needle: &str, timeout: Duration) -> Result<()> {
        self.poll_serial(i, needle, timeout, |_, log| {
            log.contains(needle).then_some(())
        })
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
            self.join_readers();
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
