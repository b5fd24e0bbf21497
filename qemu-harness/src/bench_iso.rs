//! `make bench`, ISO part (`ze-bench iso` alone): installing a 1 GiB image from install
//! media in one pass (`ze-init install --media`) against the two passes the seed's
//! installer makes: `sha256sum` of the image file, then `gzip -dc | dd`.
//!
//! The medium is the `/ze-install` tree of an ISO built by `ze-pack iso` (extracted:
//! this machine's kernel cannot mount iso9660) holding the 75 %-zero 1 GiB image as
//! gzip (257 MiB stored). Three conditions, same machine, same run:
//!
//! - **cached**: the medium is in the page cache; what is left is CPU and the writes;
//! - **slow medium, second pass cached**: reads from the medium's disk are throttled to
//!   [`MEDIUM_BPS`] (a USB 2 stick) with a blkio cgroup, the page cache is dropped before
//!   each run; the baseline's second pass then finds the image in RAM;
//! - **slow medium, image larger than RAM**: as above, but the image's pages are also
//!   dropped between the baseline's two passes, as happens when the image does not fit
//!   in memory: the medium is read twice.
//!
//! The cgroup also counts the bytes read from the medium's disk, printed per run.

use crate::{artifacts, workspace_root};
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A USB 2 flash drive reads at roughly 30–40 MB/s.
pub const MEDIUM_BPS: u64 = 40_000_000;
const MEDIA_ID: &str = "be7cbe7cbe7cbe7cbe7cbe7cbe7cbe7c";

/// The medium: `/ze-install/…` as `ze-pack iso` wrote it, built once into `dir`.
fn medium(dir: &Path, gz: &Path) -> Result<PathBuf> {
    let root = dir.join("iso-media");
    if root.join("ze-install/manifest.json").exists() {
        return Ok(root);
    }
    eprintln!("building the ISO medium in {}", root.display());
    // The bench installs from the medium, it boots nothing: stand-ins for the kernel
    // (an x86 boot header is all ze-pack checks) and the initrd.
    let kernel = dir.join("bench-vmlinuz");
    let mut k = vec![0u8; 8192];
    k[0x202..0x206].copy_from_slice(b"HdrS");
    std::fs::write(&kernel, k)?;
    let initrd = dir.join("bench-initrd.img");
    std::fs::write(&initrd, b"stand-in")?;
    let iso = dir.join("bench.iso");
    let o = Command::new(artifacts::ze_pack()?)
        .arg("iso")
        .arg("--kernel")
        .arg(&kernel)
        .arg("--initrd")
        .arg(&initrd)
        .arg("--image")
        .arg(gz)
        .arg("--out")
        .arg(&iso)
        .args(["--media-id", MEDIA_ID])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()?;
    ensure!(
        o.status.success(),
        "ze-pack iso: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let tmp = dir.join("iso-media.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    let o = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/ze-install"])
        .arg(tmp.join("ze-install"))
        .output()?;
    ensure!(
        o.status.success(),
        "xorriso -extract: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_file(&iso)?;
    // Written back to the disk now, so dropping its pages later really drops them.
    Command::new("sync").status()?;
    std::fs::rename(&tmp, &root)?;
    Ok(root)
}

/// Reads on one disk throttled for the processes in a cgroup (v1 blkio or v2 io),
/// which also counts the bytes they read from it.
struct Throttle {
    dir: PathBuf,
    v2: bool,
    /// `major:minor` of the whole disk.
    disk: String,
}

impl Throttle {
    /// For the disk holding `path`; `Err` says why not (no root, no controller…).
    fn new(path: &Path, bps: u64) -> Result<Throttle> {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(path)?.dev();
        let (major, minor) = (nix_major(dev), nix_minor(dev));
        // blk-throttle takes the whole disk, not a partition.
        let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
        ensure!(
            sys.exists(),
            "{} is not on a block device ({major}:{minor})",
            path.display()
        );
        let disk = if sys.join("partition").exists() {
            std::fs::read_to_string(sys.join("../dev"))?
                .trim()
                .to_string()
        } else {
            format!("{major}:{minor}")
        };
        let name = format!("ze-bench-{}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/blkio");
        let (dir, v2) = if v1.join("blkio.throttle.read_bps_device").exists() {
            (v1.join(&name), false)
        } else if std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "io"))
        {
            let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+io");
            (Path::new("/sys/fs/cgroup").join(&name), true)
        } else {
            bail!("no blkio (v1) or io (v2) cgroup controller");
        };
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let t = Throttle { dir, v2, disk };
        let (file, line) = if t.v2 {
            ("io.max", format!("{} rbps={bps}", t.disk))
        } else {
            (
                "blkio.throttle.read_bps_device",
                format!("{} {bps}", t.disk),
            )
        };
        std::fs::write(t.dir.join(file), line)
            .with_context(|| format!("writing {}", t.dir.join(file).display()))?;
        Ok(t)
    }

    /// Bytes read from the disk by the cgroup so far.
    fn read_bytes(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("io.stat", "rbytes=")
        } else {
            ("blkio.throttle.io_service_bytes", "Read ")
        };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(&format!("{} ", self.disk)))
            .filter_map(|l| {
                let at = l.find(key)? + key.len();
                l[at..].split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// `bash -c SCRIPT` with the shell (and everything it starts) in the cgroup.
    fn bash(&self, script: &str) -> Command {
        let mut c = Command::new("bash");
        c.args(["-o", "pipefail", "-c"]).arg(format!(
            "echo $$ > {}/cgroup.procs && {script}",
            self.dir.display()
        ));
        c
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        // Our processes have exited; move nothing, just remove the empty group.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn nix_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn nix_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

/// Drops `file`'s pages from the page cache (posix_fadvise DONTNEED via dd).
fn drop_cache(file: &Path) -> Result<()> {
    let st = Command::new("dd")
        .arg(format!("if={}", file.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status()?;
    ensure!(st.success(), "dd iflag=nocache on {}", file.display());
    Ok(())
}

/// Reads `file` once so it sits in the page cache.
fn warm(file: &Path) -> Result<()> {
    let st = Command::new("cat")
        .arg(file)
        .stdout(std::process::Stdio::null())
        .status()?;
    ensure!(st.success());
    Ok(())
}

fn timed(mut c: Command) -> Result<f64> {
    let t = Instant::now();
    let o = c.output()?;
    if !o.status.success() {
        bail!(
            "{c:?} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Runs the ISO benchmark and prints its table. `gz` is the 1 GiB image, gzip.
pub fn run(runs: usize, gz: &Path) -> Result<()> {
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let init = artifacts::ze_init()?;
    let root = medium(&dir, gz)?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("ze-install/manifest.json"))?)?;
    let name = manifest["image"]["name"]
        .as_str()
        .context("manifest has no image name")?
        .to_string();
    let image = root.join("ze-install/images").join(&name);
    let stored = std::fs::metadata(&image)?.len();
    let target = dir.join("iso-out.raw");
    let ours = |t: Option<&Throttle>| -> Command {
        let cmd = format!(
            "{} install --media {} --target {} --cmdline 'ze.source=iso ze.media-id={MEDIA_ID} ze.image={name} ze.log=warn'",
            init.display(),
            root.display(),
            target.display()
        );
        match t {
            Some(t) => t.bash(&format!("exec {cmd}")),
            None => {
                let mut c = Command::new("bash");
                c.args(["-c", &cmd]);
                c
            }
        }
    };
    // The seed's order: hash the file, then decompress and write it.
    let hash = format!("sha256sum {} > /dev/null", image.display());
    let write = format!(
        "gzip -dc {} | dd of={} bs=4M oflag=direct status=none",
        image.display(),
        target.display()
    );
    let fresh = || -> Result<()> {
        let _ = std::fs::remove_file(&target);
        Command::new("sync").status()?;
        Ok(())
    };

    println!();
    println!(
        "ISO install of a 1 GiB image ({name}, {:.0} MiB stored, 75 % zeroes), {runs} runs, median seconds",
        stored as f64 / f64::from(1 << 20)
    );
    println!(
        "{:<32} {:>8} {:>9} | {:>9} {:>8} {:>8} {:>9} | {:>6}",
        "medium", "ze-init", "read MiB", "sha256sum", "gzip|dd", "2-pass", "read MiB", "ratio"
    );
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let throttle = Throttle::new(&image, MEDIUM_BPS);
    let rows: [(&str, bool, bool); 3] = [
        ("page cache", false, false),
        ("40 MB/s, 2nd pass from RAM", true, false),
        ("40 MB/s, image larger than RAM", true, true),
    ];
    for (label, slow, drop_between) in rows {
        let t = match (&throttle, slow) {
            (Ok(t), true) => Some(t),
            (Err(e), true) => {
                println!("{label:<32} skipped: cannot throttle reads: {e:#}");
                continue;
            }
            _ => None,
        };
        let read = || t.map(|t| t.read_bytes()).unwrap_or(0);
        let shell = |script: &str| -> Command {
            match t {
                Some(t) => t.bash(script),
                None => {
                    let mut c = Command::new("bash");
                    c.args(["-o", "pipefail", "-c", script]);
                    c
                }
            }
        };
        // (ze-init s, its reads, sha256sum s, gzip|dd s, the baseline's reads)
        let mut v: Vec<(f64, u64, f64, f64, u64)> = Vec::new();
        for _ in 0..runs {
            let start = || -> Result<()> {
                fresh()?;
                if slow {
                    drop_cache(&image)
                } else {
                    warm(&image)
                }
            };
            start()?;
            let r0 = read();
            let ze = timed(ours(t))?;
            let ze_read = read() - r0;
            start()?;
            let r0 = read();
            let pass1 = timed(shell(&hash))?;
            if drop_between {
                drop_cache(&image)?;
            }
            let pass2 = timed(shell(&write))?;
            v.push((ze, ze_read, pass1, pass2, read() - r0));
        }
        v.sort_by(|a, b| (a.2 + a.3).total_cmp(&(b.2 + b.3)));
        let base = v[v.len() / 2];
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ze = v[v.len() / 2];
        let reads = |b: u64| {
            if slow {
                format!("{:.0}", mib(b))
            } else {
                "-".into()
            }
        };
        println!(
            "{label:<32} {:>8.2} {:>9} | {:>9.2} {:>8.2} {:>8.2} {:>9} | {:>6.2}",
            ze.0,
            reads(ze.1),
            base.2,
            base.3,
            base.2 + base.3,
            reads(base.4),
            ze.0 / (base.2 + base.3)
        );
    }
    let _ = std::fs::remove_file(&target);
    Ok(())
}
