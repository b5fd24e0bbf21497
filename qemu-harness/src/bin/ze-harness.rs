//! `ze-harness`: the harness's pieces for the Makefile and for people.
//!
//! ```text
//! ze-harness kernel                    print KERNEL=… MODULES=… RELEASE=… for the stock kernel (fetched once)
//! ze-harness kernel-build [PROFILE]    build the custom kernel (default qemu; cached), print KERNEL=… CONFIG=… RELEASE=…
//! ze-harness kernel-check [PROFILE…]   resolve the config and check the required symbols, no compile (default: all)
//! ze-harness bench-boot [--runs N]     QEMU start to READY, custom kernel vs stock kernel with modules
//! ze-harness demo                      boot the installer in QEMU and stream its console
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
                     | bench-boot [--runs N] | demo";

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
    to_ready: Vec<f64>,
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
            to_ready: vec![],
        },
        Subject {
            name: "stock",
            release: stock.release.clone(),
            kernel: stock.vmlinuz.clone(),
            initrd: artifacts::initrd(&dir.join("initrd-qemu.img"), &init, &stock, &[])?,
            to_init: vec![],
            to_ready: vec![],
        },
    ];
    for i in 0..runs {
        // Alternating spreads the load of a shared machine over both kernels.
        for s in &mut subjects {
            let (init_s, ready_s) = boot_once(&dir, s, i)?;
            eprintln!(
                "bench-boot: run {}/{runs} {:<6} /init {init_s:.2} s, READY {ready_s:.2} s",
                i + 1,
                s.name
            );
            s.to_init.push(init_s);
            s.to_ready.push(ready_s);
        }
    }
    println!("boot time under TCG, median of {runs} runs (QEMU start to the marker on ttyS0)");
    println!(
        "{:<7} {:<24} {:>9} {:>9} {:>11} {:>11}  READY per run",
        "kernel", "release", "kernel", "initrd", "to /init", "to READY"
    );
    for s in &subjects {
        let runs: Vec<String> = s.to_ready.iter().map(|t| format!("{t:.2}")).collect();
        println!(
            "{:<7} {:<24} {:>6.2}MiB {:>6.2}MiB {:>9.2} s {:>9.2} s  {}",
            s.name,
            s.release,
            mib(&s.kernel),
            mib(&s.initrd),
            median(&s.to_init),
            median(&s.to_ready),
            runs.join(" ")
        );
    }
    println!(
        "ratio custom/stock to READY: {:.2}",
        median(&subjects[0].to_ready) / median(&subjects[1].to_ready)
    );
    Ok(())
}

fn boot_once(dir: &RunDir, s: &Subject, i: usize) -> Result<(f64, f64)> {
    let run_dir = dir.join(&format!("{}-{i}", s.name));
    std::fs::create_dir_all(&run_dir)?;
    let disk = run_dir.join("vda.img");
    blank_disk(&disk, 64 << 20)?;
    let mut run = Vm::new(
        &s.kernel,
        &s.initrd,
        "console=ttyS0 panic=-1 ze.server=10.0.2.2",
    )
    .drive(&disk, DriveKind::Virtio)
    .nic(Nic::user())
    .start(&run_dir)?;
    let limit = Duration::from_secs(120);
    run.wait_for(0, "starting as PID 1", limit)?;
    let to_init = run.elapsed().as_secs_f64();
    run.wait_for(0, "[ze-install] READY", limit)?;
    let to_ready = run.elapsed().as_secs_f64();
    run.wait_exit(Duration::from_secs(30))?;
    Ok((to_init, to_ready))
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

/// Boots the stock kernel with the qemu-profile initrd, one blank virtio disk and a
/// slirp NIC, and copies the guest's serial console to stdout as it runs.
fn demo() -> Result<()> {
    let dir = RunDir::new("demo");
    let k = kernel::stock()?;
    let init = artifacts::ze_init()?;
    let initrd = artifacts::initrd(&dir.join("initrd.img"), &init, &k, &[])?;
    let disk = dir.join("vda.img");
    blank_disk(&disk, 256 << 20)?;
    let append = "console=ttyS0 panic=-1 quiet ze.server=10.0.2.2";
    println!("== booting {} with {} (TCG)", k.release, initrd.display());
    println!("== kernel command line: {append}");
    let mut run = Vm::new(&k.vmlinuz, &initrd, append)
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
        if run.elapsed() > Duration::from_secs(180) {
            bail!("the guest did not finish within 180 s");
        }
    };
    let log = run.serial(0);
    println!();
    if log.contains("[ze-install] READY") && log.contains("reboot: Power down") {
        println!(
            "== guest finished and powered itself off after {:.1} s",
            run.elapsed().as_secs_f64()
        );
        Ok(())
    } else {
        bail!(
            "guest ended without READY ({status}); see {}",
            dir.path().display()
        )
    }
}
