//! `ze-pack iso` as a command: the tree it writes (read back with xorriso, judged with
//! the installer's own check), byte-reproducibility, `--check`, and the hybrid layout.
//! Booting the result is qemu-harness's job (`tests/iso.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ID: &str = "00112233445566778899aabbccddeeff";

/// The tools a build needs: skip locally, fail under CI=true.
fn ready() -> bool {
    let o = Command::new(env!("CARGO_BIN_EXE_ze-pack"))
        .args(["iso", "--check"])
        .output()
        .unwrap();
    if o.status.success() {
        return true;
    }
    let why = String::from_utf8_lossy(&o.stderr);
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "ze-pack iso prerequisites are required under CI=true (make deps installs them):\n{why}"
    );
    eprintln!("SKIP: {why}");
    false
}

struct Inputs {
    kernel: PathBuf,
    initrd: PathBuf,
    image: PathBuf,
}

/// A stand-in kernel (an x86 boot header is all ze-pack looks at), initrd and image.
fn inputs(dir: &Path) -> Inputs {
    let mut k = vec![0u8; 8192];
    k[0x202..0x206].copy_from_slice(b"HdrS");
    let i = Inputs {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        image: dir.join("prod.img"),
    };
    std::fs::write(&i.kernel, k).unwrap();
    std::fs::write(&i.initrd, b"070701 not really a cpio").unwrap();
    let image: Vec<u8> = (0..3_000_000u32).map(|n| (n / 7 % 256) as u8).collect();
    std::fs::write(&i.image, image).unwrap();
    i
}

fn pack(i: &Inputs, out: &Path, extra: &[&str], epoch: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ze-pack"));
    c.arg("iso")
        .arg("--kernel")
        .arg(&i.kernel)
        .arg("--initrd")
        .arg(&i.initrd)
        .arg("--image")
        .arg(&i.image)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("SOURCE_DATE_EPOCH");
    if let Some(e) = epoch {
        c.env("SOURCE_DATE_EPOCH", e);
    }
    c.output().unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Extracts the whole ISO 9660 tree with xorriso.
fn extract(iso: &Path, to: &Path) {
    let o = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/"])
        .arg(to)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_medium_holds_the_contract_the_installer_checks() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let i = inputs(t.path());
    let answers = t.path().join("site.env");
    std::fs::write(&answers, "KLDLOAD_HOSTNAME=web-01\n").unwrap();
    let iso = t.path().join("out.iso");
    let o = pack(
        &i,
        &iso,
        &[
            "--media-id",
            ID,
            "--target",
            "/dev/vda",
            "--cmdline",
            "ze.log=debug",
            "--answers",
            answers.to_str().unwrap(),
        ],
        Some("1700000000"),
    );
    ok(&o);
    let x = t.path().join("x");
    extract(&iso, &x);
    // The installer's own judge accepts it.
    let c = ze_init::source::iso::check(&x, ID, "prod.img.gz").unwrap();
    assert_eq!(c.image_bytes, Some(3_000_000));
    let mut raw = Vec::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(std::fs::File::open(&c.image).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(raw, std::fs::read(&i.image).unwrap());
    assert_eq!(
        std::fs::read_to_string(x.join("ze-install/autoinstall.env")).unwrap(),
        "KLDLOAD_HOSTNAME=web-01\n"
    );
    assert_eq!(
        std::fs::read(x.join("boot/ze/vmlinuz")).unwrap(),
        std::fs::read(&i.kernel).unwrap()
    );
    assert!(x.join(format!("boot/ze/{ID}")).is_file());
    assert!(x.join("EFI/BOOT/BOOTX64.EFI").is_file());
    let cfg = std::fs::read_to_string(x.join("boot/grub/grub.cfg")).unwrap();
    let want = format!(
        "    linux /boot/ze/vmlinuz ze.source=iso ze.media-id={ID} ze.image=prod.img.gz \
         ze.target=/dev/vda console=tty0 console=ttyS0,115200 ze.log=debug\n"
    );
    assert!(cfg.contains(&want), "{cfg}");
    let m: ze_init::source::iso::Manifest =
        serde_json::from_slice(&std::fs::read(x.join("ze-install/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m.created, 1_700_000_000);
    assert_eq!(
        m.cmdline,
        want.trim().trim_start_matches("linux /boot/ze/vmlinuz ")
    );

    // Hybrid: El Torito for BIOS and UEFI, GRUB's MBR, a GPT with the ESP.
    let o = Command::new("xorriso")
        .args(["-indev"])
        .arg(&iso)
        .args(["-report_el_torito", "plain", "-report_system_area", "plain"])
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    for want in [
        "El Torito boot img :   1  BIOS",
        "El Torito boot img :   2  UEFI",
        "El Torito img path :   1  /boot/grub/bios.img",
        "grub2-mbr",
        "GPT",
    ] {
        assert!(report.contains(want), "{want} not in:\n{report}");
    }
    let gpt = Command::new("sh")
        .arg("-c")
        .arg(format!("fdisk -l {} 2>&1 || true", iso.display()))
        .output()
        .unwrap();
    let gpt = String::from_utf8_lossy(&gpt.stdout);
    if !gpt.contains("not found") {
        assert!(gpt.contains("EFI System"), "{gpt}");
    }
}

#[test]
fn the_same_inputs_epoch_and_media_id_give_the_same_bytes() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let i = inputs(t.path());
    let (a, b, c) = (
        t.path().join("a.iso"),
        t.path().join("b.iso"),
        t.path().join("c.iso"),
    );
    ok(&pack(&i, &a, &["--media-id", ID], Some("1700000000")));
    // New mtimes on every input, a second later: nothing of that may reach the ISO.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for p in [&i.kernel, &i.initrd, &i.image] {
        let data = std::fs::read(p).unwrap();
        std::fs::write(p, data).unwrap();
    }
    ok(&pack(&i, &b, &["--media-id", ID], Some("1700000000")));
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "two builds differ"
    );
    // Another media id is another medium.
    ok(&pack(
        &i,
        &c,
        &["--media-id", "ffeeddccbbaa99887766554433221100"],
        Some("1700000000"),
    ));
    assert!(std::fs::read(&a).unwrap() != std::fs::read(&c).unwrap());
}

#[test]
fn a_generated_media_id_is_32_hex_and_fresh() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let i = inputs(t.path());
    let mut ids = Vec::new();
    for n in 0..2 {
        let iso = t.path().join(format!("{n}.iso"));
        ok(&pack(&i, &iso, &[], None));
        let x = t.path().join(format!("x{n}"));
        extract(&iso, &x);
        let id = std::fs::read_to_string(x.join("ze-install/media-id")).unwrap();
        let id = id.trim().to_string();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn check_names_each_missing_prerequisite() {
    let t = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ze-pack"))
        .args(["iso", "--check", "--grub-dir"])
        .arg(t.path())
        .arg("--kernel")
        .arg(t.path().join("missing-vmlinuz"))
        // No tools on this PATH at all.
        .env("PATH", t.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "missing: xorriso (command) (Debian package xorriso)",
        "missing: grub-mkimage (command) (Debian package grub-common)",
        "missing: mformat (command) (Debian package mtools)",
        &format!(
            "missing: {}/x86_64-efi/linux.mod (Debian package grub-efi-amd64-bin)",
            t.path().display()
        ),
        &format!(
            "missing: {}/i386-pc/cdboot.img (Debian package grub-pc-bin)",
            t.path().display()
        ),
        &format!(
            "missing: kernel {} (no such file)",
            t.path().join("missing-vmlinuz").display()
        ),
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
}

#[test]
fn refusals_happen_before_anything_is_written() {
    let t = tempfile::tempdir().unwrap();
    let i = inputs(t.path());
    let iso = t.path().join("out.iso");
    let o = pack(&i, &iso, &["--media-id", "XYZ"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be 32 lowercase hex digits"));
    if ready() {
        let o = pack(&i, &iso, &["--target", "/dev/vda2"], None);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("the installer would refuse this command line: ze.target"),
            "{err}"
        );
    }
    assert!(!iso.exists());
    // No staging directory is left behind.
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ze-pack-iso-"))
        .collect();
    assert!(left.is_empty());
}
