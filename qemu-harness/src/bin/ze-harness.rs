//! `ze-harness`: the harness's pieces for the Makefile and for people.
//!
//! ```text
//! ze-harness kernel   print KERNEL=… MODULES=… RELEASE=… for the stock kernel (fetched once)
//! ze-harness demo     boot the installer in QEMU and stream its console
//! ```

use anyhow::{Result, bail};
use qemu_harness::qemu::{DriveKind, Nic, Vm, blank_disk};
use qemu_harness::{artifacts, kernel, rundir::RunDir};
use std::io::Write;
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
        _ => bail!("usage: ze-harness kernel | demo"),
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
