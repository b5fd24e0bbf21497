//! Root tier: the real loop, block and mount calls on this machine's kernel, judged from
//! outside the code under test (debugfs reads the ext4 partition from the image file;
//! the gpt crate re-reads both GPT headers).
//!
//! `#[ignore]`d: `make test` runs them with `--ignored`. Without root or a tool they
//! print SKIP and pass, except under `CI=true`, where they fail.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use ze_init::disk::gpt::{Range, read_partition};
use ze_init::disk::partition::{Kernel, PartitionDevice, Wait, open_partition};
use ze_init::sys::block::{Access, BlockDev};
use ze_init::sys::loopdev::{LoopDevice, LoopOptions, Method};
use ze_init::sys::mount::{FsType, mount_private_ext4, mount_ro};

const DEV: &str = "/dev";

/// The qemu-harness `prereq` rules, copied to keep ze-init free of a harness dependency.
fn ready(cmds: &[&str]) -> bool {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let missing: Vec<&str> = cmds
        .iter()
        .copied()
        .filter(|c| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {c} >/dev/null")])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        })
        .collect();
    let why = match (root, missing.is_empty()) {
        (true, true) => return true,
        (false, _) => "needs root (loop devices, mount)".to_string(),
        (true, false) => format!("missing {} (make deps installs them)", missing.join(", ")),
    };
    assert!(!ci, "{why}; required under CI=true");
    eprintln!("SKIP: {why}");
    false
}

/// A 64 MiB image whose GPT (written by the gpt crate) has partition 4 = 8 MiB at
/// 37 MiB, followed by 19 MiB of nothing before the backup GPT.
fn gpt_image(path: &Path) -> Range {
    use gpt::disk::LogicalBlockSize;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.set_len(64 << 20).unwrap();
    gpt::mbr::ProtectiveMBR::with_lb_size(((64 << 20) / 512 - 1) as u32)
        .overwrite_lba0(&mut f)
        .unwrap();
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(f, None)
        .unwrap();
    for (name, mib) in [("boot", 4u64), ("root-a", 16), ("root-b", 16), ("data", 8)] {
        disk.add_partition(
            name,
            mib << 20,
            gpt::partition_types::LINUX_FS,
            0,
            Some(2048),
        )
        .unwrap();
    }
    disk.write().unwrap();
    let r = read_partition(&mut std::fs::File::open(path).unwrap(), 4, 512).unwrap();
    assert_eq!((r.start, r.len), (37 << 20, 8 << 20));
    r
}

fn backing_file_gone(number: u32) -> bool {
    let attr = format!("/sys/block/loop{number}/loop/backing_file");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if !Path::new(&attr).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "needs root; run by make test"]
fn ext4_on_partition_4_through_a_loop_range() {
    if !ready(&["mkfs.ext4", "debugfs"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("disk.img");
    let p4 = gpt_image(&img);
    // Partition 3's last MiB gets a pattern the loop must never touch.
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(p4.start - (1 << 20))).unwrap();
    f.write_all(&vec![0xA5; 1 << 20]).unwrap();
    drop(f);

    let lo = LoopDevice::attach(
        Path::new(DEV),
        &img,
        &LoopOptions {
            offset: p4.start,
            size_limit: p4.len,
            ..LoopOptions::default()
        },
    )
    .unwrap();
    let number = lo.number();
    let bd = BlockDev::open(lo.path(), Access::Read).unwrap();
    assert_eq!(bd.size().unwrap(), p4.len);
    assert_eq!(bd.logical_sector_size().unwrap(), 512);
    assert!(!bd.read_only().unwrap());
    drop(bd);

    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(lo.path()));
    let m = mount_private_ext4(lo.path(), t.path()).unwrap();
    let mnt = m.target().to_path_buf();
    std::fs::create_dir(mnt.join("ze")).unwrap();
    std::fs::write(mnt.join("ze/database.zefs"), b"zefs-database-v1\n").unwrap();
    // While mounted, an exclusive open (the writer's guard) is refused.
    let e = BlockDev::open(lo.path(), Access::WriteExclusive).unwrap_err();
    assert!(e.to_string().contains("Device or resource busy"), "{e}");
    m.unmount().unwrap();
    assert!(!mnt.exists(), "the private mount point is removed");
    lo.detach().unwrap();
    assert!(backing_file_gone(number), "loop{number} still attached");

    // From outside: debugfs reads the file from the image at partition 4's offset.
    let out = run(Command::new("debugfs").args([
        "-R",
        "cat /ze/database.zefs",
        &format!("{}?offset={}", img.display(), p4.start),
    ]));
    assert_eq!(out, "zefs-database-v1\n");
    // Nothing outside the range changed: partition 3's pattern, and both GPT headers.
    let mut f = std::fs::File::open(&img).unwrap();
    let mut before = vec![0u8; 1 << 20];
    f.seek(SeekFrom::Start(p4.start - (1 << 20))).unwrap();
    f.read_exact(&mut before).unwrap();
    assert!(before.iter().all(|&b| b == 0xA5), "partition 3 was written");
    let disk = gpt::GptConfig::new().writable(false).open(&img).unwrap();
    assert!(disk.primary_header().is_ok() && disk.backup_header().is_ok());
}

#[test]
#[ignore = "needs root; run by make test"]
fn legacy_attach_and_read_only_whole_file() {
    if !ready(&[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("media.iso");
    std::fs::write(&img, vec![7u8; 3 << 20]).unwrap();

    // LOOP_SET_FD + LOOP_SET_STATUS64, as on a kernel before 5.8.
    let lo = LoopDevice::attach(
        Path::new(DEV),
        &img,
        &LoopOptions {
            offset: 1 << 20,
            size_limit: 1 << 20,
            method: Method::Legacy,
            ..LoopOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        BlockDev::open(lo.path(), Access::Read)
            .unwrap()
            .size()
            .unwrap(),
        1 << 20
    );
    let number = lo.number();
    lo.detach().unwrap();
    assert!(backing_file_gone(number));

    // Read-only, whole file: how an ISO on a Ventoy partition is attached.
    let lo = LoopDevice::attach(
        Path::new(DEV),
        &img,
        &LoopOptions {
            read_only: true,
            ..LoopOptions::default()
        },
    )
    .unwrap();
    let bd = BlockDev::open(lo.path(), Access::Read).unwrap();
    assert_eq!(bd.size().unwrap(), 3 << 20);
    assert!(bd.read_only().unwrap());
    // Depending on the kernel, opening for write fails, or the write itself does.
    if let Ok(w) = BlockDev::open(lo.path(), Access::Write) {
        let e = w.file().write_all_at(&[0u8; 512], 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(nix::libc::EPERM), "{e}");
    }
    // Not an ext4 (nor anything): the error names device, type and mount point.
    let e = mount_ro(lo.path(), t.path(), FsType::Ext4)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "mounting {} (ext4) on {}: ",
            lo.path().display(),
            t.path().display()
        )),
        "{e}"
    );
    drop(bd);
    // Dropped without detach: autoclear (and Drop) still free it.
    let number = lo.number();
    drop(lo);
    assert!(backing_file_gone(number));
}

#[test]
#[ignore = "needs root; run by make test"]
fn partition_4_of_a_loop_disk_falls_back_to_the_gpt_range() {
    if !ready(&[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("disk.img");
    let p4 = gpt_image(&img);
    // The "disk": a loop device over the whole image, without partition scanning, so
    // BLKRRPART is refused (EINVAL) whatever the kernel's partition support.
    let disk_lo = LoopDevice::attach(Path::new(DEV), &img, &LoopOptions::default()).unwrap();
    let name = format!("loop{}", disk_lo.number());
    let disk = ze_init::disk::read_device(Path::new("/sys"), &name);
    assert_eq!(disk.size, 64 << 20);
    let started = Instant::now();
    let part = open_partition(
        Path::new("/sys"),
        Path::new(DEV),
        &disk,
        4,
        &mut Kernel {
            dev_root: DEV.into(),
        },
        Wait::default(),
    )
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a refused BLKRRPART must not wait 10 s"
    );
    assert_eq!(part.how(), "loop");
    let PartitionDevice::Loop { range, .. } = &part else {
        unreachable!()
    };
    assert_eq!(*range, p4);

    // Write through the partition's loop device, zero part of it with BLKZEROOUT, and
    // see both from the image file.
    let bd = BlockDev::open(part.path(), Access::Write).unwrap();
    assert_eq!(bd.size().unwrap(), p4.len);
    bd.file().write_all_at(&[0x5A; 8192], 0).unwrap();
    bd.zero_range(0, 4096).unwrap();
    bd.fdatasync().unwrap();
    bd.flush_buffers().unwrap();
    drop(bd);
    let PartitionDevice::Loop { device, .. } = part else {
        unreachable!()
    };
    device.detach().unwrap();
    disk_lo.detach().unwrap();
    let mut f = std::fs::File::open(&img).unwrap();
    let mut got = vec![0u8; 8192];
    f.seek(SeekFrom::Start(p4.start)).unwrap();
    f.read_exact(&mut got).unwrap();
    assert!(got[..4096].iter().all(|&b| b == 0), "BLKZEROOUT range");
    assert!(
        got[4096..].iter().all(|&b| b == 0x5A),
        "written through the loop"
    );
}
