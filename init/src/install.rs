//! The install once the source is known: for HTTP the checksum, database, image and
//! write; for ISO media the digest and the single-pass write from the medium. Shared by
//! PID 1 (`boot.rs`) and host mode (`ze-init install`).

use crate::boot::Fatal;
use crate::config::Config;
use crate::disk::human_size;
use crate::source::http::{Client, HttpError, Settings};
use crate::write::{self, Options, Outcome, Progress, Target, WriteError};
use std::path::Path;
use std::time::Duration;

/// The largest database we accept (it is held in memory until the image is written).
pub const DATABASE_LIMIT: u64 = 64 << 20;
const SIDECAR_LIMIT: u64 = 4096;

pub const DATABASE_PATH: &str = "/install/database.zefs";

pub fn image_path(image: &str) -> String {
    format!("/install/image/{image}")
}

/// The HTTP client for `ze.server:ze.port` with the configured stall timeout.
pub fn client(cfg: &Config) -> Client {
    let server = cfg.server.expect("checked: http source has a server");
    Client::new(
        &format!("http://{server}:{}", cfg.port),
        Settings {
            stall: Duration::from_secs(cfg.stall_timeout.into()),
            ..Settings::default()
        },
    )
}

/// First field of a `sha256sum`-style sidecar, validated.
pub fn parse_sidecar(text: &str) -> Result<String, String> {
    let field = text.split_whitespace().next().unwrap_or("");
    if field.len() == 64 && field.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(field.to_ascii_lowercase())
    } else {
        Err(format!("{field:?} is not a sha256 hex digest"))
    }
}

/// The digest to verify against: `ze.sha256`, else the server's sidecar, else none
/// (warned loudly: the seed installer writes unverified images too, but nobody should).
pub fn expected_digest(cfg: &Config, client: &Client) -> Result<Option<String>, Fatal> {
    if let Some(d) = &cfg.sha256 {
        log::info!("checksum from ze.sha256: {d}");
        return Ok(Some(d.clone()));
    }
    let path = format!("{}.sha256", image_path(&cfg.image));
    match client.fetch(&path, SIDECAR_LIMIT) {
        Ok(Some(body)) => {
            let text = String::from_utf8_lossy(&body);
            let d = parse_sidecar(&text)
                .map_err(|e| Fatal::new("download", format!("{}: {e}", client.url(&path))))?;
            log::info!("checksum from {}: {d}", client.url(&path));
            Ok(Some(d))
        }
        Ok(None) => {
            log::warn!(
                "NO CHECKSUM: {} is missing and ze.sha256 is not set; the image will be written UNVERIFIED",
                client.url(&path)
            );
            Ok(None)
        }
        Err(e) => Err(Fatal::new("download", e)),
    }
}

/// Fetches the database before any byte is written, so a missing one fails the install
/// while the disk is untouched.
pub fn fetch_database(client: &Client) -> Result<Vec<u8>, Fatal> {
    match client.fetch(DATABASE_PATH, DATABASE_LIMIT) {
        Ok(Some(db)) => {
            log::info!(
                "database: {} bytes from {}",
                db.len(),
                client.url(DATABASE_PATH)
            );
            Ok(db)
        }
        Ok(None) => Err(Fatal::new(
            "download",
            format!(
                "GET {}: 404 Not Found (a network install needs the database)",
                client.url(DATABASE_PATH)
            ),
        )),
        Err(e) => Err(Fatal::new("download", e)),
    }
}

/// Opens the target and refuses, before writing anything, one too small for the image.
pub fn open_target(path: &Path, stored_len: Option<u64>) -> Result<Target, Fatal> {
    let t =
        Target::open(path).map_err(|e| Fatal::new("disk", format!("{}: {e}", path.display())))?;
    // The stored size is a lower bound of the image size (equal for a raw image).
    if let (Some(cap), Some(need)) = (t.size(), stored_len)
        && cap < need
    {
        return Err(Fatal::new(
            "disk",
            format!(
                "{} is {}, the image needs at least {} ({need} bytes); nothing was written",
                path.display(),
                human_size(cap),
                human_size(need)
            ),
        ));
    }
    Ok(t)
}

/// Downloads and writes the image. Failures name their stage: `download`, `write` or
/// `verify`.
pub fn download_and_write(
    cfg: &Config,
    client: &Client,
    target_path: &Path,
    expected: Option<String>,
    progress: &Progress,
) -> Result<(Outcome, Target), Fatal> {
    let path = image_path(&cfg.image);
    let mut dl = client.open(&path).map_err(|e| Fatal::new("download", e))?;
    log::info!(
        "image: {} ({})",
        dl.url(),
        dl.total()
            .map(human_size)
            .unwrap_or_else(|| "size unknown".into())
    );
    let mut target = open_target(target_path, dl.total())?;
    progress.set_total(dl.total());
    let opts = Options {
        expected_sha256: expected,
        label: cfg.image.clone(),
        ..Options::default()
    };
    let outcome =
        write::write_image(&mut dl, &mut target, &opts, progress).map_err(|e| match e {
            WriteError::Source(io) => Fatal::new("download", source_message(io)),
            WriteError::Digest { .. } => Fatal::new("verify", e),
            other => Fatal::new("write", other),
        })?;
    Ok((outcome, target))
}

fn source_message(e: std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<HttpError>()) {
        Some(h) => h.to_string(),
        None => e.to_string(),
    }
}

/// The digest an ISO install verifies against: `ze.sha256` when given (it overrides the
/// sidecar, SPEC "Kernel command line"), else the medium's mandatory sidecar.
pub fn media_digest(cfg: &Config, contents: &crate::source::iso::Contents) -> String {
    match &cfg.sha256 {
        Some(d) if *d != contents.sha256 => {
            log::warn!(
                "checksum from ze.sha256 ({d}) overrides the sidecar on the medium ({})",
                contents.sha256
            );
            d.clone()
        }
        Some(d) => d.clone(),
        None => contents.sha256.clone(),
    }
}

/// Writes the image file of an ISO medium to `target_path` in one pass over the file:
/// the pipeline hashes the stored bytes while it decompresses and writes, first MiB
/// last (the seed's installer read the medium twice: hash, then write). Failures name
/// their stage: `media` (reading the medium), `write`, `verify`.
pub fn write_from_media(
    contents: &crate::source::iso::Contents,
    target_path: &Path,
    expected: String,
    progress: &Progress,
) -> Result<(Outcome, Target), Fatal> {
    let path = &contents.image;
    let mut file = std::fs::File::open(path)
        .map_err(|e| Fatal::new("media", format!("opening {}: {e}", path.display())))?;
    // Twice the readahead window: the medium is read front to back exactly once.
    if let Err(e) = nix::fcntl::posix_fadvise(
        &file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
    ) {
        log::debug!("posix_fadvise {}: {e}", path.display());
    }
    let mut target = open_target(target_path, Some(contents.stored_bytes))?;
    progress.set_total(Some(contents.stored_bytes));
    let opts = Options {
        expected_sha256: Some(expected),
        label: contents.name.clone(),
        // A file does not restart; a read error is final.
        max_restarts: 0,
        ..Options::default()
    };
    let outcome =
        write::write_image(&mut file, &mut target, &opts, progress).map_err(|e| match e {
            WriteError::Source(io) => {
                Fatal::new("media", format!("reading {}: {io}", path.display()))
            }
            WriteError::Digest { .. } => Fatal::new("verify", e),
            other => Fatal::new("write", other),
        })?;
    Ok((outcome, target))
}

/// After a failure past the write (injection): makes the target unbootable again by
/// zeroing its first (and last) MiB. Errors are logged: the FATAL that follows matters
/// more.
pub fn unbootable(path: &Path) {
    match Target::open(path).and_then(|mut t| t.invalidate()) {
        Ok(()) => log::info!(
            "zeroed the first MiB of {}: it will not boot",
            path.display()
        ),
        Err(e) => log::error!("could not zero the first MiB of {}: {e}", path.display()),
    }
}

/// `[ze-install] DONE image=… sha256=… bytes=… seconds=… MB/s=…`
pub fn done_line(image: &str, o: &Outcome) -> String {
    let rate = if o.seconds > 0.0 {
        o.image_bytes as f64 / o.seconds / 1e6
    } else {
        0.0
    };
    format!(
        "DONE image={image} sha256={} bytes={} seconds={:.1} MB/s={rate:.1}{}",
        o.sha256,
        o.image_bytes,
        o.seconds,
        if o.verified { "" } else { " verified=no" }
    )
}

/// The database's place inside partition 4's filesystem (`/perm` on the booted image).
pub const DATABASE_FILE: &str = "ze/database.zefs";
/// The partition that holds it.
pub const DATABASE_PARTITION: u32 = 4;

/// Writes `db` as `<root>/ze/database.zefs` atomically: a temporary file, fsync, rename,
/// fsync of the directory. A power cut leaves the old file or the new one, never half.
pub fn write_database(root: &Path, db: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = root.join("ze");
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(".database.zefs.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(db)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, root.join(DATABASE_FILE))?;
    crate::sys::block::fsync_dir(&dir).map_err(std::io::Error::other)
}

/// Where partition 4 is: a disk the kernel knows (sysfs entry), or a file (host mode).
pub enum Written<'a> {
    Disk(&'a crate::disk::BlockDevice),
    File(&'a Path),
}

/// Mounts partition 4 privately under `mount_base`, writes the database, unmounts.
/// Returns how the partition was reached (`node` or `loop`).
pub fn inject_database(
    written: Written<'_>,
    sys_root: &Path,
    dev_root: &Path,
    mount_base: &Path,
    db: &[u8],
) -> Result<&'static str, Fatal> {
    use crate::disk::partition::{Kernel, PartitionDevice, Wait, open_partition};
    use crate::sys::loopdev::{LoopDevice, LoopOptions};
    use crate::sys::mount::mount_private_ext4;
    let f = |e: &dyn std::fmt::Display| Fatal::new("inject", e.to_string());
    let n = DATABASE_PARTITION;
    let (device, how): (PartitionDevice<LoopDevice>, &'static str) = match written {
        Written::Disk(disk) => {
            let mut ops = Kernel {
                dev_root: dev_root.to_path_buf(),
            };
            let p = open_partition(sys_root, dev_root, disk, n, &mut ops, Wait::default())
                .map_err(|e| f(&e))?;
            let how = p.how();
            (p, how)
        }
        Written::File(path) => {
            let range = std::fs::File::open(path)
                .map_err(crate::disk::gpt::GptError::Io)
                .and_then(|mut file| crate::disk::gpt::read_partition(&mut file, n, 512))
                .map_err(|e| f(&format!("{}: partition {n}: {e}", path.display())))?;
            let lo = LoopDevice::attach(
                dev_root,
                path,
                &LoopOptions {
                    offset: range.start,
                    size_limit: range.len,
                    ..LoopOptions::default()
                },
            )
            .map_err(|e| f(&e))?;
            log::info!(
                "partition {n}: loop device {} over {} bytes {}+{}",
                lo.path().display(),
                path.display(),
                range.start,
                range.len
            );
            (PartitionDevice::Loop { device: lo, range }, "loop")
        }
    };
    let mounted = mount_private_ext4(device.path(), mount_base).map_err(|e| f(&e))?;
    let written = write_database(mounted.target(), db).map_err(|e| {
        f(&format!(
            "writing {} on {}: {e}",
            DATABASE_FILE,
            device.path().display()
        ))
    });
    let unmounted = mounted.unmount().map_err(|e| f(&e));
    written?;
    unmounted?;
    if let PartitionDevice::Loop { device, .. } = device {
        device.detach().map_err(|e| f(&e))?;
    }
    log::info!(
        "database: {} bytes written to /{DATABASE_FILE} on partition {n} ({how})",
        db.len()
    );
    Ok(how)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_takes_the_first_field() {
        let d = "A".repeat(64);
        assert_eq!(parse_sidecar(&format!("{d}  ze.img\n")), Ok("a".repeat(64)));
        assert!(parse_sidecar("").is_err());
        assert!(parse_sidecar("abc ze.img").unwrap_err().contains("\"abc\""));
    }

    #[test]
    fn done_line_has_every_field() {
        let o = Outcome {
            stored_bytes: 10,
            image_bytes: 2_000_000,
            sha256: "ab".into(),
            gzip: false,
            verified: true,
            zeroed_bytes: 0,
            restarts: 0,
            seconds: 2.0,
        };
        assert_eq!(
            done_line("ze.img", &o),
            "DONE image=ze.img sha256=ab bytes=2000000 seconds=2.0 MB/s=1.0"
        );
    }
}
