//! Install-media fixtures for the ISO scenarios: the ISO itself (built by `ze-pack
//! iso`, as an operator would), and a data disk with FAT or exFAT partitions holding ISO
//! files, shaped like a Ventoy stick (GPT, "Microsoft basic data" partitions). Nothing
//! here mounts anything: mtools writes FAT, [`crate::exfat`] writes exFAT.

use crate::fixture::Part;
use anyhow::{Context, Result, bail, ensure};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `ze-pack iso` needs and the tests use: xorriso, GRUB, mtools.
pub const ISO_TOOLS: &[&str] = &["xorriso", "grub-mkimage", "mformat", "mcopy", "mmd"];

/// Builds an ISO with `ze-pack iso` from `kernel`, `initrd` and `image`, a fixed media
/// id and epoch (so a failing run can be rebuilt byte for byte), and `extra` arguments.
pub fn iso(
    out: &Path,
    kernel: &Path,
    initrd: &Path,
    image: &Path,
    media_id: &str,
    extra: &[&str],
) -> Result<PathBuf> {
    let o = Command::new(crate::artifacts::ze_pack()?)
        .arg("iso")
        .arg("--kernel")
        .arg(kernel)
        .arg("--initrd")
        .arg(initrd)
        .arg("--image")
        .arg(image)
        .arg("--out")
        .arg(out)
        .args(["--media-id", media_id, "--timeout", "0"])
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .context("running ze-pack iso")?;
    if !o.status.success() {
        bail!("ze-pack iso failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(out.to_path_buf())
}

/// Replaces every occurrence of `from` in the file with `to` (same length). The ISO
/// scenarios use it to make a medium whose sidecar (and manifest) no longer describe
/// its image, without touching the ISO 9660 structure. Returns how many it replaced.
pub fn replace_all(path: &Path, from: &[u8], to: &[u8]) -> Result<usize> {
    ensure!(
        from.len() == to.len() && !from.is_empty(),
        "same, non-zero length"
    );
    let mut data = std::fs::read(path)?;
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= data.len() {
        if &data[i..i + from.len()] == from {
            data[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    std::fs::write(path, data)?;
    Ok(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFs {
    Fat,
    Exfat,
}

/// One partition of a data disk and the files to put on it: `(destination, source)`,
/// destinations `name` or `dir/name`.
pub struct DataPart<'a> {
    pub fs: DataFs,
    pub mib: u64,
    pub files: &'a [(&'a str, &'a Path)],
}

/// A FAT filesystem image with `files`, written by mtools (FAT12/16/32 as mformat
/// picks for the size).
pub fn fat_image(path: &Path, size: u64, label: &str, files: &[(&str, &Path)]) -> Result<()> {
    std::fs::File::create(path)?.set_len(size)?;
    let mtools = |tool: &str| {
        let mut c = Command::new(tool);
        c.env("MTOOLS_SKIP_CHECK", "1")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("-i")
            .arg(path);
        c
    };
    let run = |mut c: Command| -> Result<()> {
        let o = c.output().with_context(|| format!("running {c:?}"))?;
        ensure!(
            o.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(())
    };
    let mut c = mtools("mformat");
    c.args(["-v", label, "-N", "5a4e0001", "::"]);
    run(c)?;
    let mut made: Vec<String> = Vec::new();
    for (dest, src) in files {
        if let Some((dir, _)) = dest.rsplit_once('/')
            && !made.iter().any(|d| d == dir)
        {
            let mut c = mtools("mmd");
            c.arg(format!("::/{dir}"));
            run(c)?;
            made.push(dir.to_string());
        }
        let mut c = mtools("mcopy");
        c.arg(src).arg(format!("::/{dest}"));
        run(c)?;
    }
    Ok(())
}

/// A GPT disk image of `mib` MiB with `parts` as consecutive 1 MiB-aligned partitions,
/// each formatted and filled. Returns their byte ranges.
pub fn data_disk(path: &Path, mib: u64, parts: &[DataPart<'_>]) -> Result<Vec<Part>> {
    let used: u64 = parts.iter().map(|p| p.mib).sum();
    ensure!(
        used + 2 <= mib,
        "{used} MiB of partitions do not fit in {mib} MiB"
    );
    let names: Vec<String> = (1..=parts.len()).map(|i| format!("data{i}")).collect();
    let sizes: Vec<(&str, u64)> = names
        .iter()
        .map(String::as_str)
        .zip(parts.iter().map(|p| p.mib))
        .collect();
    let (mut f, ranges) = crate::fixture::gpt_disk(path, mib, &sizes, gpt::partition_types::BASIC)?;
    let tmp = tempfile::tempdir()?;
    for (i, (p, r)) in parts.iter().zip(&ranges).enumerate() {
        let img = tmp.path().join(format!("p{i}.img"));
        let label = format!("DATA{}", i + 1);
        match p.fs {
            DataFs::Fat => fat_image(&img, r.len, &label, p.files)?,
            DataFs::Exfat => crate::exfat::image(&img, r.len, &label, p.files)?,
        }
        let mut src = std::fs::File::open(&img)?;
        f.seek(SeekFrom::Start(r.start))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = src.read(&mut buf)?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n])?;
        }
    }
    f.sync_all()?;
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_all_swaps_every_occurrence_in_place() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        std::fs::write(&p, b"abcXYZabcabXYZ").unwrap();
        assert_eq!(replace_all(&p, b"XYZ", b"123").unwrap(), 2);
        assert_eq!(std::fs::read(&p).unwrap(), b"abc123abcab123");
        assert!(replace_all(&p, b"ab", b"a").is_err());
    }

    /// The data disk's partitions carry the filesystems, readable by tools that are
    /// not ours (mtools reads FAT back; fsck.exfat checks exFAT).
    #[test]
    fn a_data_disk_holds_fat_and_exfat_partitions_with_their_files() {
        if !crate::prereq::require(&["mformat", "mcopy", "mdir", "mkfs.exfat", "fsck.exfat"]) {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let iso = t.path().join("ze.iso");
        std::fs::write(&iso, crate::fixture::noise(100_000, 1)).unwrap();
        let disk = t.path().join("disk.img");
        let parts = data_disk(
            &disk,
            80,
            &[
                DataPart {
                    fs: DataFs::Fat,
                    mib: 40,
                    files: &[("ventoy/ze.iso", &iso)],
                },
                DataPart {
                    fs: DataFs::Exfat,
                    mib: 36,
                    files: &[("isos/ze.iso", &iso)],
                },
            ],
        )
        .unwrap();
        assert_eq!(parts[0].start, 1 << 20);
        // Read the FAT partition back with mtools at its offset.
        let o = Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@{}", disk.display(), parts[0].start))
            .arg("::/ventoy/ze.iso")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.stdout, std::fs::read(&iso).unwrap());
        let ex = t.path().join("ex.img");
        let mut src = std::fs::File::open(&disk).unwrap();
        src.seek(SeekFrom::Start(parts[1].start)).unwrap();
        let mut out = std::fs::File::create(&ex).unwrap();
        std::io::copy(&mut src.take(parts[1].len), &mut out).unwrap();
        let o = Command::new("fsck.exfat")
            .arg("-n")
            .arg(&ex)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
}
