//! Kernel module trees: reading `.modinfo`, resolving dependencies, building the bundle.
//!
//! Debian's `linux-image-*` packages ship no `modules.dep` (depmod runs at install time),
//! so dependencies come from each module's own `.modinfo` ELF section: NUL-separated
//! `key=value` strings, with `depends=a,b`, `softdep=pre: x post: y` and one `alias=`
//! per device pattern.

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use ze_init::modules::{Index, Module, normalize};

/// What one module's `.modinfo` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    pub name: Option<String>,
    pub depends: Vec<String>,
    pub softdeps_pre: Vec<String>,
    pub aliases: Vec<String>,
    pub vermagic: Option<String>,
}

/// Parses the `.modinfo` section of a module file (uncompressed ELF).
pub fn modinfo(elf: &[u8]) -> Result<ModInfo> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(elf).context("not an ELF object")?;
    let section = file
        .section_by_name(".modinfo")
        .context("no .modinfo section")?;
    let data = section.data().context("reading .modinfo")?;
    Ok(parse_modinfo(data))
}

/// Parses the raw `.modinfo` bytes.
pub fn parse_modinfo(data: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for entry in data.split(|b| *b == 0) {
        let Ok(s) = std::str::from_utf8(entry) else {
            continue;
        };
        let Some((k, v)) = s.split_once('=') else {
            continue;
        };
        match k {
            "name" => info.name = Some(normalize(v)),
            "depends" => info.depends.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(normalize),
            ),
            "alias" => info.aliases.push(v.to_string()),
            "vermagic" => info.vermagic = v.split_whitespace().next().map(str::to_string),
            // "pre: a b post: c": only `pre` modules must be loaded first.
            "softdep" => {
                let mut pre = false;
                for word in v.split_whitespace() {
                    match word {
                        "pre:" => pre = true,
                        "post:" => pre = false,
                        m if pre => info.softdeps_pre.push(normalize(m)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// A module tree: `/lib/modules/<release>`, or the root of an extracted
/// `linux-image-*` package (which holds `lib/modules/<release>`).
#[derive(Debug)]
pub struct Tree {
    pub release: String,
    pub root: PathBuf,
    /// Normalized name → module file.
    pub files: BTreeMap<String, PathBuf>,
    /// Names of modules built into the kernel image (`modules.builtin`).
    pub builtin: BTreeSet<String>,
}

impl Tree {
    pub fn open(path: &Path) -> Result<Tree> {
        let root = locate_release_dir(path)?;
        let release = root
            .file_name()
            .and_then(|n| n.to_str())
            .context("module tree has no release name")?
            .to_string();
        let mut files = BTreeMap::new();
        walk(&root, &mut |p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(stem) = name
                .strip_suffix(".ko")
                .or_else(|| name.strip_suffix(".ko.gz"))
                .or_else(|| name.strip_suffix(".ko.xz"))
                .or_else(|| name.strip_suffix(".ko.zst"))
            {
                files.insert(normalize(stem), p.to_path_buf());
            }
        })?;
        let builtin = std::fs::read_to_string(root.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .filter_map(|f| f.strip_suffix(".ko"))
            .map(normalize)
            .collect();
        Ok(Tree {
            release,
            root,
            files,
            builtin,
        })
    }

    /// The module's bytes, uncompressed.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self
            .files
            .get(name)
            .with_context(|| format!("module {name} is not in {}", self.root.display()))?;
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "ko" => Ok(raw),
            "gz" => {
                use std::io::Read;
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .with_context(|| format!("decompressing {}", path.display()))?;
                Ok(out)
            }
            _ => bail!(
                "{} is {ext}-compressed; only plain and gzip modules are supported \
                 (decompress the tree first)",
                path.display()
            ),
        }
    }
}

fn locate_release_dir(path: &Path) -> Result<PathBuf> {
    let lib_modules = path.join("lib/modules");
    if lib_modules.is_dir() {
        let mut releases: Vec<PathBuf> = std::fs::read_dir(&lib_modules)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        releases.sort();
        return match releases.len() {
            1 => Ok(releases.remove(0)),
            0 => bail!("{} holds no kernel release", lib_modules.display()),
            _ => bail!(
                "{} holds several releases ({}); pass one of them",
                lib_modules.display(),
                releases
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }
    if path.join("kernel").is_dir() || path.join("modules.order").is_file() {
        return Ok(path.to_path_buf());
    }
    bail!(
        "{} is neither /lib/modules/<release> nor an extracted linux-image package",
        path.display()
    )
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(&p, f)?;
        } else if ft.is_file() {
            f(&p);
        }
    }
    Ok(())
}

/// Module sets for the `--profile` option.
pub fn profile(name: &str) -> Result<(Vec<&'static str>, Vec<&'static str>)> {
    // (modules, of which always-loaded). Filesystems and loop have no device alias to
    // match, so they are loaded on every boot.
    const QEMU: &[&str] = &[
        "virtio_pci",
        "virtio_blk",
        "virtio_net",
        "virtio_scsi",
        "sd_mod",
        // The ISO tests attach the media as an IDE CD-ROM on QEMU's PIIX controller.
        "ata_piix",
        "sr_mod",
    ];
    const QEMU_ALWAYS: &[&str] = &[
        "ext4",
        "isofs",
        "vfat",
        // Debian's FAT_DEFAULT_IOCHARSET is "ascii": vfat refuses to mount without it.
        "nls_ascii",
        "nls_cp437",
        "nls_iso8859_1",
        "nls_utf8",
        "loop",
    ];
    const HARDWARE: &[&str] = &[
        "nvme",
        "ahci",
        "usb_storage",
        "uas",
        "xhci_pci",
        "ehci_pci",
        "e1000",
        "e1000e",
        "igb",
        "igc",
        "ixgbe",
        "r8169",
        "tg3",
        "bnxt_en",
        "mlx5_core",
    ];
    const HARDWARE_ALWAYS: &[&str] = &["exfat"];
    Ok(match name {
        "none" => (vec![], vec![]),
        "qemu" => (QEMU.to_vec(), QEMU_ALWAYS.to_vec()),
        "hardware" => (
            [QEMU, HARDWARE].concat(),
            [QEMU_ALWAYS, HARDWARE_ALWAYS].concat(),
        ),
        _ => bail!("unknown profile {name:?}; use none, qemu or hardware"),
    })
}

/// The resolved bundle: modules in dependency order with their bytes, and the index.
#[derive(Debug)]
pub struct Bundle {
    pub index: Index,
    pub files: Vec<(String, Vec<u8>)>,
    /// Requested modules the tree does not have (with the reason).
    pub missing: Vec<String>,
}

/// Resolves `wanted` (plus `always`) and their dependencies against the tree.
/// A name the tree lacks is an error when `strict`, else reported in `missing`; a name
/// built into the kernel is fine either way.
pub fn resolve(tree: &Tree, wanted: &[String], always: &[String], strict: bool) -> Result<Bundle> {
    let mut infos: BTreeMap<String, ModInfo> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    let mut visiting = BTreeSet::new();
    let always: BTreeSet<String> = always.iter().map(|s| normalize(s)).collect();

    for name in wanted.iter().chain(always.iter()) {
        let name = normalize(name);
        if tree.builtin.contains(&name) {
            continue;
        }
        if !tree.files.contains_key(&name) {
            let why = format!("{name} (not in {} and not built in)", tree.release);
            if strict {
                bail!("module {why}");
            }
            missing.push(why);
            continue;
        }
        visit(tree, &name, &mut infos, &mut order, &mut visiting, &[])?;
    }

    let mut index = Index {
        kernel: tree.release.clone(),
        modules: Vec::new(),
    };
    let mut files = Vec::new();
    for name in &order {
        let info = &infos[name];
        let bundled = |d: &String| order.contains(d);
        index.modules.push(Module {
            name: name.clone(),
            file: format!("{name}.ko"),
            depends: info
                .depends
                .iter()
                .filter(|d| bundled(d))
                .cloned()
                .collect(),
            softdeps: info
                .softdeps_pre
                .iter()
                .filter(|d| bundled(d))
                .cloned()
                .collect(),
            aliases: info.aliases.clone(),
            always: always.contains(name),
        });
        files.push((format!("{name}.ko"), tree.read(name)?));
    }
    Ok(Bundle {
        index,
        files,
        missing,
    })
}

/// Depth-first: dependencies land in `order` before their dependents.
fn visit(
    tree: &Tree,
    name: &str,
    infos: &mut BTreeMap<String, ModInfo>,
    order: &mut Vec<String>,
    visiting: &mut BTreeSet<String>,
    chain: &[&str],
) -> Result<()> {
    if infos.contains_key(name) {
        return Ok(());
    }
    if !visiting.insert(name.to_string()) {
        bail!("dependency cycle: {} -> {name}", chain.join(" -> "));
    }
    let bytes = tree.read(name)?;
    let path = tree.files[name].display().to_string();
    let info = modinfo(&bytes).with_context(|| format!("reading modinfo of {path}"))?;
    if let Some(n) = &info.name
        && n != name
    {
        bail!("{path} calls itself {n}, expected {name}");
    }
    let mut chain = chain.to_vec();
    chain.push(name);
    for dep in info.depends.iter() {
        if tree.builtin.contains(dep) {
            continue;
        }
        if !tree.files.contains_key(dep) {
            bail!("{name} depends on {dep}, which {} lacks", tree.release);
        }
        visit(tree, dep, infos, order, visiting, &chain)?;
    }
    for dep in info.softdeps_pre.iter() {
        // A soft dependency that is missing or built in is not an error.
        if tree.files.contains_key(dep) && !tree.builtin.contains(dep) {
            visit(tree, dep, infos, order, visiting, &chain)?;
        }
    }
    visiting.remove(name);
    infos.insert(name.to_string(), info);
    order.push(name.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/modtree")
    }

    #[test]
    fn modinfo_strings_are_split_into_fields() {
        let raw = b"license=GPL\0depends=virtio,virtio_ring\0alias=virtio:d00000002v*\0\
alias=virtio:d00000003v*\0softdep=pre: crc32c post: foo\0name=virtio_blk\0\
vermagic=6.1.0-48-cloud-amd64 SMP preempt mod_unload modversions \0";
        let i = parse_modinfo(raw);
        assert_eq!(i.name.as_deref(), Some("virtio_blk"));
        assert_eq!(i.depends, vec!["virtio", "virtio_ring"]);
        assert_eq!(i.aliases, vec!["virtio:d00000002v*", "virtio:d00000003v*"]);
        assert_eq!(i.softdeps_pre, vec!["crc32c"]);
        assert_eq!(i.vermagic.as_deref(), Some("6.1.0-48-cloud-amd64"));
        let empty = parse_modinfo(b"depends=\0");
        assert!(empty.depends.is_empty());
    }

    #[test]
    fn fixture_modules_parse_from_real_elf_objects() {
        let tree = Tree::open(&fixtures()).unwrap();
        assert_eq!(tree.release, "9.9.9-test");
        let info = modinfo(&tree.read("net_drv").unwrap()).unwrap();
        assert_eq!(info.name.as_deref(), Some("net_drv"));
        assert_eq!(info.depends, vec!["net_core", "bus_drv"]);
        assert_eq!(info.aliases, vec!["pci:v00001AF4d00001000sv*sd*bc*sc*i*"]);
        assert!(tree.builtin.contains("crc_builtin"));
    }

    #[test]
    fn resolution_orders_dependencies_first_and_drops_builtins() {
        let tree = Tree::open(&fixtures()).unwrap();
        let b = resolve(
            &tree,
            &["net-drv".into(), "nonexistent".into()],
            &["fs_mod".into()],
            false,
        )
        .unwrap();
        let names: Vec<&str> = b.index.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["net_core", "bus_core", "bus_drv", "net_drv", "fs_mod"]
        );
        let net = &b.index.modules[3];
        assert_eq!(net.depends, vec!["net_core", "bus_drv"]);
        assert!(!net.always);
        // fs_mod depends on the built-in crc_builtin (dropped) and softdeps bus_core.
        let fs = &b.index.modules[4];
        assert!(fs.always);
        assert!(fs.depends.is_empty());
        assert_eq!(fs.softdeps, vec!["bus_core"]);
        assert_eq!(b.missing.len(), 1);
        assert!(b.missing[0].starts_with("nonexistent"));
        assert_eq!(b.files.len(), 5);
        assert!(b.files.iter().all(|(_, data)| data.starts_with(b"\x7fELF")));
        assert!(resolve(&tree, &["nonexistent".into()], &[], true).is_err());
    }

    #[test]
    fn a_missing_hard_dependency_is_an_error() {
        let tree = Tree::open(&fixtures()).unwrap();
        let e = resolve(&tree, &["orphan".into()], &[], false).unwrap_err();
        assert!(e.to_string().contains("orphan depends on gone"), "{e}");
    }

    #[test]
    fn a_dependency_cycle_is_an_error() {
        let tree = Tree::open(&fixtures()).unwrap();
        let e = resolve(&tree, &["cyc_a".into()], &[], false).unwrap_err();
        assert!(e.to_string().contains("dependency cycle"), "{e}");
    }

    #[test]
    fn profiles() {
        assert!(profile("none").unwrap().0.is_empty());
        let (m, a) = profile("qemu").unwrap();
        assert!(m.contains(&"virtio_net") && a.contains(&"ext4"));
        let (m, a) = profile("hardware").unwrap();
        assert!(m.contains(&"virtio_net") && m.contains(&"nvme") && a.contains(&"exfat"));
        assert!(profile("desktop").is_err());
    }
}
