//! `ze-init install --media DIR` with `ze.source=iso`: the host-mode ISO install over a
//! directory laid out as `ze-pack iso` lays out the medium. The same checks as at boot
//! (media-id, manifest, image, sidecar, answers file) and the same single-pass write.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::*;
use ze_init::source::iso::{IMAGES, MANIFEST, MEDIA_ID, Manifest, ManifestImage};

const ID: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Writes a medium holding `raw` gzip-compressed as `ze.img.gz`; returns the stored bytes.
fn medium(dir: &Path, raw: &[u8]) -> Vec<u8> {
    let stored = gzip(raw);
    std::fs::create_dir_all(dir.join(IMAGES)).unwrap();
    std::fs::write(dir.join(MEDIA_ID), format!("{ID}\n")).unwrap();
    let m = Manifest {
        format: 1,
        media_id: ID.into(),
        created: 0,
        image: ManifestImage {
            name: "ze.img.gz".into(),
            stored_bytes: stored.len() as u64,
            image_bytes: raw.len() as u64,
            sha256: sha(&stored),
            gzip: true,
        },
        cmdline: format!("ze.source=iso ze.media-id={ID} ze.image=ze.img.gz"),
        packer: "test".into(),
    };
    std::fs::write(dir.join(MANIFEST), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    std::fs::write(dir.join(IMAGES).join("ze.img.gz"), &stored).unwrap();
    std::fs::write(
        dir.join(IMAGES).join("ze.img.gz.sha256"),
        format!("{}  ze.img.gz\n", sha(&stored)),
    )
    .unwrap();
    stored
}

fn install(media: &Path, extra: &str, target: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ze-init"))
        .arg("install")
        .arg("--cmdline")
        .arg(format!(
            "ze.source=iso ze.media-id={ID} ze.image=ze.img.gz {extra}"
        ))
        .arg("--media")
        .arg(media)
        .arg("--target")
        .arg(target)
        .output()
        .unwrap()
}

#[test]
fn a_medium_directory_is_installed_in_one_verified_pass() {
    let t = tempfile::tempdir().unwrap();
    let raw = noise(3 << 20, 7);
    let stored = medium(&t.path().join("m"), &raw);
    let disk = t.path().join("disk.img");
    let o = install(&t.path().join("m"), "", &disk);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&disk).unwrap(), raw);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "[ze-install] DONE image=ze.img.gz sha256={} bytes={}",
            sha(&stored),
            raw.len()
        )),
        "{err}"
    );
    assert!(!err.contains("verified=no"), "{err}");
}

#[test]
fn a_medium_for_another_boot_is_refused_before_the_target_is_touched() {
    let t = tempfile::tempdir().unwrap();
    medium(&t.path().join("m"), &noise(1 << 20, 8));
    let disk = t.path().join("disk.img");
    let o = Command::new(env!("CARGO_BIN_EXE_ze-init"))
        .args(["install", "--cmdline"])
        .arg("ze.source=iso ze.media-id=00000000000000000000000000000000 ze.image=ze.img.gz")
        .arg("--media")
        .arg(t.path().join("m"))
        .arg("--target")
        .arg(&disk)
        .output()
        .unwrap();
    assert_eq!(
        fatal(&o),
        format!(
            "[ze-install] FATAL: media: {}: wrong media-id \"{ID}\" (this boot wants 00000000000000000000000000000000)",
            t.path().join("m").display()
        )
    );
    assert!(!disk.exists());
}

#[test]
fn an_image_that_does_not_match_its_sidecar_is_a_verify_fatal_and_the_head_stays_zero() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("m");
    let raw = noise(3 << 20, 9);
    medium(&m, &raw);
    // Another image of the same size, with the sidecar and manifest still describing
    // the first: the digest only fails after the whole image was written.
    let other = gzip(&noise(3 << 20, 10));
    std::fs::write(m.join(IMAGES).join("ze.img.gz"), &other).unwrap();
    let manifest = m.join(MANIFEST);
    let mut doc: Manifest = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    doc.image.stored_bytes = other.len() as u64;
    std::fs::write(&manifest, serde_json::to_vec(&doc).unwrap()).unwrap();
    let disk = t.path().join("disk.img");
    let o = install(&m, "", &disk);
    let line = fatal(&o);
    assert!(
        line.starts_with(&format!(
            "[ze-install] FATAL: verify: sha256 mismatch: expected {}, got {}",
            doc.image.sha256,
            sha(&other)
        )),
        "{line}"
    );
    assert!(head_is_zero(&disk));
}

#[test]
fn the_answers_file_on_the_medium_is_merged_below_the_command_line() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("m");
    medium(&m, &noise(1 << 20, 11));
    // A wrong digest from the medium's answers file is used (nothing on the command
    // line overrides it) and fails the install; the command line's ze.sha256 wins.
    let wrong = "ab".repeat(32);
    std::fs::write(
        m.join("ze-install/autoinstall.env"),
        format!("ZE_SHA256={wrong}\n"),
    )
    .unwrap();
    let disk = t.path().join("disk.img");
    let o = install(&m, "", &disk);
    assert!(
        fatal(&o).contains(&format!("FATAL: verify: sha256 mismatch: expected {wrong}")),
        "{}",
        stderr(&o)
    );
    let good = sha(&std::fs::read(m.join(IMAGES).join("ze.img.gz")).unwrap());
    // (A failed install leaves a 1 MiB file of zeroes, which host mode would take for
    // a disk of that size.)
    std::fs::remove_file(&disk).unwrap();
    let o = install(&m, &format!("ze.sha256={good}"), &disk);
    assert!(o.status.success(), "{}", stderr(&o));
    // A broken answers file on the right medium is a config FATAL naming it.
    std::fs::write(
        m.join("ze-install/autoinstall.env"),
        "KLDLOAD_DISK='/dev/vda\n",
    )
    .unwrap();
    let o = install(&m, "", &disk);
    assert_eq!(
        fatal(&o),
        format!(
            "[ze-install] FATAL: config: /ze-install/autoinstall.env on {} line 1: unterminated single quote (a value cannot span lines)",
            m.display()
        )
    );
}

#[test]
fn iso_mode_without_media_or_http_with_media_is_a_usage_fatal() {
    let t = tempfile::tempdir().unwrap();
    let disk = t.path().join("disk.img");
    let o = Command::new(env!("CARGO_BIN_EXE_ze-init"))
        .args(["install", "--cmdline"])
        .arg(format!("ze.source=iso ze.media-id={ID}"))
        .arg("--target")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(fatal(&o).contains("FATAL: media: host mode with ze.source=iso needs --media DIR"));
    let o = Command::new(env!("CARGO_BIN_EXE_ze-init"))
        .args([
            "install",
            "--cmdline",
            "ze.server=10.0.0.1",
            "--media",
            "/x",
        ])
        .arg("--target")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(fatal(&o).contains("--media: reading the image from a medium needs ze.source=iso"));
}
