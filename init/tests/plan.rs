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
fn prints_the_disk_decision_from_the_given_roots() {
    use ze_init::disk::fixture::{Bus, Disk, Fixture};
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("vda", Bus::Virtio, 8 << 30))
        .add(Disk::new("sda", Bus::Sata, 16 << 30).partition(1, 1 << 20, 1 << 30))
        .add(Disk::new("loop0", Bus::Virtual, 1 << 30))
        .link("disk/by-id/ata-BIG", "../../sda")
        .mounted("sda1", "/srv");
    let roots = [
        "--sys-root",
        fx.sys.to_str().unwrap(),
        "--dev-root",
        fx.dev.to_str().unwrap(),
        "--proc-root",
        fx.proc.to_str().unwrap(),
    ];
    let run = |extra: &[&str]| {
        let o = plan(&[&roots[..], extra].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (doc, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (doc, log) = run(&["--server", "10.0.2.2"]);
    let d = &doc["disk"];
    assert_eq!(d["mode"], "http");
    assert_eq!(d["target"], "/dev/vda");
    assert_eq!(d["error"], serde_json::Value::Null);
    let names: Vec<&str> = d["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["vda", "sda", "loop0"]);
    assert_eq!(d["disks"][1]["verdict"], "skipped");
    assert_eq!(d["disks"][1]["reason"], "is in use (mounted: sda1 on /srv)");
    assert!(log.contains("disk plan: target /dev/vda"), "{log}");
    // The by-id link leads to the busy disk: the plan says no, and still exits 0.
    let (doc, _) = run(&[
        "--server",
        "10.0.2.2",
        "--target",
        "/dev/disk/by-id/ata-BIG",
    ]);
    assert_eq!(doc["disk"]["target"], serde_json::Value::Null);
    assert_eq!(
        doc["disk"]["error"],
        "ze.target=/dev/disk/by-id/ata-BIG: /dev/sda is in use (mounted: sda1 on /srv)"
    );
    // ISO mode: the busy disk does not count, so vda is the only candidate.
    let (doc, _) = run(&["--source", "iso", "--media-id", &"a".repeat(32)]);
    assert_eq!(doc["disk"]["mode"], "iso");
    assert_eq!(doc["disk"]["target"], "/dev/vda");
    assert_eq!(doc["disk"]["disks"][0]["reason"], "the only candidate");
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

#[test]
fn answers_file_ranks_below_the_cmdline_and_sources_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web-01.env");
    std::fs::write(
        &file,
        "# web-01\nKLDLOAD_DISK=/dev/vdb\nZE_IMAGE=file.img\nKLDLOAD_PROFILE=server\n",
    )
    .unwrap();
    let o = plan(&[
        "--answers",
        file.to_str().unwrap(),
        "--cmdline",
        "ze.server=10.0.2.2 ze.image=cmd.img",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["config"]["target"], "/dev/vdb");
    assert_eq!(doc["config"]["image"], "cmd.img");
    assert_eq!(doc["sources"]["target"]["from"], "initrd-answers");
    assert_eq!(doc["sources"]["target"]["file"], file.to_str().unwrap());
    assert_eq!(doc["sources"]["target"]["line"], 2);
    assert_eq!(doc["sources"]["target"]["key"], "KLDLOAD_DISK");
    assert_eq!(doc["sources"]["image"]["from"], "cmdline");
    assert_eq!(
        doc["warnings"][0],
        "not applicable to an image install, ignored: KLDLOAD_PROFILE"
    );
}

#[test]
fn answers_file_error_is_one_fatal_line_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.env");
    std::fs::write(&file, "A=1\nKLDLOAD_DISK=/dev/sda1\n").unwrap();
    let o = plan(&[
        "--answers",
        file.to_str().unwrap(),
        "--cmdline",
        "ze.server=10.0.2.2",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let fatal: Vec<&str> = err.lines().filter(|l| l.contains("FATAL")).collect();
    assert_eq!(
        fatal,
        vec![format!(
            "[ze-install] FATAL: config: KLDLOAD_DISK ({} line 2): \"/dev/sda1\" is a partition; give the whole disk",
            file.display()
        )]
    );
    // A file given explicitly must exist.
    let o = plan(&["--answers", "/nonexistent/a.env", "--server", "10.0.2.2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("FATAL: config: reading /nonexistent/a.env")
    );
}

#[test]
fn password_never_reaches_stdout_or_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.env");
    std::fs::write(
        &file,
        "KLDLOAD_PASSWORD='hunter2'\nKLDLOAD_USERNAME=admin\nKLDLOAD_DISK=/dev/vda\n",
    )
    .unwrap();
    for cmdline in [
        "ze.server=10.0.2.2 ze.log=debug kldload.password=hunter2",
        "ze.server=10.0.2.2 ze.port=0",
    ] {
        let o = plan(&["--answers", file.to_str().unwrap(), "--cmdline", cmdline]);
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!out.contains("hunter2"), "{out}");
    }
}
