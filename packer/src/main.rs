//! `ze-pack`: the command line over the packer library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use ze_pack::initrd::{self, Spec};
use ze_pack::newc::Archive;
use ze_pack::pxe;

#[derive(Parser)]
#[command(
    name = "ze-pack",
    version,
    about = "Builds the ze installer initrd, PXE trees and ISOs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a reproducible newc cpio.gz with /init, kernel modules and extra files.
    Initrd {
        /// The static ze-init binary, packed as /init.
        #[arg(long)]
        init: PathBuf,
        /// Output file (initrd.img.gz).
        #[arg(long, short)]
        out: PathBuf,
        /// Module tree: /lib/modules/<release> or an extracted linux-image-* package.
        #[arg(long)]
        modules: Option<PathBuf>,
        /// Module set: none, qemu or hardware (default qemu when --modules is given).
        #[arg(long)]
        profile: Option<String>,
        /// Extra module to bundle (repeatable); it must exist in the tree.
        #[arg(long = "module")]
        extra_modules: Vec<String>,
        /// Extra file SRC:DEST (repeatable); DEST is absolute inside the initrd.
        #[arg(long = "file")]
        files: Vec<String>,
        /// kldload answers file, baked as /etc/kldload/autoinstall.env.
        #[arg(long)]
        answers: Option<PathBuf>,
    },
    /// Write a static PXE tree (kernel, initrd, boot.ipxe, images with sidecars,
    /// database, iPXE binaries) with dnsmasq.conf and nginx.conf for it (docs/pxe.md).
    Pxe(PxeArgs),
    // --- ze-pack iso (docs/iso.md) ---
    /// Write a hybrid BIOS/UEFI installer ISO holding the kernel, initrd and image.
    Iso {
        /// The installer kernel (bzImage).
        #[arg(long, required_unless_present = "check")]
        kernel: Option<PathBuf>,
        /// The installer initrd (ze-pack initrd).
        #[arg(long, required_unless_present = "check")]
        initrd: Option<PathBuf>,
        /// The appliance image, raw (gzip-compressed here) or *.gz.
        #[arg(long, required_unless_present = "check")]
        image: Option<PathBuf>,
        /// Output file.
        #[arg(long, short, required_unless_present = "check")]
        out: Option<PathBuf>,
        /// 32 lowercase hex identifying this medium (default: freshly generated).
        #[arg(long)]
        media_id: Option<String>,
        /// Whole-disk target for ze.target (needed when the machine has several disks).
        #[arg(long)]
        target: Option<String>,
        /// Extra kernel parameters (repeatable; split at spaces).
        #[arg(long)]
        cmdline: Vec<String>,
        /// console= values in order, replacing the default tty0 and ttyS0,115200.
        #[arg(long = "console")]
        consoles: Vec<String>,
        /// kldload answers file, put at /ze-install/autoinstall.env.
        #[arg(long)]
        answers: Option<PathBuf>,
        /// Seconds the boot menu waits.
        #[arg(long, default_value_t = 5)]
        timeout: u32,
        /// ISO volume id.
        #[arg(long, default_value = "ZE_INSTALL")]
        volume_id: String,
        /// GRUB's platform directories (Debian: /usr/lib/grub).
        #[arg(long, default_value = "/usr/lib/grub")]
        grub_dir: PathBuf,
        /// Check the prerequisites and inputs, name each missing one, build nothing.
        #[arg(long)]
        check: bool,
    },
}

#[derive(clap::Args)]
struct PxeArgs {
    /// The installer kernel, served as install/boot/vmlinuz.
    #[arg(long)]
    kernel: PathBuf,
    /// The installer initrd (ze-pack initrd), served as install/boot/initrd.img.gz.
    #[arg(long)]
    initrd: PathBuf,
    /// An image file, or a directory of *.img / *.img.gz (repeatable). Linked or
    /// copied into install/image/ as it is, with a <name>.sha256 sidecar.
    #[arg(long = "image", required = true)]
    images: Vec<PathBuf>,
    /// ze.image for boot.ipxe (default: ze.image= in --cmdline, else the
    /// lexicographically last *.img, else the last image).
    #[arg(long)]
    name: Option<String>,
    /// The database, served as install/database.zefs.
    #[arg(long)]
    database: Option<PathBuf>,
    /// The IPv4 address clients reach the web server at.
    #[arg(long)]
    server: std::net::Ipv4Addr,
    /// The web server's port.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Extra kernel parameters for boot.ipxe (checked like the installer checks them).
    #[arg(long, default_value = "")]
    cmdline: String,
    /// The tree to write (created; install/boot, install/image and tftp are replaced).
    #[arg(long, short)]
    out: PathBuf,
    /// Where undionly.kpxe and ipxe.efi are (Debian's ipxe package).
    #[arg(long, default_value = pxe::DEFAULT_IPXE_DIR, conflicts_with = "no_tftp")]
    ipxe_dir: PathBuf,
    /// Write no tftp/ (every client already runs iPXE).
    #[arg(long)]
    no_tftp: bool,
    /// Symlink the images instead of hard-linking them (the web server must follow links).
    #[arg(long, conflicts_with = "copy")]
    symlink: bool,
    /// Copy the images even when a hard link is possible.
    #[arg(long)]
    copy: bool,
}

/// `ze-pack iso --check`: one line per prerequisite or input that is missing.
fn iso_check(spec: &ze_pack::iso::Spec) -> Result<()> {
    let missing = ze_pack::iso::check(spec);
    if missing.is_empty() {
        eprintln!("ze-pack iso --check: everything needed is present");
        return Ok(());
    }
    for m in &missing {
        eprintln!("ze-pack iso --check: missing: {m}");
    }
    anyhow::bail!(
        "{} prerequisites missing (make deps installs the tools)",
        missing.len()
    )
}
// --- end ze-pack iso ---

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Iso {
            kernel,
            initrd,
            image,
            out,
            media_id,
            target,
            cmdline,
            consoles,
            answers,
            timeout,
            volume_id,
            grub_dir,
            check,
        } => {
            let spec = ze_pack::iso::Spec {
                kernel: kernel.unwrap_or_default(),
                initrd: initrd.unwrap_or_default(),
                image: image.unwrap_or_default(),
                out: out.unwrap_or_default(),
                media_id,
                target,
                cmdline,
                consoles: if consoles.is_empty() {
                    ze_pack::iso::Spec::default_consoles()
                } else {
                    consoles
                },
                answers,
                timeout,
                volume_id,
                grub_dir,
            };
            if check {
                return iso_check(&spec);
            }
            let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
                Ok(v) => v
                    .trim()
                    .parse()
                    .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number"))?,
                Err(_) => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs(),
            };
            let b = ze_pack::iso::build(&spec, epoch)?;
            for w in &b.warnings {
                eprintln!("ze-pack: warning: the installer will say: {w}");
            }
            eprintln!(
                "ze-pack: wrote {} ({} bytes): media-id {}, image {} ({} bytes stored, {} written, sha256 {})",
                spec.out.display(),
                b.iso_bytes,
                b.media_id,
                b.image.name,
                b.image.stored_bytes,
                b.image.image_bytes,
                b.image.sha256
            );
            eprintln!("ze-pack: kernel command line: {}", b.cmdline);
            Ok(())
        }
        Command::Initrd {
            init,
            out,
            modules,
            profile,
            extra_modules,
            files,
            answers,
        } => {
            let spec = Spec {
                init,
                modules,
                profile,
                extra_modules,
                files: files
                    .iter()
                    .map(|f| initrd::parse_file_arg(f))
                    .collect::<Result<_>>()?,
                answers,
            };
            let (bytes, summary) = initrd::build(&spec, Archive::mtime_from_env()?)?;
            for m in &summary.missing {
                eprintln!("ze-pack: warning: profile module {m}: skipped");
            }
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "ze-pack: wrote {} ({} bytes, {} entries, {} modules{})",
                out.display(),
                bytes.len(),
                summary.entries,
                summary.modules.len(),
                summary
                    .kernel
                    .map(|k| format!(" for {k}"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Command::Pxe(a) => pxe_main(a),
    }
}

fn pxe_main(a: PxeArgs) -> Result<()> {
    let spec = pxe::Spec {
        kernel: a.kernel,
        initrd: a.initrd,
        images: a.images,
        name: a.name,
        database: a.database,
        server: a.server,
        port: a.port,
        cmdline: a.cmdline,
        out: a.out,
        ipxe_dir: (!a.no_tftp).then_some(a.ipxe_dir),
        placement: match (a.symlink, a.copy) {
            (true, _) => pxe::Placement::Symlink,
            (_, true) => pxe::Placement::Copy,
            _ => pxe::Placement::Link,
        },
    };
    let s = pxe::build(&spec)?;
    for w in &s.warnings {
        eprintln!("ze-pack: warning: {w}");
    }
    eprintln!("ze-pack: wrote {}", s.out.display());
    eprintln!("  boot:   {} (ze.image={})", s.boot_url, s.image);
    eprintln!("  kernel: {}", s.kernel_args);
    for i in &s.images {
        eprintln!(
            "  image:  {} ({} bytes, {}, sha256 {})",
            i.name, i.bytes, i.how, i.sha256
        );
    }
    eprintln!(
        "  serve:  nginx -p STATE_DIR/ -c {0}/nginx.conf; dnsmasq --conf-file={0}/dnsmasq.conf plus your interface= and dhcp-range=",
        s.out.display()
    );
    Ok(())
}
