//! Network namespaces for the root-tier tests: isolated links with real DHCP (and later
//! HTTP) servers, so the installer's network code meets real peers without touching the
//! host's own interfaces or sending a packet anywhere else.
//!
//! The building blocks:
//! - [`Netns`]: a uniquely named namespace (`zeh-<tag>-<pid>-<n>`), deleted on drop;
//!   [`Netns::command`] runs a program inside it.
//! - [`veth`]: a veth pair created directly between two namespaces (never in the host's).
//! - [`Daemon`]: a server process in a namespace, its output in a log file, killed and
//!   reaped on drop; [`Dnsmasq`] and [`IscDhcpd`] start the two DHCP servers with their
//!   own config, lease and pid files in a temp directory.
//! - [`Lan`]: the usual shape — a server namespace and a client namespace joined by one
//!   link, 10.77.N.0/24 with the server at .1 — ready for `start_dnsmasq` etc.
//! - [`Netns::bridge`] and [`Netns::tap`]: a bridge with tap devices for QEMU guests
//!   running in the namespace; [`Nginx`] serves files there (the PXE scenarios,
//!   `crate::pxe`).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use qemu_harness::netns::{Dnsmasq, Lan};
//! let mut lan = Lan::new("example")?;
//! lan.start_dnsmasq(&Dnsmasq::default())?;
//! let out = lan.client.command("ip").args(["addr"]).output()?;
//! # Ok(()) }
//! ```
//!
//! Namespaces left behind by a test process that was killed (no `Drop`) are removed the
//! next time one is created: the name carries the creating PID.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every namespace the harness creates.
pub const PREFIX: &str = "zeh-";
/// How long a server gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// A network namespace, deleted (with everything still running in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `zeh-<tag>-<pid>-<n>` with its loopback up. `tag` should be short and
    /// name the test.
    pub fn new(tag: &str) -> Result<Netns> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        sweep_stale();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{tag}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>`; returns its standard output.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`, which also
    /// gives it a /sys showing the namespace's interfaces).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    pub fn add_address(&self, ifname: &str, cidr: &str) -> Result<()> {
        self.ip(&["addr", "add", cidr, "dev", ifname]).map(drop)
    }

    pub fn link_up(&self, ifname: &str) -> Result<()> {
        self.ip(&["link", "set", ifname, "up"]).map(drop)
    }

    pub fn link_down(&self, ifname: &str) -> Result<()> {
        self.ip(&["link", "set", ifname, "down"]).map(drop)
    }

    pub fn set_mac(&self, ifname: &str, mac: &str) -> Result<()> {
        self.ip(&["link", "set", ifname, "address", mac]).map(drop)
    }

    /// The interface's MAC address, lowercase with colons.
    pub fn mac(&self, ifname: &str) -> Result<String> {
        let out = self.ip(&["-o", "link", "show", ifname])?;
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_string)
            .with_context(|| format!("no link/ether in {out:?}"))
    }

    /// Whether some socket in the namespace is bound to UDP `port` (from
    /// /proc/net/udp, which shows the reader's namespace).
    pub fn udp_bound(&self, port: u16) -> Result<bool> {
        let out = self.command("cat").arg("/proc/net/udp").output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let want = format!(":{port:04X}");
        Ok(text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .any(|local| local.ends_with(&want)))
    }

    /// A bridge `name` holding `cidr`, up. STP is off and the forwarding delay zero, so
    /// a port forwards as soon as it is up (a guest's first DHCP is not lost).
    pub fn bridge(&self, name: &str, cidr: &str) -> Result<()> {
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        self.add_address(name, cidr)?;
        self.link_up(name)
    }

    /// A persistent tap device `name` on `bridge`, up. A QEMU in this namespace opens
    /// it by name (`qemu::Nic::tap`); it has carrier while QEMU holds it.
    pub fn tap(&self, name: &str, bridge: &str) -> Result<()> {
        self.ip(&["tuntap", "add", "dev", name, "mode", "tap"])?;
        self.ip(&["link", "set", name, "master", bridge])?;
        self.link_up(name)
    }

    /// Whether some socket in the namespace listens on TCP `port` (from /proc/net/tcp,
    /// state 0A).
    pub fn tcp_listening(&self, port: u16) -> Result<bool> {
        let out = self.command("cat").arg("/proc/net/tcp").output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let want = format!(":{port:04X}");
        Ok(text.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
        }))
    }

    /// Starts `cmd` (from [`Netns::command`]) as a daemon logging to `log`.
    pub fn spawn(&self, name: &str, mut cmd: Command, log: &Path) -> Result<Daemon> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Daemon {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A veth pair: `a_if` in `a`, `b_if` in `b`, both up. Created inside `a` with the peer
/// placed straight into `b`, so the host's namespace never holds either end.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ])?;
    a.link_up(a_if)?;
    b.link_up(b_if)
}

/// A server process in a namespace; killed and reaped on drop.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its combined standard output and error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Polls `ready` every 20 ms until it holds, failing with the log if the process
    /// exits first or `timeout` passes.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut(&Daemon) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                bail!(
                    "{} exited ({st}) before it was ready:\n{}",
                    self.name,
                    self.log()
                );
            }
            if ready(self)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{} not ready after {timeout:?}:\n{}", self.name, self.log());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; kills it if it
    /// does not. nginx stops at once on SIGTERM ("fast shutdown": open connections are
    /// closed), and takes its worker processes with it.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        if let Some(st) = self.child.try_wait()? {
            return Ok(st);
        }
        run(Command::new("kill").args(["-TERM", &self.child.id().to_string()]))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} ignored SIGTERM for {timeout:?}; killed", self.name);
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // `ip netns exec` execs the program, so this is the daemon itself. SIGTERM first,
        // so a server with worker processes (nginx) stops them too.
        let _ = self.terminate(Duration::from_secs(3));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsmasq as a DHCP-only server (`--port=0`: no DNS).
#[derive(Debug, Clone)]
pub struct Dnsmasq {
    pub range: (Ipv4Addr, Ipv4Addr),
    pub netmask: Ipv4Addr,
    pub lease_secs: u32,
    /// Option 3; `None` sends no router at all.
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// RFC 4039: answer a DISCOVER that offers rapid commit with an ACK.
    pub rapid_commit: bool,
    /// dnsmasq pings an address before offering it to a new client and waits ~3 s for
    /// an answer; `true` (the default here) turns that off so tests stay fast.
    pub no_ping: bool,
    /// A configuration file to read (a generated `dnsmasq.conf`); none by default.
    pub conf_file: Option<PathBuf>,
    pub extra: Vec<String>,
}

impl Default for Dnsmasq {
    fn default() -> Dnsmasq {
        Dnsmasq {
            range: (Ipv4Addr::new(10, 77, 0, 100), Ipv4Addr::new(10, 77, 0, 199)),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            lease_secs: 3600,
            router: Some(Ipv4Addr::new(10, 77, 0, 1)),
            dns: vec![Ipv4Addr::new(10, 77, 0, 53)],
            rapid_commit: false,
            no_ping: true,
            conf_file: None,
            extra: Vec::new(),
        }
    }
}

impl Dnsmasq {
    /// The command line; every file dnsmasq touches is under `dir`.
    pub fn args(&self, iface: &str, dir: &Path) -> Vec<String> {
        let (lo, hi) = self.range;
        let mut a = vec![
            "--keep-in-foreground".to_string(),
            "--log-facility=-".into(),
            "--log-dhcp".into(),
            format!(
                "--conf-file={}",
                self.conf_file
                    .as_deref()
                    .unwrap_or(Path::new("/dev/null"))
                    .display()
            ),
            "--port=0".into(),
            "--user=root".into(),
            "--group=root".into(),
            format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
            format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()),
            format!("--interface={iface}"),
            "--bind-interfaces".into(),
            "--dhcp-authoritative".into(),
            format!(
                "--dhcp-range={lo},{hi},{},{}",
                self.netmask, self.lease_secs
            ),
        ];
        a.push(match self.router {
            Some(r) => format!("--dhcp-option=option:router,{r}"),
            None => "--dhcp-option=option:router".into(),
        });
        if !self.dns.is_empty() {
            let list: Vec<String> = self.dns.iter().map(|d| d.to_string()).collect();
            a.push(format!(
                "--dhcp-option=option:dns-server,{}",
                list.join(",")
            ));
        }
        if self.rapid_commit {
            a.push("--dhcp-rapid-commit".into());
        }
        if self.no_ping {
            a.push("--no-ping".into());
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts dnsmasq in `ns` on `iface`; returns once it has bound UDP port 67.
    pub fn start(&self, ns: &Netns, iface: &str, dir: &Path) -> Result<Daemon> {
        let mut cmd = ns.command("dnsmasq");
        cmd.args(self.args(iface, dir));
        let mut d = ns.spawn("dnsmasq", cmd, &dir.join("dnsmasq.log"))?;
        d.wait_ready(READY_TIMEOUT, |_| ns.udp_bound(67))?;
        Ok(d)
    }

    /// The lease file's lines (`expiry mac ip hostname client-id`).
    pub fn leases(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("dnsmasq.leases")).unwrap_or_default()
    }
}

/// nginx in the foreground with a given configuration. The configuration's relative
/// paths (pid, logs, temporary files) resolve against `prefix`, a state directory of
/// the test's own, so nothing outside it is written.
#[derive(Debug, Clone)]
pub struct Nginx {
    pub conf: PathBuf,
    pub prefix: PathBuf,
    /// The TCP port the configuration listens on: ready once a socket listens there.
    pub port: u16,
}

impl Nginx {
    /// Starts nginx in `ns`; returns once it listens. `log` gets its standard error
    /// (startup errors; the configuration's error_log takes over once it is read).
    pub fn start(&self, ns: &Netns, log: &Path) -> Result<Daemon> {
        std::fs::create_dir_all(&self.prefix)?;
        let mut cmd = ns.command("nginx");
        cmd.arg("-p")
            .arg(format!("{}/", self.prefix.display()))
            .arg("-c")
            .arg(&self.conf)
            .args(["-e", "stderr", "-g", "daemon off;"]);
        let mut d = ns.spawn("nginx", cmd, log)?;
        d.wait_ready(READY_TIMEOUT, |_| ns.tcp_listening(self.port))?;
        Ok(d)
    }

    /// The access log so far (`access.log` under the prefix).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("access.log")).unwrap_or_default()
    }
}

/// ISC dhcpd (`isc-dhcp-server`), a second, independent implementation.
#[derive(Debug, Clone)]
pub struct IscDhcpd {
    pub subnet: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub range: (Ipv4Addr, Ipv4Addr),
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: u32,
    /// Reservations: (MAC, address).
    pub fixed: Vec<(String, Ipv4Addr)>,
    /// dhcpd pings an address before offering it (1 s); off by default here.
    pub ping_check: bool,
    /// Appended to the configuration as it is (boot rules such as a generated
    /// dhcpd.conf snippet).
    pub extra: String,
}

impl Default for IscDhcpd {
    fn default() -> IscDhcpd {
        IscDhcpd {
            subnet: Ipv4Addr::new(10, 77, 0, 0),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            range: (Ipv4Addr::new(10, 77, 0, 100), Ipv4Addr::new(10, 77, 0, 199)),
            router: Some(Ipv4Addr::new(10, 77, 0, 1)),
            dns: vec![Ipv4Addr::new(10, 77, 0, 53)],
            lease_secs: 600,
            fixed: Vec::new(),
            ping_check: false,
            extra: String::new(),
        }
    }
}

impl IscDhcpd {
    /// dhcpd.conf(5) text.
    pub fn config(&self) -> String {
        let mut c = format!(
            "authoritative;\nping-check {};\ndefault-lease-time {l};\nmax-lease-time {l};\n\
             min-lease-time {l};\nsubnet {} netmask {} {{\n  range {} {};\n",
            self.ping_check,
            self.subnet,
            self.netmask,
            self.range.0,
            self.range.1,
            l = self.lease_secs,
        );
        if let Some(r) = self.router {
            c += &format!("  option routers {r};\n");
        }
        if !self.dns.is_empty() {
            let list: Vec<String> = self.dns.iter().map(|d| d.to_string()).collect();
            c += &format!("  option domain-name-servers {};\n", list.join(", "));
        }
        c += "}\n";
        for (i, (mac, ip)) in self.fixed.iter().enumerate() {
            c += &format!("host fixed{i} {{ hardware ethernet {mac}; fixed-address {ip}; }}\n");
        }
        c += &self.extra;
        c
    }

    /// Starts dhcpd in `ns` on `iface`; returns once it serves.
    pub fn start(&self, ns: &Netns, iface: &str, dir: &Path) -> Result<Daemon> {
        let conf = dir.join("dhcpd.conf");
        std::fs::write(&conf, self.config())?;
        let leases = dir.join("dhcpd.leases");
        File::create(&leases)?;
        let mut cmd = ns.command("dhcpd");
        cmd.args(["-4", "-f", "-d", "-cf"])
            .arg(&conf)
            .arg("-lf")
            .arg(&leases)
            .arg("-pf")
            .arg(dir.join("dhcpd.pid"))
            .arg(iface);
        let mut d = ns.spawn("dhcpd", cmd, &dir.join("dhcpd.log"))?;
        d.wait_ready(READY_TIMEOUT, |d| {
            Ok(d.log().contains("Server starting service.") && ns.udp_bound(67)?)
        })?;
        Ok(d)
    }
}

/// Two namespaces joined by one link: `server` (`srv0`, 10.77.N.1/24) and `client`
/// (`cli0`, no address, link up). The servers started through it are stopped before the
/// namespaces go away.
pub struct Lan {
    /// Declared first: dropped (killed) before the namespaces are deleted.
    daemons: Vec<Daemon>,
    pub server: Netns,
    pub client: Netns,
    pub server_if: String,
    pub client_if: String,
    pub server_addr: Ipv4Addr,
    dir: tempfile::TempDir,
}

impl Lan {
    /// 10.77.0.0/24 with the server at 10.77.0.1.
    pub fn new(tag: &str) -> Result<Lan> {
        let server = Netns::new(&format!("{tag}-s"))?;
        let client = Netns::new(&format!("{tag}-c"))?;
        let (server_if, client_if) = ("srv0".to_string(), "cli0".to_string());
        veth(&server, &server_if, &client, &client_if)?;
        let server_addr = Ipv4Addr::new(10, 77, 0, 1);
        server.add_address(&server_if, &format!("{server_addr}/24"))?;
        Ok(Lan {
            daemons: Vec::new(),
            server,
            client,
            server_if,
            client_if,
            server_addr,
            dir: tempfile::Builder::new().prefix("ze-lan-").tempdir()?,
        })
    }

    /// The temp directory with the servers' config, lease, pid and log files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn start_dnsmasq(&mut self, cfg: &Dnsmasq) -> Result<&Daemon> {
        let d = cfg.start(&self.server, &self.server_if, self.dir.path())?;
        self.daemons.push(d);
        Ok(self.daemons.last().expect("just pushed"))
    }

    pub fn start_dhcpd(&mut self, cfg: &IscDhcpd) -> Result<&Daemon> {
        let d = cfg.start(&self.server, &self.server_if, self.dir.path())?;
        self.daemons.push(d);
        Ok(self.daemons.last().expect("just pushed"))
    }

    /// Keeps the temp directory (printing its path) instead of deleting it.
    pub fn keep_dir(self) -> PathBuf {
        let Lan { daemons, dir, .. } = self;
        drop(daemons);
        let p = dir.keep();
        eprintln!("kept {}", p.display());
        p
    }
}

/// Runs `cmd` to completion, killing it after `timeout`.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning")?;
    let deadline = Instant::now() + timeout;
    // Read the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} still running after {timeout:?}; killed");
        }
        std::thread::sleep(POLL);
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Kills what still runs in namespace `name` (a daemon whose handle was leaked).
fn kill_all_in(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
}

/// Deletes `zeh-*-<pid>-<n>` namespaces whose creating process is gone.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let mut parts = rest.rsplitn(3, '-');
        let (_, pid) = (parts.next(), parts.next());
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
