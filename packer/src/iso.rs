//! `ze-pack iso`: a hybrid ISO that boots the installer under UEFI (x86_64,
//! `BOOTX64.EFI`) and legacy BIOS, from a CD, from a disk it was `dd`-ed onto, and as a
//! file on a Ventoy data partition, with the image and its contract under `/ze-install/`
//! (`ze_init::source::iso`).
//!
//! Layout of the ISO 9660 tree:
//!
//! ```text
//! /boot/grub/grub.cfg          the menu (Ventoy's GRUB reads this one too)
//! /boot/grub/bios.img          GRUB for BIOS, El Torito no-emulation image
//! /boot/ze/vmlinuz             the installer kernel
//! /boot/ze/initrd.img          the installer initrd
//! /boot/ze/<media-id>          marker GRUB searches for, to find this medium
//! /EFI/BOOT/BOOTX64.EFI        GRUB for UEFI (also in the EFI system partition)
//! /ze-install/media-id         the 32-hex media id
//! /ze-install/manifest.json    what was packed
//! /ze-install/images/<name>    the image, gzip-compressed
//! /ze-install/images/<name>.sha256
//! /ze-install/autoinstall.env  (--answers)
//! ```
//!
//! Hybrid layout (xorriso, the recipe of grub-mkrescue and archiso): El Torito entries
//! for BIOS (`bios.img`) and UEFI (a FAT image holding `BOOTX64.EFI`, appended as GPT
//! partition 2, the EFI system partition); GRUB's `boot_hybrid.img` as the MBR so BIOS
//! boots the disk a stick became; `-partition_offset 16` so partition 1 is itself a
//! mountable iso9660 filesystem.
//!
//! GRUB images come from `grub-mkimage` rather than `grub-mkstandalone`: GRUB 2.06's
//! `grub-mkstandalone` packs its modules into a memdisk tar stamped with the build time,
//! so two builds never match; `grub-mkimage` embeds the same modules and an early config
//! directly and is byte-reproducible. Both come from Debian's grub-common.

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use ze_init::source::iso::{ANSWERS, FORMAT, IMAGES, MANIFEST, MEDIA_ID, Manifest, ManifestImage};

/// Everything `ze-pack iso` takes.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The appliance image: raw (compressed here) or gzip.
    pub image: PathBuf,
    pub out: PathBuf,
    /// 32 lowercase hex; generated when `None`.
    pub media_id: Option<String>,
    /// `ze.target`.
    pub target: Option<String>,
    /// Extra kernel parameters, appended last.
    pub cmdline: Vec<String>,
    /// `console=` values, in order (the last is /dev/console).
    pub consoles: Vec<String>,
    /// A kldload answers file for `/ze-install/autoinstall.env`.
    pub answers: Option<PathBuf>,
    /// Seconds the GRUB menu waits before booting the installer.
    pub timeout: u32,
    pub volume_id: String,
    /// Where Debian keeps GRUB's platform directories.
    pub grub_dir: PathBuf,
}

impl Spec {
    pub fn default_consoles() -> Vec<String> {
        // x86: VGA and the first serial port (seed 004 "Kernel Command Line").
        vec!["tty0".into(), "ttyS0,115200".into()]
    }
}

/// What was built.
#[derive(Debug, Clone)]
pub struct Built {
    pub media_id: String,
    pub cmdline: String,
    pub image: ManifestImage,
    pub iso_bytes: u64,
    /// Warnings the installer would print for this command line.
    pub warnings: Vec<String>,
}

/// GRUB modules built into both images: what the menu and the kernel load need.
const GRUB_MODULES: &[&str] = &[
    "normal",
    "configfile",
    "linux",
    "search",
    "search_fs_file",
    "iso9660",
    "part_gpt",
    "part_msdos",
    "fat",
    "echo",
    "test",
    "serial",
    "terminal",
    "sleep",
    "halt",
    "reboot",
];

/// A prerequisite: a command on PATH or a file, and the Debian package that has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prereq {
    pub what: String,
    pub package: &'static str,
    pub present: bool,
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.join(cmd))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The tools and GRUB files a build needs (`make deps` installs them all).
pub fn prerequisites(grub_dir: &Path) -> Vec<Prereq> {
    let mut out: Vec<Prereq> = [
        ("xorriso", "xorriso"),
        ("grub-mkimage", "grub-common"),
        ("mformat", "mtools"),
        ("mmd", "mtools"),
        ("mcopy", "mtools"),
    ]
    .into_iter()
    .map(|(cmd, package)| Prereq {
        what: format!("{cmd} (command)"),
        package,
        present: on_path(cmd),
    })
    .collect();
    for (file, package) in [
        ("x86_64-efi/linux.mod", "grub-efi-amd64-bin"),
        ("i386-pc/linux.mod", "grub-pc-bin"),
        ("i386-pc/cdboot.img", "grub-pc-bin"),
        ("i386-pc/boot_hybrid.img", "grub-pc-bin"),
    ] {
        let p = grub_dir.join(file);
        out.push(Prereq {
            what: p.display().to_string(),
            package,
            present: p.is_file(),
        });
    }
    out
}

/// Whether `path` is an x86 bzImage (the boot protocol's "HdrS" at 0x202).
fn is_bzimage(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 0x206];
    let mut f = std::fs::File::open(path)?;
    f.read_exact(&mut head)?;
    Ok(&head[0x202..0x206] == b"HdrS")
}

/// `--check`: every prerequisite and every input given that is missing or unusable,
/// each with what provides it. Empty when a build can run. (`build` requires every
/// input; `--check` alone checks the tools.)
pub fn check(spec: &Spec) -> Vec<String> {
    let mut missing: Vec<String> = prerequisites(&spec.grub_dir)
        .into_iter()
        .filter(|p| !p.present)
        .map(|p| format!("{} (Debian package {})", p.what, p.package))
        .collect();
    let mut input = |what: &str, p: &Path| {
        if p.as_os_str().is_empty() {
            return;
        }
        if !p.is_file() {
            missing.push(format!("{what} {} (no such file)", p.display()));
        }
    };
    input("kernel", &spec.kernel);
    input("initrd", &spec.initrd);
    input("image", &spec.image);
    if let Some(a) = &spec.answers {
        input("answers file", a);
    }
    if spec.kernel.is_file() && !is_bzimage(&spec.kernel).unwrap_or(false) {
        missing.push(format!(
            "kernel {} is not an x86 bzImage",
            spec.kernel.display()
        ));
    }
    missing
}

/// 16 bytes from the kernel's CSPRNG as 32 lowercase hex.
pub fn new_media_id() -> Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(ze_init::write::hex(&b))
}

/// Characters that GRUB's script parser would interpret, so a parameter carrying one
/// would not reach the kernel as written.
fn grub_safe(param: &str) -> bool {
    !param.is_empty()
        && !param
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'\\$;{}|&<>#`".contains(c))
}

/// The installer's kernel command line, validated as the installer will validate it.
pub fn cmdline(spec: &Spec, media_id: &str, image: &str) -> Result<(String, Vec<String>)> {
    let mut params = vec![
        "ze.source=iso".to_string(),
        format!("ze.media-id={media_id}"),
        format!("ze.image={image}"),
    ];
    if let Some(t) = &spec.target {
        params.push(format!("ze.target={t}"));
    }
    params.extend(spec.consoles.iter().map(|c| format!("console={c}")));
    for extra in &spec.cmdline {
        params.extend(extra.split_whitespace().map(str::to_string));
    }
    for p in &params {
        ensure!(
            grub_safe(p),
            "kernel parameter {p:?}: GRUB would not pass it on as written (no quotes, \
             backslashes, $ ; {{ }} | & < > # or backticks)"
        );
    }
    let line = params.join(" ");
    let mut b = ze_init::config::ConfigBuilder::new();
    b.add_cmdline(&line);
    let mut parsed = b
        .build()
        .map_err(|e| anyhow::anyhow!("the installer would refuse this command line: {e}"))?;
    if let Some(a) = &spec.answers {
        let bytes = std::fs::read(a).with_context(|| format!("reading {}", a.display()))?;
        parsed = b
            .merge_iso_answers(&a.display().to_string(), &bytes)
            .map_err(|e| anyhow::anyhow!("the installer would refuse this answers file: {e}"))?;
    }
    Ok((line, parsed.warnings))
}

/// The boot menu, `/boot/grub/grub.cfg`.
pub fn grub_cfg(cmdline: &str, media_id: &str, image: &str, timeout: u32) -> String {
    format!(
        "# ze-install boot menu, written by ze-pack {version}.
set default=0
set timeout={timeout}
if serial --unit=0 --speed=115200; then
    terminal_input console serial
    terminal_output console serial
fi

menuentry \"Install {image} (ze-install, media {short})\" {{
    linux /boot/ze/vmlinuz {cmdline}
    initrd /boot/ze/initrd.img
}}
menuentry \"Power off\" {{
    halt
}}
menuentry \"Reboot\" {{
    reboot
}}
",
        version = env!("CARGO_PKG_VERSION"),
        short = &media_id[..8],
    )
}

/// The config built into both GRUB images: find this medium by its marker, then read
/// its menu. (Under Ventoy, Ventoy's own GRUB reads the menu directly.)
pub fn embedded_cfg(media_id: &str) -> String {
    format!(
        "search --no-floppy --set=root --file /boot/ze/{media_id}
if [ -z \"$root\" ]; then
    echo \"ze-install: cannot find the medium with /boot/ze/{media_id}\"
    sleep 30
fi
set prefix=($root)/boot/grub
configfile $prefix/grub.cfg
"
    )
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Stores `src` under `dir` gzip-compressed (as is when it already is gzip, after
/// checking it decompresses), returning its manifest entry.
pub fn stage_image(src: &Path, dir: &Path) -> Result<ManifestImage> {
    let base = src
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: no usable file name", src.display()))?;
    let mut f = std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut magic = [0u8; 2];
    let got = f.read(&mut magic)?;
    let gzip = got == 2 && magic == [0x1f, 0x8b];
    if !gzip && base.ends_with(".gz") {
        bail!("{} is named *.gz but is not gzip data", src.display());
    }
    let name = if base.ends_with(".gz") {
        base.to_string()
    } else {
        format!("{base}.gz")
    };
    ze_init::config::valid_image_name(&name)
        .map_err(|e| anyhow::anyhow!("image name {name:?} {e}"))?;
    let dest = dir.join(&name);
    let out =
        std::fs::File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut sink = Hashing {
        inner: io::BufWriter::with_capacity(1 << 20, out),
        hash: Sha256::new(),
        bytes: 0,
    };
    let f = std::fs::File::open(src)?;
    let image_bytes = if gzip {
        io::copy(&mut io::BufReader::with_capacity(1 << 20, f), &mut sink)
            .with_context(|| format!("copying {}", src.display()))?;
        // The installer will decompress it; find out now whether that works, and how
        // much it writes.
        let mut d = flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(src)?,
        ));
        io::copy(&mut d, &mut io::sink())
            .with_context(|| format!("{} does not decompress", src.display()))?
    } else {
        // mtime 0 and no file name in the header: the same input gives the same bytes.
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(&mut sink, flate2::Compression::default());
        let n = io::copy(&mut io::BufReader::with_capacity(1 << 20, f), &mut gz)
            .with_context(|| format!("compressing {}", src.display()))?;
        gz.finish()?;
        n
    };
    sink.flush()?;
    Ok(ManifestImage {
        name,
        stored_bytes: sink.bytes,
        image_bytes,
        sha256: ze_init::write::hex(&sink.hash.finalize()),
        gzip: true,
    })
}

/// `YYYYMMDDhhmmss00` in UTC, xorriso's `--modification-date` form.
pub fn iso_date(epoch: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let days = (epoch / 86400) as i64;
    let secs = epoch % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}00",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let o = cmd
        .output()
        .with_context(|| format!("running {shown} (ze-pack iso --check lists what is missing)"))?;
    if !o.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

fn write_file(path: &Path, data: impl AsRef<[u8]>) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

/// Builds the ISO. `epoch` stamps every date in it (`SOURCE_DATE_EPOCH`); with a fixed
/// media id the output is byte-reproducible.
pub fn build(spec: &Spec, epoch: u64) -> Result<Built> {
    for (what, p) in [
        ("--kernel", &spec.kernel),
        ("--initrd", &spec.initrd),
        ("--image", &spec.image),
        ("--out", &spec.out),
    ] {
        ensure!(!p.as_os_str().is_empty(), "{what} is required");
    }
    let media_id = match &spec.media_id {
        Some(id) => {
            ensure!(
                id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "--media-id {id:?}: must be 32 lowercase hex digits"
            );
            id.clone()
        }
        None => new_media_id()?,
    };
    let missing = check(spec);
    if !missing.is_empty() {
        bail!("missing prerequisites:\n  {}", missing.join("\n  "));
    }
    let out_dir = spec
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Staged next to the output: the image copy can be large, and the same filesystem
    // keeps it off a small /tmp. Removed on every exit path.
    let work = tempfile::Builder::new()
        .prefix(".ze-pack-iso-")
        .tempdir_in(out_dir)
        .with_context(|| format!("creating a staging directory in {}", out_dir.display()))?;
    let tree = work.path().join("tree");

    // The image first: its name goes on the command line.
    let images = tree.join(IMAGES);
    std::fs::create_dir_all(&images)?;
    let image = stage_image(&spec.image, &images)?;
    let (cmdline, warnings) = cmdline(spec, &media_id, &image.name)?;

    write_file(&tree.join(MEDIA_ID), format!("{media_id}\n"))?;
    write_file(
        &images.join(format!("{}.sha256", image.name)),
        format!("{}  {}\n", image.sha256, image.name),
    )?;
    let manifest = Manifest {
        format: FORMAT,
        media_id: media_id.clone(),
        created: epoch,
        image: image.clone(),
        cmdline: cmdline.clone(),
        packer: format!("ze-pack {}", env!("CARGO_PKG_VERSION")),
    };
    let mut json = serde_json::to_vec_pretty(&manifest)?;
    json.push(b'\n');
    write_file(&tree.join(MANIFEST), json)?;
    if let Some(a) = &spec.answers {
        write_file(&tree.join(ANSWERS), std::fs::read(a)?)?;
    }
    std::fs::create_dir_all(tree.join("boot/ze"))?;
    std::fs::copy(&spec.kernel, tree.join("boot/ze/vmlinuz"))
        .with_context(|| format!("copying {}", spec.kernel.display()))?;
    std::fs::copy(&spec.initrd, tree.join("boot/ze/initrd.img"))
        .with_context(|| format!("copying {}", spec.initrd.display()))?;
    write_file(
        &tree.join("boot/ze").join(&media_id),
        format!("{media_id}\n"),
    )?;
    write_file(
        &tree.join("boot/grub/grub.cfg"),
        grub_cfg(&cmdline, &media_id, &image.name, spec.timeout),
    )?;

    // GRUB for UEFI and for BIOS, each with the config that finds this medium.
    let early = work.path().join("early.cfg");
    write_file(&early, embedded_cfg(&media_id))?;
    let efi = tree.join("EFI/BOOT/BOOTX64.EFI");
    std::fs::create_dir_all(efi.parent().unwrap())?;
    let grub = |format: &str, out: &Path, extra: &[&str]| -> Result<()> {
        let platform = format.trim_end_matches("-eltorito");
        run(Command::new("grub-mkimage")
            .arg("--directory")
            .arg(spec.grub_dir.join(platform))
            .args(["--format", format, "--prefix", "/boot/grub", "--config"])
            .arg(&early)
            .arg("--output")
            .arg(out)
            .args(GRUB_MODULES)
            .args(extra))
    };
    // all_video: GRUB hands the kernel a framebuffer, so a VGA console shows up on UEFI.
    grub("x86_64-efi", &efi, &["all_video"])?;
    grub(
        "i386-pc-eltorito",
        &tree.join("boot/grub/bios.img"),
        &["biosdisk"],
    )?;

    // The EFI system partition: a FAT image holding BOOTX64.EFI, dated by the epoch
    // (mtools honours SOURCE_DATE_EPOCH), with a serial taken from the media id.
    let esp = work.path().join("efiboot.img");
    let efi_len = std::fs::metadata(&efi)?.len();
    let esp_len = (efi_len + (512 << 10)).div_ceil(1 << 20).max(2) << 20;
    std::fs::File::create(&esp)?.set_len(esp_len)?;
    let mtools = |tool: &str| {
        let mut c = Command::new(tool);
        c.env("SOURCE_DATE_EPOCH", epoch.to_string())
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&esp);
        c
    };
    run(mtools("mformat").args(["-N", &media_id[..8], "-v", "ZE_EFI", "::"]))?;
    run(mtools("mmd").args(["::/EFI", "::/EFI/BOOT"]))?;
    run(mtools("mcopy").arg(&efi).arg("::/EFI/BOOT/BOOTX64.EFI"))?;

    let date = iso_date(epoch);
    let mut x = Command::new("xorriso");
    x.env("SOURCE_DATE_EPOCH", epoch.to_string())
        .args([
            "-as",
            "mkisofs",
            "-iso-level",
            "3",
            "-full-iso9660-filenames",
        ])
        .args(["-joliet", "-joliet-long", "-rational-rock"])
        .args(["-volid", &spec.volume_id])
        .arg(format!("--modification-date={date}"))
        .args(["--set_all_file_dates", &format!("={epoch}")])
        // BIOS: El Torito no-emulation GRUB, and GRUB's hybrid MBR for a dd-ed disk.
        .args(["-eltorito-boot", "boot/grub/bios.img", "-no-emul-boot"])
        .args([
            "-boot-load-size",
            "4",
            "-boot-info-table",
            "--grub2-boot-info",
        ])
        .arg("--grub2-mbr")
        .arg(spec.grub_dir.join("i386-pc/boot_hybrid.img"))
        .args(["-partition_offset", "16"])
        // UEFI: the FAT image as GPT partition 2 (the ESP) and as the El Torito EFI entry.
        .args(["-append_partition", "2", "0xef"])
        .arg(&esp)
        .arg("-appended_part_as_gpt")
        .args([
            "-eltorito-alt-boot",
            "-e",
            "--interval:appended_partition_2:all::",
        ])
        .arg("-no-emul-boot")
        .arg("-o")
        .arg(&spec.out)
        .arg(&tree);
    run(&mut x)?;
    let iso_bytes = std::fs::metadata(&spec.out)?.len();
    Ok(Built {
        media_id,
        cmdline,
        image,
        iso_bytes,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            kernel: "k".into(),
            initrd: "i".into(),
            image: "x.img".into(),
            out: "o.iso".into(),
            media_id: None,
            target: None,
            cmdline: vec![],
            consoles: Spec::default_consoles(),
            answers: None,
            timeout: 3,
            volume_id: "ZE_INSTALL".into(),
            grub_dir: "/usr/lib/grub".into(),
        }
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_command_line_carries_source_id_image_target_consoles_then_extras() {
        let mut s = spec();
        s.target = Some("/dev/vda".into());
        s.cmdline = vec!["ze.log=debug  panic=-1".into()];
        let (line, warnings) = cmdline(&s, ID, "prod.img.gz").unwrap();
        assert_eq!(
            line,
            format!(
                "ze.source=iso ze.media-id={ID} ze.image=prod.img.gz ze.target=/dev/vda \
                 console=tty0 console=ttyS0,115200 ze.log=debug panic=-1"
            )
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_command_line_the_installer_would_refuse_is_refused_here() {
        let mut s = spec();
        s.target = Some("/dev/vda1".into());
        let e = cmdline(&s, ID, "x.img.gz").unwrap_err().to_string();
        assert!(
            e.starts_with("the installer would refuse this command line: ze.target"),
            "{e}"
        );
        let mut s = spec();
        s.cmdline = vec!["kldload.hostname=\"a".into()];
        let e = cmdline(&s, ID, "x.img.gz").unwrap_err().to_string();
        assert!(e.contains("GRUB would not pass it on"), "{e}");
        let e = cmdline(&spec(), ID, "bad/name.gz").unwrap_err().to_string();
        assert!(e.contains("ze.image"), "{e}");
    }

    #[test]
    fn grub_configs_name_the_medium_and_the_kernel_line() {
        let cfg = grub_cfg("ze.source=iso a=b", ID, "prod.img.gz", 5);
        assert!(cfg.contains("set timeout=5\n"));
        assert!(cfg.contains("    linux /boot/ze/vmlinuz ze.source=iso a=b\n"));
        assert!(cfg.contains("menuentry \"Install prod.img.gz (ze-install, media 01234567)\""));
        let early = embedded_cfg(ID);
        assert!(early.starts_with(&format!(
            "search --no-floppy --set=root --file /boot/ze/{ID}\n"
        )));
    }

    #[test]
    fn iso_dates_are_utc_civil_time() {
        assert_eq!(iso_date(0), "1970010100000000");
        assert_eq!(iso_date(1_700_000_000), "2023111422132000");
        assert_eq!(iso_date(951_782_400), "2000022900000000");
    }

    #[test]
    fn raw_images_are_compressed_reproducibly_and_gzip_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let raw = t.path().join("prod.img");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&raw, &data).unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let ma = stage_image(&raw, &a).unwrap();
        let mb = stage_image(&raw, &b).unwrap();
        assert_eq!(ma, mb);
        assert_eq!(ma.name, "prod.img.gz");
        assert_eq!(ma.image_bytes, data.len() as u64);
        let stored = std::fs::read(a.join("prod.img.gz")).unwrap();
        assert_eq!(ma.stored_bytes, stored.len() as u64);
        assert_eq!(ma.sha256, ze_init::write::hex(&Sha256::digest(&stored)));
        // Given gzip, it is stored as is.
        let gz = t.path().join("given.img.gz");
        std::fs::write(&gz, &stored).unwrap();
        let c = t.path().join("c");
        std::fs::create_dir_all(&c).unwrap();
        let mc = stage_image(&gz, &c).unwrap();
        assert_eq!((mc.sha256, mc.image_bytes), (ma.sha256, ma.image_bytes));
        assert_eq!(mc.name, "given.img.gz");
        // Named .gz but not gzip; gzip that does not decompress.
        std::fs::write(&gz, b"plain").unwrap();
        assert!(
            stage_image(&gz, &c)
                .unwrap_err()
                .to_string()
                .contains("not gzip data")
        );
        std::fs::write(&gz, &stored[..stored.len() / 2]).unwrap();
        assert!(
            stage_image(&gz, &c)
                .unwrap_err()
                .to_string()
                .contains("does not decompress")
        );
    }

    #[test]
    fn check_names_every_missing_input_and_tool_file() {
        let t = tempfile::tempdir().unwrap();
        let mut s = spec();
        s.kernel = t.path().join("vmlinuz");
        std::fs::write(&s.kernel, vec![0u8; 4096]).unwrap();
        s.initrd = t.path().join("nope.img");
        s.image = t.path().join("nope.raw");
        s.grub_dir = t.path().join("grub");
        let m = check(&s);
        for want in [
            format!(
                "{}/x86_64-efi/linux.mod (Debian package grub-efi-amd64-bin)",
                s.grub_dir.display()
            ),
            format!(
                "{}/i386-pc/boot_hybrid.img (Debian package grub-pc-bin)",
                s.grub_dir.display()
            ),
            format!("initrd {} (no such file)", s.initrd.display()),
            format!("image {} (no such file)", s.image.display()),
            format!("kernel {} is not an x86 bzImage", s.kernel.display()),
        ] {
            assert!(m.contains(&want), "{want} not in {m:#?}");
        }
    }
}
