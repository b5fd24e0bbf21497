//! `ze-harness`: the harness's pieces for the Makefile and for people.
//!
//! ```text
//! ze-harness kernel   print KERNEL=… MODULES=… RELEASE=… for the stock kernel (fetched once)
//! ze-harness demo     boot the installer in QEMU and stream its console
//! ze-harness bench-dhcp [RUNS]
//!                     median link-up → lease of `ze-init dhcp` against dnsmasq in a
//!                     network namespace (root; default 20 runs)
//! ```

use anyhow::{Context, Result, bail};
use qemu_harness::qemu::{DriveKind, Nic, Vm, blank_disk};
use qemu_harness::{artifacts, kernel, rundir::RunDir};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
        Some("demo") => demo(),
        Some("bench-dhcp") => {
            let runs = match args.get(1) {
                Some(n) => n.parse().context("RUNS must be a number")?,
                None => 20,
            };
            bench_dhcp(runs)
        }
        Some("serve") if args.len() == 3 => serve(Path::new(&args[1]), &args[2]),
        _ => bail!("usage: ze-harness kernel | demo | bench-dhcp [RUNS] | serve DIR ADDR:PORT"),
    }
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
            median(&mut ms.clone()),
            ms.iter().cloned().fold(f64::INFINITY, f64::min),
            ms.iter().cloned().fold(0.0, f64::max),
            median(&mut wall),
        );
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n % 2 {
        1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
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
