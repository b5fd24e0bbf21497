//! Getting at partition N of the disk just written.
//!
//! The normal path: BLKRRPART, then wait (10 s, polling every 200 ms) until the kernel
//! shows partition N in sysfs at the offset and length the new table says, and its
//! node is in /dev. The fallback, when BLKRRPART is refused (a partition still open,
//! a loop disk without partscan) or the node never appears (a kernel without partition
//! table support): read the range from the table ourselves and attach a loop device
//! over exactly those bytes. Each step says on the log which path it took.

use super::BlockDevice;
use super::gpt::{self, GptError, Range};
use crate::sys::loopdev::{LoopDevice, LoopError, LoopOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The kernel's partition name: a `p` separates the number when the disk name ends in
/// a digit (block/partitions/core.c), so `sda4` and `vda4` but `nvme0n1p4`,
/// `mmcblk0p4`, `loop0p4`.
pub fn partition_name(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

/// How long to wait for the node, and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub timeout: Duration,
    pub poll: Duration,
}

impl Default for Wait {
    /// SPEC.md "Writing": up to 10 s, every 200 ms.
    fn default() -> Wait {
        Wait {
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("/dev/{name} did not appear within {} ms{}", .waited.as_millis(), .last.as_deref().map(|l| format!(" ({l})")).unwrap_or_default())]
    Timeout {
        name: String,
        waited: Duration,
        /// What the last look found, when it found something wrong.
        last: Option<String>,
    },
    #[error("/dev/{disk}: {source}")]
    Table {
        disk: String,
        #[source]
        source: GptError,
    },
    #[error("/dev/{disk}: no partition node and no usable table for the loop fallback: {source}")]
    NoFallback {
        disk: String,
        #[source]
        source: GptError,
    },
    #[error(transparent)]
    Loop(#[from] LoopError),
}

/// What the kernel shows for `disk`'s partition `n` right now; `Ok(path)` when it is
/// usable, `Err(what is wrong)` otherwise.
fn look(
    sys_root: &Path,
    dev_root: &Path,
    disk: &str,
    n: u32,
    expect: Option<Range>,
) -> Result<PathBuf, Option<String>> {
    use super::attr;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let name = partition_name(disk, n);
    let dir = sys_root.join("block").join(disk).join(&name);
    if attr(&dir, "partition") != n.to_string() {
        return Err(None);
    }
    let sectors = |a: &str| attr(&dir, a).parse::<u64>().map(|s| s * 512).ok();
    if let Some(want) = expect {
        let (start, len) = (sectors("start"), sectors("size"));
        if (start, len) != (Some(want.start), Some(want.len)) {
            return Err(Some(format!(
                "the kernel has {name} at {start:?}+{len:?}, the table says {}+{}",
                want.start, want.len
            )));
        }
    }
    let node = dev_root.join(&name);
    let meta = std::fs::metadata(&node).map_err(|_| None)?;
    // devtmpfs makes the node asynchronously; make sure it is this partition's.
    if meta.file_type().is_block_device() {
        let rdev = meta.rdev();
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        let want = attr(&dir, "dev");
        if want != format!("{major}:{minor}") {
            return Err(Some(format!(
                "{} is {major}:{minor}, sysfs says {want}",
                node.display()
            )));
        }
    }
    Ok(node)
}

/// Waits for partition `n` of `disk` to be in sysfs (at `expect`'s range, when given)
/// and in `dev_root`. Returns the node's path.
pub fn wait_for_partition(
    sys_root: &Path,
    dev_root: &Path,
    disk: &str,
    n: u32,
    expect: Option<Range>,
    wait: Wait,
) -> Result<PathBuf, PartitionError> {
    let started = Instant::now();
    loop {
        let last = match look(sys_root, dev_root, disk, n, expect) {
            Ok(p) => return Ok(p),
            Err(why) => why,
        };
        let waited = started.elapsed();
        if waited >= wait.timeout {
            return Err(PartitionError::Timeout {
                name: partition_name(disk, n),
                waited,
                last,
            });
        }
        std::thread::sleep(wait.poll.min(wait.timeout - waited));
    }
}

/// The block-device operations the partition step needs, so the decision logic runs in
/// a test with a recording fake. [`Kernel`] is the real one.
pub trait BlockOps {
    /// A partition reached through a loop device.
    type Loop;
    /// BLKRRPART on the whole disk.
    fn reread_partitions(&mut self, disk: &Path) -> io::Result<()>;
    /// A read-write loop device over `range` of `disk`.
    fn attach(&mut self, disk: &Path, range: Range) -> Result<Self::Loop, LoopError>;
}

/// The real ioctls; loop devices come from `dev_root/loop-control`.
pub struct Kernel {
    pub dev_root: PathBuf,
}

impl BlockOps for Kernel {
    type Loop = LoopDevice;
    /// Opens its own read-only handle: close an exclusive writer's handle first (see
    /// [`crate::sys::block::Access::WriteExclusive`]).
    fn reread_partitions(&mut self, disk: &Path) -> io::Result<()> {
        use crate::sys::block::{Access, BlockDev};
        let d = BlockDev::open(disk, Access::Read).map_err(io::Error::other)?;
        d.reread_partitions().map_err(io::Error::other)
    }
    fn attach(&mut self, disk: &Path, range: Range) -> Result<LoopDevice, LoopError> {
        LoopDevice::attach(
            &self.dev_root,
            disk,
            &LoopOptions {
                offset: range.start,
                size_limit: range.len,
                ..LoopOptions::default()
            },
        )
    }
}

/// Partition N, reached one way or the other.
#[derive(Debug)]
pub enum PartitionDevice<L> {
    /// The kernel's own node, `/dev/sda4`.
    Node(PathBuf),
    /// A loop device over the partition's bytes (the fallback). Detach it when done.
    Loop { device: L, range: Range },
}

impl PartitionDevice<LoopDevice> {
    /// The device to mount.
    pub fn path(&self) -> &Path {
        match self {
            PartitionDevice::Node(p) => p,
            PartitionDevice::Loop { device, .. } => device.path(),
        }
    }
}

impl<L> PartitionDevice<L> {
    /// `node` or `loop`, for logs and tests.
    pub fn how(&self) -> &'static str {
        match self {
            PartitionDevice::Node(_) => "node",
            PartitionDevice::Loop { .. } => "loop",
        }
    }
}

/// BLKRRPART, wait for partition `n`'s node, else a loop device over its range read
/// from the table on `disk` (`dev_root/<name>`). Logs which path it took and why.
pub fn open_partition<O: BlockOps>(
    sys_root: &Path,
    dev_root: &Path,
    disk: &BlockDevice,
    n: u32,
    ops: &mut O,
    wait: Wait,
) -> Result<PartitionDevice<O::Loop>, PartitionError> {
    let disk_path = dev_root.join(&disk.name);
    let name = partition_name(&disk.name, n);
    // The table as written: what the kernel must agree with, and the fallback's range.
    let table = std::fs::File::open(&disk_path)
        .map_err(GptError::Io)
        .and_then(|mut f| gpt::read_partition(&mut f, n, disk.logical_block_size));
    if let Err(e) = &table {
        log::warn!("reading partition {n} from /dev/{}: {e}", disk.name);
    }
    let expect = table.as_ref().ok().copied();
    match ops.reread_partitions(&disk_path) {
        Ok(()) => {
            log::info!(
                "BLKRRPART /dev/{}: ok; waiting up to {} ms for /dev/{name}",
                disk.name,
                wait.timeout.as_millis()
            );
            let started = Instant::now();
            match wait_for_partition(sys_root, dev_root, &disk.name, n, expect, wait) {
                Ok(node) => {
                    log::info!(
                        "partition {n}: using the kernel's node {} (after {} ms)",
                        node.display(),
                        started.elapsed().as_millis()
                    );
                    return Ok(PartitionDevice::Node(node));
                }
                Err(e) => log::warn!("{e}; falling back to a loop device over the table's range"),
            }
        }
        // Without a successful re-read, sysfs and /dev still describe the old table.
        Err(e) => log::warn!(
            "BLKRRPART /dev/{} refused: {e}; not trusting its partition nodes, using a loop device over the table's range",
            disk.name
        ),
    }
    let range = table.map_err(|source| PartitionError::NoFallback {
        disk: disk.name.clone(),
        source,
    })?;
    let device = ops.attach(&disk_path, range)?;
    log::info!(
        "partition {n}: using a loop device over /dev/{} bytes {}+{} (GPT fallback)",
        disk.name,
        range.start,
        range.len
    );
    Ok(PartitionDevice::Loop { device, range })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::fixture::{Bus, Disk, Fixture};

    #[test]
    fn kernel_partition_names() {
        assert_eq!(partition_name("vda", 4), "vda4");
        assert_eq!(partition_name("sda", 4), "sda4");
        assert_eq!(partition_name("sdaa", 12), "sdaa12");
        assert_eq!(partition_name("nvme0n1", 4), "nvme0n1p4");
        assert_eq!(partition_name("mmcblk0", 4), "mmcblk0p4");
        assert_eq!(partition_name("loop3", 1), "loop3p1");
        assert_eq!(partition_name("xvda", 2), "xvda2");
    }

    fn quick() -> Wait {
        Wait {
            timeout: Duration::from_millis(3000),
            poll: Duration::from_millis(50),
        }
    }

    /// Makes partition `n` of `disk` appear in sysfs and /dev, as the kernel would.
    fn appear(fx_sys: &Path, fx_dev: &Path, disk: &str, n: u32, range: (u64, u64)) {
        let name = partition_name(disk, n);
        let dir = fx_sys.join("block").join(disk).join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("start"), format!("{}\n", range.0 / 512)).unwrap();
        std::fs::write(dir.join("size"), format!("{}\n", range.1 / 512)).unwrap();
        std::fs::write(dir.join("dev"), "259:4\n").unwrap();
        // The node last, as devtmpfs makes it after the kernel registers the partition;
        // `partition` is what `look` checks first.
        std::fs::write(dir.join("partition"), format!("{n}\n")).unwrap();
        std::fs::write(fx_dev.join(&name), "").unwrap();
    }

    #[test]
    fn wait_returns_once_the_node_appears_from_another_thread() {
        let t = tempfile::tempdir().unwrap();
        let fx = Fixture::new(t.path());
        fx.add(Disk::new("nvme0n1", Bus::Nvme, 64 << 20));
        let (sys, dev) = (fx.sys.clone(), fx.dev.clone());
        let started = Instant::now();
        let maker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            appear(&sys, &dev, "nvme0n1", 4, (1 << 20, 8 << 20));
        });
        let expect = Range {
            number: 4,
            start: 1 << 20,
            len: 8 << 20,
        };
        let got = wait_for_partition(&fx.sys, &fx.dev, "nvme0n1", 4, Some(expect), quick());
        let elapsed = started.elapsed();
        maker.join().unwrap();
        assert_eq!(got.unwrap(), fx.dev.join("nvme0n1p4"));
        assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    }

    #[test]
    fn wait_times_out_on_a_stale_partition_with_the_old_range() {
        let t = tempfile::tempdir().unwrap();
        let fx = Fixture::new(t.path());
        // The old table's sda4 is still there, at a different offset.
        fx.add(Disk::new("sda", Bus::Sata, 64 << 20).partition(4, 2 << 20, 8 << 20))
            .node("sda4");
        let expect = Range {
            number: 4,
            start: 1 << 20,
            len: 8 << 20,
        };
        let wait = Wait {
            timeout: Duration::from_millis(600),
            poll: Duration::from_millis(200),
        };
        let started = Instant::now();
        let err = wait_for_partition(&fx.sys, &fx.dev, "sda", 4, Some(expect), wait).unwrap_err();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1200), "{elapsed:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("/dev/sda4 did not appear within 6"),
            "{msg}"
        );
        assert!(msg.contains("the table says 1048576+8388608"), "{msg}");
    }

    /// Records calls; BLKRRPART fails or succeeds as told, and can make the node appear.
    struct Fake {
        reread: io::Result<()>,
        appear_after: Option<Duration>,
        sys: PathBuf,
        dev: PathBuf,
        calls: Vec<String>,
    }

    impl BlockOps for Fake {
        type Loop = Range;
        fn reread_partitions(&mut self, disk: &Path) -> io::Result<()> {
            self.calls.push(format!("reread {}", disk.display()));
            if let Some(d) = self.appear_after {
                let (sys, dev) = (self.sys.clone(), self.dev.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(d);
                    appear(&sys, &dev, "vda", 4, (31 << 20, 8 << 20));
                });
            }
            match &self.reread {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::from(e.kind())),
            }
        }
        fn attach(&mut self, disk: &Path, range: Range) -> Result<Range, LoopError> {
            self.calls.push(format!(
                "attach {} {}+{}",
                disk.display(),
                range.start,
                range.len
            ));
            Ok(range)
        }
    }

    /// A fixture with vda holding a GPT image (partition 4: 8 MiB at 37 MiB).
    fn setup(t: &Path) -> (Fixture, BlockDevice, (u64, u64)) {
        let fx = Fixture::new(t);
        fx.add(Disk::new("vda", Bus::Virtio, 64 << 20));
        let ranges = crate::disk::gpt::tests::gpt_image(&fx.dev.join("vda"), 512);
        let disk = crate::disk::read_device(&fx.sys, "vda");
        (fx, disk, ranges[3])
    }

    #[test]
    fn open_partition_rejects_a_node_at_the_wrong_offset() {
        let t = tempfile::tempdir().unwrap();
        let (fx, disk, p4) = setup(t.path());
        assert_eq!(p4, (37 << 20, 8 << 20), "layout of the gpt_image fixture");
        let mut fake = Fake {
            reread: Ok(()),
            appear_after: Some(Duration::from_millis(300)),
            sys: fx.sys.clone(),
            dev: fx.dev.clone(),
            calls: vec![],
        };
        // The fake's partition appears at 31 MiB, not 37: the wait must not accept it.
        let wait = Wait {
            timeout: Duration::from_millis(1000),
            poll: Duration::from_millis(50),
        };
        let got = open_partition(&fx.sys, &fx.dev, &disk, 4, &mut fake, wait);
        match got.unwrap() {
            PartitionDevice::Loop { device, .. } => assert_eq!(device.start, 37 << 20),
            other => panic!("accepted a partition at the wrong offset: {other:?}"),
        }
    }

    #[test]
    fn open_partition_uses_the_node_after_blkrrpart() {
        let t = tempfile::tempdir().unwrap();
        let (fx, disk, _) = setup(t.path());
        let mut fake = Fake {
            reread: Ok(()),
            appear_after: None,
            sys: fx.sys.clone(),
            dev: fx.dev.clone(),
            calls: vec![],
        };
        let (sys, dev) = (fx.sys.clone(), fx.dev.clone());
        let maker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            appear(&sys, &dev, "vda", 4, (37 << 20, 8 << 20));
        });
        let got = open_partition(&fx.sys, &fx.dev, &disk, 4, &mut fake, quick()).unwrap();
        maker.join().unwrap();
        assert_eq!(got.how(), "node");
        assert!(matches!(got, PartitionDevice::Node(ref p) if *p == fx.dev.join("vda4")));
        assert_eq!(fake.calls.len(), 1, "{:?}", fake.calls);
    }

    #[test]
    fn refused_blkrrpart_goes_straight_to_the_loop_even_with_a_stale_node() {
        let t = tempfile::tempdir().unwrap();
        let (fx, disk, p4) = setup(t.path());
        // An old vda4 at exactly the new range is still not trusted.
        appear(&fx.sys, &fx.dev, "vda", 4, p4);
        let mut fake = Fake {
            reread: Err(io::Error::from(io::ErrorKind::ResourceBusy)),
            appear_after: None,
            sys: fx.sys.clone(),
            dev: fx.dev.clone(),
            calls: vec![],
        };
        let started = Instant::now();
        let got = open_partition(&fx.sys, &fx.dev, &disk, 4, &mut fake, Wait::default()).unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "it waited");
        assert_eq!(got.how(), "loop");
        let vda = fx.dev.join("vda");
        assert_eq!(
            fake.calls,
            vec![
                format!("reread {}", vda.display()),
                format!("attach {} {}+{}", vda.display(), 37 << 20, 8 << 20)
            ]
        );
    }

    #[test]
    fn no_node_and_no_table_is_an_error_naming_the_disk() {
        let t = tempfile::tempdir().unwrap();
        let fx = Fixture::new(t.path());
        fx.add(Disk::new("sdb", Bus::Sata, 64 << 20));
        std::fs::write(fx.dev.join("sdb"), vec![0u8; 8192]).unwrap();
        let disk = crate::disk::read_device(&fx.sys, "sdb");
        let mut fake = Fake {
            reread: Ok(()),
            appear_after: None,
            sys: fx.sys.clone(),
            dev: fx.dev.clone(),
            calls: vec![],
        };
        let wait = Wait {
            timeout: Duration::from_millis(200),
            poll: Duration::from_millis(50),
        };
        let e = open_partition(&fx.sys, &fx.dev, &disk, 4, &mut fake, wait).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/dev/sdb: no partition node and no usable table"),
            "{e}"
        );
    }
}
