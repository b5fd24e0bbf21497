//! `ze-pack`: the command line over the packer library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use ze_pack::initrd::{self, Spec};
use ze_pack::newc::Archive;

#[derive(Parser)]
#[command(name = "ze-pack", version, about = "Builds the ze installer initrd")]
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
    }
}
