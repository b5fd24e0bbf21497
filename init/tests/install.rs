//! `ze-init install` in host mode against the misbehaving test server, with file
//! targets. The images here are noise without a partition 4, so they are written with
//! `--no-database`; injection is tested in `install_root.rs`. Every failing case checks the single FATAL line and that the disk would
//! not boot (the first MiB is zero) or was not touched at all.

mod support;

use qemu_harness::server::Faults;
use std::time::Duration;
use support::*;

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", stderr(o));
    assert!(
        stderr(o).contains("[ze-install] DONE image="),
        "{}",
        stderr(o)
    );
}

#[test]
fn raw_image_is_written_and_verified_against_the_sidecar() {
    let img = noise(5 << 20, 1);
    let s = serve("ze.img", &img, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let o = install_image(&s, "", &t);
    ok(&o);
    assert_eq!(std::fs::read(&t).unwrap(), img);
    let done = stderr(&o);
    assert!(
        done.contains(&format!("sha256={} bytes={}", sha(&img), img.len())),
        "{done}"
    );
    assert!(!done.contains("verified=no"));
}

#[test]
fn edge_sizes_survive_the_first_mib_hold_back() {
    let dir = tempfile::tempdir().unwrap();
    for (i, len) in [1usize, 511, (1 << 20) - 1, 1 << 20, (1 << 20) + 1]
        .into_iter()
        .enumerate()
    {
        let img = noise(len, 100 + i as u32);
        let s = serve("ze.img", &img, Faults::default());
        let t = dir.path().join(format!("d{i}.img"));
        ok(&install_image(&s, "", &t));
        assert_eq!(std::fs::read(&t).unwrap(), img, "size {len}");
    }
}

#[test]
fn gzip_image_is_decompressed_and_the_digest_covers_the_compressed_file() {
    let img = noise(3 << 20, 2);
    let gz = gzip(&img);
    let s = serve("ze.img.gz", &gz, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    ok(&install_image(&s, "ze.image=ze.img.gz", &t));
    assert_eq!(std::fs::read(&t).unwrap(), img);
}

#[test]
fn sidecar_mismatch_is_fatal_and_leaves_the_head_zero() {
    let img = noise(3 << 20, 3);
    let s = serve("ze.img", &img, Faults::default());
    s.add(
        "/install/image/ze.img.sha256",
        qemu_harness::server::Body::bytes(format!("{}  ze.img\n", "1".repeat(64))),
        Faults::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let f = fatal(&install_image(&s, "", &t));
    assert!(
        f.starts_with("[ze-install] FATAL: verify: sha256 mismatch: expected 1111"),
        "{f}"
    );
    assert!(f.contains(&sha(&img)), "{f}");
    assert!(head_is_zero(&t));
}

#[test]
fn ze_sha256_overrides_the_sidecar() {
    let img = noise(2 << 20, 4);
    let s = serve("ze.img", &img, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let f = fatal(&install_image(
        &s,
        &format!("ze.sha256={}", "2".repeat(64)),
        &t,
    ));
    assert!(
        f.contains("FATAL: verify: sha256 mismatch: expected 2222"),
        "{f}"
    );
    assert!(head_is_zero(&t));
    // The sidecar was not even asked for.
    assert!(s.requests_for("/install/image/ze.img.sha256").is_empty());
}

#[test]
fn missing_sidecar_writes_unverified_with_a_loud_warning() {
    let img = noise(2 << 20, 5);
    let s = serve("ze.img", &img, Faults::default());
    s.remove("/install/image/ze.img.sha256");
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let o = install_image(&s, "", &t);
    ok(&o);
    assert!(stderr(&o).contains("NO CHECKSUM"), "{}", stderr(&o));
    assert!(stderr(&o).contains("verified=no"));
    assert_eq!(std::fs::read(&t).unwrap(), img);
}

#[test]
fn truncated_body_fails_after_three_attempts() {
    let img = noise(3 << 20, 6);
    let s = serve(
        "ze.img",
        &img,
        Faults {
            truncate_at: Some((2 << 20) + 7),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let f = fatal(&install_image(&s, "", &t));
    assert!(f.contains("FATAL: download: GET http://127.0.0.1:"), "{f}");
    assert!(
        f.contains("the connection closed early at byte 2097159 of 3145728"),
        "{f}"
    );
    assert!(f.contains("gave up after 3 attempts"), "{f}");
    assert!(head_is_zero(&t));
    assert_eq!(s.requests_for("/install/image/ze.img").len(), 3);
}

#[test]
fn gzip_with_trailing_garbage_is_fatal() {
    let mut gz = gzip(&noise(3 << 20, 7));
    gz.extend(b"trailing junk");
    let s = serve("ze.img.gz", &gz, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let f = fatal(&install_image(&s, "ze.image=ze.img.gz", &t));
    assert!(
        f.contains("FATAL: write: gzip: trailing data after the compressed stream"),
        "{f}"
    );
    assert!(head_is_zero(&t));
}

#[test]
fn dropped_connection_resumes_with_range() {
    let img = noise(6 << 20, 8);
    let cut = (3 << 20) + 12345;
    let s = serve(
        "ze.img",
        &img,
        Faults {
            drop_after: Some((cut, 1)),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let o = install_image(&s, "", &t);
    ok(&o);
    assert_eq!(std::fs::read(&t).unwrap(), img);
    let reqs = s.requests_for("/install/image/ze.img");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].range, None);
    assert_eq!(
        reqs[1].range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
    assert!(reqs[1].if_range.is_some(), "If-Range guards the splice");
    assert!(stderr(&o).contains(&format!("resuming at byte {cut}")));
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let img = noise(4 << 20, 9);
    let s = serve(
        "ze.img",
        &img,
        Faults {
            drop_after: Some((3 << 20, 1)),
            ignore_range: true,
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let o = install_image(&s, "", &t);
    ok(&o);
    assert_eq!(std::fs::read(&t).unwrap(), img);
    let reqs = s.requests_for("/install/image/ze.img");
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].range.is_some());
    assert!(stderr(&o).contains("ignored Range; starting over from byte 0"));
}

#[test]
fn a_stall_is_retried_after_the_lowered_stall_timeout() {
    let img = noise(3 << 20, 10);
    let s = serve(
        "ze.img",
        &img,
        Faults {
            stall_after: Some((1 << 20, Duration::from_secs(8), 1)),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let o = install_image(&s, "ze.stall-timeout=1", &t);
    ok(&o);
    assert!(
        stderr(&o).contains("stalled (no data for 1 s) at byte 1048576"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&t).unwrap(), img);
    assert_eq!(s.requests_for("/install/image/ze.img").len(), 2);
}

#[test]
fn image_404_is_fatal_and_touches_nothing() {
    let s = serve("other.img", b"x", Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    std::fs::write(&t, vec![0xAB; 2 << 20]).unwrap();
    let f = fatal(&install_image(&s, "", &t));
    assert!(f.contains("FATAL: download: GET http://127.0.0.1:"), "{f}");
    assert!(f.ends_with("/install/image/ze.img: 404 Not Found"), "{f}");
    assert!(std::fs::read(&t).unwrap().iter().all(|b| *b == 0xAB));
}

#[test]
fn database_404_is_fatal_before_any_write() {
    let img = noise(2 << 20, 11);
    let s = serve("ze.img", &img, Faults::default());
    s.remove("/install/database.zefs");
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    std::fs::write(&t, vec![0xCD; 3 << 20]).unwrap();
    let f = fatal(&install(&s, "", &t));
    assert!(f.contains("/install/database.zefs: 404 Not Found"), "{f}");
    assert!(std::fs::read(&t).unwrap().iter().all(|b| *b == 0xCD));
    assert!(s.requests_for("/install/image/ze.img").is_empty());
}

#[test]
fn target_too_small_changes_not_one_byte() {
    let img = noise(3 << 20, 12);
    let s = serve("ze.img", &img, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let before = noise(2 << 20, 99);
    std::fs::write(&t, &before).unwrap();
    let f = fatal(&install_image(&s, "", &t));
    assert!(f.contains("FATAL: disk: "), "{f}");
    assert!(
        f.contains("is 2.0 MiB, the image needs at least 3.0 MiB"),
        "{f}"
    );
    assert_eq!(std::fs::read(&t).unwrap(), before);
}
