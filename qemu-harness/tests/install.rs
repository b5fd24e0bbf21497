//! The HTTP install end to end: the stock Debian kernel boots our initrd in QEMU, `/init`
//! gets a lease from slirp, probes the harness server on 10.0.2.2, writes the image to
//! the virtio disk, injects the database into partition 4 and reboots (QEMU exits under
//! `-no-reboot`). Judged from outside: the disk image's bytes equal the served image
//! except partition 4, and `debugfs` reads `/ze/database.zefs` from it.
//!
//! QEMU tier: `make e2e` runs these with `--ignored`.

use qemu_harness::fixture::{Part, gpt_image, read_ext4_file, same_except, sha256_file};
use qemu_harness::qemu::{DriveKind, Nic, Vm, blank_disk};
use qemu_harness::server::{Body, Faults, Server};
use qemu_harness::{artifacts, kernel, prereq, rundir::RunDir};
use std::path::{Path, PathBuf};
use std::time::Duration;

const DB: &[u8] = b"ze database: users, keys and the bootstrap config\n";
/// Boot, DHCP, a 48 MiB image under TCG and the reboot fit well inside this.
const LIMIT: Duration = Duration::from_secs(180);

fn ready() -> bool {
    prereq::require(&[
        "qemu-system-x86_64",
        "apt-get",
        "dpkg",
        "mkfs.ext4",
        "debugfs",
    ])
}

struct Served {
    server: Server,
    image: PathBuf,
    p4: Part,
}

/// A GPT fixture image served as `name` (gzip-compressed when `gzip`), its sidecar and
/// the database.
fn serve(dir: &RunDir, name: &str, gzip: bool, faults: Faults) -> Served {
    let image = dir.join("image.raw");
    let p4 = gpt_image(&image, 48, 11).unwrap();
    let stored = if gzip {
        let gz = dir.join("image.raw.gz");
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -1 -c {} > {}", image.display(), gz.display()))
            .status()
            .unwrap();
        assert!(st.success());
        gz
    } else {
        image.clone()
    };
    let server = Server::start("127.0.0.1:0").unwrap();
    server.add(
        &format!("/install/image/{name}"),
        Body::File(stored.clone()),
        faults,
    );
    server.add(
        &format!("/install/image/{name}.sha256"),
        Body::bytes(format!("{}  {name}\n", sha256_file(&stored).unwrap())),
        Faults::default(),
    );
    server.add(
        "/install/database.zefs",
        Body::bytes(DB.to_vec()),
        Faults::default(),
    );
    Served { server, image, p4 }
}

/// Boots the installer (stock kernel, qemu module bundle) against `s` with one blank
/// 64 MiB virtio disk; returns the serial log once QEMU has exited by itself.
fn install(dir: &RunDir, s: &Served, extra: &str, disk: &Path) -> String {
    install_on(&kernel::stock().unwrap(), dir, s, extra, disk)
}

/// The same on any kernel; one without a module tree gets a module-free initrd.
fn install_on(k: &kernel::Kernel, dir: &RunDir, s: &Served, extra: &str, disk: &Path) -> String {
    let init = artifacts::ze_init().unwrap();
    let initrd = artifacts::initrd(&dir.join("initrd.img"), &init, k, &[]).unwrap();
    blank_disk(disk, 64 << 20).unwrap();
    let append = format!(
        "console=ttyS0 panic=-1 ze.server=10.0.2.2 ze.port={} {extra}",
        s.server.port()
    );
    let mut run = Vm::new(&k.vmlinuz, &initrd, &append)
        .drive(disk, DriveKind::Virtio)
        .nic(Nic::user())
        .start(dir.path())
        .unwrap();
    run.wait_for(0, "[ze-install] DONE image=", LIMIT).unwrap();
    let st = run.wait_exit(Duration::from_secs(60)).unwrap();
    assert!(st.success(), "QEMU exit {st}");
    let log = run.serial(0);
    assert!(
        log.contains("reboot: Restarting system"),
        "the guest did not reboot:\n{log}"
    );
    assert!(!log.contains("FATAL"), "{log}");
    log
}

fn judge(s: &Served, disk: &Path, log: &str) {
    same_except(disk, &s.image, s.p4).unwrap();
    let db = read_ext4_file(disk, s.p4, "/ze/database.zefs").unwrap();
    assert_eq!(db.as_deref(), Some(DB), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("[ze-install] DONE"))
        .unwrap();
    assert!(
        line.contains(&format!(
            "bytes={}",
            std::fs::metadata(&s.image).unwrap().len()
        )),
        "{line}"
    );
    assert!(!line.contains("verified=no"), "{line}");
}

#[test]
#[ignore = "boots QEMU; run by make test"]
fn http_install_raw_image() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("http_install_raw_image");
    let s = serve(&dir, "ze.img", false, Faults::default());
    let disk = dir.join("vda.img");
    let log = install(&dir, &s, "", &disk);
    judge(&s, &disk, &log);
    assert!(log.contains("network: using eth0"), "{log}");
    assert!(log.contains("disk plan: target /dev/vda"), "{log}");
}

#[test]
#[ignore = "boots QEMU; run by make test"]
fn http_install_gzip_image() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("http_install_gzip_image");
    let s = serve(&dir, "ze.img.gz", true, Faults::default());
    let disk = dir.join("vda.img");
    let log = install(&dir, &s, "ze.image=ze.img.gz", &disk);
    judge(&s, &disk, &log);
}

#[test]
#[ignore = "boots QEMU; run by make test"]
fn http_install_resumes_after_a_dropped_connection() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("http_install_resumes");
    let cut = (20 << 20) + 4321;
    let s = serve(
        &dir,
        "ze.img",
        false,
        Faults {
            drop_after: Some((cut, 1)),
            ..Faults::default()
        },
    );
    let disk = dir.join("vda.img");
    let log = install(&dir, &s, "", &disk);
    judge(&s, &disk, &log);
    let reqs = s.server.requests_for("/install/image/ze.img");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        reqs[1].range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
    assert!(log.contains(&format!("resuming at byte {cut}")), "{log}");
}

/// Two NICs: the first slirp network is `restrict=on` (a lease, but no way out to the
/// server). The installer must skip it and install over the second.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn two_nics_the_restricted_one_is_skipped() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("two_nics");
    let s = serve(&dir, "ze.img", false, Faults::default());
    let k = kernel::stock().unwrap();
    let init = artifacts::ze_init().unwrap();
    let initrd = artifacts::initrd(&dir.join("initrd.img"), &init, &k, &[]).unwrap();
    let disk = dir.join("vda.img");
    blank_disk(&disk, 64 << 20).unwrap();
    let append = format!(
        "console=ttyS0 panic=-1 ze.server=10.0.2.2 ze.port={} ze.wait=5",
        s.server.port()
    );
    let mut run = Vm::new(&k.vmlinuz, &initrd, &append)
        .drive(&disk, DriveKind::Virtio)
        .nic(Nic {
            netdev: "user,restrict=on".into(),
            model: "virtio-net-pci".into(),
            mac: Some("52:54:00:00:00:01".into()),
        })
        .nic(Nic {
            netdev: "user".into(),
            model: "virtio-net-pci".into(),
            mac: Some("52:54:00:00:00:02".into()),
        })
        .start(dir.path())
        .unwrap();
    run.wait_for(0, "[ze-install] DONE image=", LIMIT).unwrap();
    run.wait_exit(Duration::from_secs(60)).unwrap();
    let log = run.serial(0);
    assert!(
        log.contains("network: using eth1 (52:54:00:00:00:02)"),
        "{log}"
    );
    assert!(
        log.contains("network: eth0: skipped, eth1 won")
            || log.contains("network: eth0: lease applied but"),
        "{log}"
    );
    judge(&s, &disk, &log);
}

/// kernel-configs' qemu kernel (every driver built in) with a module-free initrd:
/// the same install, the same judgement.
#[test]
#[ignore = "builds a kernel and boots QEMU; run by make test"]
fn http_install_on_the_custom_kernel() {
    if !ready() {
        return;
    }
    let k = kernel::custom("qemu").expect("custom kernel (make kernel)");
    assert!(k.modules.is_none());
    let dir = RunDir::new("http_install_custom_kernel");
    let s = serve(&dir, "ze.img", false, Faults::default());
    let disk = dir.join("vda.img");
    let log = install_on(&k, &dir, &s, "", &disk);
    judge(&s, &disk, &log);
    assert!(log.contains(&format!("on kernel {}", k.release)), "{log}");
    assert!(log.contains("no bundled modules"), "{log}");
}
