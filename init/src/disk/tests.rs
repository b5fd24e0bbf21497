//! Scan and plan over fixture sysfs trees built by [`super::fixture`].

use super::fixture::{Bus, Disk, Fixture};
use super::*;
use std::cmp::Ordering;

const GIB: u64 = 1 << 30;

fn roots(fx: &Fixture) -> Roots<'_> {
    Roots {
        sys: &fx.sys,
        dev: &fx.dev,
        proc: &fx.proc,
    }
}

fn http(fx: &Fixture, target: Option<&str>) -> Decision {
    plan(
        roots(fx),
        Request {
            mode: Mode::Http,
            target,
            exclude: &[],
        },
    )
}

fn iso(fx: &Fixture, target: Option<&str>, exclude: &[&str]) -> Decision {
    let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
    plan(
        roots(fx),
        Request {
            mode: Mode::Iso,
            target,
            exclude: &exclude,
        },
    )
}

/// (name, verdict, reason) for every row, in table order.
fn table(d: &Decision) -> Vec<(String, Verdict, String)> {
    d.rows
        .iter()
        .map(|r| (r.disk.name.clone(), r.verdict, r.reason.clone()))
        .collect()
}

fn verdict(d: &Decision, name: &str) -> (Verdict, String) {
    let r = d
        .rows
        .iter()
        .find(|r| r.disk.name == name)
        .unwrap_or_else(|| panic!("no row {name}"));
    (r.verdict, r.reason.clone())
}

/// The machine from the issue: every kind of device /sys/block can hold.
fn zoo(fx: &Fixture) {
    fx.add(
        Disk::new("sda", Bus::Sata, 500 * GIB)
            .model("ATA", "WDC WD5000AAKX")
            .rotational(true),
    )
    .add(
        Disk::new("nvme0n1", Bus::Nvme, 1000 * GIB)
            .model("", "Samsung SSD 980 PRO 1TB")
            .rotational(false),
    )
    .add(
        Disk::new("sdb", Bus::Usb, 16 * GIB)
            .model("SanDisk", "Cruzer Blade")
            .removable(),
    )
    .add(Disk::new("loop0", Bus::Virtual, GIB))
    .add(Disk::new("sr0", Bus::Sata, 700 << 20).removable())
    .add(Disk::new("zram0", Bus::Virtual, 4 * GIB))
    .add(Disk::new("dm-0", Bus::Virtual, 10 * GIB))
    .add(Disk::new("md127", Bus::Virtual, 10 * GIB));
}

#[test]
fn scan_reads_size_flags_model_and_transport() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(
        Disk::new("sda", Bus::Usb, 1 << 20)
            .model("SanDisk ", "Cruzer Blade    ")
            .removable(),
    )
    .add(
        Disk::new("vda", Bus::Virtio, 2 * GIB)
            .model("0x1af4", "")
            .read_only(),
    )
    .add(
        Disk::new("nvme0n1", Bus::Nvme, GIB)
            .model("", "Samsung SSD 980")
            .rotational(false),
    )
    .add(
        Disk::new("sdc", Bus::Sata, GIB)
            .model("ATA", "WDC WD5000AAKX")
            .rotational(true),
    )
    .add(Disk::new("sdd", Bus::Sas, GIB).model("SEAGATE", "ST600MM0006"))
    .add(Disk::new("sde", Bus::Scsi, GIB).model("QEMU", "QEMU HARDDISK"))
    .add(Disk::new("mmcblk0", Bus::Mmc, GIB).model("", "SD16G"))
    .add(Disk::new("xvda", Bus::Xen, GIB))
    .add(Disk::new("loop0", Bus::Virtual, GIB));
    let d = scan(&fx.sys);
    let by = |n: &str| d.iter().find(|x| x.name == n).unwrap().clone();
    let sda = by("sda");
    assert_eq!(
        (sda.size, sda.removable, sda.read_only, sda.model.as_str()),
        (1 << 20, true, false, "SanDisk Cruzer Blade")
    );
    assert_eq!(sda.transport, Transport::Usb);
    assert_eq!(sda.dev, fx.dev_of("sda"));
    let vda = by("vda");
    assert_eq!((vda.size, vda.read_only), (2 * GIB, true));
    assert_eq!(vda.model, "", "virtio's PCI vendor id is not a model");
    assert_eq!(
        (vda.transport, vda.media),
        (Transport::Virtio, Media::Virtual)
    );
    let nvme = by("nvme0n1");
    assert_eq!((nvme.transport, nvme.media), (Transport::Nvme, Media::Ssd));
    assert_eq!(nvme.model, "Samsung SSD 980");
    let sdc = by("sdc");
    assert_eq!((sdc.transport, sdc.media), (Transport::Sata, Media::Hdd));
    assert_eq!(
        sdc.model, "WDC WD5000AAKX",
        "libata's vendor ATA is dropped"
    );
    assert_eq!(by("sdd").transport, Transport::Sas);
    assert_eq!(by("sdd").model, "SEAGATE ST600MM0006");
    assert_eq!(by("sde").transport, Transport::Scsi);
    assert_eq!(
        (by("mmcblk0").transport, by("mmcblk0").model.as_str()),
        (Transport::Mmc, "SD16G")
    );
    assert_eq!(by("xvda").transport, Transport::Xen);
    assert_eq!(by("loop0").transport, Transport::Virtual);
    // Natural order.
    let names: Vec<&str> = d.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "loop0", "mmcblk0", "nvme0n1", "sda", "sdc", "sdd", "sde", "vda", "xvda"
        ]
    );
}

#[test]
fn scan_lists_partitions_and_holders() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(
        Disk::new("nvme0n1", Bus::Nvme, 10 * GIB)
            .partition(1, 1 << 20, 512 << 20)
            .partition(2, 513 << 20, GIB)
            .holder(2, "dm-0")
            .holder(0, "md0"),
    );
    let d = read_device(&fx.sys, "nvme0n1");
    let parts: Vec<(&str, u32, u64, u64)> = d
        .partitions
        .iter()
        .map(|p| (p.name.as_str(), p.number, p.start, p.size))
        .collect();
    assert_eq!(
        parts,
        [
            ("nvme0n1p1", 1, 1 << 20, 512 << 20),
            ("nvme0n1p2", 2, 513 << 20, GIB)
        ]
    );
    assert_eq!(d.partitions[1].dev, fx.dev_of("nvme0n1p2"));
    assert_eq!(d.holders, ["md0", "dm-0 (on nvme0n1p2)"]);
}

#[test]
fn small_sort_is_stable_and_sorts() {
    let mut v = vec![(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd'), (1, 'e')];
    small_sort(&mut v, &|a, b| a.0.cmp(&b.0));
    assert_eq!(v, [(1, 'b'), (1, 'e'), (2, 'd'), (3, 'a'), (3, 'c')]);
    let mut e: Vec<u8> = vec![];
    small_sort(&mut e, &|a, b| a.cmp(b));
}

#[test]
fn natural_order_within_a_kind() {
    let mut v = vec!["sdaa", "sdb", "sda", "sdz", "sdab", "sdba"];
    v.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(v, ["sda", "sdb", "sdz", "sdaa", "sdab", "sdba"]);
    let mut v = vec!["nvme10n1", "nvme2n1", "nvme1n2", "nvme1n10", "nvme1n1"];
    v.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(v, ["nvme1n1", "nvme1n2", "nvme1n10", "nvme2n1", "nvme10n1"]);
    assert_eq!(natural_cmp("mmcblk2", "mmcblk10"), Ordering::Less);
    assert_eq!(natural_cmp("vdb", "vdaa"), Ordering::Less);
    assert_eq!(natural_cmp("sda", "sda"), Ordering::Equal);
}

#[test]
fn http_takes_the_nvme_and_says_why_for_every_other_device() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    zoo(&fx);
    let d = http(&fx, None);
    assert_eq!(d.target().unwrap().name, "nvme0n1");
    let rows = table(&d);
    let s = |n: &str, v: Verdict, r: &str| (n.to_string(), v, r.to_string());
    assert_eq!(
        rows,
        [
            s("nvme0n1", Verdict::Taken, "first candidate"),
            s("sda", Verdict::Candidate, "ranked after nvme0n1"),
            s("sr0", Verdict::Skipped, "is an optical drive"),
            s("sdb", Verdict::Skipped, "is removable (removable=1)"),
            s("dm-0", Verdict::Skipped, "is a device-mapper device"),
            s("loop0", Verdict::Skipped, "is a loop device"),
            s("md127", Verdict::Skipped, "is software RAID (md)"),
            s("zram0", Verdict::Skipped, "is a compressed RAM disk (zram)"),
        ]
    );
}

#[test]
fn ranking_is_nvme_virtio_scsi_mmc_other_then_natural_order() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("xvda", Bus::Xen, GIB))
        .add(Disk::new("mmcblk0", Bus::Mmc, GIB))
        .add(Disk::new("sdaa", Bus::Sata, GIB))
        .add(Disk::new("sdb", Bus::Sas, GIB))
        .add(Disk::new("vdb", Bus::Virtio, GIB))
        .add(Disk::new("vda", Bus::Virtio, GIB))
        .add(Disk::new("nvme10n1", Bus::Nvme, GIB))
        .add(Disk::new("nvme2n1", Bus::Nvme, GIB));
    let d = http(&fx, None);
    let names: Vec<&str> = d.rows.iter().map(|r| r.disk.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "nvme2n1", "nvme10n1", "vda", "vdb", "sdb", "sdaa", "mmcblk0", "xvda"
        ]
    );
    assert_eq!(d.target().unwrap().name, "nvme2n1");
}

#[test]
fn usb_disks_reporting_fixed_are_skipped_unless_named() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sda", Bus::Usb, 500 * GIB).model("Samsung", "Portable SSD T7"));
    let d = http(&fx, None);
    assert_eq!(
        verdict(&d, "sda"),
        (
            Verdict::Skipped,
            "is a USB disk; name it with ze.target to install on it".into()
        )
    );
    let e = d.target().unwrap_err().to_string();
    assert!(
        e.starts_with("no disk to install on (sda is a USB disk"),
        "{e}"
    );
    let d = http(&fx, Some("/dev/sda"));
    assert_eq!(d.target().unwrap().name, "sda");
    assert!(verdict(&d, "sda").1.contains("taken because it was named"));
}

#[test]
fn no_block_devices_at_all() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    let e = http(&fx, None).into_target().unwrap_err();
    assert_eq!(e.to_string(), "no disk to install on (no block devices)");
}

#[test]
fn size_zero_and_read_only_disks_are_skipped_and_refused() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sda", Bus::Sata, 0))
        .add(Disk::new("vda", Bus::Virtio, 8 * GIB).read_only());
    let d = http(&fx, None);
    assert_eq!(verdict(&d, "sda").1, "has size 0 (no medium)");
    assert_eq!(verdict(&d, "vda").1, "is read-only (ro=1)");
    assert!(d.target().is_err());
    let e = http(&fx, Some("/dev/vda")).into_target().unwrap_err();
    assert_eq!(
        e.to_string(),
        "ze.target=/dev/vda: /dev/vda is read-only (ro=1)"
    );
    let d = http(&fx, Some("/dev/vda"));
    assert_eq!(verdict(&d, "vda").0, Verdict::Refused);
}

#[test]
fn a_disk_with_a_mounted_partition_is_skipped_and_refused() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("nvme0n1", Bus::Nvme, 100 * GIB).partition(2, 1 << 20, GIB))
        .add(Disk::new("sda", Bus::Sata, 100 * GIB))
        .mounted("nvme0n1p2", "/mnt/my data");
    let d = http(&fx, None);
    assert_eq!(
        verdict(&d, "nvme0n1").1,
        "is in use (mounted: nvme0n1p2 on /mnt/my data)"
    );
    assert_eq!(d.target().unwrap().name, "sda", "the next candidate");
    let e = http(&fx, Some("/dev/nvme0n1")).into_target().unwrap_err();
    assert_eq!(
        e.to_string(),
        "ze.target=/dev/nvme0n1: /dev/nvme0n1 is in use (mounted: nvme0n1p2 on /mnt/my data)"
    );
}

#[test]
fn mounts_match_by_source_name_through_dev_links_and_swap_counts() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sda", Bus::Sata, 100 * GIB).partition(1, 1 << 20, GIB))
        .add(Disk::new("sdb", Bus::Sata, 100 * GIB).partition(3, 1 << 20, GIB))
        .add(Disk::new("sdc", Bus::Sata, 100 * GIB))
        .link("disk/by-uuid/1234", "../../sda1")
        .swaps(&["sdb3"]);
    // btrfs-style anonymous device number: only the source names the partition.
    std::fs::write(
        fx.proc.join("self/mountinfo"),
        "50 1 0:45 / /home rw - btrfs /dev/disk/by-uuid/1234 rw\n",
    )
    .unwrap();
    let d = http(&fx, None);
    assert_eq!(verdict(&d, "sda").1, "is in use (mounted: sda1 on /home)");
    assert_eq!(verdict(&d, "sdb").1, "is in use (in use as swap: sdb3)");
    assert_eq!(d.target().unwrap().name, "sdc");
}

#[test]
fn holders_on_the_disk_or_a_partition_make_it_busy() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sda", Bus::Sata, 100 * GIB).holder(0, "dm-0"))
        .add(
            Disk::new("sdb", Bus::Sata, 100 * GIB)
                .partition(1, 1 << 20, GIB)
                .holder(1, "md0"),
        );
    let d = http(&fx, None);
    assert_eq!(verdict(&d, "sda").1, "is in use (held by dm-0)");
    assert_eq!(verdict(&d, "sdb").1, "is in use (held by md0 (on sdb1))");
    let e = d.into_target().unwrap_err().to_string();
    assert!(e.starts_with("no disk to install on (sda is in use"), "{e}");
    let e = http(&fx, Some("/dev/sdb")).into_target().unwrap_err();
    assert_eq!(
        e.to_string(),
        "ze.target=/dev/sdb: /dev/sdb is in use (held by md0 (on sdb1))"
    );
}

#[test]
fn target_by_id_link_resolves_to_the_disk() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    zoo(&fx);
    fx.link("disk/by-id/ata-WDC_WD5000AAKX_WD-1234", "../../sda")
        .link("disk/by-path/pci-0000:00:1f.2-ata-1", "../../sda");
    for link in [
        "/dev/disk/by-id/ata-WDC_WD5000AAKX_WD-1234",
        "/dev/disk/by-path/pci-0000:00:1f.2-ata-1",
    ] {
        let d = http(&fx, Some(link));
        assert_eq!(d.target().unwrap().name, "sda", "{link}");
        assert_eq!(
            verdict(&d, "sda"),
            (Verdict::Taken, format!("named by ze.target ({link})"))
        );
        assert_eq!(verdict(&d, "nvme0n1").1, "not named by ze.target");
    }
}

#[test]
fn target_link_to_a_partition_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sda", Bus::Sata, 100 * GIB).partition(1, 1 << 20, GIB))
        .link("disk/by-id/ata-X-part1", "../../sda1");
    let e = http(&fx, Some("/dev/disk/by-id/ata-X-part1"))
        .into_target()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ze.target=/dev/disk/by-id/ata-X-part1: /dev/sda1 is a partition of sda; give the whole disk"
    );
}

#[test]
fn target_missing_device_or_link_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sda", Bus::Sata, 100 * GIB));
    let e = http(&fx, Some("/dev/sdq")).into_target().unwrap_err();
    assert_eq!(
        e.to_string(),
        "ze.target=/dev/sdq: /dev/sdq does not exist (not in /sys/block)"
    );
    let e = http(&fx, Some("/dev/disk/by-id/nope"))
        .into_target()
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("ze.target=/dev/disk/by-id/nope: cannot resolve /dev/disk/by-id/nope: No such file or directory (os error 2) (no such link"),
        "{msg}"
    );
    // A link to something that is not a whole disk.
    fx.link("disk/by-id/dm-name-root", "../../mapper/root");
    let e = http(&fx, Some("/dev/disk/by-id/dm-name-root"))
        .into_target()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ze.target=/dev/disk/by-id/dm-name-root: /dev/mapper/root is not a whole disk"
    );
}

#[test]
fn target_by_id_without_udev_uses_sysfs_ids() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("vda", Bus::Virtio, 8 * GIB).serial("ZE1"))
        .add(Disk::new("vdb", Bus::Virtio, 8 * GIB).serial("ZE2"));
    // No /dev/disk at all, as in the initrd.
    let d = http(&fx, Some("/dev/disk/by-id/virtio-ZE2"));
    assert_eq!(d.target().unwrap().name, "vdb");
    let e = http(&fx, Some("/dev/disk/by-id/virtio-ZE2-part1"))
        .into_target()
        .unwrap_err();
    assert!(e.to_string().contains("/dev/vdb1 does not exist"), "{e}");
}

#[test]
fn too_small_is_refused_with_both_sizes() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("vda", Bus::Virtio, 2 * GIB));
    let disk = http(&fx, None).into_target().unwrap();
    assert_eq!(
        check_fits(&disk, 4 * GIB).unwrap_err().to_string(),
        "/dev/vda is 2.0 GiB, image needs 4.0 GiB"
    );
    check_fits(&disk, 2 * GIB).unwrap();
}

#[test]
fn iso_requires_exactly_one_candidate_after_excluding_the_media() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("nvme0n1", Bus::Nvme, 500 * GIB).model("", "Samsung SSD"))
        .add(Disk::new("sda", Bus::Sata, 1000 * GIB))
        // A USB stick that claims to be fixed, holding the ISO on its first partition.
        .add(Disk::new("sdb", Bus::Sata, 16 * GIB).partition(1, 1 << 20, GIB));
    // Two fixed disks and no ze.target: refuse, listing both.
    let d = iso(&fx, None, &["/dev/sdb1"]);
    assert_eq!(verdict(&d, "sdb").0, Verdict::Excluded);
    assert_eq!(
        verdict(&d, "sda").1,
        "one of 2 candidates; ze.target must choose"
    );
    assert_eq!(
        d.into_target().unwrap_err().to_string(),
        "ze.source=iso needs exactly one target disk but found 2: /dev/nvme0n1 (500.0 GiB nvme Samsung SSD), /dev/sda (1000.0 GiB sata); name one with ze.target"
    );
    // ze.target chooses.
    let d = iso(&fx, Some("/dev/sda"), &["sdb"]);
    assert_eq!(d.target().unwrap().name, "sda");
    // ...but never the media.
    let e = iso(&fx, Some("/dev/sdb"), &["sdb"])
        .into_target()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ze.target=/dev/sdb: /dev/sdb holds the install media"
    );
}

#[test]
fn iso_takes_the_only_candidate_and_needs_one() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("vda", Bus::Virtio, 8 * GIB))
        .add(Disk::new("sda", Bus::Sata, 16 * GIB));
    let d = iso(&fx, None, &["sda"]);
    assert_eq!(d.target().unwrap().name, "vda");
    assert_eq!(verdict(&d, "vda").1, "the only candidate");
    assert_eq!(
        verdict(&d, "sda"),
        (Verdict::Excluded, "holds the install media".into())
    );
    // Excluding every disk leaves none.
    let e = iso(&fx, None, &["sda", "/dev/vda"])
        .into_target()
        .unwrap_err();
    assert!(e.to_string().starts_with("no disk to install on ("), "{e}");
    // HTTP ignores the one-candidate rule.
    assert_eq!(http(&fx, None).target().unwrap().name, "vda");
}

#[test]
fn unreadable_mount_table_refuses() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("vda", Bus::Virtio, 8 * GIB));
    std::fs::remove_file(fx.proc.join("self/mountinfo")).unwrap();
    let d = http(&fx, None);
    assert_eq!(
        verdict(&d, "vda"),
        (Verdict::Candidate, "mount table unreadable".into())
    );
    let e = d.into_target().unwrap_err().to_string();
    assert!(e.starts_with("reading "), "{e}");
    assert!(e.contains("mounts"), "{e}");
}

#[test]
fn table_renders_as_log_lines_and_json() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    zoo(&fx);
    let d = http(&fx, None);
    let lines = d.log_lines();
    assert_eq!(
        lines[0],
        "disk plan: source=http, ze.target=(none), 8 block devices"
    );
    assert!(lines[1].starts_with("  DEVICE   "), "{}", lines[1]);
    assert!(lines[1].ends_with("DECISION"));
    let nvme = &lines[2];
    for part in [
        "nvme0n1",
        "1000.0 GiB",
        "nvme",
        "ssd",
        "Samsung SSD 980 PRO 1TB",
        "taken: first candidate",
    ] {
        assert!(nvme.contains(part), "{part} missing from {nvme}");
    }
    assert!(lines[5].contains("SanDisk Cruzer Blade") && lines[5].contains("usb"));
    assert_eq!(lines.last().unwrap(), "disk plan: target /dev/nvme0n1");
    // Columns line up: DECISION starts at the same place on every row.
    let col = lines[1].find("DECISION").unwrap();
    for l in &lines[2..lines.len() - 1] {
        assert!(
            l[col..].starts_with(|c: char| c.is_ascii_lowercase()),
            "misaligned: {l}"
        );
    }
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["mode"], "http");
    assert_eq!(v["target"], "/dev/nvme0n1");
    assert_eq!(v["error"], serde_json::Value::Null);
    assert_eq!(v["disks"][0]["name"], "nvme0n1");
    assert_eq!(v["disks"][0]["transport"], "nvme");
    assert_eq!(v["disks"][0]["verdict"], "taken");
    assert_eq!(v["disks"][0]["size"], 1000 * GIB);
    assert_eq!(v["disks"][3]["reason"], "is removable (removable=1)");
}
