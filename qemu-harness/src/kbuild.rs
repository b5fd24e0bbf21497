//! The custom installer kernel, built from `kernel-configs/`: `make tinyconfig`, the
//! profile's fragments merged on top with `merge_config.sh -m`, `make olddefconfig`, a
//! check that every required symbol came out `=y`, then `make bzImage`. All of it out of
//! tree (`O=`) in the cache.
//!
//! Cache layout, under `<cache>/kernel-build/`:
//!
//! ```text
//! src/<tarball>-<id>/      the unpacked source tarball (once per tarball)
//! obj/<profile>-<id>/      kbuild's output tree, reused so a fragment edit builds incrementally
//! <profile>-<key>/         config, bzImage, release, inputs, build.log
//! ```
//!
//! `<key>` hashes everything that decides the output — the recipe version, the fragments'
//! bytes, the source's identity and the compiler's version — and is computed before any
//! `make` runs, so unchanged inputs cost a few `stat`s. The `*.require` lists are not in
//! the key: they are checked against the cached config on every call.

use crate::kconfig::{self, Config, Fragment, Required, Setting};
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Bump when the steps below change in a way that changes the output.
const RECIPE: &str = "ze-kernel-build 1";

/// The architecture we build for (`ARCH=`); tinyconfig with `ARCH=x86` would be 32-bit.
pub const ARCH: &str = "x86_64";

/// Debian's `linux-source-6.1` package (installed by `make deps`).
pub const DEFAULT_SOURCE: &str = "/usr/src/linux-source-6.1.tar.xz";

/// The profiles, each with the fragments merged onto tinyconfig in this order. The
/// required symbols are the union of the same names' `.require` lists.
pub const PROFILES: &[(&str, &[&str])] = &[
    ("qemu", &["base", "qemu"]),
    ("hardware", &["base", "qemu", "hardware"]),
];

/// The fragments and required symbols of one profile, read from `kernel-configs/`.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// Each fragment's path, bytes and parsed settings, in merge order.
    pub fragments: Vec<(PathBuf, Vec<u8>, Fragment)>,
    pub required: Vec<Required>,
}

impl Profile {
    pub fn load(configs: &Path, name: &str) -> Result<Profile> {
        let Some((_, parts)) = PROFILES.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
            bail!(
                "unknown kernel profile {name:?} (known: {})",
                names.join(", ")
            );
        };
        let mut fragments = Vec::new();
        let mut required: Vec<Required> = Vec::new();
        let mut problems = Vec::new();
        for part in *parts {
            let path = configs.join(format!("{part}.config"));
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let file = format!("{part}.config");
            match kconfig::parse_fragment(&file, &String::from_utf8_lossy(&bytes)) {
                Ok(f) => fragments.push((path, bytes, f)),
                Err(e) => problems.extend(e.iter().map(ToString::to_string)),
            }
            let rpath = configs.join(format!("{part}.require"));
            let text = fs::read_to_string(&rpath)
                .with_context(|| format!("reading {}", rpath.display()))?;
            match kconfig::parse_require(&format!("{part}.require"), &text) {
                Ok(r) => {
                    for r in r {
                        if !required.iter().any(|q| q.symbol == r.symbol) {
                            required.push(r);
                        }
                    }
                }
                Err(e) => problems.extend(e.iter().map(ToString::to_string)),
            }
        }
        if !problems.is_empty() {
            bail!(
                "kernel-configs/ is not well-formed:\n  {}",
                problems.join("\n  ")
            );
        }
        Ok(Profile {
            name: name.to_string(),
            fragments,
            required,
        })
    }

    /// What the fragments ask for, later ones overriding earlier ones.
    pub fn requested(&self) -> BTreeMap<String, Setting> {
        let f: Vec<Fragment> = self.fragments.iter().map(|(_, _, f)| f.clone()).collect();
        kconfig::requested(&f)
    }
}

/// Where the kernel source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A source tarball, unpacked once into the cache.
    Tarball(PathBuf),
    /// An unpacked, clean source tree (kbuild refuses `O=` on a configured tree).
    Tree(PathBuf),
}

impl Source {
    /// `KERNEL_SRC` (a tree or a tarball), else Debian's linux-source-6.1 tarball.
    pub fn from_env() -> Source {
        match std::env::var_os("KERNEL_SRC").filter(|v| !v.is_empty()) {
            Some(p) if Path::new(&p).is_dir() => Source::Tree(p.into()),
            Some(p) => Source::Tarball(p.into()),
            None => Source::Tarball(DEFAULT_SOURCE.into()),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Source::Tarball(p) | Source::Tree(p) => p,
        }
    }

    /// What identifies this source's content in the cache key, cheaply: a tarball's
    /// path, size and mtime; a tree's path, version and, in a git checkout, its commit
    /// and uncommitted changes. (Edits to a tree that is not a git checkout are not
    /// seen: remove its build directory from the cache.)
    pub fn identity(&self) -> Result<String> {
        match self {
            Source::Tarball(p) => {
                let meta = fs::metadata(p).with_context(|| {
                    format!(
                        "kernel source {} not found (`make deps` installs linux-source-6.1; \
                         KERNEL_SRC names another tarball or tree)",
                        p.display()
                    )
                })?;
                let mtime = meta
                    .modified()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                Ok(format!(
                    "tarball {} {} {mtime}",
                    p.canonicalize()?.display(),
                    meta.len()
                ))
            }
            Source::Tree(p) => {
                let p = p.canonicalize()?;
                let makefile = fs::read_to_string(p.join("Makefile"))
                    .with_context(|| format!("{} is not a kernel tree", p.display()))?;
                let mut id = format!("tree {} {}", p.display(), makefile_version(&makefile));
                if p.join(".git").exists() {
                    let git = |args: &[&str]| -> String {
                        Command::new("git")
                            .arg("-C")
                            .arg(&p)
                            .args(args)
                            .output()
                            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                            .unwrap_or_default()
                    };
                    let head = git(&["rev-parse", "HEAD"]);
                    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]);
                    id.push_str(&format!(" git {} dirty {}", head.trim(), sha256(&dirty)));
                }
                Ok(id)
            }
        }
    }
}

/// `VERSION.PATCHLEVEL.SUBLEVEL[EXTRAVERSION]` from a kernel Makefile's first lines.
pub fn makefile_version(makefile: &str) -> String {
    let get = |key: &str| {
        makefile
            .lines()
            .take(10)
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    format!(
        "{}.{}.{}{}",
        get("VERSION"),
        get("PATCHLEVEL"),
        get("SUBLEVEL"),
        get("EXTRAVERSION")
    )
}

/// What to build, and where.
#[derive(Debug, Clone)]
pub struct Options {
    pub profile: String,
    /// The `kernel-configs/` directory.
    pub configs: PathBuf,
    pub source: Source,
    /// The harness cache (`$ZE_CACHE`, else `target/ze-cache`).
    pub cache: PathBuf,
    pub jobs: usize,
}

impl Options {
    /// The defaults: this workspace's `kernel-configs/`, `KERNEL_SRC` or Debian's
    /// linux-source-6.1, the harness cache, one job per CPU.
    pub fn new(profile: &str) -> Options {
        Options {
            profile: profile.to_string(),
            configs: crate::workspace_root().join("kernel-configs"),
            source: Source::from_env(),
            cache: crate::cache_dir(),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    fn root(&self) -> PathBuf {
        self.cache.join("kernel-build")
    }
}

/// A resolved (and perhaps built) kernel in the cache.
#[derive(Debug, Clone)]
pub struct Output {
    /// `<cache>/kernel-build/<profile>-<key>`.
    pub dir: PathBuf,
    /// The resolved `.config`.
    pub config: PathBuf,
    /// The kernel image, when built.
    pub bzimage: Option<PathBuf>,
    /// `uname -r` of the built kernel.
    pub release: Option<String>,
    /// Whether the cache already held the result (no `make` ran).
    pub cached: bool,
}

/// The cache key's inputs, one per line (kept as `inputs` next to the output).
pub fn key_inputs(profile: &Profile, source_id: &str, compiler: &str) -> String {
    let mut s = format!("{RECIPE}\narch {ARCH}\nprofile {}\n", profile.name);
    s.push_str(&format!("source {source_id}\ncompiler {compiler}\n"));
    for (path, bytes, _) in &profile.fragments {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        s.push_str(&format!("fragment {name} sha256:{}\n", sha256(bytes)));
    }
    s
}

fn sha256(data: impl AsRef<[u8]>) -> String {
    Sha256::digest(data.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first line of `gcc --version`: a compiler upgrade is a new build.
fn compiler_version() -> Result<String> {
    let out = Command::new("gcc")
        .arg("--version")
        .output()
        .context("running gcc --version (`make deps` installs the kernel build tools)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// Everything decided before any `make` runs.
struct Plan {
    profile: Profile,
    inputs: String,
    dir: PathBuf,
    /// The source identity's short hash: names the unpacked tree and the obj tree.
    source_id: String,
}

fn plan(opts: &Options) -> Result<Plan> {
    let profile = Profile::load(&opts.configs, &opts.profile)?;
    let identity = opts.source.identity()?;
    let inputs = key_inputs(&profile, &identity, &compiler_version()?);
    let key = sha256(&inputs);
    let dir = opts.root().join(format!("{}-{}", opts.profile, &key[..16]));
    Ok(Plan {
        profile,
        inputs,
        dir,
        source_id: sha256(&identity)[..12].to_string(),
    })
}

/// Resolves the profile's config (cached) and checks the required symbols. No compile.
pub fn check(opts: &Options) -> Result<Output> {
    let plan = plan(opts)?;
    let config = plan.dir.join("config");
    if config.exists() {
        verify(&plan.profile, &config, unpacked(opts, &plan).as_deref())?;
        return Ok(output(&plan, true));
    }
    let src = source_tree(opts, &plan)?;
    let (obj, _lock) = obj_tree(opts, &plan)?;
    if !config.exists() {
        let text = resolve(&src, &obj, &plan)?;
        write_atomic(&config, text.as_bytes())?;
        fs::write(plan.dir.join("inputs"), &plan.inputs)?;
    }
    verify(&plan.profile, &config, Some(&src))?;
    Ok(output(&plan, false))
}

/// Resolves, checks and builds the profile's bzImage; a no-op when the cache has it.
pub fn build(opts: &Options) -> Result<Output> {
    let plan = plan(opts)?;
    let complete = plan.dir.join(".complete");
    if complete.exists() {
        let src = unpacked(opts, &plan);
        verify(&plan.profile, &plan.dir.join("config"), src.as_deref())?;
        return Ok(output(&plan, true));
    }
    let src = source_tree(opts, &plan)?;
    let (obj, _lock) = obj_tree(opts, &plan)?;
    // Another process may have finished it while we waited for the lock.
    if complete.exists() {
        verify(&plan.profile, &plan.dir.join("config"), None)?;
        return Ok(output(&plan, true));
    }
    let text = resolve(&src, &obj, &plan)?;
    let config = plan.dir.join("config");
    write_atomic(&config, text.as_bytes())?;
    fs::write(plan.dir.join("inputs"), &plan.inputs)?;
    // Fail before a four-minute compile, not after.
    verify(&plan.profile, &config, Some(&src))?;

    let log = plan.dir.join("build.log");
    let started = Instant::now();
    eprintln!(
        "kernel: compiling the {} bzImage with -j{} (log: {})",
        plan.profile.name,
        opts.jobs,
        log.display()
    );
    make(&src, &obj, &[&format!("-j{}", opts.jobs), "bzImage"], &log)?;
    let built = fs::read_to_string(obj.join(".config"))?;
    if built != text {
        // bzImage runs syncconfig; with a resolved config it must not change anything.
        write_atomic(&config, built.as_bytes())?;
        verify(&plan.profile, &config, Some(&src))?;
    }
    let release = fs::read_to_string(obj.join("include/config/kernel.release"))
        .context("reading kernel.release")?;
    write_atomic(
        &plan.dir.join("bzImage"),
        &fs::read(obj.join("arch/x86/boot/bzImage")).context("reading the built bzImage")?,
    )?;
    fs::write(plan.dir.join("release"), release.trim())?;
    fs::write(&complete, "")?;
    eprintln!(
        "kernel: built {} in {:.0} s: {}",
        release.trim(),
        started.elapsed().as_secs_f64(),
        plan.dir.join("bzImage").display()
    );
    Ok(output(&plan, false))
}

fn output(plan: &Plan, cached: bool) -> Output {
    let bzimage = plan.dir.join("bzImage");
    let built = plan.dir.join(".complete").exists();
    Output {
        dir: plan.dir.clone(),
        config: plan.dir.join("config"),
        bzimage: built.then_some(bzimage),
        release: fs::read_to_string(plan.dir.join("release"))
            .ok()
            .map(|s| s.trim().to_string()),
        cached,
    }
}

/// The source tree if it is at hand without unpacking (for the hints of a failed check).
fn unpacked(opts: &Options, plan: &Plan) -> Option<PathBuf> {
    match &opts.source {
        Source::Tree(p) => Some(p.clone()),
        Source::Tarball(t) => {
            let (base, name) = src_names(opts, t);
            let dest = base.join(format!("{name}-{}", plan.source_id));
            base.join(format!("{name}-{}.complete", plan.source_id))
                .exists()
                .then_some(dest)
        }
    }
}

/// The directory tarballs unpack into, and the name a tarball's tree gets there.
fn src_names(opts: &Options, tarball: &Path) -> (PathBuf, String) {
    let name = tarball
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .split(".tar")
        .next()
        .unwrap_or_default()
        .to_string();
    (opts.root().join("src"), name)
}

/// The source tree to build from: the `KERNEL_SRC` tree itself, or the tarball
/// unpacked once into the cache (parallel callers wait on a lock).
fn source_tree(opts: &Options, plan: &Plan) -> Result<PathBuf> {
    let tarball = match &opts.source {
        Source::Tree(p) => return Ok(p.canonicalize()?),
        Source::Tarball(p) => p,
    };
    let (base, name) = src_names(opts, tarball);
    fs::create_dir_all(&base)?;
    let dest = base.join(format!("{name}-{}", plan.source_id));
    let done = base.join(format!("{name}-{}.complete", plan.source_id));
    let lock = File::create(base.join(".lock"))?;
    lock.lock()?;
    if !done.exists() {
        let started = Instant::now();
        eprintln!(
            "kernel: unpacking {} into {} (once)",
            tarball.display(),
            dest.display()
        );
        // An older unpacked version of the same tarball is dead weight (1.4 GB).
        for e in fs::read_dir(&base)?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("{name}-")) && e.path() != dest {
                let _ = fs::remove_dir_all(e.path());
                let _ = fs::remove_file(e.path());
            }
        }
        let tmp = base.join(format!(".tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        let st = Command::new("tar")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(&tmp)
            .status()
            .context("running tar")?;
        if !st.success() {
            bail!("unpacking {} failed ({st})", tarball.display());
        }
        let top: Vec<PathBuf> = fs::read_dir(&tmp)?.flatten().map(|e| e.path()).collect();
        let [top] = top.as_slice() else {
            bail!(
                "{} does not hold exactly one top-level directory",
                tarball.display()
            );
        };
        let _ = fs::remove_dir_all(&dest);
        fs::rename(top, &dest)?;
        fs::write(&done, "")?;
        let _ = fs::remove_dir_all(&tmp);
        eprintln!(
            "kernel: unpacked in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(dest)
}

/// kbuild's output tree for this profile and source, locked for the caller's lifetime
/// of the returned file (two builds in one tree would corrupt it).
fn obj_tree(opts: &Options, plan: &Plan) -> Result<(PathBuf, File)> {
    let base = opts.root().join("obj");
    let obj = base.join(format!("{}-{}", opts.profile, plan.source_id));
    fs::create_dir_all(&obj)?;
    fs::create_dir_all(&plan.dir)?;
    let lock = File::create(base.join(format!("{}-{}.lock", opts.profile, plan.source_id)))?;
    lock.lock()?;
    Ok((obj, lock))
}

/// tinyconfig, the fragments merged on top, olddefconfig. Returns the resolved config.
fn resolve(src: &Path, obj: &Path, plan: &Plan) -> Result<String> {
    let log = plan.dir.join("build.log");
    let _ = fs::remove_file(&log);
    let started = Instant::now();
    let names: Vec<String> = plan
        .profile
        .fragments
        .iter()
        .map(|(p, _, _)| p.file_name().unwrap_or_default().to_string_lossy().into())
        .collect();
    eprintln!(
        "kernel: resolving the {} config: tinyconfig + {} + olddefconfig",
        plan.profile.name,
        names.join(" + ")
    );
    make(src, obj, &["tinyconfig"], &log)?;
    // -m: merge into the tinyconfig .config only; olddefconfig resolves it next.
    let mut merge = Command::new(src.join("scripts/kconfig/merge_config.sh"));
    merge.arg("-m").arg("-O").arg(obj).arg(obj.join(".config"));
    merge.args(plan.profile.fragments.iter().map(|(p, _, _)| p));
    // The script makes its temporary files in the current directory.
    merge.current_dir(obj);
    clean_env(&mut merge);
    run(merge, &log, "merge_config.sh")?;
    make(src, obj, &["olddefconfig"], &log)?;
    let text = fs::read_to_string(obj.join(".config"))?;
    eprintln!(
        "kernel: resolved in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(text)
}

fn make(src: &Path, obj: &Path, args: &[&str], log: &Path) -> Result<()> {
    let mut c = Command::new("make");
    c.arg("-C")
        .arg(src)
        .arg(format!("O={}", obj.display()))
        .arg(format!("ARCH={ARCH}"))
        .args(args);
    clean_env(&mut c);
    run(c, log, &format!("make {}", args.join(" ")))
}

/// Nothing from the caller's make (`make kernel` runs us) or shell leaks into kbuild.
fn clean_env(c: &mut Command) {
    for v in [
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "MAKEOVERRIDES",
        "GNUMAKEFLAGS",
        "KBUILD_OUTPUT",
        "KCONFIG_CONFIG",
        "KCONFIG_ALLCONFIG",
        "KCFLAGS",
        "KCPPFLAGS",
        "KAFLAGS",
        "CROSS_COMPILE",
        "LLVM",
    ] {
        c.env_remove(v);
    }
    // Set, so a git source tree gets no "+" suffix: the release is the version plus
    // CONFIG_LOCALVERSION (`6.1.172-ze-qemu`).
    c.env("LOCALVERSION", "");
}

fn run(mut c: Command, log: &Path, what: &str) -> Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(log)?;
    writeln!(f, "$ {c:?}")?;
    let st = c
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .status()
        .with_context(|| format!("running {what} (`make deps` installs the build tools)"))?;
    if !st.success() {
        bail!(
            "{what} failed ({st}); last lines of {}:\n{}",
            log.display(),
            tail(log, 40)
        );
    }
    Ok(())
}

fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// Checks the resolved config: warns about fragment settings that did not stick, and
/// fails naming every required symbol that is not `=y`, with the Kconfig conditions
/// that decide it when the source tree is at hand.
fn verify(profile: &Profile, config_path: &Path, src: Option<&Path>) -> Result<()> {
    let text = fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config = kconfig::parse_config(&text);
    let missing = kconfig::check_required(&config, &profile.required);
    let required: BTreeSet<&str> = missing.iter().map(|m| m.symbol.as_str()).collect();
    for d in kconfig::drift(&config, &profile.requested()) {
        if !required.contains(d.setting.symbol.as_str()) {
            eprintln!(
                "kernel: warning: {} asks for {}={}, resolved: {}",
                d.setting.origin,
                d.setting.symbol,
                d.setting.value,
                d.actual.as_deref().unwrap_or("absent")
            );
        }
    }
    if missing.is_empty() {
        eprintln!(
            "kernel: {} profile: all {} required symbols are =y ({})",
            profile.name,
            profile.required.len(),
            config_path.display()
        );
        return Ok(());
    }
    let hints = src.map(|s| definitions(s, &missing)).unwrap_or_default();
    let mut msg = format!(
        "{} of the {} profile's required symbols did not come out =y:\n",
        missing.len(),
        profile.name
    );
    for m in &missing {
        msg.push_str(&format!(
            "  {} {} (required by {})\n",
            m.symbol,
            m.describe(),
            m.origin
        ));
        for d in hints.get(&m.symbol).into_iter().flatten() {
            msg.push_str(&format!("      {}: {}\n", d.origin, explain(d, &config)));
        }
    }
    msg.push_str(&format!(
        "An option whose dependency is off is dropped silently: set the dependency in the \
         profile's fragment (with a why-comment). Resolved config: {}",
        config_path.display()
    ));
    bail!(msg)
}

/// A definition's conditions, followed by the symbols they name that are not on.
fn explain(d: &kconfig::Definition, config: &Config) -> String {
    let off: Vec<String> = d
        .conditions
        .iter()
        .flat_map(|c| kconfig::expression_symbols(c))
        .filter(|s| !matches!(config.get(s).map(String::as_str), Some("y" | "m")))
        .map(|s| {
            let v = config.get(&s).map_or("absent", |v| v.as_str());
            format!("{s}={v}")
        })
        .collect();
    let conds = if d.conditions.is_empty() {
        "(no conditions in this file)".to_string()
    } else {
        d.conditions.join("; ")
    };
    if off.is_empty() {
        conds
    } else {
        format!("{conds}   [off: {}]", off.join(" "))
    }
}

/// Where the missing symbols are defined: every `Kconfig*` file of the tree, except
/// other architectures'.
fn definitions(
    src: &Path,
    missing: &[kconfig::Missing],
) -> BTreeMap<String, Vec<kconfig::Definition>> {
    let wanted: BTreeSet<String> = missing
        .iter()
        .filter_map(|m| m.symbol.strip_prefix("CONFIG_").map(String::from))
        .collect();
    let mut out: BTreeMap<String, Vec<kconfig::Definition>> = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                let other_arch = dir == src.join("arch") && name != "x86";
                if !other_arch && !name.starts_with('.') && name != "Documentation" {
                    dirs.push(path);
                }
            } else if name.starts_with("Kconfig")
                && let Ok(text) = fs::read_to_string(&path)
            {
                let rel = path
                    .strip_prefix(src)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                for (sym, def) in kconfig::find_definitions(&rel, &text, &wanted) {
                    out.entry(format!("CONFIG_{sym}")).or_default().push(def);
                }
            }
        }
    }
    out
}

/// Commands the kernel build needs, missing from PATH.
pub fn missing_tools(source: &Source) -> Vec<&'static str> {
    let mut tools = vec!["make", "gcc", "flex", "bison", "bc", "perl"];
    if matches!(source, Source::Tarball(_)) {
        tools.extend(["tar", "xz"]);
    }
    tools
        .into_iter()
        .filter(|t| !crate::prereq::have(t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(dir: &Path, base: &str) {
        fs::write(dir.join("base.config"), base).unwrap();
        fs::write(dir.join("base.require"), "CONFIG_A\n").unwrap();
        fs::write(dir.join("qemu.config"), "# why\nCONFIG_B=y\n").unwrap();
        fs::write(dir.join("qemu.require"), "CONFIG_B\nCONFIG_A\n").unwrap();
    }

    #[test]
    fn profile_merges_fragments_and_require_lists_in_order() {
        let d = tempfile::tempdir().unwrap();
        configs(d.path(), "# why\nCONFIG_A=y\n");
        let p = Profile::load(d.path(), "qemu").unwrap();
        let names: Vec<&str> = p
            .fragments
            .iter()
            .map(|(_, _, f)| f.name.as_str())
            .collect();
        assert_eq!(names, ["base.config", "qemu.config"]);
        let req: Vec<&str> = p.required.iter().map(|r| r.symbol.as_str()).collect();
        assert_eq!(req, ["CONFIG_A", "CONFIG_B"], "duplicates are dropped");
        assert!(Profile::load(d.path(), "nope").is_err());
    }

    #[test]
    fn profile_refuses_a_fragment_without_why_comments() {
        let d = tempfile::tempdir().unwrap();
        configs(d.path(), "CONFIG_A=y\n");
        let e = Profile::load(d.path(), "qemu").unwrap_err().to_string();
        assert!(
            e.contains("base.config:1: CONFIG_A has no `# why` comment"),
            "{e}"
        );
    }

    #[test]
    fn cache_key_changes_with_fragments_source_and_compiler_only() {
        let d = tempfile::tempdir().unwrap();
        configs(d.path(), "# why\nCONFIG_A=y\n");
        let p = Profile::load(d.path(), "qemu").unwrap();
        let k = key_inputs(&p, "tarball /x 1 2", "gcc 12");
        assert_eq!(k, key_inputs(&p, "tarball /x 1 2", "gcc 12"));
        assert_ne!(k, key_inputs(&p, "tarball /x 1 3", "gcc 12"));
        assert_ne!(k, key_inputs(&p, "tarball /x 1 2", "gcc 13"));
        // A comment is a byte of the fragment too: cheap to rebuild, never stale.
        configs(d.path(), "# why, reworded\nCONFIG_A=y\n");
        let p2 = Profile::load(d.path(), "qemu").unwrap();
        let k2 = key_inputs(&p2, "tarball /x 1 2", "gcc 12");
        assert_ne!(k, k2);
        // The require lists are checked on every call, not part of the key.
        fs::write(d.path().join("qemu.require"), "CONFIG_B\n").unwrap();
        let p3 = Profile::load(d.path(), "qemu").unwrap();
        assert_eq!(k2, key_inputs(&p3, "tarball /x 1 2", "gcc 12"));
    }

    #[test]
    fn makefile_version_reads_the_header() {
        let m =
            "# SPDX\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 172\nEXTRAVERSION = -rc1\nNAME = x\n";
        assert_eq!(makefile_version(m), "6.1.172-rc1");
    }

    #[test]
    fn verify_names_every_missing_symbol_and_the_off_dependency() {
        let d = tempfile::tempdir().unwrap();
        configs(d.path(), "# why\nCONFIG_A=y\n");
        let p = Profile::load(d.path(), "qemu").unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("drivers")).unwrap();
        fs::write(
            src.join("drivers/Kconfig"),
            "config B\n\tbool \"b\"\n\tdepends on C && A\n",
        )
        .unwrap();
        let cfg = d.path().join("config");
        fs::write(&cfg, "# CONFIG_A is not set\n# CONFIG_C is not set\n").unwrap();
        let e = verify(&p, &cfg, Some(&src)).unwrap_err().to_string();
        assert!(
            e.starts_with("2 of the qemu profile's required symbols"),
            "{e}"
        );
        assert!(
            e.contains("CONFIG_A is not set (required by base.require:1)"),
            "{e}"
        );
        assert!(
            e.contains(
                "CONFIG_B absent (its dependencies are not met) (required by qemu.require:1)"
            ),
            "{e}"
        );
        assert!(
            e.contains("drivers/Kconfig:1: depends on C && A   [off: CONFIG_C=n CONFIG_A=n]"),
            "{e}"
        );
        fs::write(&cfg, "CONFIG_A=y\nCONFIG_B=y\n").unwrap();
        verify(&p, &cfg, None).unwrap();
    }
}
