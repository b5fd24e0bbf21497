//! `ze-harness`: the harness's pieces for the Makefile and for people.
//!
//! ```text
//! ze-harness kernel                    print KERNEL=… MODULES=… RELEASE=… for the stock kernel (fetched once)
//! ze-harness kernel-build [PROFILE]    build the custom kernel (default qemu; cached), print KERNEL=… CONFIG=… RELEASE=…
//! ze-harness kernel-check [PROFILE…]   resolve the config and check the required symbols, no compile (default: all)
//! ze-harness bench-boot [--runs N]     QEMU start to READY, custom kernel vs stock kernel with modules
//! ze-harness demo                      boot the installer in QEMU and stream its console
//! ze-harness bench-dhcp [RUNS]              link-up → lease of `ze-init dhcp` against dnsmasq in a netns (root)
//! ze-harness bench-pxe [--installs N] [--mib M] [--runs R]   N `ze-init install` at once from nginx in a netns (root)
//! ze-harness serve DIR ADDR:PORT           serve DIR with the test server (e.g. inside a netns)
//! ```
//!
//! The kernel commands read `KERNEL_SRC` (a source tree or tarball; default Debian's
//! linux-source-6.1) and `ZE_CACHE`.

use anyhow::{Context, Result, bail};
use qemu_harness::qemu::{DriveKind, Nic, Vm, blank_disk};
use qemu_harness::{artifacts, kbuild, kernel, rundir::RunDir};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

const USAGE: &str = "usage: ze-harness kernel | kernel-build [PROFILE] | kernel-check [PROFILE...] \
                     | bench-boot [--runs N] | bench-dhcp [RUNS] \
                     | bench-pxe [--installs N] [--mib M] [--runs R] | demo | serve DIR ADDR:PORT";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("kernel") => {
            let k = kernel::stock()?;
            println!("KERNEL={}", k.vmlinuz.display());
            if let Some(m) = &k.modules {
                println!("MODULES={}", m.display());
            }
            println!("RELEASE={}", k.release);
            Ok(())
        }
        Some("kernel-build") => kernel_build(rest),
        Some("kernel-check") => kernel_check(rest),
        Some("bench-boot") => bench_boot(rest),
        Some("demo") => demo(),
        Some("bench-dhcp") => {
            let runs = match args.get(1) {
                Some(n) => n.parse().context("RUNS must be a number")?,
                None => 20,
            };
            bench_dhcp(runs)
        }
        Some("bench-pxe") => bench_pxe(rest),
        Some("serve") if args.len() == 3 => serve(Path::new(&args[1]), &args[2]),
        _ => bail!(USAGE),
    }
}

fn kernel_build(args: &[String]) -> Result<()> {
    let profile = match args {
        [] => "qemu",
        [p] => p.as_str(),
        _ => bail!(USAGE),
    };
    let out = kbuild::build(&kbuild::Options::new(profile))?;
    if out.cached {
        eprintln!("kernel: {profile} kernel is up to date (inputs unchanged, nothing ran)");
    }
    let image = out.bzimage.context("the build produced no bzImage")?;
    println!("KERNEL={}", image.display());
    println!("CONFIG={}", out.config.display());
    println!("RELEASE={}", out.release.unwrap_or_default());
    Ok(())
}

/// Checks every named profile (all by default) and fails if any failed, after all ran.
fn kernel_check(args: &[String]) -> Result<()> {
    let profiles: Vec<String> = if args.is_empty() {
        kbuild::PROFILES
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    } else {
        args.to_vec()
    };
    let mut failed = Vec::new();
    for p in &profiles {
        if let Err(e) = kbuild::check(&kbuild::Options::new(p)) {
            eprintln!("kernel-check: FAILED: {e:#}");
            failed.push(p.as_str());
        }
    }
    if !failed.is_empty() {
        bail!("kernel-check failed for: {}", failed.join(", "));
    }
    Ok(())
}

/// One kernel and initrd under test in the benchmark.
struct Subject {
    name: &'static str,
    release: String,
    kernel: PathBuf,
    initrd: PathBuf,
    to_init: Vec<f64>,
    to_discover: Vec<f64>,
    /// From /init's first line to its first DHCPDISCOVER, by the console's stamps.
    init_to_discover: Vec<f64>,
}

/// Boots the custom (qemu profile, module-free initrd) and the stock kernel (bundled
/// modules) alternately, `--runs` times each, on the same virtual machine, and prints
/// the median time from QEMU's start to ze-init's first line and to READY.
fn bench_boot(args: &[String]) -> Result<()> {
    let runs: usize = match args {
        [] => 3,
        [flag, n] if flag == "--runs" => n.parse().context("--runs takes a number")?,
        _ => bail!(USAGE),
    };
    let dir = RunDir::new("bench-boot");
    let init = artifacts::ze_init()?;
    let custom = kernel::custom("qemu")?;
    let stock = kernel::stock()?;
    let mut subjects = vec![
        Subject {
            name: "custom",
            release: custom.release.clone(),
            kernel: custom.vmlinuz.clone(),
            initrd: artifacts::initrd(
                &dir.join("initrd-none.img"),
                &init,
                &custom,
                &["--profile", "none"],
            )?,
            to_init: vec![],
            to_discover: vec![],
            init_to_discover: vec![],
        },
        Subject {
            name: "stock",
            release: stock.release.clone(),
            kernel: stock.vmlinuz.clone(),
            initrd: artifacts::initrd(&dir.join("initrd-qemu.img"), &init, &stock, &[])?,
            to_init: vec![],
            to_discover: vec![],
            init_to_discover: vec![],
        },
    ];
    for i in 0..runs {
        // Alternating spreads the load of a shared machine over both kernels.
        for s in &mut subjects {
            let (init_s, discover_s, inside) = boot_once(&dir, s, i)?;
            eprintln!(
                "bench-boot: run {}/{runs} {:<6} /init {init_s:.2} s, DISCOVER {discover_s:.2} s, /init→DISCOVER {:.0} ms",
                i + 1,
                s.name,
                inside * 1000.0
            );
            s.to_init.push(init_s);
            s.to_discover.push(discover_s);
            s.init_to_discover.push(inside);
        }
    }
    println!(
        "boot time under TCG, median of {runs} runs (QEMU start to the marker on ttyS0; \
         /init→DISCOVER from the console's own stamps)"
    );
    println!(
        "{:<7} {:<24} {:>9} {:>9} {:>11} {:>13} {:>16}",
        "kernel", "release", "kernel", "initrd", "to /init", "to DISCOVER", "/init→DISCOVER"
    );
    for s in &subjects {
        println!(
            "{:<7} {:<24} {:>6.2}MiB {:>6.2}MiB {:>9.2} s {:>11.2} s {:>13.0} ms",
            s.name,
            s.release,
            mib(&s.kernel),
            mib(&s.initrd),
            median(&s.to_init),
            median(&s.to_discover),
            median(&s.init_to_discover) * 1000.0
        );
    }
    println!(
        "ratio custom/stock to the first DISCOVER: {:.2}; /init→DISCOVER target ≤ 50 ms",
        median(&subjects[0].to_discover) / median(&subjects[1].to_discover)
    );
    Ok(())
}

/// The `[+1.234s]` stamp of the first console line containing `needle`.
fn stamp(log: &str, needle: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains(needle))?;
    let start = line.find("[+")? + 2;
    let end = line[start..].find("s]")? + start;
    line[start..end].parse().ok()
}

fn boot_once(dir: &RunDir, s: &Subject, i: usize) -> Result<(f64, f64, f64)> {
    let run_dir = dir.join(&format!("{}-{i}", s.name));
    std::fs::create_dir_all(&run_dir)?;
    let disk = run_dir.join("vda.img");
    blank_disk(&disk, 64 << 20)?;
    // ze.log=debug prints each DHCP message; the run ends at the first DISCOVER.
    let mut run = Vm::new(
        &s.kernel,
        &s.initrd,
        "console=ttyS0 panic=-1 ze.server=10.0.2.2 ze.log=debug",
    )
    .drive(&disk, DriveKind::Virtio)
    .nic(Nic::user())
    .start(&run_dir)?;
    let limit = Duration::from_secs(120);
    run.wait_for(0, "starting as PID 1", limit)?;
    let to_init = run.elapsed().as_secs_f64();
    run.wait_for(0, "DHCPDISCOVER", limit)?;
    let to_discover = run.elapsed().as_secs_f64();
    let log = run.serial(0);
    run.kill();
    let inside = match (
        stamp(&log, "starting as PID 1"),
        stamp(&log, "DHCPDISCOVER"),
    ) {
        (Some(a), Some(b)) => b - a,
        _ => bail!("no console stamps in {}", run_dir.display()),
    };
    Ok((to_init, to_discover, inside))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn mib(p: &Path) -> f64 {
    std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1048576.0)
}

/// The product in one command: a fixture disk image (GPT, partition 4 ext4) and a
/// database served from loopback, the stock kernel with the qemu-profile initrd, one
/// blank virtio disk. The guest's serial console streams to stdout; afterwards the
/// disk is checked from outside (bytes, and the database read back with debugfs).
fn demo() -> Result<()> {
    use qemu_harness::fixture::{gpt_image, read_ext4_file, same_except, sha256_file};
    use qemu_harness::server::{Body, Faults, Server};
    let dir = RunDir::new("demo");
    let k = kernel::stock()?;
    let init = artifacts::ze_init()?;
    let initrd = artifacts::initrd(&dir.join("initrd.img"), &init, &k, &[])?;
    let image = dir.join("demo.img");
    let p4 = gpt_image(&image, 64, 1)?;
    let db = b"demo database: written into partition 4 by the installer\n";
    let server = Server::start("127.0.0.1:0")?;
    server.add(
        "/install/image/demo.img",
        Body::File(image.clone()),
        Faults::default(),
    );
    server.add(
        "/install/image/demo.img.sha256",
        Body::bytes(format!("{}  demo.img\n", sha256_file(&image)?)),
        Faults::default(),
    );
    server.add(
        "/install/database.zefs",
        Body::bytes(db.to_vec()),
        Faults::default(),
    );
    let disk = dir.join("vda.img");
    blank_disk(&disk, 256 << 20)?;
    let append = format!(
        "console=ttyS0 panic=-1 quiet ze.server=10.0.2.2 ze.port={} ze.image=demo.img",
        server.port()
    );
    println!(
        "== serving a 64 MiB GPT image and a database on 127.0.0.1:{} (10.0.2.2 in the guest)",
        server.port()
    );
    println!("== booting {} with {} (TCG)", k.release, initrd.display());
    println!("== kernel command line: {append}");
    let mut run = Vm::new(&k.vmlinuz, &initrd, &append)
        .drive(&disk, DriveKind::Virtio)
        .nic(Nic::user())
        .start(dir.path())?;
    let mut shown = 0;
    let mut out = std::io::stdout();
    let status = loop {
        let text = run.serial(0);
        if text.len() > shown {
            out.write_all(&text.as_bytes()[shown..])?;
            out.flush()?;
            shown = text.len();
        }
        if let Some(st) = run.exited() {
            let text = run.serial(0);
            out.write_all(&text.as_bytes()[shown..])?;
            break st;
        }
        std::thread::sleep(Duration::from_millis(100));
        if run.elapsed() > Duration::from_secs(300) {
            bail!("the guest did not finish within 300 s");
        }
    };
    let log = run.serial(0);
    println!();
    let Some(done) = log.lines().find(|l| l.starts_with("[ze-install] DONE")) else {
        bail!(
            "the install did not finish ({status}); see {}",
            dir.path().display()
        );
    };
    println!("== {done}");
    println!(
        "== the guest rebooted after {:.1} s; checking the disk from outside:",
        run.elapsed().as_secs_f64()
    );
    same_except(&disk, &image, p4)?;
    println!(
        "   vda: {} bytes identical to demo.img outside partition 4",
        std::fs::metadata(&image)?.len()
    );
    let got = read_ext4_file(&disk, p4, "/ze/database.zefs")?;
    anyhow::ensure!(
        got.as_deref() == Some(&db[..]),
        "the database in partition 4 differs"
    );
    println!("   vda4: /ze/database.zefs read with debugfs equals the served database");
    Ok(())
}

/// Times `ze-init dhcp` (the static release binary, as shipped in the initrd) from
/// link-up to bound lease against dnsmasq, `runs` times each without and with rapid
/// commit. The link goes down before every run and `ze-init dhcp` brings it up, so
/// its `elapsed_ms` covers exactly link-up → DHCPACK. dnsmasq runs with `--no-ping`:
/// its default ping check delays the first offer to a new client by ~3 s, which
/// measures dnsmasq, not us.
fn bench_dhcp(runs: usize) -> Result<()> {
    use qemu_harness::netns::{Dnsmasq, Lan, output_within};
    if runs == 0 {
        bail!("RUNS must be at least 1");
    }
    let init = artifacts::ze_init()?;
    println!("== ze-init dhcp, link-up → lease, dnsmasq in a network namespace, {runs} runs each");
    for rapid_commit in [false, true] {
        let mut lan = Lan::new("bench")?;
        lan.start_dnsmasq(&Dnsmasq {
            rapid_commit,
            ..Dnsmasq::default()
        })?;
        let mut ms = Vec::with_capacity(runs);
        let mut wall = Vec::with_capacity(runs);
        for _ in 0..runs {
            lan.client.link_down(&lan.client_if)?;
            let mut cmd = lan.client.command(&init);
            cmd.args(["dhcp", "--interface", &lan.client_if, "--timeout", "10"]);
            let t = std::time::Instant::now();
            let out = output_within(&mut cmd, Duration::from_secs(20))?;
            wall.push(t.elapsed().as_secs_f64() * 1000.0);
            if !out.status.success() {
                bail!(
                    "ze-init dhcp failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            ms.push(doc["elapsed_ms"].as_f64().context("no elapsed_ms")?);
        }
        let label = match rapid_commit {
            false => "DISCOVER/OFFER/REQUEST/ACK",
            true => "rapid commit (DISCOVER/ACK)",
        };
        println!(
            "dhcp {label:<28} median {:7.2} ms   min {:7.2}   max {:7.2}   (process wall-clock median {:.1} ms)   target <= 50 ms",
            median(&ms),
            ms.iter().cloned().fold(f64::INFINITY, f64::min),
            ms.iter().cloned().fold(0.0, f64::max),
            median(&wall),
        );
    }
    Ok(())
}

/// `make bench`'s concurrency figure: N host-mode installs at once from one nginx
/// (a `ze-pack pxe` tree and its generated nginx.conf, on the loopback of a network
/// namespace), every output checked byte for byte, and the spread of their durations.
/// One install alone first, for scale. Root.
fn bench_pxe(args: &[String]) -> Result<()> {
    let (mut n, mut mib, mut runs) = (16usize, 256u64, 1usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().context(USAGE)?;
        match a.as_str() {
            "--installs" => n = v.parse().context("--installs takes a number")?,
            "--mib" => mib = v.parse().context("--mib takes a number")?,
            "--runs" => runs = v.parse().context("--runs takes a number")?,
            _ => bail!(USAGE),
        }
    }
    if n == 0 || mib < 8 || runs == 0 {
        bail!("need --installs >= 1, --mib >= 8, --runs >= 1");
    }
    let dir = RunDir::new("bench-pxe");
    let limit = Duration::from_secs(600);
    println!(
        "== ze-init install from nginx (ze-pack pxe tree), {mib} MiB image, loopback in a netns"
    );
    let alone = qemu_harness::pxe::host_installs(dir.path(), 1, mib, limit)?;
    println!("1 alone:      {:6.2} s", alone.seconds[0]);
    for r in 0..runs {
        let run = qemu_harness::pxe::host_installs(dir.path(), n, mib, limit)?;
        let mut s = run.seconds.clone();
        s.sort_by(f64::total_cmp);
        let total = (n as u64 * run.image_bytes) as f64 / run.wall / 1e6;
        println!(
            "{n} at once (run {}/{runs}): wall {:6.2} s, {total:.0} MB/s in all; each min {:.2} median {:.2} max {:.2} s; spread max/min {:.2}",
            r + 1,
            run.wall,
            run.min(),
            median(&s),
            run.max(),
            run.spread()
        );
    }
    Ok(())
}

/// Serves every file under `dir` at its relative path until killed.
fn serve(dir: &Path, bind: &str) -> Result<()> {
    use qemu_harness::server::{Body, Faults, Server};
    let server = Server::start(bind)?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir)?.to_string_lossy().into_owned();
                server.add(&format!("/{rel}"), Body::File(p), Faults::default());
            }
        }
    }
    println!("listening on {}", server.addr());
    std::io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}
