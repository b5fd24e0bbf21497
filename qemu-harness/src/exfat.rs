//! Puts files into a fresh exFAT filesystem without mounting it (this machine's kernel
//! has no exfat): `mkfs.exfat` formats, then this writes the directory entry sets, the
//! FAT chains, the allocation bitmap bits and the data, following Microsoft's exFAT
//! specification (§6 directory entries, §7.4 the File entry set checksum, §7.6 the name
//! hash). `fsck.exfat -n` checks the result independently; the QEMU test then mounts it
//! with the guest kernel's exfat driver.
//!
//! Limits, fine for test fixtures: ASCII names of at most 255 characters, files and
//! directories at most one level below the root, a root directory that fits its
//! clusters.

use anyhow::{Context, Result, bail, ensure};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

const ENTRY: usize = 32;
/// 2023-11-14 22:13:20 as an exFAT timestamp (§7.4.8): a fixed, valid date.
const STAMP: u32 = ((2023 - 1980) << 25) | (11 << 21) | (14 << 16) | (22 << 11) | (13 << 5) | 10;

struct Volume {
    f: File,
    cluster: u64,
    fat_offset: u64,
    heap_offset: u64,
    cluster_count: u32,
    root: u32,
    bitmap_cluster: u32,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

impl Volume {
    fn open(path: &Path) -> Result<Volume> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        let mut bs = [0u8; 512];
        f.read_exact_at(&mut bs, 0)?;
        ensure!(&bs[3..11] == b"EXFAT   ", "{} is not exFAT", path.display());
        let bytes_per_sector = 1u64 << bs[0x6c];
        let cluster = bytes_per_sector << bs[0x6d];
        let mut v = Volume {
            f,
            cluster,
            fat_offset: u64::from(u32_at(&bs, 0x50)) * bytes_per_sector,
            heap_offset: u64::from(u32_at(&bs, 0x58)) * bytes_per_sector,
            cluster_count: u32_at(&bs, 0x5c),
            root: u32_at(&bs, 0x60),
            bitmap_cluster: 0,
        };
        // The allocation bitmap's entry (type 0x81) is in the root directory.
        let root = v.read_chain(v.root)?;
        v.bitmap_cluster = root
            .chunks(ENTRY)
            .find(|e| e[0] == 0x81)
            .map(|e| u32_at(e, 20))
            .context("no allocation bitmap entry in the root directory")?;
        Ok(v)
    }

    fn cluster_at(&self, c: u32) -> u64 {
        self.heap_offset + u64::from(c - 2) * self.cluster
    }

    fn fat_get(&self, c: u32) -> Result<u32> {
        let mut b = [0u8; 4];
        self.f
            .read_exact_at(&mut b, self.fat_offset + 4 * u64::from(c))?;
        Ok(u32::from_le_bytes(b))
    }

    fn fat_set(&self, c: u32, next: u32) -> Result<()> {
        self.f
            .write_all_at(&next.to_le_bytes(), self.fat_offset + 4 * u64::from(c))?;
        Ok(())
    }

    /// The clusters of a FAT chain starting at `c`.
    fn chain(&self, mut c: u32) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        while (2..0xffff_fff7).contains(&c) {
            out.push(c);
            ensure!(out.len() <= self.cluster_count as usize, "FAT chain loops");
            c = self.fat_get(c)?;
        }
        Ok(out)
    }

    fn read_chain(&self, first: u32) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for c in self.chain(first)? {
            let mut b = vec![0u8; self.cluster as usize];
            self.f.read_exact_at(&mut b, self.cluster_at(c))?;
            out.extend(b);
        }
        Ok(out)
    }

    /// Allocates `n` contiguous free clusters: bitmap bits set, FAT chain written.
    fn allocate(&self, n: u32) -> Result<u32> {
        let bitmap_at = self.cluster_at(self.bitmap_cluster);
        let len = self.cluster_count.div_ceil(8) as usize;
        let mut bits = vec![0u8; len];
        self.f.read_exact_at(&mut bits, bitmap_at)?;
        let used = |i: u32| bits[(i / 8) as usize] & (1 << (i % 8)) != 0;
        let mut run = 0;
        let mut start = 0;
        for i in 0..self.cluster_count {
            if used(i) {
                run = 0;
                continue;
            }
            if run == 0 {
                start = i;
            }
            run += 1;
            if run == n {
                for j in start..start + n {
                    bits[(j / 8) as usize] |= 1 << (j % 8);
                    let c = j + 2;
                    self.fat_set(
                        c,
                        if j + 1 == start + n {
                            0xffff_ffff
                        } else {
                            c + 1
                        },
                    )?;
                }
                self.f.write_all_at(&bits, bitmap_at)?;
                return Ok(start + 2);
            }
        }
        bail!("no {n} free contiguous clusters");
    }

    /// Adds an entry set to the directory starting at cluster `dir`, in its first run
    /// of free slots.
    fn add_entries(&self, dir: u32, set: &[u8]) -> Result<()> {
        let clusters = self.chain(dir)?;
        let data = self.read_chain(dir)?;
        let slots = set.len() / ENTRY;
        // In-use entries have bit 7 of the type set; 0x00 ends the directory.
        let mut free = 0;
        for (i, e) in data.chunks(ENTRY).enumerate() {
            if e[0] & 0x80 == 0 {
                free += 1;
                if free == slots {
                    let first = i + 1 - slots;
                    for (k, chunk) in set.chunks(ENTRY).enumerate() {
                        let pos = ((first + k) * ENTRY) as u64;
                        let c = clusters[(pos / self.cluster) as usize];
                        self.f
                            .write_all_at(chunk, self.cluster_at(c) + pos % self.cluster)?;
                    }
                    return Ok(());
                }
            } else {
                free = 0;
            }
        }
        bail!("directory at cluster {dir} is full");
    }
}

/// §7.4.3 (SetChecksum) and §7.6.4 (NameHash) use the same rotate-and-add.
fn rotate_add(sum: u16, byte: u8) -> u16 {
    (if sum & 1 != 0 { 0x8000u16 } else { 0 })
        .wrapping_add(sum >> 1)
        .wrapping_add(u16::from(byte))
}

/// A File entry, its Stream Extension and File Name entries (§7.4, §7.6, §7.7).
fn entry_set(name: &str, directory: bool, first_cluster: u32, len: u64) -> Result<Vec<u8>> {
    ensure!(
        name.is_ascii() && !name.is_empty() && name.len() <= 255,
        "{name:?}: ASCII names of 1 to 255 characters only"
    );
    let units: Vec<u16> = name.bytes().map(u16::from).collect();
    let names = units.len().div_ceil(15);
    let mut set = vec![0u8; (2 + names) * ENTRY];
    // File entry.
    set[0] = 0x85;
    set[1] = (1 + names) as u8;
    let attrs: u16 = if directory { 0x10 } else { 0x20 };
    set[4..6].copy_from_slice(&attrs.to_le_bytes());
    for o in [8, 12, 16] {
        set[o..o + 4].copy_from_slice(&STAMP.to_le_bytes());
    }
    // Stream Extension: AllocationPossible, with a FAT chain (NoFatChain clear).
    let s = &mut set[ENTRY..2 * ENTRY];
    s[0] = 0xc0;
    s[1] = 0x01;
    s[3] = units.len() as u8;
    let hash = units
        .iter()
        .map(|u| u8::try_from(*u).unwrap().to_ascii_uppercase())
        .fold(0u16, |h, b| rotate_add(rotate_add(h, b), 0));
    s[4..6].copy_from_slice(&hash.to_le_bytes());
    s[8..16].copy_from_slice(&len.to_le_bytes());
    s[20..24].copy_from_slice(&first_cluster.to_le_bytes());
    s[24..32].copy_from_slice(&len.to_le_bytes());
    // File Name entries, 15 UTF-16 units each.
    for (k, chunk) in units.chunks(15).enumerate() {
        let e = &mut set[(2 + k) * ENTRY..(3 + k) * ENTRY];
        e[0] = 0xc1;
        for (i, u) in chunk.iter().enumerate() {
            e[2 + 2 * i..4 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
    }
    let sum = set
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2 && *i != 3)
        .fold(0u16, |s, (_, b)| rotate_add(s, *b));
    set[2..4].copy_from_slice(&sum.to_le_bytes());
    Ok(set)
}

/// Formats `path` (`size` bytes) as exFAT labelled `label` and copies `files` into it:
/// `(destination, source)`, the destination `name` or `dir/name`.
pub fn image(path: &Path, size: u64, label: &str, files: &[(&str, &Path)]) -> Result<()> {
    File::create(path)?.set_len(size)?;
    let o = Command::new("mkfs.exfat")
        .args(["-L", label])
        .arg(path)
        .output()
        .context("running mkfs.exfat (exfatprogs)")?;
    ensure!(
        o.status.success(),
        "mkfs.exfat: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = Volume::open(path)?;
    let mut dirs: Vec<(String, u32)> = Vec::new();
    for (dest, src) in files {
        let (dir, name) = match dest.split_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, *dest),
        };
        ensure!(!name.contains('/'), "{dest}: one directory level at most");
        let parent = match dir {
            None => v.root,
            Some(d) => match dirs.iter().find(|(n, _)| n == d) {
                Some((_, c)) => *c,
                None => {
                    // A new directory: one zeroed cluster, listed in the root.
                    let c = v.allocate(1)?;
                    v.f.write_all_at(&vec![0u8; v.cluster as usize], v.cluster_at(c))?;
                    v.add_entries(v.root, &entry_set(d, true, c, v.cluster)?)?;
                    dirs.push((d.to_string(), c));
                    c
                }
            },
        };
        let mut data = Vec::new();
        File::open(src)
            .with_context(|| format!("reading {}", src.display()))?
            .read_to_end(&mut data)?;
        let len = data.len() as u64;
        let first = if len == 0 {
            0
        } else {
            let n = u32::try_from(len.div_ceil(v.cluster))?;
            let c = v.allocate(n)?;
            v.f.write_all_at(&data, v.cluster_at(c))?;
            c
        };
        v.add_entries(parent, &entry_set(name, false, first, len)?)?;
    }
    v.f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_set_checksum_and_name_hash_follow_the_specification() {
        let set = entry_set("ze.iso", false, 10, 5000).unwrap();
        assert_eq!(set.len(), 3 * ENTRY);
        assert_eq!((set[0], set[1]), (0x85, 2));
        assert_eq!(&set[ENTRY + 20..ENTRY + 24], &10u32.to_le_bytes());
        // Recomputing over the finished set (checksum bytes skipped) gives the stored one.
        let sum = set
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2 && *i != 3)
            .fold(0u16, |s, (_, b)| rotate_add(s, *b));
        assert_eq!(u16::from_le_bytes([set[2], set[3]]), sum);
        // The hash is over the up-cased name: case does not change it.
        let a = entry_set("Ze.ISO", false, 10, 5000).unwrap();
        assert_eq!(a[ENTRY + 4..ENTRY + 6], set[ENTRY + 4..ENTRY + 6]);
        assert_eq!(entry_set(&"x".repeat(16), false, 0, 0).unwrap()[1], 3);
    }

    /// fsck.exfat, an implementation independent of this one, finds the files.
    #[test]
    fn an_image_with_files_passes_fsck() {
        if !crate::prereq::require(&["mkfs.exfat", "fsck.exfat"]) {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big");
        std::fs::write(&big, crate::fixture::noise(300_000, 3)).unwrap();
        let small = t.path().join("small");
        std::fs::write(&small, b"hello").unwrap();
        let empty = t.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let img = t.path().join("x.img");
        image(
            &img,
            64 << 20,
            "DATA",
            &[
                ("ventoy/ze.iso", &big),
                ("a-rather-long-file-name-over-fifteen.txt", &small),
                ("ventoy/empty", &empty),
                ("isos/other.iso", &small),
            ],
        )
        .unwrap();
        let o = Command::new("fsck.exfat")
            .arg("-n")
            .arg(&img)
            .output()
            .unwrap();
        let out =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{out}");
        assert!(out.contains("directories 3, files 4"), "{out}");
    }
}
