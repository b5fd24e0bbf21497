//! Foundation scenarios: the stock Debian kernel boots our initrd, `/init` loads the
//! modules the virtual hardware needs, and its lines reach every console. Judged from
//! the serial files and QEMU's own exit.
//!
//! These boot QEMU, so plain `cargo test` skips them; `make test` runs them with
//! `--include-ignored`.

use qemu_harness::qemu::{DriveKind, Nic, Vm, blank_disk};
use qemu_harness::server::{Body, Faults, Server};
use qemu_harness::{artifacts, kernel, prereq, rundir::RunDir};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(90);

fn ready() -> bool {
    prereq::require(&["qemu-system-x86_64", "apt-get", "dpkg"])
}

/// Boots the stock kernel with the qemu-profile initrd and `append`.
fn vm(dir: &RunDir, append: &str) -> Vm {
    let k = kernel::stock().expect("stock kernel");
    let init = artifacts::ze_init().expect("ze-init");
    let initrd = artifacts::initrd(&dir.join("initrd.img"), &init, &k, &[]).expect("initrd");
    Vm::new(&k.vmlinuz, &initrd, append)
}

/// The kernel's last words when the guest powers itself off.
const POWER_DOWN: &str = "reboot: Power down";

#[test]
#[ignore = "boots QEMU; run by make test"]
fn boot_stock_kernel() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("boot_stock_kernel");
    let disk = dir.join("vda.img");
    blank_disk(&disk, 64 << 20).unwrap();
    // A dry run goes through the network, the disk decision and the image's size
    // check, then stops with READY: the whole skeleton, nothing written.
    let server = Server::start("127.0.0.1:0").unwrap();
    server.add(
        "/install/image/ze.img",
        Body::bytes(vec![7u8; 4096]),
        Faults::default(),
    );
    server.add(
        "/install/database.zefs",
        Body::bytes(b"db".to_vec()),
        Faults::default(),
    );
    let append = format!(
        "console=ttyS0 panic=-1 ze.server=10.0.2.2 ze.port={} ze.dry-run=1",
        server.port()
    );
    let mut run = vm(&dir, &append)
        .drive(&disk, DriveKind::Virtio)
        .nic(Nic::user())
        .start(dir.path())
        .unwrap();
    run.wait_for(0, "[ze-install] READY", BOOT).unwrap();
    let st = run.wait_exit(Duration::from_secs(30)).unwrap();
    let log = run.serial(0);
    assert!(st.success(), "QEMU exit {st}");
    assert!(
        log.contains(POWER_DOWN),
        "guest did not power off by itself"
    );
    assert!(!log.contains("Kernel panic"), "{log}");
    // Loaded because the device's modalias matched, not by a fixed list.
    assert!(
        log.contains("module virtio_pci loaded") && log.contains("(pci:v00001AF4d0000100"),
        "{log}"
    );
    assert!(log.contains("module virtio_blk loaded") && log.contains("(virtio:d00000002v"));
    assert!(log.contains("module virtio_net loaded") && log.contains("(virtio:d00000001v"));
    let disk_line = log
        .lines()
        .find(|l| l.contains("  disk vda "))
        .unwrap_or_else(|| panic!("no vda in inventory:\n{log}"));
    assert!(
        disk_line.contains("64.0 MiB") && disk_line.contains("removable=0"),
        "{disk_line}"
    );
    let nic = log
        .lines()
        .find(|l| l.contains("  nic  eth0 "))
        .unwrap_or_else(|| panic!("no eth0 in inventory:\n{log}"));
    assert!(
        nic.contains("driver=virtio_net") && nic.contains("mac=52:54:00:"),
        "{nic}"
    );
    assert!(log.contains(r#""server":"10.0.2.2""#), "config not printed");
    assert!(log.contains("network: using eth0"), "{log}");
    assert!(log.contains("dry run: would write"), "{log}");
    assert!(
        std::fs::read(&disk).unwrap().iter().all(|b| *b == 0),
        "a dry run wrote"
    );
    // READY comes after the inventory and before the power-off.
    let ready_at = log.find("[ze-install] READY").unwrap();
    assert!(log.find("  disk vda ").unwrap() < ready_at);
    assert!(ready_at < log.find(POWER_DOWN).unwrap());
}

#[test]
#[ignore = "boots QEMU; run by make test"]
fn bad_cmdline() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("bad_cmdline");
    let mut run = vm(
        &dir,
        "console=ttyS0 panic=-1 ze.server=10.0.2.2 ze.port=99999",
    )
    .start(dir.path())
    .unwrap();
    run.wait_for(0, "[ze-install] FATAL: ", BOOT).unwrap();
    // Then the recovery console: a network install with no secret reboots 30 s later
    // (tests/rescue.rs waits for that; here the FATAL line is the point).
    run.wait_for(0, "rebooting in 30 s", Duration::from_secs(30))
        .unwrap();
    let log = run.serial(0);
    let fatal: Vec<&str> = log.lines().filter(|l| l.contains("FATAL")).collect();
    assert_eq!(
        fatal,
        vec![r#"[ze-install] FATAL: config: ze.port: "99999" is not a port number (1-65535)"#],
        "{log}"
    );
    assert!(!log.contains("[ze-install] READY"));
    assert!(
        log.contains(r#"  attempt 1: config: ze.port: "99999" is not a port number"#),
        "{log}"
    );
}

#[test]
#[ignore = "boots QEMU; run by make test"]
fn all_consoles() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("all_consoles");
    let mut v = vm(
        &dir,
        "console=ttyS1 console=ttyS0 panic=-1 ze.server=10.0.2.2 ze.port=99999",
    );
    v.serials = 2;
    let mut run = v.start(dir.path()).unwrap();
    run.wait_for(0, "[ze-install] FATAL: ", BOOT).unwrap();
    run.wait_for(1, "[ze-install] FATAL: ", Duration::from_secs(10))
        .unwrap();
    // The recovery console's notice reaches both consoles too.
    for i in 0..2 {
        run.wait_for(i, "rebooting in 30 s", Duration::from_secs(30))
            .unwrap();
    }
    let want = r#"[ze-install] FATAL: config: ze.port: "99999" is not a port number (1-65535)"#;
    for i in 0..2 {
        let log = run.serial(i);
        let n = log.lines().filter(|l| *l == want).count();
        assert_eq!(n, 1, "ttyS{i} shows the FATAL line {n} times:\n{log}");
        // The logger found both consoles, not just the preferred one.
        assert!(log.contains("consoles: ttyS1 ttyS0") || log.contains("consoles: ttyS0 ttyS1"));
    }
}
