//! Kernel modules bundled by `ze-pack`, loaded by coldplug.
//!
//! A stock distro kernel builds its virtio, disk and filesystem drivers as modules, and
//! there is no udev or modprobe in the initrd. The packer bundles the modules with an
//! [`Index`] (name, file, dependencies, aliases); at boot we read every device's
//! `modalias` under /sys/bus, match it against the aliases with the same glob rules
//! modprobe uses (fnmatch(3)), and load what matches, dependencies first. Loading a bus
//! driver makes new devices appear (virtio_pci → virtio devices → virtio_blk), so we
//! rescan until nothing new shows up.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the packer puts the index and the modules inside the initrd.
pub const BUNDLE_DIR: &str = "lib/modules/ze";
pub const INDEX_FILE: &str = "index.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The kernel release the modules were built for (`vermagic`).
    pub kernel: String,
    pub modules: Vec<Module>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// Normalized name (`-` → `_`).
    pub name: String,
    /// File name inside the bundle directory.
    pub file: String,
    /// Hard dependencies (`depends=`) that are themselves bundled, in modinfo order.
    pub depends: Vec<String>,
    /// `softdep=pre:` modules that are bundled; loaded before this one when present.
    #[serde(default)]
    pub softdeps: Vec<String>,
    pub aliases: Vec<String>,
    /// Loaded whatever the hardware (filesystems, loop).
    #[serde(default)]
    pub always: bool,
}

/// Module names are compared with `-` and `_` treated alike, as the kernel does.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

impl Index {
    pub fn get(&self, name: &str) -> Option<&Module> {
        let n = normalize(name);
        self.modules.iter().find(|m| m.name == n)
    }

    /// Modules with an alias matching `modalias`.
    pub fn matching<'a>(&'a self, modalias: &'a str) -> impl Iterator<Item = &'a Module> + 'a {
        self.modules
            .iter()
            .filter(move |m| m.aliases.iter().any(|a| alias_matches(a, modalias)))
    }
}

/// fnmatch(3) without flags, as kmod matches aliases: `*`, `?`, `[...]`, `[!...]`.
pub fn alias_matches(pattern: &str, modalias: &str) -> bool {
    match glob::Pattern::new(pattern) {
        Ok(p) => p.matches_with(
            modalias,
            glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: false,
                require_literal_leading_dot: false,
            },
        ),
        // An alias glob cannot compile (unbalanced bracket): kmod would compare it as text.
        Err(_) => pattern == modalias,
    }
}

/// Loads module files; the real one calls finit_module(2), tests record.
pub trait Loader {
    fn load(&mut self, name: &str, path: &Path) -> io::Result<()>;
}

/// finit_module(2).
pub struct KernelLoader;

impl Loader for KernelLoader {
    fn load(&mut self, _name: &str, path: &Path) -> io::Result<()> {
        crate::sys::finit_module(path)
    }
}

/// What coldplug did, for the log and the inventory.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// (module, why): the alias it matched, `dependency of X`, or `always`.
    pub loaded: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
    pub rounds: usize,
}

/// Bounds on the rescan loop.
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    /// Rescans after loading modules.
    pub max_rounds: usize,
    /// After a round found nothing new, how long to watch for late devices.
    pub quiet: Duration,
    pub poll: Duration,
}

impl Default for Settle {
    fn default() -> Self {
        Settle {
            max_rounds: 8,
            quiet: Duration::from_millis(100),
            poll: Duration::from_millis(10),
        }
    }
}

/// Every `modalias` under `sys_root`/bus/*/devices/*.
pub fn read_modaliases(sys_root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(buses) = std::fs::read_dir(sys_root.join("bus")) else {
        return out;
    };
    for bus in buses.flatten() {
        let Ok(devices) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for dev in devices.flatten() {
            if let Ok(s) = std::fs::read_to_string(dev.path().join("modalias")) {
                let s = s.trim();
                if !s.is_empty() {
                    out.insert(s.to_string());
                }
            }
        }
    }
    out
}

/// Coldplug state kept after boot, so devices that appear later (a USB stick behind a
/// hub, a SCSI disk after usb-storage's settle delay) still get their drivers: every
/// [`Plug::hotplug`] loads what the modaliases that are new since the last look need.
/// A module is tried once; a failure is reported once.
pub struct Plug {
    index: Index,
    bundle: PathBuf,
    sys_root: PathBuf,
    /// Modaliases already matched.
    seen: BTreeSet<String>,
    /// Module → loaded (true) or failed (false).
    done: BTreeMap<String, bool>,
    pub report: Report,
}

impl Plug {
    pub fn new(index: Index, bundle: &Path, sys_root: &Path) -> Plug {
        Plug {
            index,
            bundle: bundle.to_path_buf(),
            sys_root: sys_root.to_path_buf(),
            seen: BTreeSet::new(),
            done: BTreeMap::new(),
            report: Report::default(),
        }
    }

    /// The boot-time pass: the modules the hardware under `sys_root` needs, plus the
    /// `always` ones, dependencies first, in rounds of matching until no new device
    /// shows up (bounded by `settle`). Never fails as a whole: a module that does not
    /// load is reported and the rest go on.
    pub fn coldplug(&mut self, loader: &mut dyn Loader, settle: Settle) {
        let always: Vec<String> = self
            .index
            .modules
            .iter()
            .filter(|m| m.always)
            .map(|m| m.name.clone())
            .collect();
        for name in always {
            self.load(loader, &name, "always");
        }
        for round in 0..settle.max_rounds {
            self.report.rounds = round + 1;
            let mut aliases = read_modaliases(&self.sys_root);
            if aliases.is_subset(&self.seen) {
                // Nothing new: watch briefly for devices that a driver registers late.
                let deadline = Instant::now() + settle.quiet;
                while Instant::now() < deadline && aliases.is_subset(&self.seen) {
                    std::thread::sleep(settle.poll);
                    aliases = read_modaliases(&self.sys_root);
                }
                if aliases.is_subset(&self.seen) {
                    break;
                }
            }
            self.match_new(loader, aliases);
        }
    }

    /// One look for devices that appeared since the last: loads what they need and
    /// returns how many modules that was. Cheap enough to call from a poll loop.
    pub fn hotplug(&mut self, loader: &mut dyn Loader) -> usize {
        let before = self.report.loaded.len();
        let aliases = read_modaliases(&self.sys_root);
        if !aliases.is_subset(&self.seen) {
            self.match_new(loader, aliases);
        }
        self.report.loaded.len() - before
    }

    fn match_new(&mut self, loader: &mut dyn Loader, aliases: BTreeSet<String>) {
        let new: Vec<String> = aliases.difference(&self.seen).cloned().collect();
        for alias in &new {
            let wanted: Vec<String> = self.index.matching(alias).map(|m| m.name.clone()).collect();
            for name in wanted {
                self.load(loader, &name, alias);
            }
        }
        self.seen.extend(aliases);
    }

    /// Loads `name` after its dependencies. Returns whether it is now in the kernel.
    fn load(&mut self, loader: &mut dyn Loader, name: &str, why: &str) -> bool {
        if let Some(ok) = self.done.get(name) {
            return *ok;
        }
        // Mark first so a dependency cycle ends instead of recursing forever.
        self.done.insert(name.to_string(), false);
        if self.sys_root.join("module").join(name).is_dir() {
            self.done.insert(name.to_string(), true);
            return true;
        }
        let Some(m) = self.index.get(name) else {
            self.fail(name, "not in the bundled index".into());
            return false;
        };
        let m = m.clone();
        let dep_why = format!("dependency of {name}");
        for dep in m.softdeps.iter() {
            // Soft dependencies are best-effort, like modprobe's.
            self.load(loader, dep, &dep_why);
        }
        for dep in m.depends.iter() {
            if !self.load(loader, dep, &dep_why) {
                self.fail(name, format!("dependency {dep} did not load"));
                return false;
            }
        }
        let path: PathBuf = self.bundle.join(&m.file);
        let started = Instant::now();
        match loader.load(name, &path) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => {}
            Err(e) => {
                self.fail(name, format!("{}: {e}", path.display()));
                return false;
            }
        }
        log::info!(
            "module {name} loaded in {} ms ({why})",
            started.elapsed().as_millis()
        );
        self.report.loaded.push((name.to_string(), why.to_string()));
        self.done.insert(name.to_string(), true);
        true
    }

    fn fail(&mut self, name: &str, why: String) {
        log::warn!("module {name} not loaded: {why}");
        self.report.failed.push((name.to_string(), why));
    }
}

/// Reads the bundle's index.
pub fn read_index(bundle: &Path) -> io::Result<Index> {
    let text = std::fs::read_to_string(bundle.join(INDEX_FILE))?;
    serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    fn module(name: &str, depends: &[&str], aliases: &[&str]) -> Module {
        Module {
            name: name.into(),
            file: format!("{name}.ko"),
            depends: depends.iter().map(|s| s.to_string()).collect(),
            softdeps: vec![],
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            always: false,
        }
    }

    /// A fake sysfs where loading a module can make new devices appear, the way
    /// virtio_pci creates virtio devices.
    struct FakeKernel {
        sys: PathBuf,
        log: Rc<RefCell<Vec<String>>>,
        /// module → (device dir, modalias) that appears when it loads
        spawns: Vec<(&'static str, &'static str, &'static str)>,
        fail: Vec<&'static str>,
    }

    impl Loader for FakeKernel {
        fn load(&mut self, name: &str, path: &Path) -> io::Result<()> {
            assert!(path.ends_with(format!("{name}.ko")), "{path:?}");
            self.log.borrow_mut().push(name.to_string());
            if self.fail.contains(&name) {
                return Err(io::Error::from_raw_os_error(nix::libc::ENOEXEC));
            }
            for (m, dev, alias) in &self.spawns {
                if *m == name {
                    add_device(&self.sys, dev, alias);
                }
            }
            Ok(())
        }
    }

    /// A fresh [`Plug`]'s boot-time pass, for the tests that need only its report.
    fn coldplug(
        index: &Index,
        bundle: &Path,
        sys_root: &Path,
        loader: &mut dyn Loader,
        settle: Settle,
    ) -> Report {
        let mut plug = Plug::new(index.clone(), bundle, sys_root);
        plug.coldplug(loader, settle);
        plug.report
    }

    fn add_device(sys: &Path, dev: &str, alias: &str) {
        let (bus, _) = dev.split_once('/').unwrap();
        let d = sys
            .join("bus")
            .join(bus)
            .join("devices")
            .join(dev.split_once('/').unwrap().1);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("modalias"), format!("{alias}\n")).unwrap();
    }

    fn virtio_index() -> Index {
        let mut ext4 = module("ext4", &["jbd2", "mbcache"], &["fs-ext4"]);
        ext4.always = true;
        let mut crc = module("crc16", &[], &[]);
        crc.always = false;
        ext4.softdeps = vec!["crc16".into()];
        Index {
            kernel: "6.1.0-test".into(),
            modules: vec![
                module("virtio", &[], &[]),
                module("virtio_ring", &[], &[]),
                module(
                    "virtio_pci",
                    &["virtio", "virtio_ring"],
                    &["pci:v00001AF4d*sv*sd*bc*sc*i*"],
                ),
                module(
                    "virtio_blk",
                    &["virtio", "virtio_ring"],
                    &["virtio:d00000002v*"],
                ),
                module(
                    "virtio_net",
                    &["net_failover", "virtio", "virtio_ring"],
                    &["virtio:d00000001v*"],
                ),
                module("net_failover", &["failover"], &[]),
                module("failover", &[], &[]),
                module("e1000", &[], &["pci:v00008086d0000100Esv*sd*bc*sc*i*"]),
                module("jbd2", &[], &[]),
                module("mbcache", &[], &[]),
                ext4,
                crc,
            ],
        }
    }

    #[test]
    fn virtio_chain_loads_dependencies_first_and_rescans() {
        let sys = tempfile::tempdir().unwrap();
        add_device(
            sys.path(),
            "pci/0000:00:03.0",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
        );
        add_device(
            sys.path(),
            "pci/0000:00:04.0",
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
        );
        add_device(sys.path(), "platform/serial8250", "platform:serial8250");
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut k = FakeKernel {
            sys: sys.path().to_path_buf(),
            log: log.clone(),
            spawns: vec![
                ("virtio_pci", "virtio/virtio0", "virtio:d00000001v00001AF4"),
                ("virtio_pci", "virtio/virtio1", "virtio:d00000002v00001AF4"),
            ],
            fail: vec![],
        };
        let r = coldplug(
            &virtio_index(),
            Path::new("/b"),
            sys.path(),
            &mut k,
            Settle::default(),
        );
        let order = log.borrow().clone();
        assert_eq!(
            order,
            vec![
                "crc16",
                "jbd2",
                "mbcache",
                "ext4",
                "virtio",
                "virtio_ring",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net",
                "virtio_blk"
            ]
        );
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        assert!(r.rounds >= 2);
        assert!(r.loaded.contains(&("ext4".into(), "always".into())));
        assert!(
            r.loaded
                .contains(&("virtio_blk".into(), "virtio:d00000002v00001AF4".into()))
        );
        assert!(
            r.loaded
                .contains(&("failover".into(), "dependency of net_failover".into()))
        );
    }

    #[test]
    fn failed_dependency_fails_dependents_but_not_others() {
        let sys = tempfile::tempdir().unwrap();
        add_device(
            sys.path(),
            "pci/0000:00:03.0",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
        );
        add_device(
            sys.path(),
            "pci/0000:00:05.0",
            "pci:v00008086d0000100Esv00008086sd0000001Ebc02sc00i00",
        );
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut k = FakeKernel {
            sys: sys.path().to_path_buf(),
            log: log.clone(),
            spawns: vec![],
            fail: vec!["virtio_ring"],
        };
        let r = coldplug(
            &virtio_index(),
            Path::new("/b"),
            sys.path(),
            &mut k,
            Settle::default(),
        );
        let failed: Vec<&str> = r.failed.iter().map(|(n, _)| n.as_str()).collect();
        assert!(failed.contains(&"virtio_ring"));
        assert!(failed.contains(&"virtio_pci"));
        assert!(!log.borrow().contains(&"virtio_pci".to_string()));
        assert!(r.loaded.iter().any(|(n, _)| n == "e1000"));
    }

    #[test]
    fn already_present_modules_are_not_loaded_again() {
        let sys = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sys.path().join("module/jbd2")).unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut k = FakeKernel {
            sys: sys.path().to_path_buf(),
            log: log.clone(),
            spawns: vec![],
            fail: vec![],
        };
        coldplug(
            &virtio_index(),
            Path::new("/b"),
            sys.path(),
            &mut k,
            Settle::default(),
        );
        assert_eq!(*log.borrow(), vec!["crc16", "mbcache", "ext4"]);
    }

    #[test]
    fn hotplug_loads_drivers_for_devices_that_appear_after_coldplug() {
        let sys = tempfile::tempdir().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut k = FakeKernel {
            sys: sys.path().to_path_buf(),
            log: log.clone(),
            spawns: vec![],
            fail: vec!["e1000"],
        };
        let mut plug = Plug::new(virtio_index(), Path::new("/b"), sys.path());
        plug.coldplug(&mut k, Settle::default());
        assert_eq!(plug.hotplug(&mut k), 0, "nothing new yet");
        log.borrow_mut().clear();
        // A virtio disk and a NIC whose driver will not load show up late.
        add_device(sys.path(), "virtio/virtio1", "virtio:d00000002v00001AF4");
        add_device(
            sys.path(),
            "pci/0000:00:05.0",
            "pci:v00008086d0000100Esv00008086sd0000001Ebc02sc00i00",
        );
        assert_eq!(plug.hotplug(&mut k), 3);
        assert_eq!(
            *log.borrow(),
            vec!["e1000", "virtio", "virtio_ring", "virtio_blk"]
        );
        assert!(
            plug.report
                .loaded
                .contains(&("virtio_blk".into(), "virtio:d00000002v00001AF4".into()))
        );
        // The next look finds nothing new, and the failed driver is not tried again.
        assert_eq!(plug.hotplug(&mut k), 0);
        assert_eq!(log.borrow().len(), 4);
        let failed: Vec<&str> = plug.report.failed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(failed, ["e1000"]);
    }

    #[test]
    fn dependency_cycle_terminates() {
        let idx = Index {
            kernel: String::new(),
            modules: vec![
                Module {
                    always: true,
                    ..module("a", &["b"], &[])
                },
                module("b", &["a"], &[]),
            ],
        };
        let sys = tempfile::tempdir().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut k = FakeKernel {
            sys: sys.path().to_path_buf(),
            log,
            spawns: vec![],
            fail: vec![],
        };
        let r = coldplug(&idx, Path::new("/b"), sys.path(), &mut k, Settle::default());
        assert!(!r.failed.is_empty());
    }

    #[test]
    fn alias_globs_follow_fnmatch() {
        let cases = [
            (
                "pci:v00001AF4d*sv*sd*bc*sc*i*",
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
                true,
            ),
            (
                "pci:v00001AF4d*sv*sd*bc*sc*i*",
                "pci:v00008086d00001000sv00001AF4sd00000001bc02sc00i00",
                false,
            ),
            ("virtio:d00000002v*", "virtio:d00000002v00001AF4", true),
            ("virtio:d00000002v*", "virtio:d00000001v00001AF4", false),
            ("acpi*:PNP0A0[38]:*", "acpi:PNP0A03:", true),
            ("acpi*:PNP0A0[38]:*", "acpi:PNP0A05:", false),
            ("acpi*:PNP0A0[!38]:*", "acpi:PNP0A05:", true),
            ("scsi:t-0x0[05]*", "scsi:t-0x05", true),
            (
                "usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*",
                "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00",
                true,
            ),
            ("fs-ext?", "fs-ext4", true),
            (
                "cpu:type:x86,ven*fam*mod*:feature:*0081*",
                "cpu:type:x86,ven0000fam0006mod003A:feature:,0000,0081,",
                true,
            ),
            ("broken[", "broken[", true),
        ];
        for (p, a, want) in cases {
            assert_eq!(alias_matches(p, a), want, "{p} vs {a}");
        }
    }

    #[test]
    fn names_normalize_dashes() {
        let idx = virtio_index();
        assert!(idx.get("virtio-pci").is_some());
        assert_eq!(normalize("nls_iso8859-1"), "nls_iso8859_1");
    }
}
