//! ISO, USB-stick and Ventoy installs end to end. The ISO is built by `ze-pack iso`
//! from the stock Debian kernel, the qemu-profile initrd and a 48 MiB GPT fixture
//! image; each scenario boots it in QEMU (TCG) and judges from outside: the target
//! disk's bytes against the image (or untouched, or its first MiB zero), the serial
//! log's markers, and QEMU exiting by itself after the guest powered off.
//!
//! QEMU tier: `make e2e` runs these with `--ignored`.

use qemu_harness::fixture::{Part, gpt_image, head_is_zero, same_except, sha256_file};
use qemu_harness::kernel::{self, Kernel};
use qemu_harness::media::{self, DataFs, DataPart};
use qemu_harness::qemu::{DriveKind, Firmware, OVMF_CODE, OVMF_VARS, Running, Vm, blank_disk};
use qemu_harness::{artifacts, prereq, rundir::RunDir};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ID: &str = "15051505aa55aa55150515050f0f0f0f";
/// Direct `-kernel` boots: boot, coldplug, scan and a 48 MiB image under TCG.
const DIRECT: Duration = Duration::from_secs(180);
/// Firmware boots add OVMF or SeaBIOS and GRUB reading the kernel from the medium.
const FIRMWARE: Duration = Duration::from_secs(360);
const POWER_DOWN: &str = "reboot: Power down";
/// The recovery console's prompt: an ISO install with no secret configured opens the
/// menu on a FATAL (nobody is waiting on a network install, somebody is at a USB one).
const MENU: &str = "choice [1-4]: ";

fn ready() -> bool {
    prereq::require(&[
        "qemu-system-x86_64",
        "apt-get",
        "dpkg",
        "mkfs.ext4",
        "xorriso",
        "grub-mkimage",
        "mformat",
        "mcopy",
        "mmd",
    ]) && prereq::require_path(
        Path::new("/usr/lib/grub/i386-pc/boot_hybrid.img"),
        "Debian package grub-pc-bin",
    ) && prereq::require_path(
        Path::new("/usr/lib/grub/x86_64-efi/linux.mod"),
        "Debian package grub-efi-amd64-bin",
    )
}

/// The pieces every scenario starts from.
struct Setup {
    dir: RunDir,
    kernel: Kernel,
    initrd: PathBuf,
    /// The raw image; the ISO holds it gzip-compressed as `ze.img.gz`.
    image: PathBuf,
    iso: PathBuf,
}

/// Builds the initrd for `kernel` (`pack` extra arguments), the image and the ISO
/// (`iso_extra` arguments to ze-pack iso).
fn setup_on(name: &str, kernel: Kernel, pack: &[&str], iso_extra: &[&str]) -> Setup {
    let dir = RunDir::new(name);
    let init = artifacts::ze_init().unwrap();
    let initrd = artifacts::initrd(&dir.join("initrd.img"), &init, &kernel, pack).unwrap();
    let image = dir.join("ze.img");
    gpt_image(&image, 48, 31).unwrap();
    let iso = media::iso(
        &dir.join("ze.iso"),
        &kernel.vmlinuz,
        &initrd,
        &image,
        ID,
        iso_extra,
    )
    .unwrap();
    Setup {
        dir,
        kernel,
        initrd,
        image,
        iso,
    }
}

fn setup(name: &str, iso_extra: &[&str]) -> Setup {
    setup_on(name, kernel::stock().unwrap(), &[], iso_extra)
}

/// The command line the ISO's boot menu carries, for direct `-kernel` boots.
fn append(extra: &str) -> String {
    format!("console=ttyS0 panic=-1 ze.source=iso ze.media-id={ID} ze.image=ze.img.gz {extra}")
}

fn direct(s: &Setup, extra: &str) -> Vm {
    Vm::new(&s.kernel.vmlinuz, &s.initrd, &append(extra))
}

fn disk(s: &Setup, name: &str) -> PathBuf {
    let p = s.dir.join(name);
    blank_disk(&p, 64 << 20).unwrap();
    p
}

/// Waits for `marker`, then for QEMU to exit by itself with success after the guest
/// powered off; returns the serial log.
fn finish(run: &mut Running, marker: &str, limit: Duration) -> String {
    run.wait_for(0, marker, limit).unwrap();
    let st = run.wait_exit(Duration::from_secs(60)).unwrap();
    let log = run.serial(0);
    assert!(st.success(), "QEMU exit {st}:\n{log}");
    assert!(
        log.contains(POWER_DOWN),
        "the guest did not power off:\n{log}"
    );
    assert!(!log.contains("Kernel panic"), "{log}");
    eprintln!(
        "{}: QEMU ran {:.1} s",
        std::thread::current().name().unwrap_or("?"),
        run.elapsed().as_secs_f64()
    );
    log
}

/// Waits for the FATAL and the recovery menu that follows it, chooses 4 (power off),
/// and returns the serial log once QEMU has exited by itself.
fn fatal_then_power_off(run: &mut Running, limit: Duration) -> String {
    run.expect(0, "[ze-install] FATAL:", limit).unwrap();
    run.expect(0, MENU, Duration::from_secs(30)).unwrap();
    run.send(0, "4\r").unwrap();
    finish(run, POWER_DOWN, Duration::from_secs(30))
}

/// A finished install: the DONE line, no FATAL, and the target holds the image.
fn installed(s: &Setup, target: &Path, log: &str) {
    assert!(!log.contains("FATAL"), "{log}");
    // Every mount and loop device was let go cleanly (unmounting the FAT partition
    // right after detaching an ISO's loop device included).
    assert!(!log.contains("warning: media:"), "{log}");
    let done = log
        .lines()
        .find(|l| l.contains("[ze-install] DONE"))
        .unwrap_or_else(|| panic!("no DONE line:\n{log}"));
    let len = std::fs::metadata(&s.image).unwrap().len();
    assert!(done.contains(&format!("bytes={len}")), "{done}");
    assert!(!done.contains("verified=no"), "{done}");
    same_except(target, &s.image, Part { start: 0, len: 0 }).unwrap();
}

fn all_zero(p: &Path) -> bool {
    use std::io::Read;
    let mut f = std::fs::File::open(p).unwrap();
    let mut b = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut b).unwrap();
        if n == 0 {
            return true;
        }
        if b[..n].iter().any(|x| *x != 0) {
            return false;
        }
    }
}

fn has(log: &str, needle: &str) {
    assert!(log.contains(needle), "{needle:?} not in the log:\n{log}");
}

/// 1. The ISO as an IDE CD-ROM, direct `-kernel` boot, one blank virtio disk.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn iso_on_a_cdrom_installs_to_the_only_disk() {
    if !ready() {
        return;
    }
    let s = setup("iso_cdrom", &[]);
    let vda = disk(&s, "vda.img");
    let mut run = direct(&s, "")
        .drive(&s.iso, DriveKind::Cdrom)
        .drive(&vda, DriveKind::Virtio)
        .start(s.dir.path())
        .unwrap();
    let log = finish(&mut run, "[ze-install] DONE image=", DIRECT);
    installed(&s, &vda, &log);
    has(&log, "media: found the install medium on /dev/sr0");
    has(&log, "taken: the only candidate");
    has(&log, "disk plan: target /dev/vda");
}

/// 2. The same ISO booted by OVMF from the CD-ROM: UEFI → GRUB (BOOTX64.EFI from the
///    El Torito EFI image) → the kernel and initrd from the ISO, with its own command line.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn iso_boots_through_ovmf_and_grub() {
    if !ready() || !prereq::require_path(Path::new(OVMF_CODE), "Debian package ovmf") {
        return;
    }
    assert!(Path::new(OVMF_VARS).exists());
    let s = setup("iso_ovmf", &[]);
    let vda = disk(&s, "vda.img");
    let mut run = Vm::boot_drives("d")
        .firmware(Firmware::Uefi)
        .drive(&s.iso, DriveKind::Cdrom)
        .drive(&vda, DriveKind::Virtio)
        .start(s.dir.path())
        .unwrap();
    let log = finish(&mut run, "[ze-install] DONE image=", FIRMWARE);
    installed(&s, &vda, &log);
    // The kernel got the ISO's command line, not ours.
    has(
        &log,
        &format!("Command line: BOOT_IMAGE=/boot/ze/vmlinuz ze.source=iso ze.media-id={ID}"),
    );
    has(&log, "EFI v");
}

/// 3. The ISO `dd`-ed onto a disk (the USB-stick case), booted by SeaBIOS through the
///    hybrid MBR, plus one blank disk: the stick is excluded, the blank disk taken.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn iso_written_to_a_stick_boots_by_bios_and_excludes_the_stick() {
    if !ready() {
        return;
    }
    let s = setup("iso_stick", &[]);
    // dd: the stick is the ISO's bytes, padded to a stick's size.
    let stick = s.dir.join("stick.img");
    std::fs::copy(&s.iso, &stick).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&stick)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    let vdb = disk(&s, "vdb.img");
    let stick_sha = sha256_file(&stick).unwrap();
    let mut run = Vm::boot_drives("c")
        .drive(&stick, DriveKind::Virtio)
        .drive(&vdb, DriveKind::Virtio)
        .start(s.dir.path())
        .unwrap();
    let log = finish(&mut run, "[ze-install] DONE image=", FIRMWARE);
    installed(&s, &vdb, &log);
    has(&log, "media: found the install medium on /dev/vda");
    has(&log, "excluded: holds the install media");
    has(&log, "disk plan: target /dev/vdb");
    assert_eq!(
        sha256_file(&stick).unwrap(),
        stick_sha,
        "the stick was written"
    );
}

/// A small ISO that is a ze-install medium for another boot.
fn other_iso(dir: &Path) -> PathBuf {
    let tree = dir.join("other-tree/ze-install");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("media-id"), "ffffffffffffffffffffffffffffffff\n").unwrap();
    let out = dir.join("old.iso");
    let o = std::process::Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-o"])
        .arg(&out)
        .arg(dir.join("other-tree"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// A Ventoy-like stick: partition 1 holds an older ISO at the top level, partition 2
/// this ISO in a subdirectory.
fn ventoy_stick(s: &Setup, fs: DataFs) -> PathBuf {
    let old = other_iso(s.dir.path());
    let stick = s.dir.join("ventoy.img");
    let iso_mib = std::fs::metadata(&s.iso).unwrap().len().div_ceil(1 << 20);
    media::data_disk(
        &stick,
        iso_mib + 32,
        &[
            DataPart {
                fs,
                mib: 8,
                files: &[("old.iso", &old)],
            },
            DataPart {
                fs,
                mib: iso_mib + 16,
                files: &[("ventoy/ze.iso", &s.iso)],
            },
        ],
    )
    .unwrap();
    stick
}

fn ventoy(s: &Setup, fs: DataFs) {
    let stick = ventoy_stick(s, fs);
    let vdb = disk(s, "vdb.img");
    let stick_sha = sha256_file(&stick).unwrap();
    let mut run = direct(s, "")
        .drive(&stick, DriveKind::Virtio)
        .drive(&vdb, DriveKind::Virtio)
        .start(s.dir.path())
        .unwrap();
    let log = finish(&mut run, "[ze-install] DONE image=", DIRECT);
    installed(s, &vdb, &log);
    has(
        &log,
        "media: /dev/vda1:/old.iso: wrong media-id \"ffffffffffffffffffffffffffffffff\"",
    );
    has(
        &log,
        "media: found the install medium in /dev/vda2:/ventoy/ze.iso (loop device /dev/loop",
    );
    has(&log, "excluded: holds the install media");
    has(&log, "disk plan: target /dev/vdb");
    assert_eq!(
        sha256_file(&stick).unwrap(),
        stick_sha,
        "the stick was written"
    );
}

/// 4. Ventoy on FAT: the ISO file in a subdirectory of a FAT partition, reached through
///    a read-only loop device, plus one blank disk.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn iso_file_on_a_fat_partition_installs_through_a_loop_device() {
    if !ready() {
        return;
    }
    let s = setup("ventoy_fat", &[]);
    ventoy(&s, DataFs::Fat);
}

/// 4b. Ventoy on exFAT (its default) with the stock kernel: Debian's cloud kernel ships
///     exfat.ko, which the `hardware` packer profile bundles and always loads.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn iso_file_on_an_exfat_partition_installs_with_the_hardware_profile() {
    if !ready() || !prereq::require(&["mkfs.exfat"]) {
        return;
    }
    let s = setup_on(
        "ventoy_exfat",
        kernel::stock().unwrap(),
        &["--profile", "hardware"],
        &[],
    );
    ventoy(&s, DataFs::Exfat);
}

/// 4c. Ventoy on exFAT with the custom qemu-profile kernel (exfat built in, no modules).
#[test]
#[ignore = "builds a kernel and boots QEMU; run by make test"]
fn iso_file_on_an_exfat_partition_installs_on_the_custom_kernel() {
    if !ready() || !prereq::require(&["mkfs.exfat"]) {
        return;
    }
    let k = kernel::custom("qemu").expect("custom kernel (make kernel)");
    let s = setup_on("ventoy_exfat_custom", k, &[], &[]);
    ventoy(&s, DataFs::Exfat);
}

/// 5. Two blank disks and no ze.target: refused, both listed, neither written.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn two_blank_disks_without_a_target_are_refused() {
    if !ready() {
        return;
    }
    let s = setup("iso_two_disks", &[]);
    let (vda, vdb) = (disk(&s, "vda.img"), disk(&s, "vdb.img"));
    let mut run = direct(&s, "")
        .drive(&s.iso, DriveKind::Cdrom)
        .drive(&vda, DriveKind::Virtio)
        .drive(&vdb, DriveKind::Virtio)
        .interactive_serial(0)
        .start(s.dir.path())
        .unwrap();
    let log = fatal_then_power_off(&mut run, DIRECT);
    let fatal: Vec<&str> = log.lines().filter(|l| l.contains("FATAL")).collect();
    assert_eq!(
        fatal,
        [
            "[ze-install] FATAL: disk: ze.source=iso needs exactly one target disk but found 2: \
             /dev/vda (64.0 MiB virtio), /dev/vdb (64.0 MiB virtio); name one with ze.target"
        ],
        "{log}"
    );
    assert!(!log.contains("DONE"), "{log}");
    assert!(all_zero(&vda) && all_zero(&vdb), "a disk was written");
}

/// 5b. The same machine with an ISO built with `--target /dev/vdb`: that disk, and
///     only that disk, gets the image.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn an_iso_built_with_a_target_installs_there() {
    if !ready() {
        return;
    }
    let s = setup("iso_target", &["--target", "/dev/vdb"]);
    let (vda, vdb) = (disk(&s, "vda.img"), disk(&s, "vdb.img"));
    let mut run = direct(&s, "ze.target=/dev/vdb")
        .drive(&s.iso, DriveKind::Cdrom)
        .drive(&vda, DriveKind::Virtio)
        .drive(&vdb, DriveKind::Virtio)
        .start(s.dir.path())
        .unwrap();
    let log = finish(&mut run, "[ze-install] DONE image=", DIRECT);
    installed(&s, &vdb, &log);
    has(&log, "taken: named by ze.target");
    assert!(all_zero(&vda), "vda was written");
}

/// 6. A medium whose sidecar (and manifest) do not describe its image: the install
///    writes, finds the digest wrong, and leaves the first MiB zero.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn a_corrupt_image_is_a_verify_fatal_and_the_target_does_not_boot() {
    if !ready() {
        return;
    }
    let s = setup("iso_corrupt", &[]);
    let x = s.dir.join("x");
    let o = std::process::Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&s.iso)
        .args(["-extract", "/ze-install/images/ze.img.gz.sha256"])
        .arg(&x)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let real = std::fs::read_to_string(&x).unwrap()[..64].to_string();
    let wrong: String = real
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    // The sidecar and the manifest both carry the digest.
    let n = media::replace_all(&s.iso, real.as_bytes(), wrong.as_bytes()).unwrap();
    assert_eq!(n, 2);
    let vda = disk(&s, "vda.img");
    let mut run = direct(&s, "")
        .drive(&s.iso, DriveKind::Cdrom)
        .drive(&vda, DriveKind::Virtio)
        .interactive_serial(0)
        .start(s.dir.path())
        .unwrap();
    let log = fatal_then_power_off(&mut run, DIRECT);
    let fatal: Vec<&str> = log.lines().filter(|l| l.contains("FATAL")).collect();
    assert_eq!(fatal.len(), 1, "{log}");
    assert!(
        fatal[0].starts_with(&format!(
            "[ze-install] FATAL: verify: sha256 mismatch: expected {wrong}, got {real}"
        )),
        "{log}"
    );
    assert!(head_is_zero(&vda).unwrap(), "the first MiB is not zero");
    assert!(
        !all_zero(&vda),
        "nothing was written at all (the check came too early)"
    );
}

/// 7. A real USB stick: Debian's generic kernel (the cloud flavour has no USB at all)
///    with the hardware module profile (xhci_pci, usb_storage) sees the ISO's stick
///    only after USB enumeration and usb-storage's settle delay; the scan's polling
///    finds it.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn iso_on_a_usb_stick_is_found_after_enumeration() {
    if !ready() {
        return;
    }
    let k = kernel::debian("linux-image-amd64").expect("Debian's generic kernel");
    let s = setup_on("iso_usb", k, &["--profile", "hardware"], &[]);
    let stick = s.dir.join("stick.img");
    std::fs::copy(&s.iso, &stick).unwrap();
    let vda = disk(&s, "vda.img");
    let mut run = direct(&s, "")
        .drive(&stick, DriveKind::Usb)
        .drive(&vda, DriveKind::Virtio)
        .start(s.dir.path())
        .unwrap();
    let log = finish(&mut run, "[ze-install] DONE image=", DIRECT);
    installed(&s, &vda, &log);
    // sd_mod matched no device at coldplug (only the CD-ROM's scsi:t-0x05 was there):
    // the media scan's hotplug loaded it for the stick.
    has(&log, "module sd_mod loaded");
    has(&log, "media: found the install medium on /dev/sda");
    has(&log, "disk plan: target /dev/vda");
}
