//! `ze-pack pxe` as a command: the tree's layout, how images get in (never re-encoded),
//! sidecars that `sha256sum -c` accepts, the image boot.ipxe names, and configs that
//! nginx and dnsmasq themselves accept.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    /// A kernel, an initrd, a database, two images in `imgs/` and an iPXE directory.
    fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("vmlinuz"), b"kernel bytes").unwrap();
        std::fs::write(p.join("initrd.img.gz"), b"initrd bytes").unwrap();
        std::fs::write(p.join("db.zefs"), b"database bytes").unwrap();
        std::fs::create_dir(p.join("imgs")).unwrap();
        std::fs::write(p.join("imgs/ze-20260101.img"), vec![1u8; 70_000]).unwrap();
        std::fs::write(p.join("imgs/ze-20260202.img"), vec![2u8; 80_000]).unwrap();
        std::fs::write(p.join("imgs/notes.txt"), b"not an image").unwrap();
        std::fs::create_dir(p.join("ipxe")).unwrap();
        std::fs::write(p.join("ipxe/undionly.kpxe"), b"bios ipxe").unwrap();
        std::fs::write(p.join("ipxe/ipxe.efi"), b"efi ipxe").unwrap();
        Fx { dir }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn pack(&self, extra: &[&str]) -> Output {
        let p = |r: &str| self.p(r).display().to_string();
        Command::new(env!("CARGO_BIN_EXE_ze-pack"))
            .arg("pxe")
            .args(["--kernel", &p("vmlinuz"), "--initrd", &p("initrd.img.gz")])
            .args(["--database", &p("db.zefs"), "--ipxe-dir", &p("ipxe")])
            .args(["--server", "10.9.8.7", "--out", &p("tree")])
            .args(extra)
            .output()
            .unwrap()
    }

    fn ok(&self, extra: &[&str]) -> String {
        let o = self.pack(extra);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        err
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.p(rel)).unwrap()
    }
}

/// A prerequisite the host lacks: skip locally, fail under CI=true.
fn have(cmd: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{cmd} is required under CI=true (make deps installs it)"
        );
        eprintln!("SKIP: {cmd} not installed");
    }
    ok
}

fn ino(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

#[test]
fn the_tree_has_every_file_the_chain_asks_for() {
    let fx = Fx::new();
    let imgs = fx.p("imgs").display().to_string();
    fx.ok(&["--image", &imgs]);
    for f in [
        "install/boot/vmlinuz",
        "install/boot/initrd.img.gz",
        "install/boot/boot.ipxe",
        "install/image/ze-20260101.img",
        "install/image/ze-20260101.img.sha256",
        "install/image/ze-20260202.img",
        "install/image/ze-20260202.img.sha256",
        "install/database.zefs",
        "tftp/undionly.kpxe",
        "tftp/ipxe.efi",
        "dnsmasq.conf",
        "dnsmasq-proxy.conf",
        "dhcpd.conf",
        "nginx.conf",
    ] {
        assert!(fx.p(&format!("tree/{f}")).is_file(), "{f} missing");
    }
    assert!(!fx.p("tree/install/image/notes.txt").exists());
    assert_eq!(fx.read("tree/install/database.zefs"), "database bytes");
    assert_eq!(fx.read("tree/tftp/ipxe.efi"), "efi ipxe");
    // The newest timestamped .img, on the default port: no ze.port.
    let script = fx.read("tree/install/boot/boot.ipxe");
    assert!(
        script.contains("ze.server=10.9.8.7 ze.image=ze-20260202.img "),
        "{script}"
    );
    assert!(!script.contains("ze.port"), "{script}");
    assert!(script.contains("set ze-base http://10.9.8.7/install/boot\n"));
    let dns = fx.read("tree/dnsmasq.conf");
    assert!(dns.contains("dhcp-boot=tag:ipxe,http://10.9.8.7/install/boot/boot.ipxe\n"));
    let root = std::fs::canonicalize(fx.p("tree")).unwrap();
    assert!(dns.contains(&format!("tftp-root={}/tftp\n", root.display())));
    let ngx = fx.read("tree/nginx.conf");
    assert!(ngx.contains("listen 10.9.8.7:80;"));
    assert!(ngx.contains(&format!("root {};", root.display())));
}

#[test]
fn images_are_hard_linked_copied_or_symlinked_never_reencoded() {
    let fx = Fx::new();
    let img = fx.p("imgs/ze-20260101.img");
    let arg = img.display().to_string();
    let served = fx.p("tree/install/image/ze-20260101.img");

    let err = fx.ok(&["--image", &arg]);
    assert_eq!(ino(&served), ino(&img), "not a hard link");
    assert!(err.contains("hard link"), "{err}");

    fx.ok(&["--image", &arg, "--copy"]);
    assert_ne!(ino(&served), ino(&img));
    assert_eq!(
        std::fs::read(&served).unwrap(),
        std::fs::read(&img).unwrap()
    );

    fx.ok(&["--image", &arg, "--symlink"]);
    let link = std::fs::read_link(&served).unwrap();
    assert_eq!(link, std::fs::canonicalize(&img).unwrap());
}

#[test]
fn sidecars_are_sha256sum_lines_of_the_served_bytes() {
    if !have("sha256sum") {
        return;
    }
    let fx = Fx::new();
    let imgs = fx.p("imgs").display().to_string();
    fx.ok(&["--image", &imgs]);
    let o = Command::new("sha256sum")
        .args(["-c", "ze-20260101.img.sha256", "ze-20260202.img.sha256"])
        .current_dir(fx.p("tree/install/image"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let line = fx.read("tree/install/image/ze-20260101.img.sha256");
    assert!(line.ends_with("  ze-20260101.img\n"), "{line:?}");
    assert_eq!(line.split_whitespace().next().unwrap().len(), 64);
}

#[test]
fn a_source_sidecar_that_disagrees_stops_the_pack() {
    let fx = Fx::new();
    std::fs::write(
        fx.p("imgs/ze-20260101.img.sha256"),
        format!("{}  ze-20260101.img\n", "0".repeat(64)),
    )
    .unwrap();
    let imgs = fx.p("imgs").display().to_string();
    let o = fx.pack(&["--image", &imgs]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("but") && err.contains("hashes to"), "{err}");
}

#[test]
fn name_port_and_cmdline_reach_boot_ipxe() {
    let fx = Fx::new();
    let imgs = fx.p("imgs").display().to_string();
    fx.ok(&[
        "--image",
        &imgs,
        "--name",
        "ze-20260101.img",
        "--port",
        "8080",
        "--cmdline",
        "panic=-1 ze.stall-timeout=15",
    ]);
    let script = fx.read("tree/install/boot/boot.ipxe");
    assert!(
        script.contains(
            "${ze-console} ze.server=10.9.8.7 ze.port=8080 ze.image=ze-20260101.img panic=-1 ze.stall-timeout=15 || goto failed"
        ),
        "{script}"
    );
    assert!(script.contains("set ze-base http://10.9.8.7:8080/install/boot\n"));
    assert!(fx.read("tree/nginx.conf").contains("listen 10.9.8.7:8080;"));
}

#[test]
fn a_bad_cmdline_value_fails_at_pack_time() {
    let fx = Fx::new();
    let imgs = fx.p("imgs").display().to_string();
    let o = fx.pack(&["--image", &imgs, "--cmdline", "ze.wait=soon"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ze.wait: \"soon\""), "{err}");
    assert!(!fx.p("tree/install/boot/boot.ipxe").exists());
}

#[test]
fn a_second_pack_leaves_no_stale_image_behind() {
    let fx = Fx::new();
    let imgs = fx.p("imgs").display().to_string();
    fx.ok(&["--image", &imgs]);
    std::fs::create_dir_all(fx.p("tree/install/answers")).unwrap();
    std::fs::write(fx.p("tree/install/answers/default.env"), "X=1\n").unwrap();
    let one = fx.p("imgs/ze-20260101.img").display().to_string();
    fx.ok(&["--image", &one]);
    assert!(!fx.p("tree/install/image/ze-20260202.img").exists());
    assert!(
        fx.read("tree/install/boot/boot.ipxe")
            .contains("ze.image=ze-20260101.img ")
    );
    // Operator content outside the three generated directories stays.
    assert_eq!(fx.read("tree/install/answers/default.env"), "X=1\n");
}

#[test]
fn missing_ipxe_binaries_are_named_and_no_tftp_skips_them() {
    let fx = Fx::new();
    std::fs::remove_file(fx.p("ipxe/ipxe.efi")).unwrap();
    let imgs = fx.p("imgs").display().to_string();
    let o = fx.pack(&["--image", &imgs]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ipxe.efi is missing"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_ze-pack"))
        .arg("pxe")
        .args(["--kernel", fx.p("vmlinuz").to_str().unwrap()])
        .args(["--initrd", fx.p("initrd.img.gz").to_str().unwrap()])
        .args(["--image", &imgs, "--server", "10.9.8.7", "--no-tftp"])
        .args(["--out", fx.p("tree2").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!fx.p("tree2/tftp").exists());
    assert!(!fx.read("tree2/dnsmasq.conf").contains("enable-tftp"));
    // No --database: said loudly, since every install would stop at the 404.
    assert!(err.contains("no --database"), "{err}");
}

#[test]
fn two_images_with_one_name_are_refused() {
    let fx = Fx::new();
    std::fs::create_dir(fx.p("more")).unwrap();
    std::fs::write(fx.p("more/ze-20260101.img"), b"other").unwrap();
    let o = fx.pack(&[
        "--image",
        fx.p("imgs").to_str().unwrap(),
        "--image",
        fx.p("more").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("two images are named"));
}

#[test]
fn nginx_accepts_the_generated_config() {
    if !have("nginx") {
        return;
    }
    let fx = Fx::new();
    fx.ok(&["--image", fx.p("imgs").to_str().unwrap()]);
    let state = fx.p("state");
    std::fs::create_dir(&state).unwrap();
    let o = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(format!("{}/", state.display()))
        .arg("-c")
        .arg(fx.p("tree/nginx.conf"))
        .args(["-e", "stderr"])
        .output()
        .unwrap();
    // `nginx -t` also binds the listen address, which (10.9.8.7) this machine does not
    // have; the whole file has been parsed by then.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("syntax is ok"), "{err}");
    for l in err.lines().filter(|l| l.contains("[emerg]")) {
        assert!(l.contains("bind() to 10.9.8.7:80 failed"), "{err}");
    }
}

#[test]
fn dnsmasq_accepts_the_generated_configs() {
    if !have("dnsmasq") {
        return;
    }
    let fx = Fx::new();
    fx.ok(&["--image", fx.p("imgs").to_str().unwrap()]);
    for (conf, range) in [
        ("dnsmasq.conf", "--dhcp-range=10.9.8.100,10.9.8.200"),
        ("dnsmasq-proxy.conf", "--dhcp-range=10.9.8.0,proxy"),
    ] {
        let o = Command::new("dnsmasq")
            .arg("--test")
            .arg(format!("--conf-file={}", fx.p("tree").join(conf).display()))
            .arg(range)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{conf}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn dhcpd_accepts_the_generated_snippet() {
    if !have("dhcpd") {
        return;
    }
    let fx = Fx::new();
    fx.ok(&["--image", fx.p("imgs").to_str().unwrap()]);
    let snippet = fx.read("tree/dhcpd.conf");
    let conf = fx.p("full-dhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "subnet 10.9.8.0 netmask 255.255.255.0 {{\n  range 10.9.8.100 10.9.8.200;\n{snippet}}}\n"
        ),
    )
    .unwrap();
    // -t: test the configuration file only (dhcpd(8)).
    let o = Command::new("dhcpd")
        .args(["-4", "-t", "-cf"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
