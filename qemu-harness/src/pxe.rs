//! The PXE chain with the programs operators run: a `ze-pack pxe` tree served by nginx
//! (Debian's nginx-light) and dnsmasq (DHCP + TFTP) with the tree's own generated
//! configurations, on a provisioning segment inside a network namespace — a bridge
//! holding 10.77.0.1/24 and one tap device per QEMU guest. Nothing leaves the namespace.
//!
//! Also the host-mode load: many `ze-init install` processes at once against nginx on
//! the loopback of a namespace ([`host_installs`]), for the concurrency test and
//! `make bench`.

use crate::fixture::{noise, sha256_file};
use crate::netns::{Daemon, Dnsmasq, IscDhcpd, Netns, Nginx, READY_TIMEOUT};
use anyhow::{Context, Result, bail};
use std::io::{Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The provisioning server's address on the segment's bridge.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The segment's bridge.
pub const BRIDGE: &str = "br0";

/// Debian's iPXE binaries (`undionly.kpxe`, `ipxe.efi`), from the `ipxe` package
/// fetched once into the cache with `apt-get download` and `dpkg -x`, like the stock
/// kernel. Installing the package instead would run update-grub on the host (its
/// postinst adds an iPXE boot entry), which a test machine should not get. Returns a
/// directory holding both files, for `ze-pack pxe --ipxe-dir`.
pub fn ipxe_binaries() -> Result<PathBuf> {
    let cache = crate::cache_dir().join("ipxe");
    std::fs::create_dir_all(&cache)?;
    let lock = std::fs::File::create(cache.join(".lock"))?;
    lock.lock()?;
    let dir = cache.join("binaries");
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let tmp = cache.join(format!(".tmp-{}", std::process::id()));
    let crate::deb::Unpacked { deb, root: x } = crate::deb::download_and_unpack("ipxe", &tmp)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // usr/lib/ipxe/ipxe.efi is a symlink to /boot/ipxe.efi, which dpkg -x put under x/.
    for (from, name) in [
        ("usr/lib/ipxe/undionly.kpxe", "undionly.kpxe"),
        ("boot/ipxe.efi", "ipxe.efi"),
    ] {
        std::fs::copy(x.join(from), dir.join(name))
            .with_context(|| format!("the ipxe package has no {from}"))?;
    }
    std::fs::write(
        dir.join(".complete"),
        deb.file_name().unwrap().as_encoded_bytes(),
    )?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(dir)
}

/// What to put in a tree; the arguments of `ze-pack pxe`.
#[derive(Debug, Clone)]
pub struct TreeSpec {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// `--image` arguments (files or directories).
    pub images: Vec<PathBuf>,
    pub database: Option<PathBuf>,
    pub server: Ipv4Addr,
    pub port: u16,
    pub cmdline: String,
    /// `--ipxe-dir`; `None` packs with `--no-tftp`.
    pub ipxe_dir: Option<PathBuf>,
}

/// Runs `ze-pack pxe` into `out`; returns its report (standard error).
pub fn pack(spec: &TreeSpec, out: &Path) -> Result<String> {
    let mut c = Command::new(crate::artifacts::ze_pack()?);
    c.arg("pxe")
        .arg("--kernel")
        .arg(&spec.kernel)
        .arg("--initrd")
        .arg(&spec.initrd)
        .arg("--server")
        .arg(spec.server.to_string())
        .arg("--port")
        .arg(spec.port.to_string())
        .arg("--cmdline")
        .arg(&spec.cmdline)
        .arg("--out")
        .arg(out);
    for i in &spec.images {
        c.arg("--image").arg(i);
    }
    if let Some(d) = &spec.database {
        c.arg("--database").arg(d);
    }
    match &spec.ipxe_dir {
        Some(d) => c.arg("--ipxe-dir").arg(d),
        None => c.arg("--no-tftp"),
    };
    let o = c.output().context("running ze-pack pxe")?;
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if !o.status.success() {
        bail!("ze-pack pxe failed: {err}");
    }
    Ok(err)
}

/// A provisioning segment: one namespace with a bridge ([`BRIDGE`], [`SERVER`]/24),
/// dnsmasq and nginx running the tree's generated `dnsmasq.conf` and `nginx.conf`, and a
/// tap device per guest. The servers stop before the namespace goes away.
pub struct Segment {
    /// Declared first: stopped before the namespace is deleted.
    dnsmasq: Option<Daemon>,
    dhcpd: Option<Daemon>,
    nginx_daemon: Option<Daemon>,
    pub nginx: Nginx,
    pub ns: Netns,
    pub tree: PathBuf,
    /// dnsmasq's lease file and log, nginx's prefix (pid, logs, temporary files).
    pub state: PathBuf,
    nginx_starts: u32,
    taps: u32,
}

impl Segment {
    /// The namespace and its bridge; no servers yet. `state` is created.
    pub fn new(tag: &str, tree: &Path, state: &Path, port: u16) -> Result<Segment> {
        let ns = Netns::new(tag)?;
        ns.bridge(BRIDGE, &format!("{SERVER}/24"))?;
        std::fs::create_dir_all(state)?;
        Ok(Segment {
            dnsmasq: None,
            dhcpd: None,
            nginx_daemon: None,
            nginx: Nginx {
                conf: tree.join("nginx.conf"),
                prefix: state.join("nginx"),
                port,
            },
            ns,
            tree: tree.to_path_buf(),
            state: state.to_path_buf(),
            nginx_starts: 0,
            taps: 0,
        })
    }

    /// dnsmasq with the tree's `dnsmasq.conf`; the segment supplies what the generated
    /// file leaves to the operator: the interface and the address range.
    pub fn start_dnsmasq(&mut self) -> Result<()> {
        let cfg = Dnsmasq {
            conf_file: Some(self.tree.join("dnsmasq.conf")),
            ..Dnsmasq::default()
        };
        self.dnsmasq = Some(cfg.start(&self.ns, BRIDGE, &self.state)?);
        Ok(())
    }

    /// dnsmasq as proxy DHCP with the tree's `dnsmasq-proxy.conf` plus the one line it
    /// leaves to the operator, `dhcp-range=10.77.0.0,proxy`; another DHCP server
    /// ([`Segment::start_isc_dhcpd`]) hands out the addresses.
    pub fn start_dnsmasq_proxy(&mut self) -> Result<()> {
        let conf = self.tree.join("dnsmasq-proxy.conf");
        let net = Ipv4Addr::from(u32::from(SERVER) & 0xffff_ff00);
        let d = self.dnsmasq_with(&conf, &[format!("--dhcp-range={net},proxy")], 67)?;
        self.dnsmasq = Some(d);
        Ok(())
    }

    /// dnsmasq serving TFTP only: the tree's `dnsmasq.conf` without a `dhcp-range`
    /// does no DHCP, for a DHCP server that has no TFTP of its own.
    pub fn start_tftp_only(&mut self) -> Result<()> {
        let conf = self.tree.join("dnsmasq.conf");
        self.dnsmasq = Some(self.dnsmasq_with(&conf, &[], 69)?);
        Ok(())
    }

    /// ISC dhcpd handing out 10.77.0.100–199, with `extra` (the tree's `dhcpd.conf`, or
    /// nothing) appended to its configuration.
    pub fn start_isc_dhcpd(&mut self, extra: &str) -> Result<()> {
        let cfg = IscDhcpd {
            extra: extra.to_string(),
            ..IscDhcpd::default()
        };
        self.dhcpd = Some(cfg.start(&self.ns, BRIDGE, &self.state)?);
        Ok(())
    }

    /// dnsmasq on the bridge with `conf` and `extra` arguments; ready once UDP
    /// `ready_port` is bound (67 for DHCP, 69 for TFTP).
    fn dnsmasq_with(&self, conf: &Path, extra: &[String], ready_port: u16) -> Result<Daemon> {
        let st = &self.state;
        let mut cmd = self.ns.command("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--log-facility=-",
            "--log-dhcp",
            "--port=0",
            "--user=root",
            "--group=root",
            "--bind-interfaces",
        ])
        .arg(format!("--conf-file={}", conf.display()))
        .arg(format!("--interface={BRIDGE}"))
        .arg(format!("--pid-file={}", st.join("dnsmasq.pid").display()))
        .arg(format!(
            "--dhcp-leasefile={}",
            st.join("dnsmasq.leases").display()
        ))
        .args(extra);
        let mut d = self.ns.spawn("dnsmasq", cmd, &st.join("dnsmasq.log"))?;
        d.wait_ready(READY_TIMEOUT, |_| self.ns.udp_bound(ready_port))?;
        Ok(d)
    }

    /// nginx with the tree's `nginx.conf`. Each start logs its standard error to its
    /// own file.
    pub fn start_nginx(&mut self) -> Result<()> {
        self.nginx_starts += 1;
        let log = self
            .state
            .join(format!("nginx-stderr-{}.log", self.nginx_starts));
        self.nginx_daemon = Some(self.nginx.start(&self.ns, &log)?);
        Ok(())
    }

    /// Stops nginx the way `nginx -s stop` does (SIGTERM: open connections are closed).
    pub fn stop_nginx(&mut self) -> Result<()> {
        let mut d = self.nginx_daemon.take().context("nginx is not running")?;
        d.terminate(Duration::from_secs(10))?;
        Ok(())
    }

    /// A new tap device on the bridge, for `qemu::Nic::tap`.
    pub fn add_tap(&mut self) -> Result<String> {
        let name = format!("tap{}", self.taps);
        self.taps += 1;
        self.ns.tap(&name, BRIDGE)?;
        Ok(name)
    }

    pub fn access_log(&self) -> String {
        self.nginx.access_log()
    }

    pub fn dnsmasq_log(&self) -> String {
        self.dnsmasq.as_ref().map(|d| d.log()).unwrap_or_default()
    }

    pub fn dhcpd_log(&self) -> String {
        self.dhcpd.as_ref().map(|d| d.log()).unwrap_or_default()
    }
}

/// One line of the access log the generated `nginx.conf` writes:
/// `$remote_addr [$time_local] "$request" $status $body_bytes_sent range="$http_range" $request_time`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub client: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    /// The Range header, `None` for `-`.
    pub range: Option<String>,
}

/// The access log's lines, parsed; lines of another format are skipped.
pub fn parse_access_log(text: &str) -> Vec<Access> {
    text.lines()
        .filter_map(|l| {
            let client = l.split_whitespace().next()?.to_string();
            let req = l.split('"').nth(1)?;
            let mut r = req.split_whitespace();
            let (method, path) = (r.next()?.to_string(), r.next()?.to_string());
            let after = l.split('"').nth(2)?;
            let mut f = after.split_whitespace();
            let status = f.next()?.parse().ok()?;
            let bytes = f.next()?.parse().ok()?;
            let range = l
                .split("range=\"")
                .nth(1)?
                .split('"')
                .next()
                .filter(|r| *r != "-")
                .map(str::to_string);
            Some(Access {
                client,
                method,
                path,
                status,
                bytes,
                range,
            })
        })
        .collect()
}

/// A `mib`-MiB raw image that is mostly holes: 1 MiB of noise at the start of every
/// 8 MiB, so every region is checked but serving and writing it stays cheap.
pub fn sparse_image(path: &Path, mib: u64, seed: u32) -> Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.set_len(mib << 20)?;
    for (i, at) in (0..mib).step_by(8).enumerate() {
        f.seek(SeekFrom::Start(at << 20))?;
        f.write_all(&noise(1 << 20, seed + i as u32))?;
    }
    f.sync_all()?;
    Ok(())
}

/// What [`host_installs`] measured.
#[derive(Debug, Clone)]
pub struct HostRun {
    /// Wall-clock seconds of each install, spawn to exit, in start order.
    pub seconds: Vec<f64>,
    /// From the first spawn to the last exit.
    pub wall: f64,
    pub image_bytes: u64,
}

impl HostRun {
    pub fn min(&self) -> f64 {
        self.seconds.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.seconds.iter().copied().fold(0.0, f64::max)
    }

    /// max/min: how unevenly the server shared itself out.
    pub fn spread(&self) -> f64 {
        self.max() / self.min()
    }
}

/// `n` `ze-init install` processes at once, each writing a `mib`-MiB image to its own
/// new file under `dir`, against nginx serving a `ze-pack pxe` tree on the loopback of
/// a fresh namespace (127.0.0.1:8080). Every output is compared byte for byte (by
/// sha256) with the image, and nginx's log must show each full download; any failure is
/// an error naming the install. Bounded: each install gets `limit`, then is killed.
/// Root (namespace); the outputs are removed again.
pub fn host_installs(dir: &Path, n: usize, mib: u64, limit: Duration) -> Result<HostRun> {
    const PORT: u16 = 8080;
    let init = crate::artifacts::ze_init()?;
    std::fs::create_dir_all(dir)?;
    let src = dir.join("src");
    std::fs::create_dir_all(&src)?;
    let image = src.join("load.img");
    sparse_image(&image, mib, 7)?;
    let want = sha256_file(&image)?;
    // The tree needs a kernel and an initrd; nothing boots them here.
    for f in ["vmlinuz", "initrd.img.gz"] {
        std::fs::write(src.join(f), b"not booted in host mode")?;
    }
    let tree = dir.join("tree");
    pack(
        &TreeSpec {
            kernel: src.join("vmlinuz"),
            initrd: src.join("initrd.img.gz"),
            images: vec![image.clone()],
            database: None,
            server: Ipv4Addr::LOCALHOST,
            port: PORT,
            cmdline: String::new(),
            ipxe_dir: None,
        },
        &tree,
    )?;
    let ns = Netns::new("load")?;
    let nginx = Nginx {
        conf: tree.join("nginx.conf"),
        prefix: dir.join("nginx"),
        port: PORT,
    };
    // A fresh access log: it is the count of this run's downloads.
    let _ = std::fs::remove_dir_all(&nginx.prefix);
    let _server = nginx.start(&ns, &dir.join("nginx-stderr.log"))?;

    let cmdline = format!("ze.server=127.0.0.1 ze.port={PORT} ze.image=load.img");
    let outs: Vec<PathBuf> = (0..n)
        .map(|i| dir.join(format!("out-{i:02}.raw")))
        .collect();
    for o in &outs {
        let _ = std::fs::remove_file(o);
    }
    let start = Instant::now();
    let mut running: Vec<(Child, Instant)> = Vec::new();
    for (i, o) in outs.iter().enumerate() {
        let mut c = ns.command(&init);
        c.args([
            "install",
            "--cmdline",
            &cmdline,
            "--no-database",
            "--target",
        ])
        .arg(o)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            dir.join(format!("install-{i:02}.log")),
        )?);
        running.push((
            c.spawn().with_context(|| format!("starting install {i}"))?,
            Instant::now(),
        ));
    }
    let deadline = start + limit;
    let mut seconds = vec![0.0; n];
    let mut failed = Vec::new();
    let mut left: Vec<usize> = (0..n).collect();
    while !left.is_empty() {
        let mut still = Vec::new();
        for i in left {
            let (child, t0) = &mut running[i];
            match child.try_wait()? {
                Some(st) => {
                    seconds[i] = t0.elapsed().as_secs_f64();
                    if !st.success() {
                        failed.push(format!("install {i}: exit {st}"));
                    }
                }
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failed.push(format!(
                        "install {i}: still running after {limit:?}; killed"
                    ));
                }
                None => still.push(i),
            }
        }
        left = still;
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = start.elapsed().as_secs_f64();
    if !failed.is_empty() {
        let log0 = std::fs::read_to_string(dir.join("install-00.log")).unwrap_or_default();
        bail!("{}\nfirst install's log:\n{log0}", failed.join("\n"));
    }

    // Judged from outside: the bytes of every output, and nginx's own log.
    let image_bytes = mib << 20;
    for (i, o) in outs.iter().enumerate() {
        let len = std::fs::metadata(o)?.len();
        if len != image_bytes {
            bail!(
                "install {i}: {} is {len} bytes, not {image_bytes}",
                o.display()
            );
        }
        let got = sha256_file(o)?;
        if got != want {
            bail!(
                "install {i}: {} has sha256 {got}, the image {want}",
                o.display()
            );
        }
    }
    let gets: Vec<_> = parse_access_log(&nginx.access_log())
        .into_iter()
        .filter(|a| a.path == "/install/image/load.img" && a.method == "GET")
        .collect();
    let full = gets
        .iter()
        .filter(|a| a.status == 200 && a.bytes == image_bytes)
        .count();
    if full != n {
        bail!("nginx logged {full} full image downloads for {n} installs: {gets:?}");
    }
    for o in &outs {
        let _ = std::fs::remove_file(o);
    }
    Ok(HostRun {
        seconds,
        wall,
        image_bytes,
    })
}

/// The iPXE ROM of a QEMU NIC plays a NIC's vendor PXE ROM: from its Ctrl-B shell its
/// DHCP user class is set to `PXEClient`, so DHCP sees a client that is not iPXE, and
/// `autoboot` then does what plain PXE firmware does — DHCP, and the boot file by TFTP.
/// Needs a guest whose ttyS0 is interactive (`qemu::Vm::interactive_serial(0)`).
pub fn steer_rom_to_plain_pxe(run: &mut crate::qemu::Running, limit: Duration) -> Result<()> {
    run.wait_for(0, "Press Ctrl-B for the iPXE command line", limit)?;
    run.send(0, "\u{2}")?;
    run.wait_for(0, "iPXE>", Duration::from_secs(30))?;
    run.send(0, "set user-class PXEClient\r")?;
    run.wait_for(0, "set user-class PXEClient", Duration::from_secs(10))?;
    run.send(0, "autoboot\r")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_lines_parse() {
        let log = "10.77.0.158 [22/Nov/2026:06:12:36 +0000] \"GET /install/boot/boot.ipxe HTTP/1.1\" 200 471 range=\"-\" 0.000\n\
                   10.77.0.158 [22/Nov/2026:06:12:45 +0000] \"GET /install/image/ze.img HTTP/1.1\" 206 1024 range=\"bytes=1000-\" 1.494\n\
                   garbage\n";
        let a = parse_access_log(log);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].path, "/install/boot/boot.ipxe");
        assert_eq!(a[0].status, 200);
        assert_eq!(a[0].range, None);
        assert_eq!(a[1].client, "10.77.0.158");
        assert_eq!(a[1].status, 206);
        assert_eq!(a[1].bytes, 1024);
        assert_eq!(a[1].range.as_deref(), Some("bytes=1000-"));
    }

    #[test]
    fn sparse_image_has_noise_every_8_mib() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("i.img");
        sparse_image(&p, 20, 1).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(b.len(), 20 << 20);
        for at in [0usize, 8, 16] {
            assert!(b[at << 20..(at << 20) + 4096].iter().any(|x| *x != 0));
        }
        assert!(b[(1 << 20)..(8 << 20)].iter().all(|x| *x == 0));
    }
}
