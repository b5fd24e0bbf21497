//! The scan over fixture sysfs trees, with device nodes that are plain files carrying
//! the signatures, a fake that "mounts" a device by handing out a directory, and a
//! virtual clock.

use super::*;
use crate::disk::fixture::{Bus, Disk, Fixture};
use crate::source::iso::{self, testing::medium};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const ID: &str = "0123456789abcdef0123456789abcdef";
const IMG: &str = "ze.img.gz";
const MIB: u64 = 1 << 20;

/// Records every mount, unmount, attach and detach, in order.
type Journal = Arc<Mutex<Vec<String>>>;

struct Fake {
    /// A device node or ISO file → the directory standing in for its filesystem.
    trees: HashMap<PathBuf, PathBuf>,
    /// Devices whose mount fails, with the error.
    broken: HashMap<PathBuf, String>,
    journal: Journal,
    dev_root: PathBuf,
    loops: u32,
}

impl Fake {
    fn new(dev_root: &Path) -> Fake {
        Fake {
            trees: HashMap::new(),
            broken: HashMap::new(),
            journal: Arc::default(),
            dev_root: dev_root.into(),
            loops: 0,
        }
    }

    fn entries(&self) -> Vec<String> {
        self.journal.lock().unwrap().clone()
    }
}

fn short(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

impl MediaOps for Fake {
    fn mount(&mut self, device: &Path, fs: FsType) -> Result<Held, String> {
        if let Some(e) = self.broken.get(device) {
            return Err(e.clone());
        }
        let tree = self
            .trees
            .get(device)
            .ok_or_else(|| format!("no tree for {}", device.display()))?
            .clone();
        let name = short(device);
        let j = self.journal.clone();
        j.lock()
            .unwrap()
            .push(format!("mount {name} {}", fs.as_str()));
        Ok(Held::new(tree, move || {
            j.lock().unwrap().push(format!("unmount {name}"));
            Ok(())
        }))
    }

    fn attach(&mut self, file: &Path) -> Result<Held, String> {
        let node = self.dev_root.join(format!("loop{}", self.loops));
        self.loops += 1;
        let tree = self.trees.get(file).cloned().unwrap_or_default();
        self.trees.insert(node.clone(), tree);
        let (l, f) = (short(&node), short(file));
        let j = self.journal.clone();
        j.lock().unwrap().push(format!("attach {f} {l}"));
        Ok(Held::new(node, move || {
            j.lock().unwrap().push(format!("detach {l}"));
            Ok(())
        }))
    }
}

/// Virtual time; `hook` runs on every sleep with the time after it.
struct Virtual<'a> {
    now: Duration,
    hook: Box<dyn FnMut(Duration) + 'a>,
}

impl<'a> Virtual<'a> {
    fn new() -> Virtual<'a> {
        Virtual {
            now: Duration::ZERO,
            hook: Box::new(|_| {}),
        }
    }
}

impl Clock for Virtual<'_> {
    fn elapsed(&self) -> Duration {
        self.now
    }
    fn sleep(&mut self, d: Duration) {
        self.now += d;
        (self.hook)(self.now);
    }
}

/// A device node holding `sig`'s bytes.
fn node(fx: &Fixture, name: &str, sig: Signature) {
    let mut head = vec![0u8; probe::HEAD];
    let put = |h: &mut Vec<u8>, at: usize, m: &[u8]| h[at..at + m.len()].copy_from_slice(m);
    match sig {
        Signature::Iso9660 => put(&mut head, 32769, b"CD001"),
        Signature::Vfat => {
            put(&mut head, 0, &[0xeb, 0x3c, 0x90]);
            put(&mut head, 54, b"FAT16   ");
            put(&mut head, 510, &[0x55, 0xaa]);
        }
        Signature::Exfat => put(&mut head, 3, b"EXFAT   "),
        Signature::Ext => put(&mut head, 1080, &[0x53, 0xef]),
        Signature::Gpt => {
            put(&mut head, 510, &[0x55, 0xaa]);
            put(&mut head, 512, b"EFI PART");
        }
        Signature::Blank => {}
        other => panic!("no fixture for {other:?}"),
    }
    std::fs::write(fx.dev.join(name), head).unwrap();
}

/// An ISO file on a FAT tree, standing for a filesystem in `tree`.
fn iso_file(fake: &mut Fake, fat: &Path, rel: &str, tree: &Path) {
    let p = fat.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut head = vec![0u8; probe::HEAD];
    head[32769..32774].copy_from_slice(b"CD001");
    std::fs::write(&p, head).unwrap();
    fake.trees.insert(p, tree.into());
}

fn judge(root: &Path, _label: &str) -> Result<iso::Contents, Judged> {
    iso::check(root, ID, IMG).map_err(Judged::from)
}

fn find_with(
    fx: &Fixture,
    fake: &mut Fake,
    clock: &mut dyn Clock,
) -> Result<Found<iso::Contents>, FindError> {
    find(&fx.sys, &fx.dev, ID, fake, clock, MEDIA_WAIT, &mut judge)
}

fn whys(looked: &[Looked]) -> Vec<String> {
    looked
        .iter()
        .map(|l| format!("{}: {}", l.what, l.why))
        .collect()
}

#[test]
fn a_cd_with_the_right_medium_is_found_and_its_drive_excluded() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sr0", Bus::Sata, 60 * MIB))
        .add(Disk::new("vda", Bus::Virtio, 64 * MIB));
    node(&fx, "sr0", Signature::Iso9660);
    node(&fx, "vda", Signature::Blank);
    let tree = t.path().join("cd");
    medium(&tree, ID, IMG);
    let mut fake = Fake::new(&fx.dev);
    fake.trees.insert(fx.dev.join("sr0"), tree.clone());
    let found = find_with(&fx, &mut fake, &mut Virtual::new()).unwrap();
    assert_eq!(found.medium.label, "/dev/sr0");
    assert_eq!(found.medium.via, Via::Device);
    assert_eq!(found.medium.exclude, ["sr0"]);
    assert_eq!(found.root, tree);
    assert_eq!(found.value.name, IMG);
    // Still mounted until released.
    assert_eq!(fake.entries(), ["mount sr0 iso9660"]);
    assert!(found.release().is_empty());
    assert_eq!(fake.entries(), ["mount sr0 iso9660", "unmount sr0"]);
}

#[test]
fn a_stick_with_the_iso_written_to_it_excludes_the_whole_disk() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    // The hybrid ISO dd-ed onto vdb: iso9660 on the whole disk, partitions behind it.
    fx.add(Disk::new("vda", Bus::Virtio, 64 * MIB)).add(
        Disk::new("vdb", Bus::Virtio, 64 * MIB)
            .partition(1, 32 * 1024, 40 * MIB)
            .partition(2, 41 * MIB, 2 * MIB),
    );
    node(&fx, "vda", Signature::Blank);
    node(&fx, "vdb", Signature::Iso9660);
    let tree = t.path().join("stick");
    medium(&tree, ID, IMG);
    let mut fake = Fake::new(&fx.dev);
    fake.trees.insert(fx.dev.join("vdb"), tree);
    let found = find_with(&fx, &mut fake, &mut Virtual::new()).unwrap();
    assert_eq!(found.medium.label, "/dev/vdb");
    assert_eq!(found.medium.exclude, ["vdb"]);
    assert_eq!(
        whys(&found.looked),
        ["/dev/vda: not iso9660 (blank: zeroes)"]
    );
    // The disk plan then has exactly one candidate.
    let d = crate::disk::plan(
        crate::disk::Roots {
            sys: &fx.sys,
            dev: &fx.dev,
            proc: &fx.proc,
        },
        crate::disk::Request {
            mode: crate::disk::Mode::Iso,
            target: None,
            exclude: &found.medium.exclude,
        },
    );
    assert_eq!(d.target().unwrap().name, "vda");
}

#[test]
fn every_rejection_is_listed_once_in_the_fatal_after_the_wait() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sr0", Bus::Sata, 60 * MIB))
        .add(Disk::new("sr1", Bus::Sata, 0))
        .add(Disk::new("vda", Bus::Virtio, 64 * MIB))
        .add(Disk::new("vdb", Bus::Virtio, 64 * MIB).partition(1, MIB, 60 * MIB))
        .add(Disk::new("vdc", Bus::Virtio, 64 * MIB))
        .add(Disk::new("loop0", Bus::Virtual, 64 * MIB));
    node(&fx, "sr0", Signature::Iso9660);
    node(&fx, "vda", Signature::Ext);
    node(&fx, "vdb", Signature::Gpt);
    node(&fx, "vdb1", Signature::Iso9660);
    node(&fx, "vdc", Signature::Vfat);
    let mut fake = Fake::new(&fx.dev);
    // sr0: a medium built for another boot; vdb1: some other CD image; vdc: FAT, no ISOs.
    let other = t.path().join("other");
    medium(&other, "ffffffffffffffffffffffffffffffff", IMG);
    fake.trees.insert(fx.dev.join("sr0"), other);
    let plain = t.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    fake.trees.insert(fx.dev.join("vdb1"), plain);
    let fat = t.path().join("fat");
    std::fs::create_dir_all(&fat).unwrap();
    fake.trees.insert(fx.dev.join("vdc"), fat);
    let mut clock = Virtual::new();
    let e = find_with(&fx, &mut fake, &mut clock).unwrap_err();
    let FindError::NotFound { waited, looked, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(*waited, MEDIA_WAIT);
    assert_eq!(
        whys(looked),
        [
            "/dev/sr0: wrong media-id \"ffffffffffffffffffffffffffffffff\" (this boot wants 0123456789abcdef0123456789abcdef)",
            "/dev/sr1: no medium (size 0)",
            "/dev/vda: not iso9660 (ext2/3/4)",
            "/dev/vdb: not iso9660 (a GPT partition table)",
            "/dev/vdb1: missing /ze-install/media-id (not a ze-install medium)",
            "/dev/vdc: vfat: no *.iso or */*.iso files",
        ]
    );
    assert!(
        e.to_string().starts_with(&format!(
            "no install medium with ze.media-id={ID} within 30 s; looked at 6: /dev/sr0: wrong media-id"
        )),
        "{e}"
    );
    // Each device was mounted once (later rounds skip what they have seen), and
    // everything mounted was unmounted.
    assert_eq!(
        fake.entries(),
        [
            "mount sr0 iso9660",
            "unmount sr0",
            "mount vdb1 iso9660",
            "unmount vdb1",
            "mount vdc vfat",
            "unmount vdc",
        ]
    );
}

#[test]
fn nothing_at_all_is_said_plainly() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    let mut fake = Fake::new(&fx.dev);
    let e = find_with(&fx, &mut fake, &mut Virtual::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "no install medium with ze.media-id={ID} within 30 s; no disk, partition or CD-ROM appeared"
        )
    );
}

#[test]
fn a_usb_stick_that_appears_late_is_found_by_a_later_round() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("vda", Bus::Virtio, 64 * MIB));
    node(&fx, "vda", Signature::Blank);
    let tree = t.path().join("stick");
    medium(&tree, ID, IMG);
    let mut fake = Fake::new(&fx.dev);
    fake.trees.insert(fx.dev.join("sdb"), tree);
    // usb-storage's settle delay: the disk shows up 1.2 s into the scan.
    let mut added = false;
    let mut clock = Virtual::new();
    clock.hook = Box::new(|now| {
        if now >= Duration::from_millis(1200) && !added {
            fx.add(Disk::new("sdb", Bus::Usb, 16 * 1024 * MIB).removable());
            node(&fx, "sdb", Signature::Iso9660);
            added = true;
        }
    });
    let found = find_with(&fx, &mut fake, &mut clock).unwrap();
    assert_eq!(found.medium.label, "/dev/sdb");
    assert_eq!(clock.now, Duration::from_millis(1500));
    // vda was probed once, in the first round.
    assert_eq!(
        whys(&found.looked),
        ["/dev/vda: not iso9660 (blank: zeroes)"]
    );
}

#[test]
fn a_drive_that_gets_a_disc_is_looked_at_again() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sr0", Bus::Sata, 0));
    let tree = t.path().join("cd");
    medium(&tree, ID, IMG);
    let mut fake = Fake::new(&fx.dev);
    fake.trees.insert(fx.dev.join("sr0"), tree);
    let mut clock = Virtual::new();
    let sys = fx.sys.clone();
    let dev = fx.dev.clone();
    clock.hook = Box::new(move |now| {
        if now == Duration::from_secs(2) {
            let size = sys.join("block/sr0/size");
            std::fs::write(size, format!("{}\n", 60 * MIB / 512)).unwrap();
            let mut head = vec![0u8; probe::HEAD];
            head[32769..32774].copy_from_slice(b"CD001");
            std::fs::write(dev.join("sr0"), head).unwrap();
        }
    });
    let found = find_with(&fx, &mut fake, &mut clock).unwrap();
    assert_eq!(whys(&found.looked), ["/dev/sr0: no medium (size 0)"]);
    assert_eq!(found.medium.label, "/dev/sr0");
}

/// Ventoy: the ISO in a subdirectory of a FAT partition, behind an older ISO on another
/// FAT partition of the same stick; a blank exFAT partition too.
#[test]
fn an_iso_file_in_a_subdirectory_is_found_through_a_loop_device() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("vda", Bus::Virtio, 64 * MIB))
        .add(
            Disk::new("vdb", Bus::Virtio, 256 * MIB)
                .partition(1, MIB, 100 * MIB)
                .partition(2, 101 * MIB, 100 * MIB)
                .partition(3, 201 * MIB, 32 * MIB),
        )
        .add(Disk::new("vdc", Bus::Virtio, 64 * MIB));
    node(&fx, "vda", Signature::Blank);
    node(&fx, "vdb", Signature::Gpt);
    node(&fx, "vdb1", Signature::Vfat);
    node(&fx, "vdb2", Signature::Vfat);
    node(&fx, "vdb3", Signature::Exfat);
    node(&fx, "vdc", Signature::Blank);
    let mut fake = Fake::new(&fx.dev);
    let (p1, p2, p3) = (
        t.path().join("p1"),
        t.path().join("p2"),
        t.path().join("p3"),
    );
    for p in [&p1, &p2, &p3] {
        std::fs::create_dir_all(p).unwrap();
    }
    fake.trees.insert(fx.dev.join("vdb1"), p1.clone());
    fake.trees.insert(fx.dev.join("vdb2"), p2.clone());
    fake.trees.insert(fx.dev.join("vdb3"), p3.clone());
    let old = t.path().join("old");
    medium(&old, "ffffffffffffffffffffffffffffffff", IMG);
    iso_file(&mut fake, &p1, "old.iso", &old);
    std::fs::write(p1.join("notes.iso"), b"not an image").unwrap();
    let good = t.path().join("good");
    medium(&good, ID, IMG);
    iso_file(&mut fake, &p2, "ventoy/ze.iso", &good);

    let found = find_with(&fx, &mut fake, &mut Virtual::new()).unwrap();
    assert_eq!(found.medium.label, "/dev/vdb2:/ventoy/ze.iso");
    assert_eq!(found.medium.exclude, ["vdb"]);
    assert_eq!(found.medium.device, fx.dev.join("loop1"));
    assert_eq!(
        found.medium.via,
        Via::IsoFile {
            partition: fx.dev.join("vdb2"),
            file: "ventoy/ze.iso".into(),
            loop_device: fx.dev.join("loop1"),
        }
    );
    assert_eq!(found.root, good);
    assert_eq!(
        whys(&found.looked),
        [
            "/dev/vda: not iso9660 (blank: zeroes)",
            "/dev/vdb: not iso9660 (a GPT partition table)",
            "/dev/vdc: not iso9660 (blank: zeroes)",
            "/dev/vdb1:/notes.iso: not iso9660 (no filesystem signature)",
            "/dev/vdb1:/old.iso: wrong media-id \"ffffffffffffffffffffffffffffffff\" (this boot wants 0123456789abcdef0123456789abcdef)",
        ]
    );
    // The old ISO and its partition were let go before the next partition; the match
    // stays mounted, then is released ISO first, partition last.
    let mut want = vec![
        "mount vdb1 vfat",
        "attach old.iso loop0",
        "mount loop0 iso9660",
        "unmount loop0",
        "detach loop0",
        "unmount vdb1",
        "mount vdb2 vfat",
        "attach ze.iso loop1",
        "mount loop1 iso9660",
    ];
    assert_eq!(fake.entries(), want);
    assert!(found.release().is_empty());
    want.extend(["unmount loop1", "detach loop1", "unmount vdb2"]);
    assert_eq!(fake.entries(), want);

    // Two blank disks remain and no ze.target: ISO mode refuses, naming both, and
    // never offers the stick.
    let d = crate::disk::plan(
        crate::disk::Roots {
            sys: &fx.sys,
            dev: &fx.dev,
            proc: &fx.proc,
        },
        crate::disk::Request {
            mode: crate::disk::Mode::Iso,
            target: None,
            exclude: &["vdb".to_string()],
        },
    );
    let row = d.rows.iter().find(|r| r.disk.name == "vdb").unwrap();
    assert_eq!(row.verdict, crate::disk::Verdict::Excluded);
    assert_eq!(
        d.into_target().unwrap_err().to_string(),
        "ze.source=iso needs exactly one target disk but found 2: /dev/vda (64.0 MiB virtio), \
         /dev/vdc (64.0 MiB virtio); name one with ze.target"
    );
}

#[test]
fn a_direct_medium_is_preferred_to_an_iso_file_in_the_same_round() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sda", Bus::Sata, 256 * MIB).partition(1, MIB, 200 * MIB))
        .add(Disk::new("sr0", Bus::Sata, 60 * MIB));
    node(&fx, "sda", Signature::Gpt);
    node(&fx, "sda1", Signature::Exfat);
    node(&fx, "sr0", Signature::Iso9660);
    let mut fake = Fake::new(&fx.dev);
    let fat = t.path().join("fat");
    let inner = t.path().join("inner");
    medium(&inner, ID, IMG);
    iso_file(&mut fake, &fat, "ze.iso", &inner);
    fake.trees.insert(fx.dev.join("sda1"), fat);
    let cd = t.path().join("cd");
    medium(&cd, ID, IMG);
    fake.trees.insert(fx.dev.join("sr0"), cd);
    let found = find_with(&fx, &mut fake, &mut Virtual::new()).unwrap();
    assert_eq!(found.medium.label, "/dev/sr0");
    assert_eq!(fake.entries(), ["mount sr0 iso9660"]);
}

#[test]
fn a_mount_failure_is_a_rejection_and_the_scan_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sda", Bus::Sata, 256 * MIB).partition(1, MIB, 200 * MIB))
        .add(Disk::new("sr0", Bus::Sata, 60 * MIB));
    node(&fx, "sda", Signature::Gpt);
    node(&fx, "sda1", Signature::Exfat);
    node(&fx, "sr0", Signature::Iso9660);
    let mut fake = Fake::new(&fx.dev);
    fake.broken.insert(
        fx.dev.join("sda1"),
        "No such device (os error 19): this kernel has no exfat support".into(),
    );
    let cd = t.path().join("cd");
    medium(&cd, "ffffffffffffffffffffffffffffffff", IMG);
    fake.trees.insert(fx.dev.join("sr0"), cd);
    let mut clock = Virtual::new();
    let e = find(
        &fx.sys,
        &fx.dev,
        ID,
        &mut fake,
        &mut clock,
        Duration::from_secs(2),
        &mut judge,
    )
    .unwrap_err();
    let FindError::NotFound { looked, waited, .. } = e else {
        panic!()
    };
    assert_eq!(waited, Duration::from_secs(2));
    assert_eq!(
        whys(&looked)[2],
        "/dev/sda1: cannot mount it (exfat): No such device (os error 19): this kernel has no exfat support"
    );
}

#[test]
fn a_fatal_from_the_judge_stops_the_scan() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    fx.add(Disk::new("sr0", Bus::Sata, 60 * MIB))
        .add(Disk::new("sr1", Bus::Sata, 60 * MIB));
    node(&fx, "sr0", Signature::Iso9660);
    node(&fx, "sr1", Signature::Iso9660);
    let cd = t.path().join("cd");
    medium(&cd, ID, IMG);
    let mut fake = Fake::new(&fx.dev);
    fake.trees.insert(fx.dev.join("sr0"), cd.clone());
    fake.trees.insert(fx.dev.join("sr1"), cd);
    let e = find(
        &fx.sys,
        &fx.dev,
        ID,
        &mut fake,
        &mut Virtual::new(),
        MEDIA_WAIT,
        &mut |_root: &Path, label: &str| -> Result<(), Judged> {
            Err(Judged::Fatal(Fatal::new(
                "config",
                format!("KLDLOAD_DISK ({label}): bad"),
            )))
        },
    )
    .err()
    .unwrap();
    assert_eq!(e.to_string(), "config: KLDLOAD_DISK (/dev/sr0): bad");
    // The medium was let go; sr1 was never looked at.
    assert_eq!(fake.entries(), ["mount sr0 iso9660", "unmount sr0"]);
}

#[test]
fn an_unreadable_drive_is_read_again_each_round_and_reported_once() {
    let t = tempfile::tempdir().unwrap();
    let fx = Fixture::new(t.path());
    // An empty tray reads as ENOMEDIUM; here the node is missing until the disc is in.
    fx.add(Disk::new("sr0", Bus::Sata, 1024 * MIB));
    let tree = t.path().join("cd");
    medium(&tree, ID, IMG);
    let mut fake = Fake::new(&fx.dev);
    fake.trees.insert(fx.dev.join("sr0"), tree);
    let mut clock = Virtual::new();
    clock.hook = Box::new(|now| {
        if now == Duration::from_secs(3) {
            node(&fx, "sr0", Signature::Iso9660);
        }
    });
    let found = find_with(&fx, &mut fake, &mut clock).unwrap();
    assert_eq!(found.medium.label, "/dev/sr0");
    let w = whys(&found.looked);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("/dev/sr0: cannot read it: No such file or directory"),
        "{w:?}"
    );
}
