//! The custom kernel (kernel-configs/, qemu profile, every driver built in) boots a
//! module-free initrd: the disks and NICs are there without a single module, and the
//! guest powers itself off through ACPI. Judged from the serial console and QEMU's exit.
//!
//! The kernel is built once into the cache (`make kernel PROFILE=qemu`, about four
//! minutes on two cores) and reused while kernel-configs/ and the source are unchanged.

use qemu_harness::kbuild::{self, Source};
use qemu_harness::qemu::{DriveKind, Nic, Vm, blank_disk};
use qemu_harness::server::{Body, Faults, Server};
use qemu_harness::{artifacts, kernel, prereq, rundir::RunDir};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(90);
const POWER_DOWN: &str = "reboot: Power down";

fn ready() -> bool {
    let source = Source::from_env();
    let tools = kbuild::missing_tools(&source);
    let mut cmds = vec!["qemu-system-x86_64"];
    cmds.extend(tools);
    prereq::require(&cmds)
        && prereq::require_path(source.path(), "linux-source-6.1, or set KERNEL_SRC")
}

#[test]
#[ignore = "builds a kernel and boots QEMU; run by make test"]
fn custom_kernel_boots_without_modules() {
    if !ready() {
        return;
    }
    let k = kernel::custom("qemu").expect("custom kernel");
    assert!(k.modules.is_none());
    assert!(k.release.ends_with("-ze-qemu"), "{}", k.release);
    let dir = RunDir::new("custom_kernel_boots_without_modules");
    let init = artifacts::ze_init().expect("ze-init");
    let initrd = artifacts::initrd(&dir.join("initrd.img"), &init, &k, &["--profile", "none"])
        .expect("initrd");
    let disk = dir.join("vda.img");
    blank_disk(&disk, 64 << 20).unwrap();
    // A dry run: network, disk decision and size check, then READY and power-off.
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
    let mut run = Vm::new(&k.vmlinuz, &initrd, &append)
        .drive(&disk, DriveKind::Virtio)
        .nic(Nic::user())
        .start(dir.path())
        .unwrap();
    run.wait_for(0, "[ze-install] READY", BOOT).unwrap();
    let st = run.wait_exit(Duration::from_secs(30)).unwrap();
    let log = run.serial(0);
    assert!(st.success(), "QEMU exit {st}");
    // ACPI power-off made QEMU exit by itself (a kernel without ACPI halts instead).
    assert!(log.contains(POWER_DOWN), "guest did not power off:\n{log}");
    assert!(!log.contains("Kernel panic"), "{log}");
    // This is our kernel, and nothing was loaded: the drivers are built in.
    assert!(
        log.contains(&format!("starting as PID 1 on kernel {}", k.release)),
        "{log}"
    );
    assert!(
        log.contains("no bundled modules (kernel with built-in drivers)"),
        "{log}"
    );
    let loads: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("[ze-install]") && l.contains(" module "))
        .collect();
    assert!(loads.is_empty(), "ze-init loaded modules: {loads:?}");
    let disk_line = log
        .lines()
        .find(|l| l.contains("  disk vda "))
        .unwrap_or_else(|| panic!("no vda in inventory:\n{log}"));
    assert!(
        disk_line.contains("64.0 MiB") && disk_line.contains("removable=0"),
        "{disk_line}"
    );
    // Exactly the one NIC QEMU has: no default-on tunnel or dummy device crept in.
    assert!(
        log.lines()
            .any(|l| l.trim_end().ends_with("network interfaces: 1")),
        "{log}"
    );
    let nic = log
        .lines()
        .find(|l| l.contains("  nic  eth0 "))
        .unwrap_or_else(|| panic!("no eth0 in inventory:\n{log}"));
    assert!(
        nic.contains("driver=virtio_net") && nic.contains("mac=52:54:00:"),
        "{nic}"
    );
    let ready_at = log.find("[ze-install] READY").unwrap();
    assert!(log.find("  nic  eth0 ").unwrap() < ready_at);
    assert!(ready_at < log.find(POWER_DOWN).unwrap());
}
