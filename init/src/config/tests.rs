use super::*;

const BASE: &str = "console=ttyS0 ze.server=10.0.2.2";
/// The reference implementation's argon2id test vector: password "password",
/// salt "somesalt", m=256, t=2, p=1.
const PHC: &str =
    "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";

fn parse(extra: &str) -> Result<Parsed, ConfigError> {
    from_cmdline(&format!("{BASE} {extra}"))
}

fn cfg(extra: &str) -> Config {
    parse(extra)
        .unwrap_or_else(|e| panic!("{extra}: {e}"))
        .config
}

fn err(extra: &str) -> ConfigError {
    match parse(extra) {
        Ok(p) => panic!("{extra} was accepted: {:?}", p.config),
        Err(e) => e,
    }
}

#[test]
fn defaults_match_the_spec_table() {
    let c = cfg("");
    assert_eq!(c.source, Source::Http);
    assert_eq!(c.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
    assert_eq!(c.port, 80);
    assert_eq!(c.image, "ze.img");
    assert_eq!(c.target, None);
    assert_eq!(c.wait, 30);
    assert_eq!(c.media_id, None);
    assert_eq!(c.mac, None);
    assert_eq!(c.shell_auth, None);
    assert_eq!(c.rescue_auth, None);
    assert_eq!(c.sha256, None);
    assert_eq!(c.log, LogLevel::Info);
    assert_eq!(c.stall_timeout, 60);
    assert!(!c.dry_run);
    assert_eq!(c.ip, IpConfig::Dhcp { device: None });
    assert_eq!(c.answers, None);
}

#[test]
fn every_key_is_applied() {
    let c = cfg(&format!(
        "ze.port=8080 ze.image=prod-1.2+x_y.img.gz ze.target=/dev/nvme0n1 ze.wait=0 \
         ze.mac=52-54-00-AB-cd-EF ze.sha256={} ze.log=debug ze.rescue-auth={PHC} \
         ze.shell-auth={} ip=10.0.2.15::10.0.2.2:255.255.255.0:n1:eth0:off \
         kldload.answers=http://10.0.2.2/a.env ze.stall-timeout=2 ze.dry-run=1",
        "A".repeat(64),
        "b".repeat(64),
    ));
    assert_eq!(c.port, 8080);
    assert_eq!(c.image, "prod-1.2+x_y.img.gz");
    assert_eq!(c.target.as_deref(), Some("/dev/nvme0n1"));
    assert_eq!(c.wait, 0);
    assert_eq!(c.mac.unwrap().to_string(), "52:54:00:ab:cd:ef");
    assert_eq!(c.sha256, Some("a".repeat(64)));
    assert_eq!(c.log, LogLevel::Debug);
    assert_eq!(c.stall_timeout, 2);
    assert!(c.dry_run);
    assert_eq!(c.rescue_auth.as_ref().unwrap().expose(), PHC);
    assert_eq!(c.shell_auth.as_ref().unwrap().expose(), "b".repeat(64));
    assert!(matches!(c.ip, IpConfig::Static(ref s) if s.prefix == 24));
    assert_eq!(
        c.answers,
        Some(Answers::Url("http://10.0.2.2/a.env".into()))
    );
    assert_eq!(cfg("kldload.answers=auto").answers, Some(Answers::Auto));
}

#[test]
fn iso_source_needs_media_id_not_server() {
    let id = "0123456789abcdef0123456789abcdef";
    let c = from_cmdline(&format!("ze.source=iso ze.media-id={id}"))
        .unwrap()
        .config;
    assert_eq!(c.source, Source::Iso);
    assert_eq!(c.media_id.as_deref(), Some(id));
    let e = from_cmdline("ze.source=iso").unwrap_err();
    assert_eq!(e.key, "ze.media-id");
    assert!(e.to_string().contains("required when ze.source=iso"));
}

#[test]
fn http_source_needs_server() {
    let e = from_cmdline("console=ttyS0 ze.port=80").unwrap_err();
    assert_eq!(e.key, "ze.server");
    assert_eq!(e.to_string(), "ze.server: is required when ze.source=http");
}

#[test]
fn later_value_wins() {
    assert_eq!(cfg("ze.port=1 ze.port=2").port, 2);
}

#[test]
fn port_bounds() {
    assert_eq!(cfg("ze.port=1").port, 1);
    assert_eq!(cfg("ze.port=65535").port, 65535);
    for bad in ["0", "65536", "99999", "-1", "80a", "", " 80"] {
        let e = err(&format!("\"ze.port={bad}\""));
        assert_eq!(e.key, "ze.port", "{bad}");
        assert!(e.problem.contains("1-65535"), "{bad}: {e}");
    }
}

#[test]
fn invalid_values_name_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("ze.source=nfs", "ze.source", "is not a source"),
        ("ze.server=10.0.2", "ze.server", "is not an IPv4 address"),
        (
            "ze.server=server.example",
            "ze.server",
            "is not an IPv4 address",
        ),
        (
            "ze.server=0.0.0.0",
            "ze.server",
            "cannot be a server address",
        ),
        (
            "ze.server=255.255.255.255",
            "ze.server",
            "cannot be a server address",
        ),
        (
            "ze.server=224.0.0.1",
            "ze.server",
            "cannot be a server address",
        ),
        ("ze.server=::1", "ze.server", "is not an IPv4 address"),
        ("ze.wait=-1", "ze.wait", "probe attempts"),
        ("ze.wait=ten", "ze.wait", "probe attempts"),
        ("ze.wait=4294967296", "ze.wait", "probe attempts"),
        ("ze.media-id=0123", "ze.media-id", "32 lowercase hex"),
        (
            "ze.media-id=0123456789ABCDEF0123456789abcdef",
            "ze.media-id",
            "32 lowercase hex",
        ),
        (
            "ze.media-id=0123456789abcdef0123456789abcdeg",
            "ze.media-id",
            "32 lowercase hex",
        ),
        ("ze.mac=52:54:00:12:34", "ze.mac", "is not a MAC"),
        ("ze.mac=52:54:00:12:34:5g", "ze.mac", "is not a MAC"),
        ("ze.mac=525400123456", "ze.mac", "is not a MAC"),
        ("ze.mac=52:54:00:12:34:567", "ze.mac", "is not a MAC"),
        ("ze.shell-auth=abc", "ze.shell-auth", "sha256 hex"),
        ("ze.sha256=xyz", "ze.sha256", "sha256 hex"),
        ("ze.log=trace", "ze.log", "is not a log level"),
        ("ze.log=INFO", "ze.log", "is not a log level"),
        ("ze.stall-timeout=0", "ze.stall-timeout", "1-3600"),
        ("ze.dry-run=maybe", "ze.dry-run", "1 or 0"),
        ("ze.report=ftp://x/", "ze.report", "http:// URL prefix"),
        ("ze.stall-timeout=3601", "ze.stall-timeout", "1-3600"),
        ("ze.stall-timeout=1.5", "ze.stall-timeout", "1-3600"),
        (
            "ip=10.0.2.15::gw:255.255.255.0:h:eth0:off",
            "ip",
            "field 3 (gw-ip)",
        ),
        (
            "kldload.answers=ftp://x/a.env",
            "kldload.answers",
            "http://",
        ),
        ("kldload.answers=http://", "kldload.answers", "http://"),
        ("ze.port", "ze.port", "needs a value"),
    ];
    for (arg, key, what) in cases {
        let e = err(arg);
        assert_eq!(e.key, *key, "{arg}: {e}");
        assert!(e.problem.contains(what), "{arg}: {e}");
        assert!(e.to_string().starts_with(&format!("{key}: ")), "{e}");
    }
}

#[test]
fn image_name_rules() {
    for ok in ["ze.img", "a", "A-b_c.d+e", "..x", "x..y"] {
        assert_eq!(cfg(&format!("ze.image={ok}")).image, ok);
    }
    let cases = [
        ("ze.image=", "is empty"),
        ("ze.image=.", "is not a file name"),
        ("ze.image=..", "is not a file name"),
        ("ze.image=../etc/passwd", "not a path"),
        ("ze.image=a/b", "not a path"),
        ("\"ze.image=a b\"", "contains a space"),
        ("ze.image=a%20b", "outside [A-Za-z0-9._+-]"),
        ("ze.image=a?b", "outside [A-Za-z0-9._+-]"),
        ("ze.image=ümlaut", "outside [A-Za-z0-9._+-]"),
    ];
    for (arg, what) in cases {
        let e = err(arg);
        assert_eq!(e.key, "ze.image", "{arg}");
        assert!(e.problem.contains(what), "{arg}: {e}");
    }
    let long = "a".repeat(256);
    assert!(err(&format!("ze.image={long}")).problem.contains("255"));
}

#[test]
fn target_accepts_whole_disks_and_links() {
    for ok in [
        "/dev/sda",
        "/dev/sdab",
        "/dev/vda",
        "/dev/xvdb",
        "/dev/hda",
        "/dev/nvme0n1",
        "/dev/nvme12n3",
        "/dev/mmcblk0",
        "/dev/disk/by-id/nvme-Samsung_SSD_980_S64DNX0R123456",
        "/dev/disk/by-path/pci-0000:00:04.0",
    ] {
        assert_eq!(cfg(&format!("ze.target={ok}")).target.as_deref(), Some(ok));
    }
}

#[test]
fn target_refuses_partitions_and_other_devices() {
    let cases = [
        ("/dev/sda1", "is a partition"),
        ("/dev/vda4", "is a partition"),
        ("/dev/nvme0n1p1", "is a partition"),
        ("/dev/mmcblk0p2", "is a partition"),
        ("/dev/xvda1", "is a partition"),
        ("/dev/loop0", "not a whole-disk name"),
        ("/dev/sr0", "not a whole-disk name"),
        ("/dev/dm-0", "not a whole-disk name"),
        ("/dev/nvme0", "not a whole-disk name"),
        ("/dev/sd", "not a whole-disk name"),
        ("/dev/SDA", "not a whole-disk name"),
        ("/dev/mmcblk", "not a whole-disk name"),
        ("sda", "must be a /dev path"),
        ("/dev/disk/by-uuid/abc", "not a whole-disk name"),
        ("/dev/disk/by-id/", "not a link name"),
        ("/dev/disk/by-id/../../sda", "not a link name"),
    ];
    for (t, what) in cases {
        let e = err(&format!("ze.target={t}"));
        assert_eq!(e.key, "ze.target", "{t}");
        assert!(e.problem.contains(what), "{t}: {e}");
    }
}

#[test]
fn rescue_auth_accepts_argon2id_only_and_never_echoes_it() {
    let cases = [
        (
            "$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "uses argon2i",
        ),
        (
            "$argon2id$v=16$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "v=19",
        ),
        (
            "$argon2id$v=19$t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
            "m=",
        ),
        ("$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ", "salt or a hash"),
        ("not-a-phc-string", "not a PHC string"),
        (
            "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$!!!",
            "not a PHC string",
        ),
    ];
    for (v, what) in cases {
        let e = err(&format!("ze.rescue-auth={v}"));
        assert_eq!(e.key, "ze.rescue-auth");
        assert!(e.problem.contains(what), "{v}: {e}");
        assert!(!e.to_string().contains("c29tZXNhbHQ"), "secret echoed: {e}");
    }
}

#[test]
fn secrets_never_appear_in_json_or_debug() {
    let p = parse(&format!(
        "ze.rescue-auth={PHC} ze.shell-auth={}",
        "c".repeat(64)
    ))
    .unwrap();
    let json = serde_json::to_string(&p).unwrap();
    let debug = format!("{p:?}");
    for text in [&json, &debug] {
        assert!(!text.contains("c29tZXNhbHQ"), "{text}");
        assert!(!text.contains(&"c".repeat(64)), "{text}");
        assert!(text.contains("(set)"), "{text}");
    }
}

#[test]
fn shell_auth_is_accepted_with_a_weakness_warning() {
    let p = parse(&format!("ze.shell-auth={}", "0".repeat(64))).unwrap();
    assert!(p.config.shell_auth.is_some());
    assert!(
        p.warnings.iter().any(|w| w.contains("weak")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn unknown_ze_keys_are_warned_and_others_ignored() {
    let p = parse("ze.colour=blue ze.verbose quiet root=/dev/sda1 zebra=1").unwrap();
    assert_eq!(
        p.warnings,
        vec![
            "unknown key ze.colour ignored".to_string(),
            "unknown key ze.verbose ignored".to_string()
        ]
    );
    assert_eq!(p.config, cfg(""));
}

#[test]
fn mac_forms() {
    let a = Mac::parse("52:54:00:AB:CD:EF").unwrap();
    let b = Mac::parse("52-54-00-ab-cd-ef").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.hyphenated(), "52-54-00-ab-cd-ef");
    assert!(Mac::parse("52:54-00:ab:cd:ef").is_none());
}

#[test]
fn disk_name_classes() {
    use DiskName::*;
    let cases = [
        ("sda", Some(Whole)),
        ("sda12", Some(Partition)),
        ("vdz", Some(Whole)),
        ("nvme0n1", Some(Whole)),
        ("nvme0n1p4", Some(Partition)),
        ("nvme0n1p", None),
        ("mmcblk1", Some(Whole)),
        ("mmcblk1p4", Some(Partition)),
        ("mmcblk1boot0", None),
        ("loop0", None),
        ("sr0", None),
        ("sd1", None),
    ];
    for (n, want) in cases {
        assert_eq!(disk_name_kind(n), want, "{n}");
    }
}

/// docs/cmdline.md is the operator's reference: every key must be there with its default.
#[test]
fn docs_list_every_key_with_its_default() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cmdline.md"))
        .expect("docs/cmdline.md");
    for (key, default) in KEYS {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` ")))
            .unwrap_or_else(|| panic!("docs/cmdline.md has no row for {key}"));
        let shown = if *default == "-" {
            "—".to_string()
        } else {
            format!("`{default}`")
        };
        assert!(
            row.contains(&shown),
            "{key}: default {shown} missing in: {row}"
        );
    }
    for key in OTHER_KEYS {
        assert!(
            doc.contains(&format!("`{key}=")),
            "docs/cmdline.md lacks {key}"
        );
    }
}

#[test]
fn report_prefix_defaults_to_the_install_server_for_http_only() {
    assert_eq!(
        cfg("ze.port=8080").report_prefix().as_deref(),
        Some("http://10.0.2.2:8080/install/status/")
    );
    assert_eq!(cfg("ze.report=off").report_prefix(), None);
    assert_eq!(
        cfg("ze.report=http://10.9.9.9/s")
            .report_prefix()
            .as_deref(),
        Some("http://10.9.9.9/s/")
    );
    let iso = from_cmdline(&format!("ze.source=iso ze.media-id={}", "a".repeat(32)))
        .unwrap()
        .config;
    assert_eq!(iso.report_prefix(), None);
}
