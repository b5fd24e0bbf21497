//! The recovery console on real terminals: every console the logger writes to (the
//! active list ∪ `console=`), serial first, with input from whichever console the
//! operator types on.
//!
//! Each console is put in canonical mode, so the kernel's line discipline does the line
//! editing (backspace, ^U) per console and `poll(2)` reports a console readable only
//! once a whole line is typed on it: a half-typed line on one console never mixes with
//! a line on another. The kernel echoes on the console being typed on; for a secret,
//! ECHO is cleared on every console (and input typed before the prompt is thrown
//! away). Serial lines get the speed `console=ttyS0,115200` names, 8N1, CLOCAL (no
//! modem control: a box without a DCD line must not hang up the console) and no
//! XON/XOFF (a stray ^S must not freeze the menu). The original settings come back
//! when the [`Ttys`] is dropped.

use super::Terminal;
use crate::logger::ConsoleSpec;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{
    ControlFlags, FlushArg, InputFlags, LocalFlags, OutputFlags, SetArg, SpecialCharacterIndices,
    Termios, cfsetspeed, tcdrain, tcflush, tcgetattr, tcsetattr,
};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

struct Port {
    name: String,
    file: File,
    /// The settings found on open, restored on drop; `None` for a non-terminal.
    saved: Option<Termios>,
    /// Ours (canonical, echo on), for toggling echo.
    ours: Option<Termios>,
    /// Still takes input (false after a hangup, or for a non-terminal).
    live: bool,
}

/// Every console, opened for the recovery console.
pub struct Ttys {
    ports: Vec<Port>,
}

/// A VGA/framebuffer virtual terminal (`tty0`, `tty1`) or the `console` alias; every
/// other console (`ttyS0`, `ttyAMA0`, `hvc0`, `ttyUSB0`) is a serial line of some kind.
pub fn is_serial(name: &str) -> bool {
    let vt = name
        .strip_prefix("tty")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    !(vt || name == "console")
}

/// The list with serial consoles first (stable otherwise): a headless box is driven
/// over serial, so that is where the menu goes first.
pub fn serial_first(list: &[ConsoleSpec]) -> Vec<ConsoleSpec> {
    let mut l = list.to_vec();
    l.sort_by_key(|c| !is_serial(&c.name));
    l
}

impl Ttys {
    /// Opens every console in `list` from `dev_root` (serial first); `/dev/console` when
    /// none opens.
    pub fn open(dev_root: &Path, list: &[ConsoleSpec]) -> Ttys {
        let open = |name: &str| {
            // O_NONBLOCK only for the open: a modem line without carrier would block it.
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
                .open(dev_root.join(name))
        };
        let mut files = Vec::new();
        for c in serial_first(list) {
            if let Ok(f) = open(&c.name) {
                let speed = c.options.as_deref().and_then(crate::logger::console_speed);
                files.push((c.name, f, speed));
            }
        }
        if files.is_empty()
            && let Ok(f) = open("console")
        {
            files.push(("console".into(), f, None));
        }
        Ttys::from_files(files)
    }

    /// Consoles already open: `(name, file, line speed)`.
    pub fn from_files(files: Vec<(String, File, Option<u32>)>) -> Ttys {
        let ports = files
            .into_iter()
            .map(|(name, file, speed)| {
                use nix::fcntl::{FcntlArg, OFlag, fcntl};
                // Blocking from here on: poll says when a line is there, and a write
                // must wait for a full output buffer rather than drop text.
                let _ = fcntl(&file, FcntlArg::F_SETFL(OFlag::empty()));
                let saved = tcgetattr(&file).ok();
                let ours = saved.clone().and_then(|t| {
                    let t = line_mode(t, speed, is_serial(&name));
                    tcsetattr(&file, SetArg::TCSANOW, &t).ok().map(|_| t)
                });
                // Lines typed while the install ran (the kernel kept them) are not
                // answers to a menu nobody had seen yet: "4" typed during a retry must
                // not power the machine off the moment it fails again.
                let _ = tcflush(&file, FlushArg::TCIFLUSH);
                Port {
                    live: ours.is_some(),
                    name,
                    file,
                    saved,
                    ours,
                }
            })
            .collect();
        Ttys { ports }
    }

    /// The consoles' names, in output order.
    pub fn names(&self) -> Vec<&str> {
        self.ports.iter().map(|p| p.name.as_str()).collect()
    }

    fn set_echo(&mut self, on: bool) {
        for p in &self.ports {
            if let Some(t) = &p.ours {
                let mut t = t.clone();
                t.local_flags.set(LocalFlags::ECHO, on);
                let _ = tcsetattr(&p.file, SetArg::TCSANOW, &t);
            }
        }
    }

    /// Waits for a whole line on any live console: `(port, line)`, or `None` when no
    /// console can take input any more.
    fn next_line(&mut self) -> Option<(usize, String)> {
        let mut buf = [0u8; 4096];
        loop {
            let live: Vec<usize> = (0..self.ports.len())
                .filter(|&i| self.ports[i].live)
                .collect();
            if live.is_empty() {
                return None;
            }
            let mut fds: Vec<PollFd> = live
                .iter()
                .map(|&i| PollFd::new(self.ports[i].file.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return None,
            }
            let ready: Vec<(usize, PollFlags)> = live
                .iter()
                .zip(&fds)
                .map(|(&i, f)| (i, f.revents().unwrap_or(PollFlags::empty())))
                .collect();
            drop(fds);
            for (i, ev) in ready {
                let gone = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
                if ev.intersects(gone) {
                    self.ports[i].live = false;
                    continue;
                }
                if !ev.contains(PollFlags::POLLIN) {
                    continue;
                }
                // Canonical mode: one read returns one line (at most 4095 bytes and
                // its newline), or what was typed before ^D.
                match (&self.ports[i].file).read(&mut buf) {
                    Ok(n) => {
                        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                        buf[..n].fill(0);
                        return Some((i, strip_line_end(line)));
                    }
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(nix::libc::EINTR | nix::libc::EAGAIN)
                        ) => {}
                    Err(_) => self.ports[i].live = false,
                }
            }
        }
    }
}

/// Canonical input with echo, CR read as NL, output NL as CR NL; for a serial line
/// also the speed, 8N1, the receiver on, no modem control and no flow control.
fn line_mode(mut t: Termios, speed: Option<u32>, serial: bool) -> Termios {
    t.local_flags
        .insert(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ECHOE | LocalFlags::ECHOK);
    // ^C and ^Z are plain characters here (PID 1 has no controlling terminal anyway).
    t.local_flags.remove(LocalFlags::ISIG | LocalFlags::ECHONL);
    t.input_flags.insert(InputFlags::ICRNL);
    t.input_flags
        .remove(InputFlags::IGNCR | InputFlags::INLCR | InputFlags::IXON | InputFlags::IXOFF);
    t.output_flags
        .insert(OutputFlags::OPOST | OutputFlags::ONLCR);
    t.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    t.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    if serial {
        t.control_flags
            .insert(ControlFlags::CS8 | ControlFlags::CREAD | ControlFlags::CLOCAL);
        t.control_flags
            .remove(ControlFlags::PARENB | ControlFlags::CSTOPB | ControlFlags::CRTSCTS);
        if let Some(rate) = speed.and_then(crate::logger::baud_rate) {
            let _ = cfsetspeed(&mut t, rate);
        }
    }
    t
}

fn strip_line_end(mut line: String) -> String {
    while line.ends_with(['\n', '\r']) {
        line.pop();
    }
    line
}

impl Terminal for Ttys {
    fn show(&mut self, text: &str) {
        for p in &self.ports {
            // One write per console; a console that fails has nobody to tell.
            let _ = (&p.file).write_all(text.as_bytes());
        }
    }

    fn prompt(&mut self, text: &str, secret: bool) -> Option<String> {
        if secret {
            // Before the prompt shows: whatever was typed earlier is not a try, and
            // what is typed once the prompt is visible must not be thrown away.
            for p in self.ports.iter().filter(|p| p.live) {
                let _ = tcflush(&p.file, FlushArg::TCIFLUSH);
            }
            self.set_echo(false);
        }
        self.show(text);
        let got = self.next_line();
        if secret {
            self.set_echo(true);
        }
        let from = got.as_ref().map(|(i, _)| *i);
        // The typing console's echo ended its line (unless the secret was not echoed);
        // end the prompt's line everywhere else.
        for (i, p) in self.ports.iter().enumerate() {
            if secret || Some(i) != from {
                let _ = (&p.file).write_all(b"\n");
            }
        }
        got.map(|(_, line)| line)
    }

    fn drain(&mut self) {
        for p in &self.ports {
            let _ = tcdrain(&p.file);
        }
    }
}

impl Drop for Ttys {
    fn drop(&mut self) {
        for p in &self.ports {
            if let Some(t) = &p.saved {
                let _ = tcsetattr(&p.file, SetArg::TCSADRAIN, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::pty::openpty;
    use std::os::fd::OwnedFd;

    /// A pty pair: the slave is the "console", the master is the operator's keyboard
    /// and screen.
    fn pty() -> (File, File) {
        let p = openpty(None, None).expect("openpty");
        let f = |fd: OwnedFd| File::from(fd);
        (f(p.master), f(p.slave))
    }

    fn type_in(master: &File, text: &str) {
        (&*master).write_all(text.as_bytes()).unwrap();
    }

    /// Reads the master side (the console's output and the kernel's echo) until it
    /// shows `needle`; the line discipline echoes from a work queue, so this waits for
    /// the marker with a bound rather than assuming it is there.
    fn wait_screen(master: &File, needle: &str) -> String {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        fcntl(master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..500 {
            match (&*master).read(&mut buf) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
            if String::from_utf8_lossy(&out).contains(needle) {
                return String::from_utf8_lossy(&out).into_owned();
            }
        }
        panic!(
            "{needle:?} never appeared; got {:?}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn serial_consoles_come_first() {
        let spec = |n: &str| ConsoleSpec {
            name: n.into(),
            options: None,
        };
        let l = serial_first(&[spec("tty0"), spec("ttyS1"), spec("console"), spec("hvc0")]);
        let names: Vec<&str> = l.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["ttyS1", "hvc0", "tty0", "console"]);
        assert!(is_serial("ttyAMA0") && is_serial("ttyS0") && !is_serial("tty1"));
        assert!(is_serial("tty"), "/dev/tty has no VT number");
    }

    #[test]
    fn a_line_is_read_from_whichever_console_it_is_typed_on() {
        let (m0, s0) = pty();
        let (m1, s1) = pty();
        let mut t = Ttys::from_files(vec![
            ("ttyS0".into(), s0, Some(115200)),
            ("tty0".into(), s1, None),
        ]);
        // A half line on the first console does not mix with a whole one on the other.
        type_in(&m0, "4");
        wait_screen(&m0, "4");
        let reader = std::thread::spawn(move || {
            let line = t.prompt("choice [1-4]: ", false);
            (t, line)
        });
        wait_screen(&m1, "choice [1-4]: ");
        type_in(&m1, "2\r");
        let (mut t, line) = reader.join().unwrap();
        assert_eq!(line.as_deref(), Some("2"));
        // Echoed on the console typed on, and the prompt's line ended on the other.
        assert_eq!(wait_screen(&m1, "\n"), "2\r\n");
        assert_eq!(wait_screen(&m0, "\n"), "choice [1-4]: \r\n");
        // The first console's line completes later, edited by the kernel (DEL).
        type_in(&m0, "\x7f3\n");
        assert_eq!(t.prompt("", false).as_deref(), Some("3"));
    }

    #[test]
    fn a_secret_is_not_echoed_and_earlier_typing_is_discarded() {
        let (m0, s0) = pty();
        let mut t = Ttys::from_files(vec![("ttyS0".into(), s0, None)]);
        type_in(&m0, "stale\n");
        // Echoed, so the line discipline has it: the prompt must throw it away.
        wait_screen(&m0, "stale\r\n");
        let reader = std::thread::spawn(move || {
            let line = t.prompt("token: ", true);
            (t, line)
        });
        wait_screen(&m0, "token: ");
        type_in(&m0, "hunter2\r");
        let (mut t, line) = reader.join().unwrap();
        assert_eq!(line.as_deref(), Some("hunter2"));
        // Only the newline we print after it; no echo.
        assert_eq!(wait_screen(&m0, "\n"), "\r\n");
        // Echo is back for the next line.
        type_in(&m0, "1\r");
        assert_eq!(t.prompt("", false).as_deref(), Some("1"));
        assert_eq!(wait_screen(&m0, "\n"), "1\r\n");
    }

    #[test]
    fn lines_typed_before_the_console_opened_are_not_answers() {
        let (m0, s0) = pty();
        type_in(&m0, "4\n");
        // Echoed under the pty's default settings: the kernel holds the line.
        wait_screen(&m0, "4\r\n");
        let mut t = Ttys::from_files(vec![("ttyS0".into(), s0, None)]);
        type_in(&m0, "2\n");
        assert_eq!(t.prompt("choice: ", false).as_deref(), Some("2"));
    }

    #[test]
    fn no_input_when_every_console_hangs_up() {
        let (m0, s0) = pty();
        let mut t = Ttys::from_files(vec![("ttyS0".into(), s0, None)]);
        drop(m0);
        assert_eq!(t.prompt("choice: ", false), None);
        // A regular file is written to but never read.
        let f = tempfile::tempfile().unwrap();
        let mut t = Ttys::from_files(vec![("log".into(), f, None)]);
        t.show("x");
        assert_eq!(t.prompt("choice: ", false), None);
    }

    #[test]
    fn settings_are_restored_on_drop() {
        let (_m0, s0) = pty();
        let before = tcgetattr(&s0).unwrap();
        let dup = s0.try_clone().unwrap();
        let t = Ttys::from_files(vec![("ttyS0".into(), s0, Some(9600))]);
        assert!(
            !tcgetattr(&dup)
                .unwrap()
                .local_flags
                .contains(LocalFlags::ISIG)
        );
        drop(t);
        let after = tcgetattr(&dup).unwrap();
        assert_eq!(after.local_flags, before.local_flags);
        assert_eq!(after.input_flags, before.input_flags);
    }
}
