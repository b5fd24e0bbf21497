use super::*;
use crate::config::{Mac, Source};

const INITRD: &str = "/etc/kldload/autoinstall.env";
const ISO: &str = "/ze-install/autoinstall.env on /dev/sr0";
const URL: &str = "http://10.0.2.2/answers/52-54-00-12-34-56.env";
const SERVER: &str = "ze.server=10.0.2.2";

fn builder(initrd: &str, cmdline: &str) -> ConfigBuilder {
    let mut b = ConfigBuilder::new();
    b.add_initrd_answers(INITRD, initrd.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    b.add_cmdline(cmdline);
    b
}

fn built(initrd: &str, cmdline: &str) -> Parsed {
    builder(initrd, cmdline)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn error(initrd: &str, cmdline: &str) -> ConfigError {
    match builder(initrd, cmdline).build() {
        Ok(p) => panic!("accepted: {:?}", p.config),
        Err(e) => e,
    }
}

fn by(p: &Parsed, field: &str) -> (Layer, Option<String>) {
    let s = &p.sources[field];
    (s.origin.from, s.key.clone())
}

/// A disk per source; peeling sources off from the top shows each one ranks where the
/// spec says.
#[test]
fn each_source_beats_the_ones_below_it() {
    let full = |iso: bool, url: bool, kld: bool, ze: bool| {
        let mut b = ConfigBuilder::new();
        b.add_initrd_answers(INITRD, b"KLDLOAD_DISK=/dev/sda")
            .unwrap();
        let mut line = SERVER.to_string();
        if kld {
            line += " kldload.disk=/dev/sdd";
        }
        if ze {
            line += " ze.target=/dev/sde";
        }
        b.add_cmdline(&line);
        if iso {
            b.merge_iso_answers(ISO, b"KLDLOAD_DISK=/dev/sdb").unwrap();
        }
        if url {
            b.merge_url_answers(URL, b"KLDLOAD_DISK=/dev/sdc").unwrap();
        }
        let p = b.build().unwrap();
        (p.config.target.clone().unwrap(), by(&p, "target"))
    };
    let k = |s: &str| Some(s.to_string());
    assert_eq!(
        full(true, true, true, true),
        ("/dev/sde".into(), (Layer::Cmdline, k("ze.target")))
    );
    assert_eq!(
        full(true, true, true, false),
        (
            "/dev/sdd".into(),
            (Layer::KldloadCmdline, k("kldload.disk"))
        )
    );
    assert_eq!(
        full(true, true, false, false),
        ("/dev/sdc".into(), (Layer::UrlAnswers, k("KLDLOAD_DISK")))
    );
    assert_eq!(
        full(true, false, false, false),
        ("/dev/sdb".into(), (Layer::IsoAnswers, k("KLDLOAD_DISK")))
    );
    assert_eq!(
        full(false, false, false, false),
        ("/dev/sda".into(), (Layer::InitrdAnswers, k("KLDLOAD_DISK")))
    );
}

#[test]
fn arrival_order_does_not_change_precedence() {
    // The command line is read first, the URL file arrives before the ISO file: the
    // command line still wins, and the URL file still beats the ISO file.
    let mut b = ConfigBuilder::new();
    b.add_cmdline(&format!("{SERVER} ze.image=cmd.img"));
    let p = b
        .merge_url_answers(URL, b"ZE_IMAGE=url.img\nKLDLOAD_DISK=/dev/vdc\n")
        .unwrap();
    assert_eq!(p.config.image, "cmd.img");
    assert_eq!(p.config.target.as_deref(), Some("/dev/vdc"));
    let p = b
        .merge_iso_answers(ISO, b"ZE_IMAGE=iso.img\nKLDLOAD_DISK=/dev/vdb\nZE_WAIT=5\n")
        .unwrap();
    assert_eq!(p.config.image, "cmd.img");
    assert_eq!(p.config.target.as_deref(), Some("/dev/vdc"));
    assert_eq!(p.config.wait, 5);
    // The initrd file, added last of all, only fills what nobody else set.
    b.add_initrd_answers(INITRD, b"ZE_WAIT=9\nZE_PORT=8080\nKLDLOAD_DISK=/dev/vda")
        .unwrap();
    let p = b.build().unwrap();
    assert_eq!((p.config.wait, p.config.port), (5, 8080));
    assert_eq!(p.config.target.as_deref(), Some("/dev/vdc"));
    assert_eq!(
        p.sources["target"].origin,
        Origin {
            from: Layer::UrlAnswers,
            file: Some(URL.into()),
            line: Some(2)
        }
    );
}

#[test]
fn later_line_wins_within_a_file_with_a_warning() {
    let p = built("KLDLOAD_DISK=/dev/vda\nKLDLOAD_DISK=/dev/vdb\n", SERVER);
    assert_eq!(p.config.target.as_deref(), Some("/dev/vdb"));
    assert_eq!(p.sources["target"].origin.line, Some(2));
    assert!(
        p.warnings.contains(
            &"KLDLOAD_DISK is set twice in /etc/kldload/autoinstall.env (lines 1 and 2); the later wins"
                .to_string()
        ),
        "{:?}",
        p.warnings
    );
}

#[test]
fn bad_value_names_key_file_and_line() {
    let e = error("# disk\n\nKLDLOAD_DISK=/dev/sda1\n", SERVER);
    assert_eq!(
        e.to_string(),
        r#"KLDLOAD_DISK (/etc/kldload/autoinstall.env line 3): "/dev/sda1" is a partition; give the whole disk"#
    );
    let mut b = builder("", SERVER);
    let e = b.merge_url_answers(URL, b"ZE_PORT=0").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(r#"ZE_PORT ({URL} line 1): "0" is not a port number (1-65535)"#)
    );
    // On the command line the key is named as written there, without a place.
    let e = error("", &format!("{SERVER} kldload.disk=/dev/sda1"));
    assert_eq!(
        e.to_string(),
        r#"kldload.disk: "/dev/sda1" is a partition; give the whole disk"#
    );
    let e = error("", &format!("{SERVER} ze.port=99999"));
    assert_eq!(
        e.to_string(),
        r#"ze.port: "99999" is not a port number (1-65535)"#
    );
}

#[test]
fn a_syntax_error_in_a_merged_file_is_reported_with_its_line() {
    let mut b = builder("", SERVER);
    let e = b
        .merge_iso_answers(ISO, b"A=1\nKLDLOAD_DISK='/dev/vda\n")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{ISO} line 2: unterminated single quote (a value cannot span lines)")
    );
}

#[test]
fn a_bad_value_overridden_by_a_higher_source_is_not_fatal() {
    // The point of the command line ranking first: fix a baked-in mistake at boot.
    let p = built(
        "KLDLOAD_DISK=/dev/sda1\n",
        &format!("{SERVER} ze.target=/dev/sda"),
    );
    assert_eq!(p.config.target.as_deref(), Some("/dev/sda"));
}

#[test]
fn ze_variables_set_every_ze_key() {
    let sha = "ab".repeat(32);
    let p = built(
        &format!(
            "ZE_SERVER=10.0.2.2\nZE_PORT=8080\nZE_IMAGE=web-01.img.gz\nZE_SHA256={sha}\n\
             ZE_TARGET=/dev/nvme0n1\nZE_MEDIA_ID={}\nZE_MAC=52-54-00-12-34-56\nZE_LOG=debug\n\
             ZE_WAIT=3\nZE_HOSTNAME=web-01\n",
            "0".repeat(32)
        ),
        "",
    );
    let c = &p.config;
    assert_eq!(c.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
    assert_eq!(c.port, 8080);
    assert_eq!(c.image, "web-01.img.gz");
    assert_eq!(c.sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(c.target.as_deref(), Some("/dev/nvme0n1"));
    assert_eq!(c.media_id, Some("0".repeat(32)));
    assert_eq!(c.mac, Mac::parse("52:54:00:12:34:56"));
    assert_eq!(c.wait, 3);
    assert_eq!(c.hostname.as_deref(), Some("web-01"));
    assert_eq!(
        by(&p, "media_id"),
        (Layer::InitrdAnswers, Some("ZE_MEDIA_ID".into()))
    );
    assert_eq!(by(&p, "sha256").1.as_deref(), Some("ZE_SHA256"));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn kldload_hostname_is_the_dhcp_hostname_and_is_validated() {
    let p = built("KLDLOAD_HOSTNAME=node-7.lab\n", SERVER);
    assert_eq!(p.config.hostname.as_deref(), Some("node-7.lab"));
    assert_eq!(by(&p, "hostname").1.as_deref(), Some("KLDLOAD_HOSTNAME"));
    let e = error("KLDLOAD_HOSTNAME=-bad_name\n", SERVER);
    assert_eq!(e.key, "KLDLOAD_HOSTNAME");
    assert!(e.problem.contains("is not a host name"), "{e}");
    // ze.hostname on the command line beats the file.
    let p = built("KLDLOAD_HOSTNAME=a\n", &format!("{SERVER} ze.hostname=b"));
    assert_eq!(p.config.hostname.as_deref(), Some("b"));
}

const STATIC: &str = "KLDLOAD_NET_METHOD=static\nKLDLOAD_NET_IFACE=52:54:00:AB:CD:EF\n\
                      KLDLOAD_NET_IP=192.168.1.100\nKLDLOAD_NET_PREFIX=24\n\
                      KLDLOAD_NET_GW=192.168.1.1\nKLDLOAD_NET_DNS=1.1.1.1,8.8.8.8\n";

#[test]
fn static_network_from_kldload_keys() {
    let p = built(STATIC, SERVER);
    assert_eq!(
        p.config.ip,
        IpConfig::Static(StaticIp {
            address: Ipv4Addr::new(192, 168, 1, 100),
            prefix: 24,
            gateway: Some(Ipv4Addr::new(192, 168, 1, 1)),
            hostname: None,
            device: Some(Device::Mac(Mac::parse("52:54:00:ab:cd:ef").unwrap())),
            dns: vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)],
        })
    );
    assert_eq!(by(&p, "ip").1.as_deref(), Some("KLDLOAD_NET_METHOD"));
    assert_eq!(p.sources["ip.address"].origin.line, Some(3));
    assert_eq!(p.sources["ip.device"].origin.line, Some(2));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn static_network_defaults_and_forms() {
    let p = built(
        "KLDLOAD_NET_METHOD=STATIC\nKLDLOAD_NET_IP=10.1.2.3\nKLDLOAD_NET_IFACE=eth1\nKLDLOAD_NET_DNS='9.9.9.9, 1.1.1.1'",
        SERVER,
    );
    let IpConfig::Static(s) = &p.config.ip else {
        panic!("{:?}", p.config.ip)
    };
    // kldload's default prefix, no gateway, an interface by name, a spaced DNS list.
    assert_eq!(s.prefix, 24);
    assert_eq!(s.gateway, None);
    assert_eq!(s.device, Some(Device::Name("eth1".into())));
    assert_eq!(s.dns.len(), 2);
    assert_eq!(p.sources["ip.prefix"].origin.from, Layer::Default);
    // CIDR in the address sets the prefix.
    let p = built(
        "KLDLOAD_NET_METHOD=static\nKLDLOAD_NET_IP=10.1.2.3/16\n",
        SERVER,
    );
    let IpConfig::Static(s) = &p.config.ip else {
        panic!()
    };
    assert_eq!(s.prefix, 16);
    assert_eq!(by(&p, "ip.prefix").1.as_deref(), Some("KLDLOAD_NET_IP"));
}

#[test]
fn static_without_an_address_names_kldload_net_ip() {
    let e = error(
        "KLDLOAD_NET_METHOD=static\nKLDLOAD_NET_GW=10.0.0.1\n",
        SERVER,
    );
    assert_eq!(e.key, "KLDLOAD_NET_IP");
    assert_eq!(
        e.to_string(),
        "KLDLOAD_NET_IP: is required when KLDLOAD_NET_METHOD=static \
         (KLDLOAD_NET_METHOD in /etc/kldload/autoinstall.env line 1)"
    );
}

#[test]
fn bad_network_values_are_fatal_naming_the_key() {
    let cases = [
        (
            "KLDLOAD_NET_METHOD=manual",
            "KLDLOAD_NET_METHOD",
            "use dhcp or static",
        ),
        (
            "KLDLOAD_NET_IP=10.0.0.300",
            "KLDLOAD_NET_IP",
            "not an IPv4 address",
        ),
        (
            "KLDLOAD_NET_IP=127.0.0.1",
            "KLDLOAD_NET_IP",
            "cannot be a host address",
        ),
        ("KLDLOAD_NET_IP=10.0.0.1/33", "KLDLOAD_NET_IP", "0-32"),
        ("KLDLOAD_NET_PREFIX=33", "KLDLOAD_NET_PREFIX", "0-32"),
        ("KLDLOAD_NET_PREFIX=-1", "KLDLOAD_NET_PREFIX", "0-32"),
        ("KLDLOAD_NET_PREFIX=+8", "KLDLOAD_NET_PREFIX", "0-32"),
        (
            "KLDLOAD_NET_GW=gateway",
            "KLDLOAD_NET_GW",
            "not an IPv4 address",
        ),
        (
            "KLDLOAD_NET_DNS=1.1.1.1,dns.example",
            "KLDLOAD_NET_DNS",
            "\"dns.example\" in",
        ),
        (
            "KLDLOAD_NET_IFACE=eth/0",
            "KLDLOAD_NET_IFACE",
            "interface name nor a MAC",
        ),
    ];
    for (line, key, what) in cases {
        // Static or not: a bad value of a mapped key is FATAL.
        let e = error(&format!("KLDLOAD_NET_METHOD=static\n{line}\n"), SERVER);
        assert_eq!(e.key, key, "{line}: {e}");
        assert!(e.problem.contains(what), "{line}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{key} (/etc/kldload/autoinstall.env line 2): ")),
            "{e}"
        );
    }
    let e = error(
        "KLDLOAD_NET_METHOD=static\nKLDLOAD_NET_IP=10.0.0.5/16\nKLDLOAD_NET_PREFIX=24\n",
        SERVER,
    );
    assert_eq!(e.key, "KLDLOAD_NET_PREFIX");
    assert!(e.problem.contains("disagrees with the /16"), "{e}");
}

#[test]
fn network_keys_merge_one_by_one_across_sources() {
    // The initrd carries the site's gateway; each machine's file only its address.
    let mut b = builder(
        "KLDLOAD_NET_METHOD=static\nKLDLOAD_NET_GW=10.0.0.1\nKLDLOAD_NET_PREFIX=16\n",
        &format!("{SERVER} kldload.net-ip=10.0.9.9 kldload.net_iface=eth0"),
    );
    let p = b
        .merge_url_answers(URL, b"KLDLOAD_NET_IP=10.0.5.5\n")
        .unwrap();
    let IpConfig::Static(s) = &p.config.ip else {
        panic!()
    };
    // kldload.net-ip (command line) beats the URL file.
    assert_eq!(s.address, Ipv4Addr::new(10, 0, 9, 9));
    assert_eq!(s.gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(s.prefix, 16);
    assert_eq!(s.device, Some(Device::Name("eth0".into())));
    assert_eq!(
        by(&p, "ip.address"),
        (Layer::KldloadCmdline, Some("kldload.net-ip".into()))
    );
    assert_eq!(by(&p, "ip.gateway").0, Layer::InitrdAnswers);
}

#[test]
fn dhcp_ignores_static_only_keys_with_a_warning() {
    let p = built(
        "KLDLOAD_NET_METHOD=dhcp\nKLDLOAD_NET_IFACE=enp1s0\nKLDLOAD_NET_IP=10.0.0.5\nKLDLOAD_NET_DNS=1.1.1.1\n",
        SERVER,
    );
    assert_eq!(p.config.ip, IpConfig::Dhcp { device: None });
    assert_eq!(
        p.warnings,
        vec![
            "KLDLOAD_NET_IFACE (/etc/kldload/autoinstall.env line 2), \
             KLDLOAD_NET_IP (/etc/kldload/autoinstall.env line 3) ignored: \
             they apply only with KLDLOAD_NET_METHOD=static"
                .to_string()
        ]
    );
    // kldload's default method is dhcp.
    let p = built("KLDLOAD_NET_IP=10.0.0.5\n", SERVER);
    assert_eq!(p.config.ip, IpConfig::Dhcp { device: None });
    assert_eq!(p.warnings.len(), 1);
}

#[test]
fn ip_on_the_cmdline_overrides_kldload_network_keys() {
    let p = built(STATIC, &format!("{SERVER} ip=dhcp"));
    assert_eq!(p.config.ip, IpConfig::Dhcp { device: None });
    assert_eq!(by(&p, "ip"), (Layer::Cmdline, Some("ip".into())));
    assert!(
        p.warnings[0].starts_with("ip= on the kernel command line overrides KLDLOAD_NET_METHOD"),
        "{:?}",
        p.warnings
    );
    // Overridden as a whole, so a bad baked value does not stop the install.
    let p = built(
        "KLDLOAD_NET_METHOD=static\nKLDLOAD_NET_IP=10.0.0.300\n",
        &format!("{SERVER} ip=dhcp"),
    );
    assert_eq!(p.config.ip, IpConfig::Dhcp { device: None });
}

#[test]
fn not_applicable_keys_are_listed_once_by_name() {
    let mut b = builder(
        "KLDLOAD_DISTRO=debian\nKLDLOAD_PROFILE=server\nKLDLOAD_PASSWORD=x\nKLDLOAD_EXPORT_SCP_HOST=h\n",
        &format!("{SERVER} kldload.profile=core kldload.zfs_encrypt=1"),
    );
    let p = b
        .merge_iso_answers(ISO, b"KLDLOAD_TIMEZONE=UTC\nKLDLOAD_DISTRO=centos\n")
        .unwrap();
    let na: Vec<&String> = p
        .warnings
        .iter()
        .filter(|w| w.contains("not applicable"))
        .collect();
    assert_eq!(
        na,
        vec![
            "not applicable to an image install, ignored: KLDLOAD_DISTRO, \
             KLDLOAD_EXPORT_SCP_HOST, KLDLOAD_PASSWORD, KLDLOAD_PROFILE, KLDLOAD_TIMEZONE, \
             KLDLOAD_ZFS_ENCRYPT"
        ]
    );
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
}

#[test]
fn unknown_and_foreign_keys_are_warned_each() {
    let p = built(
        "KLDLOAD_FROB=1\nZE_COLOUR=blue\nHOME=/root\nKLDLOAD_DISK=/dev/vda\n",
        &format!("{SERVER} kldload.frob=2 ze.colour=red"),
    );
    assert_eq!(
        p.warnings,
        vec![
            "unknown key KLDLOAD_FROB (/etc/kldload/autoinstall.env line 1) ignored",
            "unknown key ZE_COLOUR (/etc/kldload/autoinstall.env line 2) ignored",
            "HOME (/etc/kldload/autoinstall.env line 3) is neither a KLDLOAD_ nor a ZE_ key; ignored",
            "unknown key kldload.frob ignored",
            "unknown key ze.colour ignored",
        ]
    );
    assert_eq!(p.config.target.as_deref(), Some("/dev/vda"));
}

#[test]
fn a_bare_kldload_parameter_needs_a_value() {
    let e = error("", &format!("{SERVER} kldload.disk"));
    assert_eq!(e.to_string(), "kldload.disk: needs a value (key=value)");
}

#[test]
fn cross_key_rules_wait_for_a_pending_url_file() {
    // The per-machine file may name the server; until it arrives, that is no error.
    let mut b = builder("", "kldload.answers=http://10.0.2.2/a.env");
    assert!(b.url_answers_pending());
    let p = b.build().unwrap();
    assert_eq!(p.config.server, None);
    let p = b.merge_url_answers(URL, b"ZE_SERVER=10.0.2.9\n").unwrap();
    assert_eq!(p.config.server, Some(Ipv4Addr::new(10, 0, 2, 9)));
    assert!(!b.url_answers_pending());
    // A file that does not supply it: now it is FATAL.
    let e = b.merge_url_answers(URL, b"ZE_IMAGE=x.img\n").unwrap_err();
    assert_eq!(e.to_string(), "ze.server: is required when ze.source=http");
}

#[test]
fn auto_needs_a_server_now_and_settles_when_no_file_is_found() {
    let e = error(
        "KLDLOAD_ANSWERS=auto\n",
        "ze.source=iso ze.media-id=0123456789abcdef0123456789abcdef",
    );
    assert_eq!(e.key, "kldload.answers");
    assert!(e.problem.contains("ze.server"), "{e}");
    // With a server, auto is pending until it settles; then every rule is checked.
    let mut b = builder("KLDLOAD_ANSWERS=auto\n", &format!("{SERVER} ze.source=iso"));
    assert_eq!(b.build().unwrap().config.answers, Some(Answers::Auto));
    let e = b.no_url_answers().unwrap_err();
    assert_eq!(e.key, "ze.media-id");
}

#[test]
fn a_fetched_file_cannot_name_another() {
    let mut b = builder("KLDLOAD_ANSWERS=auto\n", SERVER);
    let p = b
        .merge_url_answers(URL, b"KLDLOAD_ANSWERS=http://elsewhere/x.env\n")
        .unwrap();
    assert_eq!(p.config.answers, Some(Answers::Auto));
    assert_eq!(
        p.warnings,
        vec![format!(
            "KLDLOAD_ANSWERS ({URL} line 1) ignored: a fetched answers file cannot name another"
        )]
    );
}

#[test]
fn sources_map_in_json() {
    let p = built(
        "KLDLOAD_DISK=/dev/vda\n",
        &format!("{SERVER} kldload.hostname=n1"),
    );
    let j = serde_json::to_value(&p.sources).unwrap();
    assert_eq!(
        j["target"],
        serde_json::json!({"from": "initrd-answers", "file": INITRD, "line": 1, "key": "KLDLOAD_DISK"})
    );
    assert_eq!(
        j["server"],
        serde_json::json!({"from": "cmdline", "key": "ze.server"})
    );
    assert_eq!(
        j["hostname"],
        serde_json::json!({"from": "kldload-cmdline", "key": "kldload.hostname"})
    );
    assert_eq!(j["port"], serde_json::json!({"from": "default"}));
    // Every field of the configuration has a source.
    let config = serde_json::to_value(&p.config).unwrap();
    for field in config.as_object().unwrap().keys() {
        assert!(j.get(field).is_some(), "no source for {field}");
    }
    assert_eq!(p.config.source, Source::Http);
}

/// The password's value must not surface anywhere: not in warnings, errors, JSON or
/// Debug output, whatever else is wrong with the file.
#[test]
fn password_value_is_never_printed() {
    let secret = "hunter2-$(reboot)";
    let file = format!(
        "KLDLOAD_PASSWORD='{secret}'\nKLDLOAD_ZFS_PASSPHRASE='{secret}'\nKLDLOAD_DISK=/dev/vda\n\
         KLDLOAD_PASSWORD=\"{secret}\"\n"
    );
    let mut b = builder(&file, &format!("{SERVER} kldload.password={secret}"));
    let p = b.build().unwrap();
    let texts = [
        format!("{b:?}"),
        format!("{p:?}"),
        serde_json::to_string(&p).unwrap(),
        p.warnings.join("\n"),
    ];
    for t in &texts {
        assert!(!t.contains("hunter2"), "{t}");
    }
    assert!(p.warnings.iter().any(|w| w.contains("KLDLOAD_PASSWORD")));
    // An error elsewhere in the same stack.
    let e = b
        .merge_url_answers(
            URL,
            format!("KLDLOAD_PASSWORD={secret}\nZE_PORT=x\n").as_bytes(),
        )
        .unwrap_err();
    assert!(!e.to_string().contains("hunter2") && !format!("{e:?}").contains("hunter2"));
    // A syntax error on the password line itself.
    let e = b
        .merge_iso_answers(ISO, b"KLDLOAD_PASSWORD=\"hunter2\n")
        .unwrap_err();
    assert!(!e.to_string().contains("hunter2") && !format!("{e:?}").contains("hunter2"));
    // Secrets we do map keep their own redaction.
    let mut b = builder(&format!("ZE_SHELL_AUTH={}\n", "c".repeat(64)), SERVER);
    let p = b.build().unwrap();
    for t in [
        format!("{b:?}"),
        format!("{p:?}"),
        serde_json::to_string(&p).unwrap(),
    ] {
        assert!(!t.contains(&"c".repeat(64)), "{t}");
    }
    let _ = &mut b;
}

#[test]
fn build_keys_applies_each_key_alone_and_keeps_each_error() {
    let b = builder(
        "ZE_SOURCE=iso\nZE_MEDIA_ID=0123456789abcdef0123456789abcdef\n",
        "ze.port=0 ze.target=/dev/sda1 ze.wait=5 ip=bogus",
    );
    assert!(b.build().is_err());
    let (c, errors) = b.build_keys(&["ze.source", "ze.port", "ze.target", "ze.wait", "ip"]);
    assert_eq!(c.source, Source::Iso);
    assert_eq!(c.wait, 5);
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["ze.port", "ze.target"]);
    // Keys not asked for (media-id, ip) are neither applied nor checked.
    assert_eq!(c.media_id, None);
}
