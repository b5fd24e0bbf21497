use super::*;
use crate::source::restarted;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

fn sha(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Deterministic incompressible-ish bytes.
fn noise(len: usize, seed: u32) -> Vec<u8> {
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

fn opts(expected: Option<String>) -> Options {
    Options {
        expected_sha256: expected,
        ..Options::default()
    }
}

fn write(
    src: &mut (dyn Read + Send),
    path: &std::path::Path,
    o: &Options,
) -> Result<Outcome, WriteError> {
    let mut t = Target::open(path).unwrap();
    write_image(src, &mut t, o, &Progress::new())
}

fn head_is_zero(path: &std::path::Path) -> bool {
    let d = std::fs::read(path).unwrap();
    d[..d.len().min(HEAD as usize)].iter().all(|b| *b == 0) && d.len() >= HEAD as usize
}

#[test]
fn raw_images_of_edge_sizes_land_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for (i, len) in [
        1usize,
        511,
        (1 << 20) - 1,
        1 << 20,
        (1 << 20) + 1,
        (3 << 20) + 123,
    ]
    .into_iter()
    .enumerate()
    {
        let img = noise(len, i as u32 + 1);
        let p = dir.path().join(format!("t{i}.img"));
        let o = write(&mut &img[..], &p, &opts(Some(sha(&img)))).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), img, "size {len}");
        assert_eq!((o.image_bytes, o.stored_bytes), (len as u64, len as u64));
        assert!(o.verified && !o.gzip);
        assert_eq!(o.sha256, sha(&img));
    }
}

#[test]
fn gzip_is_detected_by_magic_and_the_digest_covers_the_stored_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let img = noise(5 << 20, 9);
    let gz = gzip(&img);
    let p = dir.path().join("t.img");
    let o = write(&mut &gz[..], &p, &opts(Some(sha(&gz)))).unwrap();
    assert!(o.gzip && o.verified);
    assert_eq!(o.stored_bytes, gz.len() as u64);
    assert_eq!(o.image_bytes, img.len() as u64);
    assert_eq!(std::fs::read(&p).unwrap(), img);
}

#[test]
fn concatenated_gzip_members_decode_as_one_image() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (noise(1500 * 1024, 1), noise(700 * 1024, 2));
    let mut gz = gzip(&a);
    gz.extend(gzip(&b));
    let p = dir.path().join("t.img");
    write(&mut &gz[..], &p, &opts(None)).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), [a, b].concat());
}

#[test]
fn gzip_with_trailing_garbage_is_refused_and_the_head_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = gzip(&noise(3 << 20, 3));
    gz.extend(b"GARBAGE");
    let p = dir.path().join("t.img");
    let e = write(&mut &gz[..], &p, &opts(None)).unwrap_err();
    assert!(e.to_string().contains("trailing data"), "{e}");
    assert!(head_is_zero(&p));
}

#[test]
fn truncated_gzip_is_refused_and_the_head_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let gz = gzip(&noise(3 << 20, 4));
    let cut = &gz[..gz.len() - 100];
    let p = dir.path().join("t.img");
    let e = write(&mut &cut[..], &p, &opts(None)).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(head_is_zero(&p));
}

#[test]
fn digest_mismatch_leaves_the_first_mib_zero() {
    let dir = tempfile::tempdir().unwrap();
    let img = noise(3 << 20, 5);
    let p = dir.path().join("t.img");
    let e = write(&mut &img[..], &p, &opts(Some("0".repeat(64)))).unwrap_err();
    assert!(matches!(e, WriteError::Digest { .. }), "{e}");
    assert!(e.to_string().contains(&sha(&img)));
    assert!(head_is_zero(&p));
    // The rest was written (and is harmless without its partition table).
    assert_eq!(&std::fs::read(&p).unwrap()[1 << 20..], &img[1 << 20..]);
}

/// A source that fails after `fail_at` bytes.
struct Failing {
    data: Vec<u8>,
    pos: usize,
    fail_at: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.fail_at {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer reset"));
        }
        let n = buf
            .len()
            .min(self.fail_at - self.pos)
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_source_error_is_the_reported_cause_even_for_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let gz = gzip(&noise(4 << 20, 6));
    let fail_at = gz.len() / 2;
    let p = dir.path().join("t.img");
    let mut src = Failing {
        data: gz,
        pos: 0,
        fail_at,
    };
    let e = write(&mut src, &p, &opts(None)).unwrap_err();
    assert!(matches!(e, WriteError::Source(_)), "{e}");
    assert!(e.to_string().contains("peer reset"));
    assert!(head_is_zero(&p));
}

/// A source that sends part of the image, restarts, then sends all of it.
struct Restarting {
    data: Vec<u8>,
    pos: usize,
    cut: Option<usize>,
}

impl Read for Restarting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(cut) = self.cut
            && self.pos >= cut
        {
            self.cut = None;
            self.pos = 0;
            return Err(restarted());
        }
        let end = self.cut.unwrap_or(self.data.len()).min(self.data.len());
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_restart_rewrites_from_byte_zero_with_a_fresh_hash() {
    let dir = tempfile::tempdir().unwrap();
    for gz in [false, true] {
        let img = noise(5 << 20, 7);
        let stored = if gz { gzip(&img) } else { img.clone() };
        let p = dir.path().join(format!("t{gz}.img"));
        let mut src = Restarting {
            data: stored.clone(),
            pos: 0,
            cut: Some(stored.len() / 2),
        };
        let o = write(&mut src, &p, &opts(Some(sha(&stored)))).unwrap();
        assert_eq!(o.restarts, 1);
        assert!(o.verified);
        assert_eq!(std::fs::read(&p).unwrap(), img);
    }
}

#[test]
fn zero_runs_become_holes_in_a_created_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = noise(1 << 20, 8);
    img.extend(vec![0u8; 64 << 20]);
    img.extend(noise(4096, 9));
    let p = dir.path().join("t.img");
    let o = write(&mut &img[..], &p, &opts(Some(sha(&img)))).unwrap();
    assert_eq!(o.zeroed_bytes, 64 << 20);
    assert_eq!(std::fs::read(&p).unwrap(), img);
    let allocated = std::fs::metadata(&p).unwrap().blocks() * 512;
    assert!(allocated < 8 << 20, "{allocated} bytes allocated");
}

#[test]
fn an_existing_file_is_a_disk_of_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.img");
    std::fs::write(&p, vec![0xEEu8; 8 << 20]).unwrap();
    let mut img = noise(2 << 20, 10);
    img.extend(vec![0u8; 4 << 20]);
    write(&mut &img[..], &p, &opts(None)).unwrap();
    let got = std::fs::read(&p).unwrap();
    // An existing file keeps its size, like a disk: the image's range changes, and the
    // last MiB (where a backup GPT would be) was zeroed before writing began.
    assert_eq!(got.len(), 8 << 20);
    assert_eq!(&got[..img.len()], &img[..]);
    assert!(got[img.len()..7 << 20].iter().all(|b| *b == 0xEE));
    assert!(got[7 << 20..].iter().all(|b| *b == 0));
}

#[test]
fn zero_runs_across_buffers_and_longer_than_one_call_land_exactly() {
    // An existing file is zeroed by writes, so every zero run must cover exactly its
    // range: runs spanning several 1 MiB buffers, one longer than Zeroes::MAX, and
    // runs that start and end mid-buffer.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.img");
    std::fs::write(&p, vec![0xEEu8; 96 << 20]).unwrap();
    let mut img = noise((1 << 20) + 4096 * 3, 12);
    let zero_a = (3 << 20) + 4096 * 5;
    img.extend(vec![0u8; zero_a]);
    img.extend(noise(4096 * 7, 13));
    let zero_b = (Zeroes::MAX as usize) + (5 << 20);
    img.extend(vec![0u8; zero_b]);
    img.extend(noise(100, 14));
    let o = write(&mut &img[..], &p, &opts(Some(sha(&img)))).unwrap();
    // A piece of a run shorter than zero::MIN_RUN at either end of a buffer is written
    // as data: at most one per buffer boundary a run crosses.
    let all = (zero_a + zero_b) as u64;
    assert!(o.zeroed_bytes <= all, "{}", o.zeroed_bytes);
    assert!(
        o.zeroed_bytes > all - 4 * zero::MIN_RUN,
        "{}",
        o.zeroed_bytes
    );
    let got = std::fs::read(&p).unwrap();
    assert_eq!(&got[..img.len()], &img[..]);
}

#[test]
fn an_empty_source_is_an_empty_image() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.img");
    let o = write(&mut &[][..], &p, &opts(Some(sha(&[])))).unwrap();
    assert_eq!(o.image_bytes, 0);
    assert_eq!(std::fs::read(&p).unwrap().len(), 0);
}

#[test]
fn an_image_larger_than_a_fixed_size_target_fails_with_the_head_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.img");
    std::fs::write(&p, vec![0x55u8; 3 << 20]).unwrap();
    let img = gzip(&noise(4 << 20, 11));
    let e = write(&mut &img[..], &p, &opts(None)).unwrap_err();
    assert!(e.to_string().contains("larger than the device"), "{e}");
    assert!(head_is_zero(&p));
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 << 20);
}
