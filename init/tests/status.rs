//! Live status in host mode: `ze.report` makes `ze-init install` PUT its document to the
//! server as it goes; judged from what the server received, not from the installer's
//! log. A status server that never answers must not stop or fail the install.

mod support;

use qemu_harness::server::{Body, Faults, Server};
use serde_json::Value;
use std::net::TcpListener;
use support::*;

/// The document the server holds for this host (one per MAC).
fn document(s: &Server) -> (String, Value) {
    let puts: Vec<_> = s
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/status/"))
        .collect();
    assert!(!puts.is_empty(), "no status PUT reached the server");
    let path = puts.last().unwrap().path.clone();
    let body = s.upload(&path).unwrap();
    (path, serde_json::from_slice(&body).unwrap())
}

fn report(s: &Server) -> String {
    format!("ze.report=http://127.0.0.1:{}/status", s.port())
}

#[test]
fn a_successful_install_ends_with_done_and_its_progress() {
    let img = noise(3 << 20, 1);
    let s = serve("ze.img", &img, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let o = install_image(&s, &report(&s), &t);
    assert!(o.status.success(), "{}", stderr(&o));
    let (path, doc) = document(&s);
    assert!(
        path.ends_with(".json") && path.matches('-').count() >= 5,
        "{path}"
    );
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["stage"], "done");
    assert_eq!(doc["image"], "ze.img");
    assert_eq!(doc["progress"]["bytes_in"], img.len());
    assert_eq!(doc["progress"]["total_in"], img.len());
    assert!(
        doc["done"]
            .as_str()
            .unwrap()
            .starts_with("DONE image=ze.img")
    );
    assert!(doc["log"].as_array().unwrap().len() > 2);
    // Every stage change went out: the first document already said "plan".
    let puts = s.requests().iter().filter(|r| r.method == "PUT").count();
    assert!(puts >= 2, "{puts} PUTs");
}

#[test]
fn a_failed_install_ends_with_failed_and_the_fatal_text() {
    let img = noise(2 << 20, 2);
    let s = serve("ze.img", &img, Faults::default());
    s.add(
        "/install/image/ze.img.sha256",
        Body::bytes(format!("{}  ze.img\n", "3".repeat(64))),
        Faults::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let f = fatal(&install_image(&s, &report(&s), &t));
    assert!(f.contains("sha256 mismatch"), "{f}");
    let (_, doc) = document(&s);
    assert_eq!(doc["stage"], "failed");
    assert!(
        doc["fatal"]
            .as_str()
            .unwrap()
            .starts_with("verify: sha256 mismatch: expected 3333"),
        "{doc}"
    );
}

#[test]
fn a_status_server_that_never_answers_does_not_stop_the_install() {
    // Accepts connections (the kernel's backlog) and never reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let img = noise(3 << 20, 3);
    let s = serve("ze.img", &img, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("disk.img");
    let o = install_image(&s, &format!("ze.report=http://127.0.0.1:{port}/status"), &t);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&t).unwrap(), img);
    // The install does not wait for the silent server (a PUT times out after 3 s,
    // possibly after the install is done); a failure is logged at most once.
    let err = stderr(&o);
    assert!(err.matches("status: PUT").count() <= 1, "{err}");
    drop(silent);
}
