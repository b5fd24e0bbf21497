//! A byte-reproducible newc cpio archive, gzip-compressed.
//!
//! Entries are collected first and written sorted by path, every parent directory is
//! implied, and all metadata that would vary between machines or runs is fixed: uid, gid
//! and inode 0, one link, mtime 0 or `SOURCE_DATE_EPOCH`, and a gzip header with mtime
//! 0. Packing the same inputs twice gives the same bytes.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File { data: Vec<u8>, mode: u32 },
}

/// An archive being assembled.
#[derive(Debug, Default)]
pub struct Archive {
    /// Path without a leading slash → node.
    nodes: BTreeMap<String, Node>,
    mtime: u32,
}

/// Checks an absolute destination inside the archive and returns it without the leading
/// slash. Refuses anything that could escape the root or is ambiguous: relative paths,
/// `..`, `.`, empty components and the root itself.
pub fn archive_path(dest: &str) -> Result<String> {
    if !dest.starts_with('/') {
        bail!("destination {dest:?} must be an absolute path inside the initrd");
    }
    if dest.contains("//") || dest.ends_with('/') {
        bail!("destination {dest:?} has an empty path component");
    }
    let mut parts = Vec::new();
    for c in Path::new(dest).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(p) => parts.push(
                p.to_str()
                    .with_context(|| format!("destination {dest:?} is not UTF-8"))?,
            ),
            Component::ParentDir => bail!("destination {dest:?} escapes the initrd root (..)"),
            Component::CurDir | Component::Prefix(_) => {
                bail!("destination {dest:?} is not a normalized path")
            }
        }
    }
    if parts.is_empty() {
        bail!("destination {dest:?} is the root itself");
    }
    if dest.split('/').any(|p| p == ".") {
        bail!("destination {dest:?} is not a normalized path");
    }
    Ok(parts.join("/"))
}

impl Archive {
    /// `mtime` is stamped on every entry: 0, or `SOURCE_DATE_EPOCH`.
    pub fn new(mtime: u32) -> Archive {
        Archive {
            nodes: BTreeMap::new(),
            mtime,
        }
    }

    /// The entry time from `SOURCE_DATE_EPOCH`, or 0 when unset.
    pub fn mtime_from_env() -> Result<u32> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => v
                .trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
            Err(_) => Ok(0),
        }
    }

    /// Adds a directory (and its parents).
    pub fn add_dir(&mut self, dest: &str) -> Result<()> {
        let path = archive_path(dest)?;
        self.add_parents(&path)?;
        match self.nodes.get(&path) {
            None | Some(Node::Dir) => {
                self.nodes.insert(path, Node::Dir);
                Ok(())
            }
            Some(Node::File { .. }) => bail!("{dest} is already a file in the initrd"),
        }
    }

    /// Adds a regular file with its parents. The mode's permission bits are kept
    /// (0755 or 0644 are what callers pass); adding the same path twice is an error.
    pub fn add_file(&mut self, dest: &str, data: Vec<u8>, mode: u32) -> Result<()> {
        let path = archive_path(dest)?;
        self.add_parents(&path)?;
        if self.nodes.contains_key(&path) {
            bail!("{dest} is given twice");
        }
        self.nodes.insert(
            path,
            Node::File {
                data,
                mode: mode & 0o7777,
            },
        );
        Ok(())
    }

    fn add_parents(&mut self, path: &str) -> Result<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for p in &parts[..parts.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(p);
            match self.nodes.get(&prefix) {
                Some(Node::File { .. }) => {
                    bail!("/{prefix} is a file but /{path} needs it to be a directory")
                }
                _ => {
                    self.nodes.insert(prefix.clone(), Node::Dir);
                }
            }
        }
        Ok(())
    }

    /// Paths in the order they will be written.
    pub fn paths(&self) -> Vec<&str> {
        self.nodes.keys().map(String::as_str).collect()
    }

    /// Writes the uncompressed newc stream.
    pub fn write_cpio<W: Write>(&self, mut out: W) -> Result<W> {
        for (path, node) in &self.nodes {
            let (mode, nlink, data): (u32, u32, &[u8]) = match node {
                Node::Dir => (S_IFDIR | 0o755, 2, &[]),
                Node::File { data, mode } => (S_IFREG | mode, 1, data),
            };
            // ino 0 with nlink 1 never triggers the kernel's hard-link handling
            // (init/initramfs.c maybe_link() only looks at nlink >= 2).
            let b = cpio::newc::Builder::new(path)
                .ino(0)
                .uid(0)
                .gid(0)
                .mode(mode)
                .nlink(nlink)
                .mtime(self.mtime)
                .dev_major(0)
                .dev_minor(0)
                .rdev_major(0)
                .rdev_minor(0);
            let size =
                u32::try_from(data.len()).with_context(|| format!("{path} is over 4 GiB"))?;
            let mut w = b.write(out, size);
            w.write_all(data)?;
            out = w.finish()?;
        }
        Ok(cpio::newc::trailer(out)?)
    }

    /// The archive as a gzip stream with a fixed header (mtime 0, no name).
    pub fn to_gzip(&self) -> Result<Vec<u8>> {
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        let gz = self.write_cpio(gz)?;
        Ok(gz.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(mtime: u32) -> Archive {
        let mut a = Archive::new(mtime);
        a.add_file("/init", b"\x7fELF...".to_vec(), 0o755).unwrap();
        a.add_file(
            "/etc/kldload/autoinstall.env",
            b"KLDLOAD_DISK=/dev/vda\n".to_vec(),
            0o644,
        )
        .unwrap();
        a.add_file("/lib/modules/ze/index.json", b"{}".to_vec(), 0o644)
            .unwrap();
        a.add_file("/a-odd-size", vec![7u8; 3], 0o644).unwrap();
        a.add_dir("/run").unwrap();
        a
    }

    fn read_back(cpio_bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut r: &[u8] = cpio_bytes;
        loop {
            let mut reader = cpio::NewcReader::new(r).unwrap();
            let e = reader.entry();
            if e.is_trailer() {
                break;
            }
            let (name, mode, mtime) = (e.name().to_string(), e.mode(), e.mtime());
            assert_eq!((e.uid(), e.gid(), e.ino()), (0, 0, 0));
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            out.push((name, mode, mtime, data));
            r = reader.finish().unwrap();
        }
        out
    }

    #[test]
    fn entries_are_sorted_with_parents_and_fixed_metadata() {
        let a = sample(0);
        let bytes = a.write_cpio(Vec::new()).unwrap();
        let entries = read_back(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "a-odd-size",
                "etc",
                "etc/kldload",
                "etc/kldload/autoinstall.env",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/ze",
                "lib/modules/ze/index.json",
                "run"
            ]
        );
        let init = entries.iter().find(|e| e.0 == "init").unwrap();
        assert_eq!(init.1, 0o100755);
        assert_eq!(init.3, b"\x7fELF...");
        let etc = entries.iter().find(|e| e.0 == "etc").unwrap();
        assert_eq!(etc.1, 0o040755);
        assert!(entries.iter().all(|e| e.2 == 0));
        assert_eq!(entries[0].3, vec![7u8; 3]);
    }

    #[test]
    fn source_date_epoch_is_stamped_on_every_entry() {
        let bytes = sample(1_700_000_000).write_cpio(Vec::new()).unwrap();
        assert!(read_back(&bytes).iter().all(|e| e.2 == 1_700_000_000));
    }

    #[test]
    fn gzip_is_reproducible_and_round_trips() {
        let one = sample(0).to_gzip().unwrap();
        let two = sample(0).to_gzip().unwrap();
        assert_eq!(one, two);
        // gzip header: magic, deflate, no flags, mtime 0.
        assert_eq!(&one[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let mut cpio_bytes = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut cpio_bytes)
            .unwrap();
        assert_eq!(cpio_bytes, sample(0).write_cpio(Vec::new()).unwrap());
    }

    #[test]
    fn destinations_that_escape_or_are_ambiguous_are_refused() {
        for bad in [
            "init",
            "etc/x",
            "/",
            "/../etc/passwd",
            "/etc/../../x",
            "/etc/./x",
            "/etc//x",
            "/etc/",
            "",
        ] {
            assert!(archive_path(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(archive_path("/etc/ssl/ca.pem").unwrap(), "etc/ssl/ca.pem");
    }

    #[test]
    fn conflicting_entries_are_refused() {
        let mut a = Archive::new(0);
        a.add_file("/etc/x", vec![], 0o644).unwrap();
        assert!(
            a.add_file("/etc/x", vec![], 0o644)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(a.add_file("/etc/x/y", vec![], 0o644).is_err());
        assert!(a.add_dir("/etc/x").is_err());
        a.add_dir("/etc").unwrap();
    }
}
