//! Root tier of `ze-init install` in host mode: a loop-device target, database
//! injection into partition 4 (through a loop device over the partition's range: this
//! machine's kernel has no partition-table support, which is exactly the fallback), a
//! full filesystem, and an injection that fails. Judged from outside: the bytes of the
//! backing file, and `debugfs` reading partition 4.
//!
//! `#[ignore]`d: `make root` runs them. Without root they print SKIP and pass, except
//! under `CI=true`.

mod support;

use qemu_harness::fixture::{gpt_image, head_is_zero, read_ext4_file, same_except};
use qemu_harness::prereq;
use qemu_harness::server::{Body, Faults, Server};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

fn ready() -> bool {
    prereq::require_root() && prereq::require(&["mkfs.ext4", "debugfs", "losetup", "mount"])
}

/// Serves a GPT fixture image and the database.
fn serve_gpt(dir: &Path, mib: u64) -> (Server, PathBuf, qemu_harness::fixture::Part) {
    let img = dir.join("ze.img");
    let p4 = gpt_image(&img, mib, 7).unwrap();
    let s = Server::start("127.0.0.1:0").unwrap();
    s.add(
        "/install/image/ze.img",
        Body::File(img.clone()),
        Faults::default(),
    );
    s.add(
        "/install/image/ze.img.sha256",
        Body::bytes(format!(
            "{}  ze.img\n",
            qemu_harness::fixture::sha256_file(&img).unwrap()
        )),
        Faults::default(),
    );
    s.add(
        "/install/database.zefs",
        Body::bytes(DB.to_vec()),
        Faults::default(),
    );
    (s, img, p4)
}

/// A loop device over a file, detached on drop (the test's own, via losetup).
struct Loop(String);

impl Loop {
    fn attach(file: &Path) -> Loop {
        let o = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Loop(String::from_utf8_lossy(&o.stdout).trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
#[ignore = "root tier; run by make root"]
fn loop_device_target_gets_the_image_and_the_database() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, img, p4) = serve_gpt(dir.path(), 48);
    let backing = dir.path().join("disk.raw");
    std::fs::write(&backing, vec![0x5Au8; 64 << 20]).unwrap();
    let lo = Loop::attach(&backing);
    let o = install(&s, "", Path::new(&lo.0));
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("[ze-install] DONE image=ze.img"), "{log}");
    assert!(log.contains("(loop)"), "expected the GPT fallback:\n{log}");
    drop(lo);
    same_except(&backing, &img, p4).unwrap();
    let db = read_ext4_file(&backing, p4, "/ze/database.zefs").unwrap();
    assert_eq!(db.as_deref(), Some(DB));
}

#[test]
#[ignore = "root tier; run by make root"]
fn file_target_gets_the_database_through_a_loop_over_partition_4() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, img, p4) = serve_gpt(dir.path(), 32);
    let t = dir.path().join("new.raw");
    let o = install(&s, "", &t);
    assert!(o.status.success(), "{}", stderr(&o));
    same_except(&t, &img, p4).unwrap();
    let db = read_ext4_file(&t, p4, "/ze/database.zefs").unwrap();
    assert_eq!(db.as_deref(), Some(DB));
    // The rest of partition 4's filesystem is the image's.
    assert!(read_ext4_file(&t, p4, "/lost+found").is_ok());
}

#[test]
#[ignore = "root tier; run by make root"]
fn an_image_without_partition_4_fails_injection_and_is_left_unbootable() {
    if !ready() {
        return;
    }
    let img = noise(4 << 20, 3);
    let s = serve("ze.img", &img, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.raw");
    let f = fatal(&install(&s, "", &t));
    assert!(f.starts_with("[ze-install] FATAL: inject: "), "{f}");
    assert!(f.contains("partition 4"), "{f}");
    assert!(head_is_zero(&t).unwrap());
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "root tier; run by make root"]
fn a_full_filesystem_mid_write_is_fatal_and_leaves_the_head_zero() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    let _guard = Tmpfs(mnt.clone());
    let img = noise(12 << 20, 4);
    let s = serve("ze.img", &img, Faults::default());
    let t = mnt.join("disk.raw");
    let f = fatal(&install(&s, "", &t));
    assert!(f.starts_with("[ze-install] FATAL: write: "), "{f}");
    assert!(f.contains("No space left on device"), "{f}");
    assert!(head_is_zero(&t).unwrap());
}

/// A loop device over a file filled with `fill`.
fn loop_disk(dir: &Path, mib: u64, fill: u8) -> (PathBuf, Loop) {
    let backing = dir.join("disk.raw");
    std::fs::write(&backing, vec![fill; (mib << 20) as usize]).unwrap();
    let lo = Loop::attach(&backing);
    (backing, lo)
}

#[test]
#[ignore = "root tier; run by make root"]
fn loop_target_zero_runs_become_zeroes_over_old_data() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB of data, 6 MiB of zeroes, 1 MiB of data, written over a disk full of 0xEE:
    // the zero run goes out as BLKZEROOUT and must read back as zeroes.
    let mut img = noise(1 << 20, 5);
    img.extend(vec![0u8; 6 << 20]);
    img.extend(noise(1 << 20, 6));
    let s = serve("ze.img", &img, Faults::default());
    let (backing, lo) = loop_disk(dir.path(), 16, 0xEE);
    let o = install_image(&s, "", Path::new(&lo.0));
    assert!(o.status.success(), "{}", stderr(&o));
    drop(lo);
    let got = std::fs::read(&backing).unwrap();
    assert_eq!(&got[..img.len()], &img[..]);
    // Past the image the old data stays, except the last MiB (a backup GPT's place),
    // zeroed before writing began.
    assert!(got[img.len()..15 << 20].iter().all(|b| *b == 0xEE));
    assert!(got[15 << 20..].iter().all(|b| *b == 0));
}

#[test]
#[ignore = "root tier; run by make root"]
fn loop_target_sidecar_mismatch_leaves_first_and_last_mib_zero() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = noise(4 << 20, 7);
    let s = serve("ze.img", &img, Faults::default());
    s.add(
        "/install/image/ze.img.sha256",
        Body::bytes(format!("{}  ze.img\n", "9".repeat(64))),
        Faults::default(),
    );
    let (backing, lo) = loop_disk(dir.path(), 16, 0xEE);
    let f = fatal(&install_image(&s, "", Path::new(&lo.0)));
    assert!(f.contains("FATAL: verify: sha256 mismatch"), "{f}");
    drop(lo);
    let got = std::fs::read(&backing).unwrap();
    assert!(got[..1 << 20].iter().all(|b| *b == 0), "first MiB not zero");
    assert!(got[15 << 20..].iter().all(|b| *b == 0), "last MiB not zero");
}

#[test]
#[ignore = "root tier; run by make root"]
fn loop_target_too_small_changes_not_one_byte() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = noise(6 << 20, 8);
    let s = serve("ze.img", &img, Faults::default());
    let (backing, lo) = loop_disk(dir.path(), 4, 0xEE);
    let f = fatal(&install_image(&s, "", Path::new(&lo.0)));
    assert!(f.contains("FATAL: disk: "), "{f}");
    assert!(
        f.contains("is 4.0 MiB, the image needs at least 6.0 MiB"),
        "{f}"
    );
    drop(lo);
    assert!(std::fs::read(&backing).unwrap().iter().all(|b| *b == 0xEE));
}

#[test]
#[ignore = "root tier; run by make root"]
fn loop_target_resumes_a_dropped_download() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = noise(6 << 20, 9);
    let s = serve(
        "ze.img",
        &img,
        Faults {
            drop_after: Some(((3 << 20) + 17, 1)),
            ..Faults::default()
        },
    );
    let (backing, lo) = loop_disk(dir.path(), 16, 0xEE);
    let o = install_image(&s, "", Path::new(&lo.0));
    assert!(o.status.success(), "{}", stderr(&o));
    drop(lo);
    assert_eq!(&std::fs::read(&backing).unwrap()[..img.len()], &img[..]);
    assert_eq!(s.requests_for("/install/image/ze.img").len(), 2);
}
