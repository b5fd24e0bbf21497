//! Partition ranges read back from the table the image just wrote, for the loop-device
//! fallback when the kernel makes no partition node.
//!
//! A reader of the primary GPT (UEFI 2.10 §5.3: header at LBA 1, CRC32 over the
//! header and over the entry array, both checked), with the legacy MBR's four primary
//! entries as a fallback for images without a GPT. ~150 lines instead of the `gpt`
//! crate: we only read, never write, and the crate brings uuid, getrandom, crc tables
//! and a 200-entry type-GUID list into a size-budgeted `/init` (docs/disks.md).

use std::io::{self, Read, Seek, SeekFrom};

/// Bytes `[start, start + len)` of partition `number` on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub number: u32,
    pub start: u64,
    pub len: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("reading the partition table: {0}")]
    Io(#[from] io::Error),
    #[error("no GPT (no \"EFI PART\" at LBA 1 for {sector_size}-byte sectors) and no MBR")]
    NoTable { sector_size: u64 },
    #[error("GPT header is damaged: {0}")]
    BadHeader(String),
    #[error("GPT partition entries fail their CRC32")]
    BadEntries,
    #[error("the partition table has no partition {0}")]
    NoPartition(u32),
    #[error("partition {number} is invalid: {why}")]
    BadPartition { number: u32, why: String },
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and the UEFI spec use).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn read_at<R: Read + Seek>(r: &mut R, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    r.seek(SeekFrom::Start(offset))?;
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Finds partition `number` (1-based, as in `sda4`) in the GPT, or in the MBR when the
/// disk has no GPT. `sector_size` is the disk's logical block size (sysfs
/// `queue/logical_block_size`); GPT LBAs count in it, MBR LBAs count 512-byte sectors
/// on every disk Linux reads them from.
pub fn read_partition<R: Read + Seek>(
    r: &mut R,
    number: u32,
    sector_size: u64,
) -> Result<Range, GptError> {
    if number == 0 {
        return Err(GptError::NoPartition(0));
    }
    let ss = sector_size;
    let header = read_at(r, ss, ss as usize)?;
    if &header[0..8] == b"EFI PART" {
        return from_gpt(r, &header, number, ss);
    }
    let mbr = read_at(r, 0, 512)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Err(GptError::NoTable { sector_size: ss });
    }
    from_mbr(&mbr, number)
}

fn from_gpt<R: Read + Seek>(
    r: &mut R,
    header: &[u8],
    number: u32,
    ss: u64,
) -> Result<Range, GptError> {
    let size = le32(header, 12) as usize;
    if !(92..=header.len()).contains(&size) {
        return Err(GptError::BadHeader(format!("header size {size}")));
    }
    let mut h = header[..size].to_vec();
    let want = le32(&h, 16);
    h[16..20].fill(0);
    if crc32(&h) != want {
        return Err(GptError::BadHeader("header CRC32 mismatch".into()));
    }
    let entries_lba = le64(&h, 72);
    let count = le32(&h, 80);
    let entry_size = le32(&h, 84) as usize;
    let entries_crc = le32(&h, 88);
    // UEFI: entry size is 128 × 2^n; the table is at most a few MiB in practice.
    if entry_size < 128 || !entry_size.is_power_of_two() || count > 1 << 16 {
        return Err(GptError::BadHeader(format!(
            "{count} entries of {entry_size} bytes"
        )));
    }
    let entries = read_at(r, entries_lba * ss, count as usize * entry_size)?;
    if crc32(&entries) != entries_crc {
        return Err(GptError::BadEntries);
    }
    if number > count {
        return Err(GptError::NoPartition(number));
    }
    let e = &entries[(number as usize - 1) * entry_size..][..entry_size];
    if e[0..16].iter().all(|&b| b == 0) {
        return Err(GptError::NoPartition(number));
    }
    let (first, last) = (le64(e, 32), le64(e, 40));
    let (first_usable, last_usable) = (le64(&h, 40), le64(&h, 48));
    if first > last || first < first_usable || last > last_usable {
        return Err(GptError::BadPartition {
            number,
            why: format!("LBAs {first}..={last} outside the usable {first_usable}..={last_usable}"),
        });
    }
    Ok(Range {
        number,
        start: first * ss,
        len: (last - first + 1) * ss,
    })
}

fn from_mbr(mbr: &[u8], number: u32) -> Result<Range, GptError> {
    // Logical partitions (5+) live in an EBR chain; images do not use them.
    if number > 4 {
        return Err(GptError::NoPartition(number));
    }
    if (0..4).any(|i| mbr[446 + i * 16 + 4] == 0xEE) {
        // A protective MBR whose GPT header did not verify at this sector size.
        return Err(GptError::BadHeader(
            "protective MBR but no GPT header at LBA 1".into(),
        ));
    }
    let e = &mbr[446 + (number as usize - 1) * 16..][..16];
    let (lba, sectors) = (u64::from(le32(e, 8)), u64::from(le32(e, 12)));
    if e[4] == 0 || sectors == 0 {
        return Err(GptError::NoPartition(number));
    }
    Ok(Range {
        number,
        start: lba * 512,
        len: sectors * 512,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    /// A 64 MiB image with four partitions written by the `gpt` crate: an independent
    /// writer, so this reader is checked against someone else's reading of the spec.
    pub(crate) fn gpt_image(path: &std::path::Path, lb: u64) -> Vec<(u64, u64)> {
        use gpt::disk::LogicalBlockSize;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        f.set_len(64 << 20).unwrap();
        let lbs = if lb == 512 {
            LogicalBlockSize::Lb512
        } else {
            LogicalBlockSize::Lb4096
        };
        // A protective MBR first, as sgdisk writes.
        let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(((64 << 20) / lb - 1) as u32);
        let mut f = f;
        mbr.overwrite_lba0(&mut f).unwrap();
        let mut disk = gpt::GptConfig::new()
            .writable(true)
            .logical_block_size(lbs)
            .create_from_device(f, None)
            .unwrap();
        let t = gpt::partition_types::LINUX_FS;
        for (i, (name, mib)) in [("boot", 4u64), ("root-a", 16), ("root-b", 16), ("data", 8)]
            .iter()
            .enumerate()
        {
            let id = disk
                .add_partition(name, mib << 20, t.clone(), 0, Some((1u64 << 20) / lb))
                .unwrap();
            assert_eq!(id, i as u32 + 1);
        }
        let out = (1..=4)
            .map(|n| {
                let p = &disk.partitions()[&n];
                (p.bytes_start(lbs).unwrap(), p.bytes_len(lbs).unwrap())
            })
            .collect();
        disk.write().unwrap();
        out
    }

    #[test]
    fn reads_partition_4_as_the_gpt_crate_wrote_it() {
        for lb in [512u64, 4096] {
            let t = tempfile::tempdir().unwrap();
            let img = t.path().join("disk.img");
            let want = gpt_image(&img, lb);
            let mut f = std::fs::File::open(&img).unwrap();
            for n in 1..=4u32 {
                let r = read_partition(&mut f, n, lb).unwrap();
                assert_eq!(
                    (r.start, r.len),
                    want[n as usize - 1],
                    "lb {lb} partition {n}"
                );
            }
            assert_eq!(read_partition(&mut f, 4, lb).unwrap().len, 8 << 20);
            assert!(matches!(
                read_partition(&mut f, 5, lb),
                Err(GptError::NoPartition(5))
            ));
        }
    }

    #[test]
    fn damaged_tables_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("disk.img");
        let want = gpt_image(&img, 512);
        let mut bytes = std::fs::read(&img).unwrap();
        // Flip one byte of partition 4's entry (LBA 2 + 3 × 128 + first LBA field).
        bytes[1024 + 3 * 128 + 32] ^= 1;
        assert!(matches!(
            read_partition(&mut Cursor::new(&bytes), 4, 512),
            Err(GptError::BadEntries)
        ));
        bytes[1024 + 3 * 128 + 32] ^= 1;
        let r = read_partition(&mut Cursor::new(&bytes), 4, 512).unwrap();
        assert_eq!((r.start, r.len), want[3]);
        // A header byte (the disk GUID) changed: the header CRC no longer matches.
        bytes[512 + 60] ^= 0xff;
        assert!(matches!(
            read_partition(&mut Cursor::new(&bytes), 4, 512),
            Err(GptError::BadHeader(_))
        ));
        // The wrong sector size finds no header, and the protective MBR says so.
        let e = read_partition(&mut std::fs::File::open(&img).unwrap(), 4, 4096).unwrap_err();
        assert!(e.to_string().contains("protective MBR"), "{e}");
    }

    #[test]
    fn mbr_primary_partitions_and_blank_disks() {
        let mut mbr = vec![0u8; 4096];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        let e = 446 + 3 * 16;
        mbr[e + 4] = 0x83;
        mbr[e + 8..e + 12].copy_from_slice(&2048u32.to_le_bytes());
        mbr[e + 12..e + 16].copy_from_slice(&4096u32.to_le_bytes());
        let r = read_partition(&mut Cursor::new(&mbr), 4, 512).unwrap();
        assert_eq!((r.start, r.len), (1 << 20, 2 << 20));
        assert!(matches!(
            read_partition(&mut Cursor::new(&mbr), 1, 512),
            Err(GptError::NoPartition(1))
        ));
        let blank = vec![0u8; 4096];
        assert!(matches!(
            read_partition(&mut Cursor::new(&blank), 4, 512),
            Err(GptError::NoTable { .. })
        ));
        let mut w = Cursor::new(Vec::new());
        w.write_all(b"short").unwrap();
        assert!(matches!(
            read_partition(&mut w, 4, 512),
            Err(GptError::Io(_))
        ));
    }

    #[test]
    fn crc32_check_value() {
        // The standard check value for CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
