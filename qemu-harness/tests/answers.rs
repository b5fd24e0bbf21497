//! kldload answers files end to end (stock kernel, slirp, the harness server):
//!
//! - a per-machine file fetched with `kldload.answers=auto` picks image B and changes
//!   the static network, and the guest never sends a DHCP packet — judged from QEMU's
//!   own packet capture (`filter-dump`), not the installer's log;
//! - an answers file baked into the initrd picks the target among two disks.
//!
//! QEMU tier: `make e2e` runs these with `--ignored`.

use qemu_harness::fixture::{Part, gpt_image, read_ext4_file, same_except, sha256_file};
use qemu_harness::pcap;
use qemu_harness::qemu::{DriveKind, Nic, Vm, blank_disk};
use qemu_harness::server::{Body, Faults, Server};
use qemu_harness::{artifacts, kernel, prereq, rundir::RunDir};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

const DB: &[u8] = b"answers scenario database\n";
const LIMIT: Duration = Duration::from_secs(180);
const MAC: &str = "52:54:00:12:34:56";

fn ready() -> bool {
    prereq::require(&[
        "qemu-system-x86_64",
        "apt-get",
        "dpkg",
        "mkfs.ext4",
        "debugfs",
    ])
}

struct Image {
    path: PathBuf,
    p4: Part,
}

/// Serves images `a.img` and `b.img` (different contents), their sidecars and the
/// database.
fn serve(dir: &RunDir) -> (Server, Image, Image) {
    let server = Server::start("127.0.0.1:0").unwrap();
    let mut imgs = Vec::new();
    for (name, seed) in [("a.img", 21), ("b.img", 42)] {
        let path = dir.join(name);
        let p4 = gpt_image(&path, 40, seed).unwrap();
        server.add(
            &format!("/install/image/{name}"),
            Body::File(path.clone()),
            Faults::default(),
        );
        server.add(
            &format!("/install/image/{name}.sha256"),
            Body::bytes(format!("{}  {name}\n", sha256_file(&path).unwrap())),
            Faults::default(),
        );
        imgs.push(Image { path, p4 });
    }
    server.add(
        "/install/database.zefs",
        Body::bytes(DB.to_vec()),
        Faults::default(),
    );
    let b = imgs.pop().unwrap();
    let a = imgs.pop().unwrap();
    (server, a, b)
}

fn initrd_with_answers(dir: &RunDir, answers: &str) -> (kernel::Kernel, PathBuf) {
    let k = kernel::stock().unwrap();
    let init = artifacts::ze_init().unwrap();
    let file = dir.join("autoinstall.env");
    std::fs::write(&file, answers).unwrap();
    let initrd = artifacts::initrd(
        &dir.join("initrd.img"),
        &init,
        &k,
        &["--answers", file.to_str().unwrap()],
    )
    .unwrap();
    (k, initrd)
}

#[test]
#[ignore = "boots QEMU; run by make test"]
fn per_machine_answers_pick_the_image_and_a_static_network_without_dhcp() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("answers_per_machine");
    let (server, a, b) = serve(&dir);
    // The per-MAC file wins over default.env, and over the initrd's network address.
    server.add(
        "/install/answers/52-54-00-12-34-56.env",
        Body::bytes("# node 7\nZE_IMAGE=b.img\nKLDLOAD_NET_IP=10.0.2.15\n"),
        Faults::default(),
    );
    server.add(
        "/install/answers/default.env",
        Body::bytes("ZE_IMAGE=a.img\n"),
        Faults::default(),
    );
    // A per-machine file cannot bring the network it is fetched over: the initrd
    // carries a static bootstrap address, which the per-MAC file then changes.
    let (k, initrd) = initrd_with_answers(
        &dir,
        "KLDLOAD_NET_METHOD=static\nKLDLOAD_NET_IP=10.0.2.16\nKLDLOAD_NET_PREFIX=24\nKLDLOAD_NET_GW=10.0.2.2\n",
    );
    let disk = dir.join("vda.img");
    blank_disk(&disk, 64 << 20).unwrap();
    let capture = dir.join("guest.pcap");
    let append = format!(
        "console=ttyS0 panic=-1 ze.server=10.0.2.2 ze.port={} kldload.answers=auto",
        server.port()
    );
    let mut vm = Vm::new(&k.vmlinuz, &initrd, &append)
        .drive(&disk, DriveKind::Virtio)
        .nic(Nic {
            mac: Some(MAC.into()),
            ..Nic::user()
        });
    vm.extra.extend([
        "-object".into(),
        format!("filter-dump,id=cap0,netdev=n0,file={}", capture.display()),
    ]);
    let mut run = vm.start(dir.path()).unwrap();
    run.wait_for(0, "[ze-install] DONE image=b.img", LIMIT)
        .unwrap();
    run.wait_exit(Duration::from_secs(60)).unwrap();
    let log = run.serial(0);

    // Image B, from outside.
    same_except(&disk, &b.path, b.p4).unwrap();
    assert_eq!(
        read_ext4_file(&disk, b.p4, "/ze/database.zefs")
            .unwrap()
            .as_deref(),
        Some(DB)
    );
    assert!(same_except(&disk, &a.path, a.p4).is_err());
    assert!(
        server
            .requests_for("/install/answers/default.env")
            .is_empty()
    );

    // The wire: not one DHCP packet; the answers came over the bootstrap address and
    // the image over the per-machine one.
    let packets = pcap::parse(&std::fs::read(&capture).unwrap()).unwrap();
    let dhcp: Vec<_> = packets.iter().filter(|p| p.is_dhcp()).collect();
    assert!(dhcp.is_empty(), "the guest sent DHCP: {dhcp:?}");
    let get = |path: &str| {
        packets
            .iter()
            .find(|p| p.payload.starts_with(format!("GET {path} ").as_bytes()))
            .unwrap_or_else(|| panic!("no GET {path} in the capture"))
            .src
    };
    assert_eq!(
        get("/install/answers/52-54-00-12-34-56.env"),
        Ipv4Addr::new(10, 0, 2, 16)
    );
    assert_eq!(get("/install/image/b.img"), Ipv4Addr::new(10, 0, 2, 15));
    assert!(log.contains("answers: merged http://10.0.2.2:"), "{log}");
    assert!(
        log.contains("the answers file changed the network configuration"),
        "{log}"
    );
}

#[test]
#[ignore = "boots QEMU; run by make test"]
fn an_initrd_answers_file_picks_the_target_disk() {
    if !ready() {
        return;
    }
    let dir = RunDir::new("answers_initrd_disk");
    let (server, a, _) = serve(&dir);
    let (k, initrd) = initrd_with_answers(&dir, "export KLDLOAD_DISK='/dev/vdb'\nZE_IMAGE=a.img\n");
    let (vda, vdb) = (dir.join("vda.img"), dir.join("vdb.img"));
    blank_disk(&vda, 64 << 20).unwrap();
    blank_disk(&vdb, 64 << 20).unwrap();
    let append = format!(
        "console=ttyS0 panic=-1 ze.server=10.0.2.2 ze.port={}",
        server.port()
    );
    let mut run = Vm::new(&k.vmlinuz, &initrd, &append)
        .drive(&vda, DriveKind::Virtio)
        .drive(&vdb, DriveKind::Virtio)
        .nic(Nic::user())
        .start(dir.path())
        .unwrap();
    run.wait_for(0, "[ze-install] DONE image=a.img", LIMIT)
        .unwrap();
    run.wait_exit(Duration::from_secs(60)).unwrap();
    let log = run.serial(0);
    assert!(log.contains("disk plan: target /dev/vdb"), "{log}");
    same_except(&vdb, &a.path, a.p4).unwrap();
    assert!(
        std::fs::read(&vda).unwrap().iter().all(|b| *b == 0),
        "vda was written"
    );
}
