//! The install medium's contract (SPEC "ISO source"): what a mounted filesystem must
//! hold to be the medium this boot was made for, checked over a plain directory so
//! tests run on fixture trees and host mode runs on an extracted ISO.
//!
//! ```text
//! /ze-install/media-id                 32 hex, equal to ze.media-id
//! /ze-install/manifest.json            what the packer wrote ([`Manifest`])
//! /ze-install/images/<ze.image>        the image, gzip exactly when named *.gz
//! /ze-install/images/<ze.image>.sha256 sha256 of the file as stored (mandatory)
//! /ze-install/autoinstall.env          optional kldload answers file
//! ```
//!
//! Nothing here reads the image beyond its first two bytes (the gzip magic): the write
//! pipeline reads it once, hashing while it writes.

use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub const MEDIA_ID: &str = "ze-install/media-id";
pub const MANIFEST: &str = "ze-install/manifest.json";
pub const IMAGES: &str = "ze-install/images";
/// `answers::ISO_PATH` relative to the medium's root.
pub const ANSWERS: &str = "ze-install/autoinstall.env";
/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Small files are read with a bound: a medium is data from outside.
const SMALL: u64 = 64 * 1024;

/// `/ze-install/manifest.json`, written by `ze-pack iso`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub media_id: String,
    /// Seconds since the epoch (`SOURCE_DATE_EPOCH` when the packer had it).
    pub created: u64,
    pub image: ManifestImage,
    /// The kernel command line the boot config carries.
    pub cmdline: String,
    /// `ze-pack <version>`.
    pub packer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestImage {
    /// File name under `/ze-install/images/`.
    pub name: String,
    /// Size of the file as stored (what the sidecar's digest covers).
    pub stored_bytes: u64,
    /// Size of the image once decompressed: what the target disk must hold.
    pub image_bytes: u64,
    pub sha256: String,
    pub gzip: bool,
}

/// Why a mounted filesystem (or a device, or an ISO file) is not the install medium.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no medium (size 0)")]
    Empty,
    #[error("cannot read it: {0}")]
    Unreadable(String),
    #[error("not iso9660 ({0})")]
    NotIso9660(String),
    #[error("cannot mount it ({fs}): {error}")]
    Mount { fs: &'static str, error: String },
    #[error("cannot attach a loop device: {0}")]
    Loop(String),
    #[error("{fs}: no *.iso or */*.iso files")]
    NoIsoFiles { fs: &'static str },
    #[error("missing /{MEDIA_ID} (not a ze-install medium)")]
    NotOurs,
    #[error("wrong media-id {found} (this boot wants {wanted})")]
    WrongMediaId { found: String, wanted: String },
    #[error("missing /{0}")]
    Missing(String),
    #[error("/{file}: {problem}")]
    Bad { file: String, problem: String },
}

/// What the installer uses from a medium that passed [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// The image file (under the medium's root).
    pub image: PathBuf,
    pub name: String,
    pub stored_bytes: u64,
    /// The decompressed size, when the manifest describes this image.
    pub image_bytes: Option<u64>,
    /// From the sidecar.
    pub sha256: String,
    pub gzip: bool,
    pub manifest: Manifest,
}

/// Reads at most [`SMALL`] bytes; `Ok(None)` when the file does not exist.
fn read_small(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    f.take(SMALL + 1).read_to_end(&mut out)?;
    if out.len() as u64 > SMALL {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {SMALL} bytes"),
        ));
    }
    Ok(Some(out))
}

/// Text from a medium, shortened and escaped so a log line stays one readable line.
fn shown(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let t: String = s.chars().take(40).collect();
    let more = if s.chars().count() > 40 { "…" } else { "" };
    format!("{t:?}{more}")
}

fn bad(file: &str, problem: impl Into<String>) -> Rejection {
    Rejection::Bad {
        file: file.to_string(),
        problem: problem.into(),
    }
}

/// Whether the medium mounted at `root` was made for this boot: its media-id file
/// equals `media_id`.
pub fn identify(root: &Path, media_id: &str) -> Result<(), Rejection> {
    let bytes = read_small(&root.join(MEDIA_ID))
        .map_err(|e| bad(MEDIA_ID, e.to_string()))?
        .ok_or(Rejection::NotOurs)?;
    let found = String::from_utf8_lossy(&bytes);
    if found.trim() != media_id {
        return Err(Rejection::WrongMediaId {
            found: shown(found.trim().as_bytes()),
            wanted: media_id.to_string(),
        });
    }
    Ok(())
}

/// The medium's answers file, if it has one.
pub fn answers(root: &Path) -> Result<Option<Vec<u8>>, Rejection> {
    read_small(&root.join(ANSWERS)).map_err(|e| bad(ANSWERS, e.to_string()))
}

/// Checks the manifest, the image `image` and its sidecar on the medium at `root`.
pub fn contents(root: &Path, image: &str) -> Result<Contents, Rejection> {
    let manifest = read_small(&root.join(MANIFEST))
        .map_err(|e| bad(MANIFEST, e.to_string()))?
        .ok_or_else(|| Rejection::Missing(MANIFEST.into()))?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest).map_err(|e| bad(MANIFEST, e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(bad(
            MANIFEST,
            format!(
                "format {} (this installer reads format {FORMAT})",
                manifest.format
            ),
        ));
    }

    let rel = format!("{IMAGES}/{image}");
    let path = root.join(&rel);
    let meta = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Err(bad(&rel, "is not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Rejection::Missing(rel)),
        Err(e) => return Err(bad(&rel, e.to_string())),
    };
    let side = format!("{rel}.sha256");
    let text = read_small(&root.join(&side))
        .map_err(|e| bad(&side, e.to_string()))?
        .ok_or_else(|| Rejection::Missing(side.clone()))?;
    let sha256 = crate::install::parse_sidecar(&String::from_utf8_lossy(&text))
        .map_err(|e| bad(&side, e))?;

    // The name says whether the pipeline will decompress; the bytes must agree.
    let mut magic = [0u8; 2];
    let n = std::fs::File::open(&path)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| bad(&rel, e.to_string()))?;
    let is_gzip = n == 2 && magic == [0x1f, 0x8b];
    let named_gz = image.ends_with(".gz");
    if named_gz != is_gzip {
        return Err(bad(
            &rel,
            if named_gz {
                "is named *.gz but is not gzip data"
            } else {
                "is gzip data but not named *.gz"
            },
        ));
    }

    let mut image_bytes = None;
    if manifest.image.name == image {
        if manifest.image.stored_bytes != meta.len() {
            return Err(bad(
                &rel,
                format!(
                    "is {} bytes but the manifest says {} (an incomplete copy?)",
                    meta.len(),
                    manifest.image.stored_bytes
                ),
            ));
        }
        if !manifest.image.sha256.eq_ignore_ascii_case(&sha256) {
            return Err(bad(
                MANIFEST,
                format!(
                    "sha256 {} disagrees with the sidecar's {sha256}",
                    shown(manifest.image.sha256.as_bytes())
                ),
            ));
        }
        image_bytes = Some(manifest.image.image_bytes);
    }
    Ok(Contents {
        image: path,
        name: image.to_string(),
        stored_bytes: meta.len(),
        image_bytes,
        sha256,
        gzip: is_gzip,
        manifest,
    })
}

/// [`identify`] then [`contents`]: the whole check for a medium without an answers file
/// that could change `ze.image`.
pub fn check(root: &Path, media_id: &str, image: &str) -> Result<Contents, Rejection> {
    identify(root, media_id)?;
    contents(root, image)
}

/// Builders for fixture media (unit tests here and in `media`).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub fn sha(data: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        crate::write::hex(&Sha256::digest(data))
    }

    /// A medium as `ze-pack iso` lays it out, with a gzip image `name`; returns the
    /// image as stored.
    pub fn medium(dir: &Path, id: &str, name: &str) -> Vec<u8> {
        let stored = gz(&[7u8; 4096]);
        std::fs::create_dir_all(dir.join(IMAGES)).unwrap();
        std::fs::write(dir.join(MEDIA_ID), format!("{id}\n")).unwrap();
        let manifest = Manifest {
            format: 1,
            media_id: id.into(),
            created: 0,
            image: ManifestImage {
                name: name.into(),
                stored_bytes: stored.len() as u64,
                image_bytes: 4096,
                sha256: sha(&stored),
                gzip: true,
            },
            cmdline: String::new(),
            packer: "test".into(),
        };
        std::fs::write(dir.join(MANIFEST), serde_json::to_vec(&manifest).unwrap()).unwrap();
        std::fs::write(dir.join(IMAGES).join(name), &stored).unwrap();
        std::fs::write(
            dir.join(IMAGES).join(format!("{name}.sha256")),
            format!("{}  {name}\n", sha(&stored)),
        )
        .unwrap();
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";
    const IMG: &str = "ze.img.gz";

    use super::testing::{gz, sha};

    fn medium(dir: &Path) -> Vec<u8> {
        super::testing::medium(dir, ID, IMG)
    }

    #[test]
    fn the_right_medium_passes_with_its_digest_and_sizes() {
        let t = tempfile::tempdir().unwrap();
        let stored = medium(t.path());
        let c = check(t.path(), ID, IMG).unwrap();
        assert_eq!(c.sha256, sha(&stored));
        assert_eq!(c.stored_bytes, stored.len() as u64);
        assert_eq!(c.image_bytes, Some(4096));
        assert!(c.gzip);
        assert_eq!(c.image, t.path().join("ze-install/images/ze.img.gz"));
    }

    #[test]
    fn a_medium_for_another_boot_is_rejected_with_both_ids() {
        let t = tempfile::tempdir().unwrap();
        medium(t.path());
        let other = "ffffffffffffffffffffffffffffffff";
        let e = check(t.path(), other, IMG).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("wrong media-id \"{ID}\" (this boot wants {other})")
        );
    }

    #[test]
    fn a_filesystem_without_media_id_is_not_ours() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(check(t.path(), ID, IMG).unwrap_err(), Rejection::NotOurs);
        assert_eq!(
            Rejection::NotOurs.to_string(),
            "missing /ze-install/media-id (not a ze-install medium)"
        );
    }

    #[test]
    fn a_missing_sidecar_is_rejected_even_though_the_image_is_there() {
        let t = tempfile::tempdir().unwrap();
        medium(t.path());
        std::fs::remove_file(t.path().join(IMAGES).join("ze.img.gz.sha256")).unwrap();
        let e = check(t.path(), ID, IMG).unwrap_err();
        assert_eq!(e.to_string(), "missing /ze-install/images/ze.img.gz.sha256");
    }

    #[test]
    fn a_sidecar_that_is_not_a_digest_is_rejected() {
        let t = tempfile::tempdir().unwrap();
        medium(t.path());
        std::fs::write(
            t.path().join(IMAGES).join("ze.img.gz.sha256"),
            "not-a-digest ze.img.gz\n",
        )
        .unwrap();
        let e = check(t.path(), ID, IMG).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/ze-install/images/ze.img.gz.sha256: \"not-a-digest\" is not a sha256 hex digest"
        );
    }

    #[test]
    fn a_sidecar_that_disagrees_with_the_manifest_is_rejected() {
        let t = tempfile::tempdir().unwrap();
        medium(t.path());
        let other = "ab".repeat(32);
        std::fs::write(
            t.path().join(IMAGES).join("ze.img.gz.sha256"),
            format!("{other}  ze.img.gz\n"),
        )
        .unwrap();
        let e = check(t.path(), ID, IMG).unwrap_err().to_string();
        assert!(e.starts_with("/ze-install/manifest.json: sha256 "), "{e}");
        assert!(
            e.ends_with(&format!("disagrees with the sidecar's {other}")),
            "{e}"
        );
    }

    #[test]
    fn missing_image_manifest_and_a_truncated_copy_are_rejected() {
        let t = tempfile::tempdir().unwrap();
        medium(t.path());
        assert_eq!(
            check(t.path(), ID, "other.img").unwrap_err().to_string(),
            "missing /ze-install/images/other.img"
        );
        let img = t.path().join(IMAGES).join(IMG);
        let mut data = std::fs::read(&img).unwrap();
        let full = data.len();
        data.truncate(full - 10);
        std::fs::write(&img, &data).unwrap();
        assert_eq!(
            check(t.path(), ID, IMG).unwrap_err().to_string(),
            format!(
                "/ze-install/images/ze.img.gz: is {} bytes but the manifest says {full} (an incomplete copy?)",
                full - 10
            )
        );
        std::fs::remove_file(t.path().join(MANIFEST)).unwrap();
        assert_eq!(
            check(t.path(), ID, IMG).unwrap_err(),
            Rejection::Missing("ze-install/manifest.json".into())
        );
        std::fs::write(t.path().join(MANIFEST), "{").unwrap();
        let e = check(t.path(), ID, IMG).unwrap_err().to_string();
        assert!(e.starts_with("/ze-install/manifest.json: EOF"), "{e}");
    }

    #[test]
    fn the_name_and_the_gzip_magic_must_agree() {
        let t = tempfile::tempdir().unwrap();
        medium(t.path());
        let dir = t.path().join(IMAGES);
        std::fs::write(dir.join("raw.img"), gz(b"x")).unwrap();
        std::fs::write(dir.join("raw.img.sha256"), "a".repeat(64)).unwrap();
        assert_eq!(
            check(t.path(), ID, "raw.img").unwrap_err().to_string(),
            "/ze-install/images/raw.img: is gzip data but not named *.gz"
        );
        std::fs::write(dir.join("fake.img.gz"), b"plain").unwrap();
        std::fs::write(dir.join("fake.img.gz.sha256"), "a".repeat(64)).unwrap();
        assert_eq!(
            check(t.path(), ID, "fake.img.gz").unwrap_err().to_string(),
            "/ze-install/images/fake.img.gz: is named *.gz but is not gzip data"
        );
        // An image the manifest does not describe: no decompressed size, still fine.
        std::fs::write(dir.join("plain.img"), b"plain").unwrap();
        std::fs::write(dir.join("plain.img.sha256"), "a".repeat(64)).unwrap();
        let c = check(t.path(), ID, "plain.img").unwrap();
        assert_eq!((c.image_bytes, c.gzip), (None, false));
    }

    #[test]
    fn answers_are_optional_and_bounded() {
        let t = tempfile::tempdir().unwrap();
        medium(t.path());
        assert_eq!(answers(t.path()).unwrap(), None);
        std::fs::write(t.path().join(ANSWERS), "KLDLOAD_DISK=/dev/vdb\n").unwrap();
        assert_eq!(
            answers(t.path()).unwrap().as_deref(),
            Some(&b"KLDLOAD_DISK=/dev/vdb\n"[..])
        );
        std::fs::write(t.path().join(ANSWERS), vec![b'#'; 70_000]).unwrap();
        assert!(answers(t.path()).is_err());
    }
}
