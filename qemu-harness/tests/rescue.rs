//! The recovery console end to end: the stock Debian kernel boots our initrd in QEMU, the
//! install fails (an unreachable server, an ISO boot with no media, an injected fault),
//! and the test drives the console over the guest's serial port like an operator — a
//! unix-socket chardev, expect-style waits with hard timeouts. Judged from outside: the
//! serial text, QEMU's own exit (`-no-reboot` turns the guest's reboot into an exit; the
//! kernel prints `reboot: Restarting system` or `reboot: Power down`) and, for the retry,
//! the disk image's bytes.
//!
//! QEMU tier: `make e2e` runs these with `--ignored`.

use qemu_harness::fixture::{gpt_image, read_ext4_file, same_except, sha256_file};
use qemu_harness::qemu::{DriveKind, Nic, Running, Vm, blank_disk};
use qemu_harness::server::{Body, Faults, Server};
use qemu_harness::{artifacts, kernel, prereq, rundir::RunDir};
use std::time::{Duration, Instant};

/// Boot, module coldplug, DHCP and one failed probe under TCG on a busy machine.
const TO_FATAL: Duration = Duration::from_secs(150);
/// Between two prompts of the console.
const STEP: Duration = Duration::from_secs(30);
/// argon2id of `password` (salt `somesalt`, m=256, t=2, p=1).
const PHC: &str =
    "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";
const TOKEN: &str = "password";
const MEDIA_ID: &str = "0123456789abcdef0123456789abcdef";
const RESTART: &str = "reboot: Restarting system";
const POWER_DOWN: &str = "reboot: Power down";
const MENU: &str = "choice [1-4]: ";

fn ready() -> bool {
    prereq::require(&["qemu-system-x86_64", "apt-get", "dpkg"])
}

/// A loopback port nothing listens on (bound, then released): slirp's connection to
/// 10.0.2.2:<port> is refused, so the probe fails fast.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The stock kernel and an initrd with the plain release `/init`, or the one built
/// with `features`.
fn vm(dir: &RunDir, append: &str, features: &[&str]) -> Vm {
    let k = kernel::stock().expect("stock kernel");
    let init = artifacts::ze_init_with(features).expect("ze-init");
    let initrd = artifacts::initrd(&dir.join("initrd.img"), &init, &k, &[]).expect("initrd");
    Vm::new(&k.vmlinuz, &initrd, append)
}

/// An HTTP install against a server that is not there, with one virtio NIC.
fn http_failing(secret: bool) -> String {
    let auth = if secret {
        format!(" ze.rescue-auth={PHC}")
    } else {
        String::new()
    };
    format!(
        "console=ttyS0,115200 panic=-1 ze.server=10.0.2.2 ze.port={} ze.wait=1{auth}",
        closed_port()
    )
}

/// Types the token at the prompt and waits for the menu.
fn unlock(run: &mut Running) {
    run.expect(0, "token: ", STEP).unwrap();
    run.send(0, &format!("{TOKEN}\r")).unwrap();
    run.expect(0, MENU, STEP).unwrap();
}

/// The guest ends by itself with `kernel_line`, QEMU exits 0, and nothing panicked
/// the kernel.
fn ends_with(run: &mut Running, kernel_line: &str, timeout: Duration) -> String {
    let st = run.wait_exit(timeout).unwrap();
    let log = run.serial(0);
    assert!(st.success(), "QEMU exit {st}");
    assert!(log.contains(kernel_line), "no {kernel_line:?}:\n{log}");
    assert!(!log.contains("Kernel panic"), "{log}");
    log
}

/// Scenario 1: no secret, network install: the error, then a reboot about 30 s later,
/// and no prompt at any point (the serial port is not even connected for input).
#[test]
#[ignore = "boots QEMU; run by make test"]
fn network_install_without_a_secret_reboots_after_30_s() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("rescue_unattended");
    let mut run = vm(&dir, &http_failing(false), &[])
        .nic(Nic::user())
        .start(dir.path())
        .unwrap();
    run.wait_for(0, "[ze-install] FATAL: network: ", TO_FATAL)
        .unwrap();
    run.wait_for(0, "rebooting in 30 s", STEP).unwrap();
    let shown = Instant::now();
    let log = ends_with(&mut run, RESTART, Duration::from_secs(90));
    let waited = shown.elapsed();
    assert!(
        (Duration::from_secs(27)..Duration::from_secs(60)).contains(&waited),
        "rebooted {waited:?} after the notice"
    );
    assert!(
        log.contains("[ze-install] recovery console: the install failed"),
        "{log}"
    );
    assert!(log.contains("  attempt 1: network: no interface reaches 10.0.2.2:"));
    assert!(!log.contains(MENU) && !log.contains("token: "), "{log}");
    let fatal = log.lines().filter(|l| l.contains("FATAL")).count();
    assert_eq!(fatal, 1, "the FATAL line is printed exactly once:\n{log}");
}

/// Scenario 2: three wrong tokens reset the machine; the menu never shows and nothing
/// typed is echoed.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn three_wrong_tokens_reset() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("rescue_wrong_tokens");
    let mut run = vm(&dir, &http_failing(true), &[])
        .interactive_serial(0)
        .nic(Nic::user())
        .start(dir.path())
        .unwrap();
    run.expect(0, "[ze-install] FATAL: network: ", TO_FATAL)
        .unwrap();
    for (n, wrong) in ["guess-one", "guess-two", "guess-three"].iter().enumerate() {
        run.expect(0, "token: ", STEP).unwrap();
        run.send(0, &format!("{wrong}\r")).unwrap();
        run.expect(0, &format!("wrong token ({} of 3)", n + 1), STEP)
            .unwrap();
    }
    run.expect(0, "3 wrong tries: rebooting", STEP).unwrap();
    let log = ends_with(&mut run, RESTART, Duration::from_secs(30));
    assert!(!log.contains("guess-"), "a typed token was echoed:\n{log}");
    assert!(!log.contains("1) retry network"), "{log}");
}

/// Scenario 3: the right token opens the menu; diagnostics name the disk, the NIC and
/// a NIC no driver took (an e1000: the qemu module profile has no e1000 module); 4
/// powers off.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn right_token_diagnostics_then_power_off() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("rescue_diagnostics");
    let disk = dir.join("vda.img");
    blank_disk(&disk, 64 << 20).unwrap();
    let mut run = vm(&dir, &http_failing(true), &[])
        .interactive_serial(0)
        .drive(&disk, DriveKind::Virtio)
        .nic(Nic::user())
        .nic(Nic {
            netdev: "user,restrict=on".into(),
            model: "e1000".into(),
            mac: None,
        })
        .start(dir.path())
        .unwrap();
    run.expect(0, "[ze-install] FATAL: network: ", TO_FATAL)
        .unwrap();
    unlock(&mut run);
    run.send(0, "2\r").unwrap();
    let diag = run.expect(0, "== end of diagnostics ==", STEP).unwrap();
    let line = |needle: &str| {
        diag.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in diagnostics:\n{diag}"))
            .to_string()
    };
    let eth0 = line("  eth0  mac=52:54:00:");
    assert!(eth0.contains("driver=virtio_net"), "{eth0}");
    let vda = line(" vda ");
    assert!(vda.contains("64.0 MiB") && vda.contains("virtio"), "{vda}");
    let e1000 = line(" 8086:100e ");
    assert!(e1000.contains("modalias=pci:v00008086d0000100E"), "{e1000}");
    line("no driver bound: the kernel or initrd lacks a matching module");
    line("== routes ==");
    line("log lines ==");
    line("FATAL: network: ");
    // The failure is shown again above the menu.
    run.expect(0, "attempt 1: network: ", STEP).unwrap();
    run.expect(0, MENU, STEP).unwrap();
    run.send(0, "4\r").unwrap();
    run.expect(0, "powering off", STEP).unwrap();
    let log = ends_with(&mut run, POWER_DOWN, Duration::from_secs(30));
    assert!(!log.contains(TOKEN), "the token was echoed:\n{log}");
}

/// Scenario 4: ISO source, no secret: the failure (here: no medium with this media-id
/// after the 30 s scan) opens the menu with no prompt.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn iso_without_a_secret_opens_the_menu() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("rescue_iso_open");
    let append = format!("console=ttyS0,115200 panic=-1 ze.source=iso ze.media-id={MEDIA_ID}");
    let mut run = vm(&dir, &append, &[])
        .interactive_serial(0)
        .start(dir.path())
        .unwrap();
    run.expect(0, "[ze-install] FATAL: ", TO_FATAL).unwrap();
    let screen = run.expect(0, MENU, STEP).unwrap();
    assert!(
        screen.contains("recovery console: the install failed"),
        "{screen}"
    );
    assert!(
        !screen.contains("token") && !screen.contains("password"),
        "{screen}"
    );
    run.send(0, "4\r").unwrap();
    ends_with(&mut run, POWER_DOWN, Duration::from_secs(30));
}

/// Scenario 5: a panic in the install thread (`ze.fault=panic`, a fault-injection
/// build) ends in the recovery console, not a kernel panic.
#[test]
#[ignore = "builds a test /init and boots QEMU; run by make test"]
fn a_panic_opens_the_recovery_console() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("rescue_panic");
    let append = format!("{} ze.fault=panic", http_failing(true));
    let mut run = vm(&dir, &append, &["fault-injection"])
        .interactive_serial(0)
        .nic(Nic::user())
        .start(dir.path())
        .unwrap();
    let fatal = run
        .expect(0, "(thread install)", TO_FATAL)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        fatal.contains("[ze-install] FATAL: panic: injected fault (ze.fault=config:panic) at "),
        "{fatal}"
    );
    unlock(&mut run);
    let log = run.serial(0);
    assert!(
        log.contains("attempt 1: panic: injected fault (ze.fault=config:panic)"),
        "{log}"
    );
    run.send(0, "3\r").unwrap();
    ends_with(&mut run, RESTART, Duration::from_secs(30));
}

/// Scenario 5b: a panic in a helper thread (as the DHCP keeper or a write-pipeline
/// thread could) while the install goes on: the console opens all the same, PID 1
/// survives the install's own later FATAL, and the menu still powers off.
#[test]
#[ignore = "builds a test /init and boots QEMU; run by make test"]
fn a_helper_thread_panic_opens_the_recovery_console() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("rescue_thread_panic");
    let append = format!("{} ze.fault=network:thread-panic", http_failing(true));
    let mut run = vm(&dir, &append, &["fault-injection"])
        .interactive_serial(0)
        .nic(Nic::user())
        .start(dir.path())
        .unwrap();
    let fatal = run.expect(0, "(thread fault-injection)", TO_FATAL).unwrap();
    assert!(
        fatal.contains("FATAL: panic: injected fault (ze.fault=network:thread-panic)"),
        "{fatal}"
    );
    // The install thread carries on into the network stage and fails there too.
    run.wait_for(0, "[ze-install] FATAL: network: ", TO_FATAL)
        .unwrap();
    unlock(&mut run);
    run.send(0, "4\r").unwrap();
    let log = ends_with(&mut run, POWER_DOWN, Duration::from_secs(30));
    assert!(log.contains("attempt 1: panic: injected fault"), "{log}");
}

/// Scenario 6: the server is down, the install fails; the operator starts it, picks
/// "retry network", and the retry installs: judged from the disk image's bytes and the
/// database read back from partition 4.
#[test]
#[ignore = "boots QEMU; run by make test"]
fn retry_after_the_server_comes_up_installs() {
    if !ready() || !prereq::require(&["mkfs.ext4", "debugfs"]) {
        return;
    }
    const DB: &[u8] = b"database served by the late server\n";
    let dir = RunDir::new("rescue_retry");
    let image = dir.join("image.raw");
    let p4 = gpt_image(&image, 24, 6).unwrap();
    let disk = dir.join("vda.img");
    blank_disk(&disk, 64 << 20).unwrap();
    let port = closed_port();
    let append = format!(
        "console=ttyS0,115200 panic=-1 ze.server=10.0.2.2 ze.port={port} ze.wait=1 \
         ze.rescue-auth={PHC}"
    );
    let mut run = vm(&dir, &append, &[])
        .interactive_serial(0)
        .drive(&disk, DriveKind::Virtio)
        .nic(Nic::user())
        .start(dir.path())
        .unwrap();
    run.expect(0, "[ze-install] FATAL: network: ", TO_FATAL)
        .unwrap();
    unlock(&mut run);
    // The cause is fixed: the server starts, on the port the guest was given.
    let server = Server::start(&format!("127.0.0.1:{port}")).unwrap();
    server.add(
        "/install/image/ze.img",
        Body::File(image.clone()),
        Faults::default(),
    );
    server.add(
        "/install/image/ze.img.sha256",
        Body::bytes(format!("{}  ze.img\n", sha256_file(&image).unwrap())),
        Faults::default(),
    );
    server.add(
        "/install/database.zefs",
        Body::bytes(DB.to_vec()),
        Faults::default(),
    );
    run.send(0, "1\r").unwrap();
    run.expect(0, "retrying the install", STEP).unwrap();
    run.expect(0, "[ze-install] DONE image=", Duration::from_secs(240))
        .unwrap();
    let log = ends_with(&mut run, RESTART, Duration::from_secs(60));
    same_except(&disk, &image, p4).unwrap();
    let db = read_ext4_file(&disk, p4, "/ze/database.zefs").unwrap();
    assert_eq!(db.as_deref(), Some(DB), "{log}");
    // The first attempt's FATAL is still in the log, once; the second has none.
    let fatal: Vec<&str> = log.lines().filter(|l| l.contains("FATAL")).collect();
    assert_eq!(fatal.len(), 1, "{fatal:?}");
    assert!(server.requests_for("/install/image/ze.img").len() == 1);
}

/// Fault injection exists only in the test build: the release `/init` carries none of
/// its code or text (and the test build does, so this check can fail).
#[test]
#[ignore = "builds both /init variants; run by make test"]
fn the_release_init_has_no_fault_injection() {
    let contains = |path: &std::path::Path, needle: &[u8]| {
        let bytes = std::fs::read(path).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    };
    let release = artifacts::ze_init().unwrap();
    let test = artifacts::ze_init_with(&["fault-injection"]).unwrap();
    for needle in [b"injected fault".as_slice(), b"fault injection:"] {
        assert!(contains(&test, needle), "the test build lacks {needle:?}?");
        assert!(
            !contains(&release, needle),
            "release /init contains {needle:?}"
        );
    }
}
