//! Shared pieces of the host-mode integration tests: the misbehaving server with an
//! image and its sidecar, and running `ze-init install`.
#![allow(dead_code)]

use qemu_harness::server::{Body, Faults, Server};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output};

pub const DB: &[u8] = b"zefs database fixture\n";

pub fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A server with `/install/image/<name>` (+ sidecar of `sidecar_of`) and the database.
pub fn serve(name: &str, image: &[u8], faults: Faults) -> Server {
    let s = Server::start("127.0.0.1:0").unwrap();
    s.add(
        &format!("/install/image/{name}"),
        Body::bytes(image.to_vec()),
        faults,
    );
    s.add(
        &format!("/install/image/{name}.sha256"),
        Body::bytes(format!("{}  {name}\n", sha(image))),
        Faults::default(),
    );
    s.add(
        "/install/database.zefs",
        Body::bytes(DB.to_vec()),
        Faults::default(),
    );
    s
}

/// `ze-init install` with the database fetched and injected (into partition 4).
pub fn install(s: &Server, extra: &str, target: &Path) -> Output {
    run_install(s, extra, target, &[])
}

/// `ze-init install --no-database`: the image alone, for images without a partition 4.
pub fn install_image(s: &Server, extra: &str, target: &Path) -> Output {
    run_install(s, extra, target, &["--no-database"])
}

fn run_install(s: &Server, extra: &str, target: &Path, flags: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ze-init"))
        .arg("install")
        .args(flags)
        .arg("--cmdline")
        .arg(format!("ze.server=127.0.0.1 ze.port={} {extra}", s.port()))
        .arg("--target")
        .arg(target)
        .output()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The single FATAL line, asserting there is exactly one.
pub fn fatal(o: &Output) -> String {
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("FATAL")).collect();
    assert_eq!(lines.len(), 1, "expected one FATAL line:\n{err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    lines[0].to_string()
}

pub fn head_is_zero(p: &Path) -> bool {
    let d = std::fs::read(p).unwrap();
    d.len() >= 1 << 20 && d[..1 << 20].iter().all(|b| *b == 0)
}
