//! `ze-init plan` as a host command: JSON on success, the FATAL line and exit 1 on bad
//! input.

use std::process::Command;

fn plan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ze-init"))
        .arg("plan")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn prints_the_parsed_configuration_as_json() {
    let o = plan(&[
        "--cmdline",
        "console=ttyS0 ze.server=10.0.2.2 ze.port=8080 ze.colour=blue",
        "--image",
        "prod.img",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["config"]["server"], "10.0.2.2");
    assert_eq!(doc["config"]["port"], 8080);
    assert_eq!(doc["config"]["image"], "prod.img");
    assert_eq!(doc["config"]["wait"], 30);
    assert_eq!(doc["warnings"][0], "unknown key ze.colour ignored");
    // The warning also reaches the log (stderr), once.
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("unknown key ze.colour ignored").count(),
        1,
        "{err}"
    );
}

#[test]
fn invalid_input_prints_one_fatal_line_and_fails() {
    let o = plan(&["--cmdline", "ze.server=10.0.2.2 ze.port=99999"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    let fatal: Vec<&str> = err.lines().filter(|l| l.contains("FATAL")).collect();
    assert_eq!(
        fatal,
        vec![r#"[ze-install] FATAL: config: ze.port: "99999" is not a port number (1-65535)"#]
    );
}

#[test]
fn usage_errors_exit_2() {
    let o = Command::new(env!("CARGO_BIN_EXE_ze-init"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("usage:"));
}
