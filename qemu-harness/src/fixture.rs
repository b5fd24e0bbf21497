//! Install fixtures and judges: a raw GPT disk image shaped like the appliance images
//! (partitions 1–3 of data, partition 4 ext4), and checks that read the result from
//! outside the installer — the bytes of the disk image, and the injected file read with
//! `debugfs` from partition 4.

use anyhow::{Context, Result, bail};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

/// Byte range of a partition inside an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub start: u64,
    pub len: u64,
}

/// Deterministic incompressible bytes.
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes a `mib`-MiB GPT image: partitions 1 (4 MiB), 2 and 3 (each a quarter of the
/// rest) filled with noise, partition 4 (the remainder) an empty ext4 filesystem, and a
/// zero MiB between partition 4 and the backup GPT. Returns partition 4's range.
pub fn gpt_image(path: &Path, mib: u64, seed: u32) -> Result<Part> {
    anyhow::ensure!(mib >= 24, "a GPT fixture needs at least 24 MiB");
    let rest = mib - 4 - 2; // 1 MiB before partition 1, 1 MiB of slack at the end
    let quarter = rest / 4;
    let sizes = [4, quarter, quarter, rest - 2 * quarter].map(|s| ("", s));
    let (mut f, parts) = gpt_disk(path, mib, &sizes, gpt::partition_types::LINUX_FS)?;
    for (i, p) in parts[..3].iter().enumerate() {
        f.seek(SeekFrom::Start(p.start))?;
        f.write_all(&noise(p.len as usize, seed + i as u32))?;
    }
    f.sync_all()?;
    drop(f);
    let p4 = parts[3];
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "perm", "-E"])
        .arg(format!("offset={}", p4.start))
        .arg(path)
        .arg(format!("{}k", p4.len / 1024))
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .status()
        .context("running mkfs.ext4")?;
    if !st.success() {
        bail!("mkfs.ext4 on partition 4 of {} failed", path.display());
    }
    Ok(p4)
}

/// A new `mib`-MiB disk image with a protective MBR and a GPT holding one partition of
/// each `(name, MiB)` in `parts`, 1 MiB-aligned and consecutive (named `p1`… when the
/// name is empty). Returns the file and the partitions' byte ranges.
pub fn gpt_disk(
    path: &Path,
    mib: u64,
    parts: &[(&str, u64)],
    kind: gpt::partition_types::Type,
) -> Result<(std::fs::File, Vec<Part>)> {
    use gpt::disk::LogicalBlockSize;
    let total = mib << 20;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.set_len(total)?;
    gpt::mbr::ProtectiveMBR::with_lb_size((total / 512 - 1) as u32).overwrite_lba0(&mut f)?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(f, None)?;
    for (i, (name, size)) in parts.iter().enumerate() {
        let name = match name {
            &"" => format!("p{}", i + 1),
            n => n.to_string(),
        };
        disk.add_partition(&name, size << 20, kind.clone(), 0, Some(2048))?;
    }
    let ranges = (1..=parts.len() as u32)
        .map(|n| {
            let p = &disk.partitions()[&n];
            Part {
                start: p.first_lba * 512,
                len: (p.last_lba - p.first_lba + 1) * 512,
            }
        })
        .collect();
    Ok((disk.write()?, ranges))
}

/// A copy of `part`'s bytes in its own file, for debugfs.
fn extract(image: &Path, part: Part, out: &Path) -> Result<()> {
    let mut f = std::fs::File::open(image)?;
    f.seek(SeekFrom::Start(part.start))?;
    let mut o = std::fs::File::create(out)?;
    std::io::copy(&mut f.take(part.len), &mut o)?;
    Ok(())
}

/// Reads `file` from the ext4 filesystem in `part` of `image`, with debugfs (a tool
/// independent of the installer). `Ok(None)` when the file is not there.
pub fn read_ext4_file(image: &Path, part: Part, file: &str) -> Result<Option<Vec<u8>>> {
    let tmp = tempfile::tempdir()?;
    let p = tmp.path().join("part.img");
    extract(image, part, &p)?;
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {file}")])
        .arg(&p)
        .output()
        .context("running debugfs")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("File not found") {
        return Ok(None);
    }
    if !out.status.success() {
        bail!("debugfs failed: {err}");
    }
    Ok(Some(out.stdout))
}

/// Checks that `disk` starts with exactly the bytes of `image`, except inside `skip`
/// (the partition the installer changed on purpose). The first difference is named.
pub fn same_except(disk: &Path, image: &Path, skip: Part) -> Result<()> {
    let mut a = std::fs::File::open(disk)?;
    let mut b = std::fs::File::open(image)?;
    let len = b.metadata()?.len();
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut pos = 0u64;
    while pos < len {
        let n = ((len - pos) as usize).min(ba.len());
        a.read_exact(&mut ba[..n])
            .with_context(|| format!("{} is shorter than the image", disk.display()))?;
        b.read_exact(&mut bb[..n])?;
        for i in 0..n {
            let at = pos + i as u64;
            if ba[i] != bb[i] && !(skip.start..skip.start + skip.len).contains(&at) {
                bail!(
                    "{} differs from the image at byte {at} ({:#04x} != {:#04x})",
                    disk.display(),
                    ba[i],
                    bb[i]
                );
            }
        }
        pos += n as u64;
    }
    Ok(())
}

/// Whether the first MiB of `disk` is all zero (the installer's "will not boot" mark).
pub fn head_is_zero(disk: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(disk)?;
    let mut b = vec![0u8; 1 << 20];
    f.read_exact(&mut b)?;
    Ok(b.iter().all(|x| *x == 0))
}

/// sha256 hex of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpt_fixture_has_four_partitions_and_an_empty_ext4_fourth() {
        if !crate::prereq::require(&["mkfs.ext4", "debugfs"]) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fixture.img");
        let p4 = gpt_image(&path, 24, 1).unwrap();
        let disk = gpt::GptConfig::new().open(&path).unwrap();
        let parts = disk.partitions();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[&1].first_lba, 2048, "1 MiB-aligned");
        assert_eq!(parts[&1].last_lba - parts[&1].first_lba + 1, 4 << 11);
        assert_eq!(p4.start, parts[&4].first_lba * 512);
        assert_eq!(
            p4.start + p4.len,
            23 << 20,
            "one MiB of slack before the end"
        );
        // Partition 4 is a filesystem debugfs can read, and it is empty.
        assert_eq!(
            read_ext4_file(&path, p4, "/ze/database.zefs").unwrap(),
            None
        );
        // Partition 2 holds noise.
        let bytes = std::fs::read(&path).unwrap();
        let p2 = parts[&2].first_lba as usize * 512;
        assert!(bytes[p2..p2 + 4096].iter().any(|b| *b != 0));
    }
}
