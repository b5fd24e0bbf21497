//! The real PXE chain, end to end, with the programs operators run: `ze-pack pxe` writes
//! the tree; dnsmasq (DHCP + TFTP) and nginx (Debian's nginx-light) serve it with the
//! configurations it generated, on a bridge in a network namespace the test creates
//! (10.77.0.1/24 and the guests' tap devices, nothing else). QEMU guests boot with
//! `-boot n`: firmware → (TFTP iPXE →) DHCP as iPXE → boot.ipxe, kernel and initrd over
//! HTTP → our `/init` DHCPs from dnsmasq and installs from nginx, then reboots.
//!
//! Judged from outside: the disk image's bytes equal the image the tree names (the
//! newer of two, so the "lexicographically last .img" rule is checked too) except
//! partition 4, `debugfs` reads the injected database from it, nginx's access log shows
//! the requests (and the 206 of a resumed download), dnsmasq's log the TFTP transfers.
//!
//! Root + QEMU tier: `make e2e` runs these with `--ignored`.

use qemu_harness::fixture::{Part, gpt_image, read_ext4_file, same_except};
use qemu_harness::pxe::{self, Access, Segment, TreeSpec};
use qemu_harness::qemu::{DriveKind, Firmware, Nic, OVMF_CODE, Running, Vm, blank_disk};
use qemu_harness::{artifacts, kernel, prereq, rundir::RunDir};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DB: &[u8] = b"ze database for PXE installs: users, keys, bootstrap config\n";
/// Firmware, iPXE, the kernel and a 48 MiB install under TCG take about a minute alone;
/// the bound leaves room for two guests and another test sharing two cores.
const LIMIT: Duration = Duration::from_secs(420);
const OLD: &str = "ze-20260101-000000.img";
const NEW: &str = "ze-20260617-160000.img";

fn ready(uefi: bool) -> bool {
    prereq::require_root()
        && prereq::require(&[
            "ip",
            "qemu-system-x86_64",
            "dnsmasq",
            "nginx",
            "apt-get",
            "dpkg",
            "mkfs.ext4",
            "debugfs",
        ])
        && prereq::require_path(
            Path::new("/usr/lib/ipxe/qemu/efi-virtio.rom"),
            "the NIC's iPXE ROM, Debian's ipxe-qemu",
        )
        && (!uefi || prereq::require_path(Path::new(OVMF_CODE), "Debian's ovmf"))
}

/// A tree served on a segment: two images (the newer must be the one installed).
struct Pxe {
    seg: Segment,
    dir: RunDir,
    image: PathBuf,
    p4: Part,
    guests: u8,
}

/// Who answers DHCP on the segment, each with the tree's generated configuration.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dhcp {
    /// dnsmasq.conf: dnsmasq is the DHCP and TFTP server.
    Dnsmasq,
    /// ISC dhcpd hands out the addresses; dnsmasq-proxy.conf adds the boot menus.
    ProxyBesideIsc,
    /// ISC dhcpd with the dhcpd.conf snippet; dnsmasq serves TFTP only.
    IscAndTftpOnly,
}

/// Packs the tree with `cmdline` and starts the DHCP side and nginx. `limit_rate` turns
/// on the generated nginx.conf's commented-out per-connection cap.
fn serve(name: &str, cmdline: &str, limit_rate: Option<&str>, dhcp: Dhcp) -> Pxe {
    let dir = RunDir::new(name);
    let k = kernel::stock().unwrap();
    let init = artifacts::ze_init().unwrap();
    let initrd = artifacts::initrd(&dir.join("initrd.img.gz"), &init, &k, &[]).unwrap();
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    gpt_image(&images.join(OLD), 48, 3).unwrap();
    let p4 = gpt_image(&images.join(NEW), 48, 11).unwrap();
    let db = dir.join("database.zefs");
    std::fs::write(&db, DB).unwrap();
    let tree = dir.join("tree");
    let report = pxe::pack(
        &TreeSpec {
            kernel: k.vmlinuz.clone(),
            initrd,
            images: vec![images.clone()],
            database: Some(db),
            server: pxe::SERVER,
            port: 80,
            cmdline: cmdline.into(),
            ipxe_dir: Some(pxe::ipxe_binaries().unwrap()),
        },
        &tree,
    )
    .unwrap();
    assert!(report.contains(&format!("(ze.image={NEW})")), "{report}");
    if let Some(rate) = limit_rate {
        let conf = tree.join("nginx.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let knob = "# limit_rate 50m;";
        assert!(text.contains(knob), "{text}");
        std::fs::write(&conf, text.replace(knob, &format!("limit_rate {rate};"))).unwrap();
    }
    let mut seg = Segment::new("pxe", &tree, &dir.join("state"), 80).unwrap();
    match dhcp {
        Dhcp::Dnsmasq => seg.start_dnsmasq().unwrap(),
        Dhcp::ProxyBesideIsc => {
            seg.start_isc_dhcpd("").unwrap();
            seg.start_dnsmasq_proxy().unwrap();
        }
        Dhcp::IscAndTftpOnly => {
            let snippet = std::fs::read_to_string(tree.join("dhcpd.conf")).unwrap();
            seg.start_isc_dhcpd(&snippet).unwrap();
            seg.start_tftp_only().unwrap();
        }
    }
    seg.start_nginx().unwrap();
    Pxe {
        seg,
        image: images.join(NEW),
        dir,
        p4,
        guests: 0,
    }
}

/// A guest on its own tap device with a blank 64 MiB disk, booting from the network.
/// `rom: false` takes the NIC's iPXE ROM away (OVMF then uses its own PXE client).
fn guest(p: &mut Pxe, firmware: Firmware, rom: bool, input: bool) -> (Running, PathBuf) {
    let i = p.guests;
    p.guests += 1;
    let tap = p.seg.add_tap().unwrap();
    let run_dir = p.dir.join(&format!("guest{i}"));
    std::fs::create_dir_all(&run_dir).unwrap();
    let disk = run_dir.join("vda.img");
    blank_disk(&disk, 64 << 20).unwrap();
    let mut nic = Nic::tap(&tap, &format!("52:54:00:77:00:{:02x}", i + 1));
    if !rom {
        nic.model = "virtio-net-pci,romfile=".into();
    }
    let mut vm = Vm::netboot()
        .firmware(firmware)
        .in_netns(&p.seg.ns)
        .drive(&disk, DriveKind::Virtio)
        .nic(nic);
    if input {
        vm = vm.interactive_serial(0);
    }
    (vm.start(&run_dir).unwrap(), disk)
}

/// Waits for the DONE marker and for the guest's reboot (QEMU exits under -no-reboot);
/// returns the serial log and the seconds from QEMU's start to DONE.
fn finish(run: &mut Running) -> (String, f64) {
    run.wait_for(0, "[ze-install] DONE image=", LIMIT).unwrap();
    let secs = run.elapsed().as_secs_f64();
    let st = run.wait_exit(Duration::from_secs(120)).unwrap();
    assert!(st.success(), "QEMU exit {st}");
    let log = run.serial(0);
    assert!(
        log.contains("reboot: Restarting system"),
        "no reboot:\n{log}"
    );
    assert!(!log.contains("FATAL"), "{log}");
    (log, secs)
}

/// The disk holds the newer image except partition 4, which holds the database.
fn judge_disk(p: &Pxe, disk: &Path, log: &str) {
    same_except(disk, &p.image, p.p4).unwrap();
    let db = read_ext4_file(disk, p.p4, "/ze/database.zefs").unwrap();
    assert_eq!(db.as_deref(), Some(DB), "{log}");
    let done = log
        .lines()
        .find(|l| l.contains("[ze-install] DONE"))
        .unwrap();
    assert!(done.contains(&format!("image={NEW} ")), "{done}");
    assert!(done.contains(&format!("bytes={}", 48u64 << 20)), "{done}");
    assert!(!done.contains("verified=no"), "{done}");
}

fn requests(p: &Pxe, path: &str) -> Vec<Access> {
    pxe::parse_access_log(&p.seg.access_log())
        .into_iter()
        .filter(|a| a.path == path)
        .collect()
}

/// Every file of the chain came from nginx: script, kernel, initrd, sidecar, database,
/// and the whole image (by `client`); the older image never.
fn judge_chain(p: &Pxe, client_image_gets: usize) {
    let log = p.seg.access_log();
    for path in [
        "/install/boot/boot.ipxe",
        "/install/boot/vmlinuz",
        "/install/boot/initrd.img.gz",
        &format!("/install/image/{NEW}.sha256"),
        "/install/database.zefs",
    ] {
        assert!(
            requests(p, path).iter().any(|a| a.status == 200),
            "no 200 for {path} in nginx's log:\n{log}"
        );
    }
    let full: Vec<Access> = requests(p, &format!("/install/image/{NEW}"))
        .into_iter()
        .filter(|a| a.status == 200 && a.bytes == 48 << 20)
        .collect();
    assert_eq!(full.len(), client_image_gets, "{log}");
    assert!(
        requests(p, &format!("/install/image/{OLD}")).is_empty(),
        "{log}"
    );
}

/// SeaBIOS runs the NIC's iPXE ROM, which says "iPXE" in DHCP: dnsmasq answers with the
/// HTTP boot.ipxe straight away, no TFTP.
#[test]
#[ignore = "root + QEMU tier: run by make e2e"]
fn pxe_ipxe_rom_installs_the_newest_image_from_nginx() {
    if !ready(false) {
        return;
    }
    let mut p = serve("pxe_ipxe_rom", "panic=-1", None, Dhcp::Dnsmasq);
    let (mut run, disk) = guest(&mut p, Firmware::Bios, true, false);
    let (log, secs) = finish(&mut run);
    eprintln!("pxe_ipxe_rom: QEMU start to DONE in {secs:.1} s");
    judge_disk(&p, &disk, &log);
    judge_chain(&p, 1);
    assert!(
        log.contains("Filename: http://10.77.0.1/install/boot/boot.ipxe"),
        "{log}"
    );
    // x86 consoles; the BIOS iPXE is a 32-bit build.
    assert!(
        log.contains("ze-install: loading the installer from http://10.77.0.1/install/boot (i386)"),
        "{log}"
    );
    assert!(log.contains("console=tty0 console=ttyS0 ze.server=10.77.0.1 ze.image=ze-20260617-160000.img panic=-1"), "{log}");
    assert!(!log.contains("ttyAMA0"), "{log}");
    // Our /init's own DHCP got its lease from dnsmasq.
    assert!(log.contains("network: using eth0"), "{log}");
    let dns = p.seg.dnsmasq_log();
    assert!(dns.contains("tags: ipxe,"), "{dns}");
    assert!(
        !dns.lines()
            .any(|l| l.contains("dnsmasq-tftp") && l.contains(" sent ")),
        "TFTP used by an iPXE ROM:\n{dns}"
    );
}

/// Firmware that is not iPXE (here the ROM with its user class changed, the only
/// non-iPXE BIOS PXE stack QEMU has): dnsmasq gives it undionly.kpxe by TFTP, which
/// DHCPs again as iPXE and gets the HTTP script: the two-stage chainload.
#[test]
#[ignore = "root + QEMU tier: run by make e2e"]
fn pxe_bios_firmware_chainloads_undionly_by_tftp() {
    if !ready(false) {
        return;
    }
    let mut p = serve("pxe_bios_undionly", "panic=-1", None, Dhcp::Dnsmasq);
    let (mut run, disk) = guest(&mut p, Firmware::Bios, true, true);
    pxe::steer_rom_to_plain_pxe(&mut run, Duration::from_secs(120)).unwrap();
    let (log, secs) = finish(&mut run);
    eprintln!("pxe_bios_undionly: QEMU start to DONE in {secs:.1} s");
    judge_disk(&p, &disk, &log);
    judge_chain(&p, 1);
    assert!(log.contains("Filename: undionly.kpxe"), "{log}");
    assert!(
        log.contains("undionly.kpxe : 74213 bytes [PXE-NBP]") || log.contains("[PXE-NBP]"),
        "{log}"
    );
    assert!(log.contains("using undionly on"), "{log}");
    let dns = p.seg.dnsmasq_log();
    let tftp = format!(
        "sent {}/tftp/undionly.kpxe to 10.77.0.",
        p.seg.tree.canonicalize().unwrap().display()
    );
    assert!(
        dns.contains(&tftp),
        "no TFTP of undionly.kpxe in dnsmasq's log:\n{dns}"
    );
    assert!(dns.contains("user class: PXEClient"), "{dns}");
    assert!(dns.contains("user class: iPXE"), "{dns}");
}

/// UEFI firmware (OVMF) with its own PXE client, the NIC's ROM removed: client
/// architecture 7 gets ipxe.efi by TFTP, which fetches boot.ipxe; the kernel's EFI
/// stub loads the initrd iPXE names on the command line.
#[test]
#[ignore = "root + QEMU tier: run by make e2e"]
fn pxe_uefi_firmware_chainloads_ipxe_efi_by_tftp() {
    if !ready(true) {
        return;
    }
    let mut p = serve("pxe_uefi_ipxe_efi", "panic=-1", None, Dhcp::Dnsmasq);
    let (mut run, disk) = guest(&mut p, Firmware::Uefi, false, false);
    let (log, secs) = finish(&mut run);
    eprintln!("pxe_uefi_ipxe_efi: QEMU start to DONE in {secs:.1} s");
    judge_disk(&p, &disk, &log);
    judge_chain(&p, 1);
    assert!(log.contains("Start PXE over IPv4"), "{log}");
    assert!(log.contains("NBP filename is ipxe.efi"), "{log}");
    assert!(log.contains("(x86_64)"), "{log}");
    assert!(
        log.contains("EFI stub: Loaded initrd from command line option"),
        "{log}"
    );
    let dns = p.seg.dnsmasq_log();
    let tftp = format!(
        "sent {}/tftp/ipxe.efi to 10.77.0.",
        p.seg.tree.canonicalize().unwrap().display()
    );
    assert!(
        dns.contains(&tftp),
        "no TFTP of ipxe.efi in dnsmasq's log:\n{dns}"
    );
    assert!(dns.contains("efi-x86_64"), "{dns}");
}

/// An existing DHCP server (ISC dhcpd) keeps handing out the addresses; dnsmasq as
/// proxy DHCP with dnsmasq-proxy.conf adds only the boot menu, which the iPXE ROM
/// follows to boot.ipxe.
#[test]
#[ignore = "root + QEMU tier: run by make e2e"]
fn pxe_proxy_dhcp_beside_an_existing_dhcp_server() {
    if !ready(false) || !prereq::require(&["dhcpd"]) {
        return;
    }
    let mut p = serve("pxe_proxy_dhcp", "panic=-1", None, Dhcp::ProxyBesideIsc);
    let (mut run, disk) = guest(&mut p, Firmware::Bios, true, false);
    let (log, secs) = finish(&mut run);
    eprintln!("pxe_proxy_dhcp: QEMU start to DONE in {secs:.1} s");
    judge_disk(&p, &disk, &log);
    judge_chain(&p, 1);
    assert!(log.contains("Booting from PXE menu"), "{log}");
    let dns = p.seg.dnsmasq_log();
    assert!(dns.contains("52:54:00:77:00:01 proxy"), "{dns}");
    assert!(
        dns.contains("http://10.77.0.1/install/boot/boot.ipxe"),
        "{dns}"
    );
    // The addresses came from dhcpd alone: dnsmasq offered none.
    assert!(!dns.contains("DHCPOFFER"), "{dns}");
    let dhcpd = p.seg.dhcpd_log();
    assert!(
        dhcpd.contains("DHCPACK on 10.77.0.") && dhcpd.contains("52:54:00:77:00:01"),
        "{dhcpd}"
    );
}

/// ISC dhcpd with the generated dhcpd.conf snippet is the only DHCP server; dnsmasq
/// serves TFTP only. UEFI firmware gets ipxe.efi (option 93 rule), then iPXE gets
/// boot.ipxe (user-class rule).
#[test]
#[ignore = "root + QEMU tier: run by make e2e"]
fn pxe_isc_dhcpd_rules_with_uefi_firmware() {
    if !ready(true) || !prereq::require(&["dhcpd"]) {
        return;
    }
    let mut p = serve("pxe_isc_uefi", "panic=-1", None, Dhcp::IscAndTftpOnly);
    let (mut run, disk) = guest(&mut p, Firmware::Uefi, false, false);
    let (log, secs) = finish(&mut run);
    eprintln!("pxe_isc_uefi: QEMU start to DONE in {secs:.1} s");
    judge_disk(&p, &disk, &log);
    judge_chain(&p, 1);
    assert!(log.contains("NBP filename is ipxe.efi"), "{log}");
    let dns = p.seg.dnsmasq_log();
    let tftp = format!(
        "sent {}/tftp/ipxe.efi to 10.77.0.",
        p.seg.tree.canonicalize().unwrap().display()
    );
    assert!(dns.contains(&tftp), "{dns}");
    assert!(!dns.contains("DHCPOFFER"), "dnsmasq answered DHCP:\n{dns}");
}

/// Two targets net-boot and install at the same time from the same dnsmasq and nginx.
#[test]
#[ignore = "root + QEMU tier: run by make e2e"]
fn pxe_two_targets_install_at_once() {
    if !ready(false) {
        return;
    }
    let mut p = serve("pxe_two_targets", "panic=-1", None, Dhcp::Dnsmasq);
    let (mut a, disk_a) = guest(&mut p, Firmware::Bios, true, false);
    let (mut b, disk_b) = guest(&mut p, Firmware::Bios, true, false);
    let (log_a, secs_a) = finish(&mut a);
    let (log_b, secs_b) = finish(&mut b);
    eprintln!("pxe_two_targets: QEMU start to DONE in {secs_a:.1} s and {secs_b:.1} s");
    judge_disk(&p, &disk_a, &log_a);
    judge_disk(&p, &disk_b, &log_b);
    judge_chain(&p, 2);
    let clients: std::collections::BTreeSet<String> =
        requests(&p, &format!("/install/image/{NEW}"))
            .into_iter()
            .map(|a| a.client)
            .collect();
    assert_eq!(clients.len(), 2, "{clients:?}");
    let leases = std::fs::read_to_string(p.seg.state.join("dnsmasq.leases")).unwrap();
    for mac in ["52:54:00:77:00:01", "52:54:00:77:00:02"] {
        assert!(leases.contains(mac), "{leases}");
    }
}

/// nginx stops in the middle of the image (rate-limited to 2 MiB/s so there is a
/// middle) and comes back 10 s later with the same configuration. The installer's
/// retries (5 s, then 10 s) outlast the gap, and it resumes with Range.
#[test]
#[ignore = "root + QEMU tier: run by make e2e"]
fn pxe_install_resumes_after_nginx_restarts() {
    if !ready(false) {
        return;
    }
    let mut p = serve(
        "pxe_nginx_restart",
        "panic=-1 ze.stall-timeout=15",
        Some("2m"),
        Dhcp::Dnsmasq,
    );
    let (mut run, disk) = guest(&mut p, Firmware::Bios, true, false);
    // The first progress line: the image download is under way.
    run.wait_for(0, &format!("writing {NEW}:"), LIMIT).unwrap();
    let stopped = Instant::now();
    p.seg.stop_nginx().unwrap();
    run.wait_for(0, "retrying in 5 s", Duration::from_secs(60))
        .unwrap();
    // The scenario's gap, not a synchronisation: the restart comes 10 s after the stop.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
    p.seg.start_nginx().unwrap();
    let gap = stopped.elapsed().as_secs_f64();
    let (log, secs) = finish(&mut run);
    eprintln!("pxe_nginx_restart: nginx down for {gap:.1} s; QEMU start to DONE in {secs:.1} s");
    assert!(gap >= 10.0, "{gap}");
    judge_disk(&p, &disk, &log);
    // The attempt 5 s after the stop found nothing listening; the next one resumed.
    assert!(log.contains("retrying in 10 s"), "{log}");
    let resumed: Vec<Access> = requests(&p, &format!("/install/image/{NEW}"))
        .into_iter()
        .filter(|a| a.status == 206)
        .collect();
    assert_eq!(resumed.len(), 1, "{}", p.seg.access_log());
    let range = resumed[0].range.clone().unwrap();
    let at: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{range}"));
    assert!(at > 0 && at < 48 << 20, "{range}");
    assert_eq!(resumed[0].bytes, (48 << 20) - at);
    assert!(log.contains(&format!("resuming at byte {at}")), "{log}");
}

/// Host mode: 16 `ze-init install` at once against nginx on a namespace's loopback, a
/// 256 MiB image each into its own file; every output's bytes are checked.
#[test]
#[ignore = "root tier: network namespace and nginx; run by make e2e"]
fn host_sixteen_installs_at_once_from_nginx() {
    if !(prereq::require_root() && prereq::require(&["ip", "nginx"])) {
        return;
    }
    let dir = RunDir::new("pxe_host_sixteen");
    let r = pxe::host_installs(dir.path(), 16, 256, Duration::from_secs(300)).unwrap();
    let mut s = r.seconds.clone();
    s.sort_by(f64::total_cmp);
    eprintln!(
        "host_sixteen: 16 × 256 MiB in {:.1} s wall; each {:.1}–{:.1} s (median {:.1}), spread max/min {:.2}",
        r.wall,
        r.min(),
        r.max(),
        s[s.len() / 2],
        r.spread()
    );
}

/// nginx's workers run as www-data: the status directory must be theirs to write.
fn status_dir_for_nginx(p: &Pxe) -> PathBuf {
    let dir = p.seg.tree.join("install/status");
    let st = std::process::Command::new("chown")
        .args(["www-data:www-data"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    dir
}

fn read_doc(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Headless Chromium inside the segment's namespace, as an operator's browser on the
/// provisioning network: `--dump-dom` after the page's scripts ran, and a screenshot.
fn chromium(p: &Pxe, url: &str, out: &Path, what: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = p.seg.ns.command("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
        "--window-size=1200,300",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(what)
    .arg(url)
    .current_dir(out);
    let o = qemu_harness::netns::output_within(&mut cmd, Duration::from_secs(90)).unwrap();
    assert!(
        o.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Live status through the real chain: the installer PUTs its document into nginx's
/// status directory, which goes through the stages to `done`; mid-download, headless
/// Chromium loads the status page from nginx and shows the machine's row with a
/// progress bar (DOM checked, screenshot kept in the run directory).
#[test]
#[ignore = "root + QEMU; run by make e2e"]
fn pxe_status_documents_and_page_follow_the_install() {
    if !ready(false) || !prereq::require(&["chromium"]) {
        return;
    }
    // 48 MiB at 3 MB/s: the download lasts long enough to look at.
    let mut p = serve("pxe_status", "", Some("3m"), Dhcp::Dnsmasq);
    let status = status_dir_for_nginx(&p);
    let (mut run, disk) = guest(&mut p, Firmware::Bios, true, false);
    let doc_path = status.join("52-54-00-77-00-01.json");
    let mut seen: Vec<String> = Vec::new();
    let mut dom = None;
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline && !run.serial(0).contains("[ze-install] DONE") {
        if let Some(d) = read_doc(&doc_path) {
            let stage = d["stage"].as_str().unwrap_or("").to_string();
            if seen.last() != Some(&stage) {
                seen.push(stage.clone());
            }
            if stage == "download" && dom.is_none() && d["progress"]["bytes_in"].as_u64() > Some(0)
            {
                let url = format!("http://{}/install/status/index.html", pxe::SERVER);
                let shots = p.dir.join("screenshots");
                std::fs::create_dir_all(&shots).unwrap();
                dom = Some(chromium(&p, &url, &shots, &["--dump-dom"]));
                chromium(&p, &url, &shots, &["--screenshot=status.png"]);
                let png = std::fs::metadata(shots.join("status.png")).unwrap();
                assert!(png.len() > 5_000, "screenshot of {} bytes", png.len());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (log, _) = finish(&mut run);
    judge_disk(&p, &disk, &log);

    let dom = dom.expect("the download was never seen in the status document");
    let row = dom
        .split("<tr class=\"machine ")
        .nth(1)
        .unwrap_or_else(|| panic!("no machine row in the page:\n{dom}"));
    assert!(row.starts_with("download"), "{row}");
    assert!(row.contains("52:54:00:77:00:01"), "{row}");
    let width: u32 = row
        .split("width: ")
        .nth(1)
        .and_then(|w| w.split('%').next())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no progress bar width in {row}"));
    assert!((1..100).contains(&width), "bar at {width}%");
    assert!(row.contains("MB/s"), "{row}");

    // The stages came in order and ended with done.
    let order = ["network", "plan", "download", "verify", "inject", "done"];
    let mut at = 0;
    for s in &seen {
        let i = order
            .iter()
            .position(|o| o == s)
            .unwrap_or_else(|| panic!("stage {s}"));
        assert!(i >= at, "stages out of order: {seen:?}");
        at = i;
    }
    assert!(seen.contains(&"download".to_string()), "{seen:?}");
    // The final report was sent before the reboot.
    let last = read_doc(&doc_path).unwrap();
    assert_eq!(last["stage"], "done", "{seen:?}");
    assert!(
        last["done"]
            .as_str()
            .unwrap()
            .starts_with(&format!("DONE image={NEW}"))
    );
    assert_eq!(last["progress"]["bytes_in"], 48u64 << 20);
    assert_eq!(last["network"]["mac"], "52:54:00:77:00:01");
    let puts = p
        .seg
        .access_log()
        .lines()
        .filter(|l| l.contains("\"PUT /install/status/52-54-00-77-00-01.json"))
        .count();
    assert!(puts >= 3, "{puts} PUTs in nginx's access log");
}

/// A failing install (the sidecar does not match) ends its document with `failed` and
/// the FATAL text, before the recovery console takes over.
#[test]
#[ignore = "root + QEMU; run by make e2e"]
fn pxe_status_reports_a_failed_install() {
    if !ready(false) {
        return;
    }
    let mut p = serve("pxe_status_failed", "", None, Dhcp::Dnsmasq);
    let status = status_dir_for_nginx(&p);
    let sidecar = p.seg.tree.join(format!("install/image/{NEW}.sha256"));
    std::fs::write(&sidecar, format!("{}  {NEW}\n", "5".repeat(64))).unwrap();
    let (mut run, _disk) = guest(&mut p, Firmware::Bios, true, false);
    run.wait_for(0, "FATAL: verify: sha256 mismatch", LIMIT)
        .unwrap();
    let doc_path = status.join("52-54-00-77-00-01.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    let doc = loop {
        match read_doc(&doc_path) {
            Some(d) if d["stage"] == "failed" => break d,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("no failed document: {other:?}"),
        }
    };
    let fatal = doc["fatal"].as_str().unwrap();
    assert!(
        fatal.starts_with("verify: sha256 mismatch: expected 5555"),
        "{fatal}"
    );
    assert!(doc["log"].as_array().unwrap().len() > 5);
    run.kill();
}
