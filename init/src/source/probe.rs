//! What a device or file holds, from the signatures in its first [`HEAD`] bytes, so
//! the media scan mounts only what can be an install medium and can say what every
//! other device is ("not iso9660 (ext4)").

use std::io::{self, Read};
use std::path::Path;

/// Bytes read from the start of a device: ISO 9660's first volume descriptor sits at
/// 32 KiB (ECMA-119 §6.2.1, 16 sectors of 2048 bytes), plus a 4 KiB page for swap.
pub const HEAD: usize = 36 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    Iso9660,
    Vfat,
    Exfat,
    Ext,
    Xfs,
    Swap,
    Luks,
    Gpt,
    Mbr,
    Blank,
    Unknown,
}

impl Signature {
    pub fn as_str(self) -> &'static str {
        match self {
            Signature::Iso9660 => "iso9660",
            Signature::Vfat => "vfat",
            Signature::Exfat => "exfat",
            Signature::Ext => "ext2/3/4",
            Signature::Xfs => "xfs",
            Signature::Swap => "swap",
            Signature::Luks => "LUKS",
            Signature::Gpt => "a GPT partition table",
            Signature::Mbr => "an MBR partition table",
            Signature::Blank => "blank: zeroes",
            Signature::Unknown => "no filesystem signature",
        }
    }
}

fn at(head: &[u8], offset: usize, magic: &[u8]) -> bool {
    head.get(offset..offset + magic.len()) == Some(magic)
}

/// Names what `head` (the first bytes of a device or file) holds. ISO 9660 wins over a
/// partition table: a hybrid ISO written to a disk carries both.
pub fn identify(head: &[u8]) -> Signature {
    // ECMA-119 §8.1: every volume descriptor has "CD001" after its type byte.
    if at(head, 32769, b"CD001") {
        return Signature::Iso9660;
    }
    // exFAT boot sector: FileSystemName "EXFAT   " at offset 3.
    if at(head, 3, b"EXFAT   ") {
        return Signature::Exfat;
    }
    let boot_signature = at(head, 510, &[0x55, 0xaa]);
    let jump = matches!(head.first(), Some(0xeb | 0xe9));
    // FAT12/16 name their type at 54, FAT32 at 82 (Microsoft's FAT specification).
    if boot_signature && jump && (at(head, 54, b"FAT") || at(head, 82, b"FAT32")) {
        return Signature::Vfat;
    }
    if at(head, 1080, &[0x53, 0xef]) {
        return Signature::Ext;
    }
    if at(head, 0, b"XFSB") {
        return Signature::Xfs;
    }
    if at(head, 0, b"LUKS\xba\xbe") {
        return Signature::Luks;
    }
    if at(head, 4086, b"SWAPSPACE2") {
        return Signature::Swap;
    }
    if at(head, 512, b"EFI PART") {
        return Signature::Gpt;
    }
    if boot_signature {
        return Signature::Mbr;
    }
    if head.iter().all(|b| *b == 0) {
        return Signature::Blank;
    }
    Signature::Unknown
}

/// The first [`HEAD`] bytes of `path` (fewer when it is smaller).
pub fn read_head(path: &Path) -> io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut out = Vec::with_capacity(HEAD);
    f.take(HEAD as u64).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(offset: usize, magic: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; HEAD];
        v[offset..offset + magic.len()].copy_from_slice(magic);
        v
    }

    #[test]
    fn each_signature_is_recognised() {
        let mut fat = with(54, b"FAT16   ");
        fat[0] = 0xeb;
        fat[510..512].copy_from_slice(&[0x55, 0xaa]);
        let mut fat32 = with(82, b"FAT32   ");
        fat32[0] = 0xeb;
        fat32[510..512].copy_from_slice(&[0x55, 0xaa]);
        let mut hybrid = with(32769, b"CD001");
        hybrid[510..512].copy_from_slice(&[0x55, 0xaa]);
        hybrid[512..520].copy_from_slice(b"EFI PART");
        for (head, want) in [
            (with(32769, b"CD001"), Signature::Iso9660),
            (hybrid, Signature::Iso9660),
            (with(3, b"EXFAT   "), Signature::Exfat),
            (fat, Signature::Vfat),
            (fat32, Signature::Vfat),
            (with(1080, &[0x53, 0xef]), Signature::Ext),
            (with(0, b"XFSB"), Signature::Xfs),
            (with(0, b"LUKS\xba\xbe"), Signature::Luks),
            (with(4086, b"SWAPSPACE2"), Signature::Swap),
            (with(512, b"EFI PART"), Signature::Gpt),
            (with(510, &[0x55, 0xaa]), Signature::Mbr),
            (vec![0u8; HEAD], Signature::Blank),
            (vec![1u8; 100], Signature::Unknown),
            (Vec::new(), Signature::Blank),
        ] {
            assert_eq!(identify(&head), want);
        }
    }

    #[test]
    fn a_boot_sector_without_a_fat_name_is_not_fat() {
        // GRUB's boot_hybrid.img starts with a short jump and ends with 55 aa too.
        let mut mbr = with(510, &[0x55, 0xaa]);
        mbr[0..3].copy_from_slice(&[0xeb, 0x63, 0x90]);
        assert_eq!(identify(&mbr), Signature::Mbr);
    }

    #[test]
    fn read_head_stops_at_head_or_the_end() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        std::fs::write(&p, vec![1u8; HEAD + 10]).unwrap();
        assert_eq!(read_head(&p).unwrap().len(), HEAD);
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(read_head(&p).unwrap(), b"abc");
    }
}
