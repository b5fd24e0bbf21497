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
    about = "Builds the ze installer initrd and PXE trees"
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

fn main() -> Result<()> {
    match Cli::parse().command {
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
