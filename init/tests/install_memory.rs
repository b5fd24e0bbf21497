//! Memory stays flat whatever the image size: a 2 GiB image streams through a fixed
//! buffer pool. Checked with the child's peak RSS (getrusage), in a test binary of its
//! own so no other child can raise the maximum. The bound is generous (64 MiB): it
//! catches "the image landed in RAM", not a performance target (`make bench` reports
//! the figure against the 32 MiB target).

mod support;

use qemu_harness::server::{Body, Faults, Server};
use sha2::{Digest, Sha256};
use std::io::{Seek, SeekFrom, Write};
use support::*;

#[test]
fn a_multi_gib_sparse_image_streams_in_flat_memory() {
    const SIZE: u64 = 2 << 30;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.img");
    let head = noise(1 << 20, 1);
    let tail = noise(4096, 2);
    {
        let mut f = std::fs::File::create(&src).unwrap();
        f.write_all(&head).unwrap();
        f.seek(SeekFrom::Start(SIZE - tail.len() as u64)).unwrap();
        f.write_all(&tail).unwrap();
    }
    let mut h = Sha256::new();
    h.update(&head);
    let zeros = vec![0u8; 1 << 20];
    let mut left = SIZE - head.len() as u64 - tail.len() as u64;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        h.update(&zeros[..n]);
        left -= n as u64;
    }
    h.update(&tail);
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();

    let s = Server::start("127.0.0.1:0").unwrap();
    s.add(
        "/install/image/ze.img",
        Body::File(src.clone()),
        Faults::default(),
    );
    s.add(
        "/install/database.zefs",
        Body::bytes(DB.to_vec()),
        Faults::default(),
    );
    let t = dir.path().join("disk.img");
    let o = install_image(&s, &format!("ze.sha256={digest}"), &t);
    assert!(o.status.success(), "{}", stderr(&o));

    let rss_kib = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .unwrap()
        .max_rss();
    eprintln!("peak RSS of ze-init: {rss_kib} KiB");
    assert!(
        rss_kib < 64 * 1024,
        "peak RSS {rss_kib} KiB: the image is not streaming"
    );

    let meta = std::fs::metadata(&t).unwrap();
    assert_eq!(meta.len(), SIZE);
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < 64 << 20, "zero runs should be holes");
    let mut f = std::fs::File::open(&t).unwrap();
    let mut got = vec![0u8; head.len()];
    use std::io::Read;
    f.read_exact(&mut got).unwrap();
    assert_eq!(got, head);
    f.seek(SeekFrom::Start(SIZE - tail.len() as u64)).unwrap();
    let mut got = vec![0u8; tail.len()];
    f.read_exact(&mut got).unwrap();
    assert_eq!(got, tail);
}
