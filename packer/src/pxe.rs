//! `ze-pack pxe`: a static tree for the PXE chain, served by the tools operators already
//! run — dnsmasq (or any DHCP server plus a TFTP server) and nginx (or any static web
//! server or CDN). We ship no server of our own.
//!
//! ```text
//! <out>/install/boot/vmlinuz            the installer kernel
//! <out>/install/boot/initrd.img.gz      the installer initrd
//! <out>/install/boot/boot.ipxe          the iPXE script: kernel command line, consoles
//! <out>/install/image/<name>            each image, hard-linked or copied, never re-encoded
//! <out>/install/image/<name>.sha256     sha256sum-style sidecar of the file as served
//! <out>/install/database.zefs           the database injected into partition 4
//! <out>/install/status/index.html       the fleet status page; installers PUT their
//!                                       <mac>.json beside it (docs/status.md)
//! <out>/tftp/undionly.kpxe, ipxe.efi    iPXE for firmware that is not iPXE yet
//! <out>/dnsmasq.conf, nginx.conf        configuration for exactly this tree: dnsmasq as
//!                                       the DHCP server, nginx as the web server
//! <out>/dnsmasq-proxy.conf              dnsmasq as proxy DHCP beside another DHCP server
//! <out>/dhcpd.conf                      the same rules for an existing ISC dhcpd
//! ```
//!
//! The paths under `install/` are the ones `/init` asks for (`ze_init::install`).
//! Everything is pure text except the file copies: [`boot_ipxe`], [`dnsmasq_conf`],
//! [`dnsmasq_proxy_conf`], [`dhcpd_conf`] and [`nginx_conf`] are what the unit tests pin.

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use ze_init::config::{self, cmdline};

/// The fleet status page (`install/status/index.html`): one static file, no external
/// assets; it lists the status documents through the web server's JSON index.
pub const STATUS_PAGE: &str = include_str!("../assets/status.html");

/// Debian's `ipxe` package puts its binaries here.
pub const DEFAULT_IPXE_DIR: &str = "/usr/lib/ipxe";
/// The iPXE binaries copied to `tftp/`: BIOS firmware gets the first, x86-64 UEFI the
/// second (RFC 4578 client architecture 0 versus 7 and 9).
pub const IPXE_BIOS: &str = "undionly.kpxe";
pub const IPXE_EFI: &str = "ipxe.efi";

/// How images get into the tree. Whatever the mode, the bytes are the source's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// A hard link, or a copy when the tree is on another filesystem.
    #[default]
    Link,
    /// A symbolic link to the source's absolute path (the web server must follow it).
    Symlink,
    /// Always a copy (`copy_file_range`, so a reflink where the filesystem can).
    Copy,
}

/// Everything `ze-pack pxe` takes.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Image files, or directories whose `*.img` and `*.img.gz` files are all taken.
    pub images: Vec<PathBuf>,
    /// `ze.image` for boot.ipxe; see [`choose_image`].
    pub name: Option<String>,
    pub database: Option<PathBuf>,
    /// The address clients reach the web server at (and dnsmasq hands out).
    pub server: Ipv4Addr,
    pub port: u16,
    /// Extra kernel parameters for boot.ipxe.
    pub cmdline: String,
    pub out: PathBuf,
    /// Where `undionly.kpxe` and `ipxe.efi` are; `None` writes no `tftp/`.
    pub ipxe_dir: Option<PathBuf>,
    pub placement: Placement,
}

/// One image as placed in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
    /// `hard link`, `symlink` or `copy`.
    pub how: &'static str,
}

/// What was written, for the caller to print.
#[derive(Debug, Clone)]
pub struct Summary {
    pub out: PathBuf,
    /// The `ze.image` boot.ipxe names.
    pub image: String,
    pub images: Vec<Placed>,
    pub boot_url: String,
    /// The kernel parameters after the console set.
    pub kernel_args: String,
    pub warnings: Vec<String>,
}

pub fn build(spec: &Spec) -> Result<Summary> {
    let mut warnings = Vec::new();
    if spec.port == 0 {
        bail!("--port 0 is not a port number (1-65535)");
    }
    let sources = collect_images(&spec.images)?;
    let names: Vec<String> = sources.iter().map(|(n, _)| n.clone()).collect();
    let user = cmdline::tokenize(&spec.cmdline);
    let in_cmdline = user
        .iter()
        .rev()
        .find(|p| p.key == "ze.image")
        .and_then(|p| p.value.as_deref());
    let image = choose_image(&names, spec.name.as_deref(), in_cmdline)?;
    let (args, found) = kernel_args(spec.server, spec.port, &image, &spec.cmdline)?;
    warnings.extend(found);

    let out = &spec.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let out = std::fs::canonicalize(out)?;
    let boot = out.join("install/boot");
    let image_dir = out.join("install/image");
    // ze-pack owns these three directories and rewrites them whole, so an image left
    // from an earlier run is never served (or chosen) by mistake. install/answers/ and
    // an operator's database.zefs are left alone.
    for d in [&boot, &image_dir, &out.join("tftp")] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("clearing {}", d.display()))?;
        }
    }
    std::fs::create_dir_all(&boot)?;
    std::fs::create_dir_all(&image_dir)?;
    // The status documents of earlier installs stay; the page is always this build's.
    let status = out.join("install/status");
    std::fs::create_dir_all(&status)?;
    std::fs::write(status.join("index.html"), STATUS_PAGE)?;

    copy(&spec.kernel, &boot.join("vmlinuz"))?;
    copy(&spec.initrd, &boot.join("initrd.img.gz"))?;
    let base = base_url(spec.server, spec.port);
    std::fs::write(boot.join("boot.ipxe"), boot_ipxe(&base, &args))?;

    let mut images = Vec::new();
    for (name, src) in &sources {
        let placed = place_image(src, &image_dir, name, spec.placement)?;
        if !world_readable(src)? {
            warnings.push(format!(
                "{}: not readable by others; a web server running as its own user (www-data) will answer 403",
                src.display()
            ));
        }
        std::fs::write(
            image_dir.join(format!("{name}.sha256")),
            sidecar(&placed.sha256, name),
        )?;
        images.push(placed);
    }

    let db = out.join(ze_init::install::DATABASE_PATH.trim_start_matches('/'));
    match &spec.database {
        Some(src) => copy(src, &db)?,
        None if db.exists() => {}
        None => warnings.push(format!(
            "no --database: installs stop with FATAL (404 for {}) until one is placed at {}",
            ze_init::install::DATABASE_PATH,
            db.display()
        )),
    }

    if let Some(dir) = &spec.ipxe_dir {
        let tftp = out.join("tftp");
        std::fs::create_dir_all(&tftp)?;
        for f in [IPXE_BIOS, IPXE_EFI] {
            let src = dir.join(f);
            if !src.exists() {
                bail!(
                    "{} is missing: install Debian's ipxe package, pass --ipxe-dir DIR (holding {IPXE_BIOS} and {IPXE_EFI}), or --no-tftp",
                    src.display()
                );
            }
            copy(&src, &tftp.join(f))?;
        }
    }
    let tftp = spec.ipxe_dir.as_ref().map(|_| out.join("tftp"));
    std::fs::write(
        out.join("dnsmasq.conf"),
        dnsmasq_conf(&out, tftp.as_deref(), &base),
    )?;
    std::fs::write(
        out.join("dnsmasq-proxy.conf"),
        dnsmasq_proxy_conf(&out, tftp.as_deref(), &base),
    )?;
    std::fs::write(
        out.join("dhcpd.conf"),
        dhcpd_conf(&out, tftp.is_some(), spec.server, &base),
    )?;
    std::fs::write(
        out.join("nginx.conf"),
        nginx_conf(&out, spec.server, spec.port),
    )?;

    Ok(Summary {
        boot_url: format!("{base}/boot.ipxe"),
        out,
        image,
        images,
        kernel_args: args,
        warnings,
    })
}

/// `http://<server>[:<port>]/install/boot`
pub fn base_url(server: Ipv4Addr, port: u16) -> String {
    match port {
        80 => format!("http://{server}/install/boot"),
        p => format!("http://{server}:{p}/install/boot"),
    }
}

/// The images by their name in the tree, sorted by name. A directory contributes its
/// `*.img` and `*.img.gz` files (not recursively); a file is taken whatever its name.
/// Names must be valid `ze.image` values, and unique.
pub fn collect_images(args: &[PathBuf]) -> Result<Vec<(String, PathBuf)>> {
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for a in args {
        let meta = std::fs::metadata(a).with_context(|| format!("--image {}", a.display()))?;
        if meta.is_dir() {
            let mut any = false;
            for e in std::fs::read_dir(a)? {
                let p = e?.path();
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if (n.ends_with(".img") || n.ends_with(".img.gz")) && p.is_file() {
                    found.push((n.to_string(), p.clone()));
                    any = true;
                }
            }
            if !any {
                bail!("--image {}: no *.img or *.img.gz file in it", a.display());
            }
        } else {
            let n = a
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("--image {}: no file name", a.display()))?;
            found.push((n.to_string(), a.clone()));
        }
    }
    if found.is_empty() {
        bail!("no --image given");
    }
    found.sort();
    for w in found.windows(2) {
        if w[0].0 == w[1].0 {
            bail!(
                "two images are named {:?} ({} and {}); the tree serves one name once",
                w[0].0,
                w[0].1.display(),
                w[1].1.display()
            );
        }
    }
    for (n, p) in &found {
        config::valid_image_name(n)
            .map_err(|why| anyhow::anyhow!("image {}: its name {n:?} {why}", p.display()))?;
    }
    Ok(found)
}

/// The image boot.ipxe names: `--name`, else `ze.image=` in `--cmdline`, else the
/// lexicographically last name ending in `.img` (seed 004: timestamped builds such as
/// `ze-20260617-160000.img` sort by age, so the newest wins), else the last name of all
/// (a tree of `.img.gz` images only). A name given explicitly must be in the tree.
pub fn choose_image(
    names: &[String],
    name: Option<&str>,
    in_cmdline: Option<&str>,
) -> Result<String> {
    let explicit = match (name, in_cmdline) {
        (Some(a), Some(b)) if a != b => {
            bail!("--name {a} and ze.image={b} in --cmdline disagree; give one")
        }
        (Some(a), _) | (None, Some(a)) => Some(a),
        (None, None) => None,
    };
    if let Some(n) = explicit {
        if !names.iter().any(|x| x == n) {
            bail!(
                "ze.image {n:?} is not one of the images ({})",
                names.join(", ")
            );
        }
        return Ok(n.to_string());
    }
    // Byte order, which is what `ls` and the seed's server sort by in the C locale.
    let mut sorted = names.to_vec();
    sorted.sort();
    sorted
        .iter()
        .rev()
        .find(|n| n.ends_with(".img"))
        .or_else(|| sorted.last())
        .cloned()
        .context("no images")
}

/// The kernel parameters boot.ipxe passes after the consoles: `ze.server`, `ze.port`
/// unless 80, `ze.image`, then `--cmdline` (without its `ze.image`, already placed). Also
/// the warnings the installer would print for them.
///
/// The result is checked with the installer's own parser, so a typo fails here and not on
/// a machine's console. Parameters holding an iPXE setting (`ze.mac=${netX/mac}`) are
/// expanded by iPXE at boot and are not checked.
pub fn kernel_args(
    server: Ipv4Addr,
    port: u16,
    image: &str,
    user: &str,
) -> Result<(String, Vec<String>)> {
    if user.contains(['\n', '\r']) {
        bail!("--cmdline: must be one line (boot.ipxe is a script)");
    }
    let params = cmdline::tokenize(user);
    for p in &params {
        if p.key == "ze.server" || p.key == "ze.port" {
            bail!(
                "--cmdline sets {}: give --server/--port instead (they also go into dnsmasq.conf and nginx.conf)",
                p.key
            );
        }
    }
    let mut args = vec![format!("ze.server={server}")];
    if port != 80 {
        args.push(format!("ze.port={port}"));
    }
    args.push(format!("ze.image={image}"));
    // Re-split the user's text on whitespace outside quotes, keeping each parameter as
    // written (quotes included), and drop its ze.image.
    args.extend(
        raw_params(user)
            .into_iter()
            .filter(|raw| !raw.trim_start_matches('"').starts_with("ze.image="))
            .map(str::to_string),
    );
    let line = args.join(" ");
    let checkable: Vec<&str> = raw_params(&line)
        .into_iter()
        .filter(|raw| !raw.contains("${"))
        .collect();
    let parsed = config::from_cmdline(&checkable.join(" "))
        .map_err(|e| anyhow::anyhow!("--cmdline: {e}"))?;
    Ok((line, parsed.warnings))
}

/// Splits on whitespace outside double quotes, keeping the quotes (the kernel's
/// `next_arg` rule, as `cmdline::tokenize`, but without unquoting).
fn raw_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (None, false);
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        }
        match (c.is_whitespace() && !quoted, start) {
            (true, Some(st)) => {
                out.push(&s[st..i]);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push(&s[st..]);
    }
    out
}

/// The iPXE script. Absolute URLs (the server is known), so it works however iPXE got
/// it. `initrd=` names the initrd for the kernel's EFI stub, which loads it by that name
/// from iPXE's virtual file system on UEFI; BIOS boots ignore it.
pub fn boot_ipxe(base: &str, args: &str) -> String {
    let own_console = cmdline::tokenize(args).iter().any(|p| p.key == "console");
    let mut s = String::from(
        "#!ipxe\n\
         # ze-install: loads the installer kernel and initrd over HTTP. Written by\n\
         # ze-pack pxe (docs/pxe.md); DHCP names this script as the boot file for iPXE.\n\n",
    );
    s += &format!("set ze-base {base}\n");
    if own_console {
        s += "# --cmdline sets console=, so no per-architecture console set.\nset ze-console\n";
    } else {
        // seed 004, "Kernel Command Line": the last console= becomes /dev/console.
        // ttyAMA0 (the ARM PL011 UART) never registers on x86, where it would leave
        // /dev/console dead; BIOS iPXE reports i386 even on x86-64 machines.
        s += "# x86 (i386, x86_64): tty0 and the first serial port; arm64 also the PL011 UART.\n\
              set ze-console console=tty0 console=ttyS0\n\
              iseq ${buildarch} arm64 && set ze-console console=tty0 console=ttyS0 console=ttyAMA0 ||\n";
    }
    s += "echo ze-install: loading the installer from ${ze-base} (${buildarch})\n";
    s += &format!(
        "kernel ${{ze-base}}/vmlinuz initrd=initrd.img.gz ${{ze-console}} {args} || goto failed\n"
    );
    s += "initrd ${ze-base}/initrd.img.gz || goto failed\n\
          boot || goto failed\n\
          :failed\n\
          echo ze-install: could not load the installer from ${ze-base}; rebooting in 10 s\n\
          sleep 10\n\
          reboot\n";
    s
}

/// `<hex>  <name>\n`, as `sha256sum` writes it (and `sha256sum -c` reads it).
pub fn sidecar(sha256: &str, name: &str) -> String {
    format!("{sha256}  {name}\n")
}

/// dnsmasq directives for this tree. The DHCP range and interface are the operator's
/// (a full DHCP server, or `dhcp-range=<net>,proxy` next to an existing one; see
/// docs/pxe.md), so they are not here.
pub fn dnsmasq_conf(out: &Path, tftp: Option<&Path>, base: &str) -> String {
    let mut s = format!(
        "# dnsmasq: network boot for the ze-install tree {out}, written by ze-pack pxe.\n\
         # Add your interface= and dhcp-range= (docs/pxe.md), then run\n\
         #   dnsmasq --conf-file={out}/dnsmasq.conf …\n\
         # or add conf-file={out}/dnsmasq.conf to an existing dnsmasq.conf.\n\n\
         # iPXE announces itself with user class \"iPXE\" (DHCP option 77); it gets the\n\
         # HTTP script. Without this rule a chainloaded iPXE would load iPXE again, forever.\n\
         dhcp-userclass=set:ipxe,iPXE\n\
         dhcp-boot=tag:ipxe,{base}/boot.ipxe\n",
        out = out.display()
    );
    if let Some(t) = tftp {
        s += &format!(
            "\n# Firmware that is not iPXE yet fetches iPXE by TFTP, picked by the client\n\
             # architecture it sends (option 93, RFC 4578): 0 BIOS, 7 and 9 x86-64 UEFI.\n\
             enable-tftp\n\
             tftp-root={}\n\
             dhcp-match=set:bios,option:client-arch,0\n\
             dhcp-match=set:efi-x86_64,option:client-arch,7\n\
             dhcp-match=set:efi-x86_64,option:client-arch,9\n\
             dhcp-boot=tag:!ipxe,tag:bios,{IPXE_BIOS}\n\
             dhcp-boot=tag:!ipxe,tag:efi-x86_64,{IPXE_EFI}\n",
            t.display()
        );
    }
    s
}

/// dnsmasq as proxy DHCP: another DHCP server on the segment keeps handing out the
/// addresses, dnsmasq adds only the boot information. In proxy mode dnsmasq ignores
/// `dhcp-boot` and answers PXE clients with boot menus (`pxe-service`) instead; a menu
/// of one entry boots at once. x86-64 UEFI firmware sends client architecture 7
/// (`BC_EFI` to dnsmasq) or, on some machines, 9 (`x86-64_EFI`), so both are listed.
pub fn dnsmasq_proxy_conf(out: &Path, tftp: Option<&Path>, base: &str) -> String {
    let out = out.display();
    let mut s = format!(
        r#"# dnsmasq as proxy DHCP: network boot for the ze-install tree {out}, written by
# ze-pack pxe, beside a DHCP server you keep (it still hands out the addresses).
# Add dhcp-range=<your network address>,proxy (e.g. dhcp-range=10.0.0.0,proxy)
# and interface=, then run dnsmasq --port=0 --conf-file={out}/dnsmasq-proxy.conf …

# iPXE (user class "iPXE", option 77) gets the HTTP script.
dhcp-userclass=set:ipxe,iPXE
pxe-service=tag:ipxe,x86PC,"ze-install",{base}/boot.ipxe
pxe-service=tag:ipxe,BC_EFI,"ze-install",{base}/boot.ipxe
pxe-service=tag:ipxe,x86-64_EFI,"ze-install",{base}/boot.ipxe
"#
    );
    if let Some(t) = tftp {
        s += &format!(
            r#"
# Firmware that is not iPXE yet fetches iPXE by TFTP from this dnsmasq.
enable-tftp
tftp-root={}
pxe-service=tag:!ipxe,x86PC,"ze-install",{IPXE_BIOS}
pxe-service=tag:!ipxe,BC_EFI,"ze-install",{IPXE_EFI}
pxe-service=tag:!ipxe,x86-64_EFI,"ze-install",{IPXE_EFI}
"#,
            t.display()
        );
    }
    s
}

/// The same rules for an existing ISC dhcpd (dhcpd.conf(5)), to paste into the subnet
/// that serves the machines. dhcpd serves no TFTP: `next-server` names the TFTP server
/// that holds `tftp/` (by default the web server's address, with dnsmasq running TFTP
/// only; docs/pxe.md).
pub fn dhcpd_conf(out: &Path, tftp: bool, server: Ipv4Addr, base: &str) -> String {
    let out = out.display();
    let mut s = format!(
        r#"# ISC dhcpd: network boot for the ze-install tree {out}, written by ze-pack pxe.
# Paste into the subnet {{ }} that serves the machines (or the top level).
# iPXE says so with user class "iPXE" (option 77): it gets the HTTP script.
"#
    );
    if tftp {
        s += &format!(
            r#"# Firmware that is not iPXE yet gets iPXE by TFTP from next-server, picked by
# its client architecture (option 93, RFC 4578): 0 BIOS, 7 and 9 x86-64 UEFI.
# The TFTP server serves {out}/tftp, e.g.
#   dnsmasq --port=0 --enable-tftp --tftp-root={out}/tftp
next-server {server};
if exists user-class and option user-class = "iPXE" {{
    filename "{base}/boot.ipxe";
}} elsif option pxe-system-type = 00:07 or option pxe-system-type = 00:09 {{
    filename "{IPXE_EFI}";
}} elsif option pxe-system-type = 00:00 {{
    filename "{IPXE_BIOS}";
}}
"#
        );
    } else {
        s += &format!(
            r#"if exists user-class and option user-class = "iPXE" {{
    filename "{base}/boot.ipxe";
}}
"#
        );
    }
    s
}

/// A complete nginx configuration that serves `/install/` of the tree and nothing else.
/// Relative paths (pid, logs, temporary files) resolve against nginx's prefix (`-p`), so
/// a state directory of the operator's choosing holds them; the `server` block can be
/// copied into an existing nginx as it is.
pub fn nginx_conf(out: &Path, server: Ipv4Addr, port: u16) -> String {
    format!(
        r#"# nginx: serves the ze-install tree {out}, written by ze-pack pxe.
# Standalone:  nginx -p STATE_DIR/ -c {out}/nginx.conf
# (pid, logs and temporary files go to STATE_DIR; the tree itself is only read). In an
# existing nginx, copy the server block into its http block.

# Debian's account for web servers (other systems: nginx, http…); nginx ignores it when
# not started as root.
user www-data;
worker_processes auto;
pid nginx.pid;
error_log error.log;

events {{
    worker_connections 1024;
}}

http {{
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    # The Range header shows resumed downloads (206) beside the first request.
    log_format ze '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                  'range="$http_range" $request_time';
    access_log access.log ze;

    # ze-install: begin server block
    server {{
        listen {server}:{port};
        root {out};

        # The installer probes / (any answer, 404 too, means reachable). The configs
        # and tftp/ beside install/ are not served.
        location / {{
            return 404;
        }}
        location /install/ {{
        }}
        location = /install/boot/boot.ipxe {{
            default_type text/plain;
            add_header Cache-Control no-cache;
        }}
        location /install/image/ {{
            # Per-connection cap, so many installs at once leave room on the uplink:
            # limit_rate 50m;
        }}
        # Live status (docs/status.md): each installer PUTs <mac>.json here; the page
        # lists them through the JSON autoindex of this directory, which is why its
        # index.html is not served for the directory itself. The directory must be
        # writable by nginx's user (chown www-data {out}/install/status).
        location /install/status/ {{
            dav_methods PUT;
            client_max_body_size 1m;
            autoindex on;
            autoindex_format json;
            index ze-no-index;
            add_header Cache-Control no-cache;
        }}
    }}
    # ze-install: end server block
}}
"#,
        out = out.display()
    )
}

fn copy(src: &Path, dst: &Path) -> Result<()> {
    std::fs::copy(src, dst)
        .map(drop)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))
}

fn world_readable(p: &Path) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(p)?.permissions().mode() & 0o004 != 0)
}

/// Puts `src` into `dir` as `name`; hashes the bytes as they will be served. A
/// `<src>.sha256` next to the source must agree (a damaged copy stops here, not on a
/// machine).
fn place_image(src: &Path, dir: &Path, name: &str, how: Placement) -> Result<Placed> {
    let dst = dir.join(name);
    let how = match how {
        Placement::Symlink => {
            let abs = std::fs::canonicalize(src)?;
            std::os::unix::fs::symlink(&abs, &dst)?;
            "symlink"
        }
        Placement::Copy => {
            copy(src, &dst)?;
            "copy"
        }
        Placement::Link => match std::fs::hard_link(src, &dst) {
            Ok(()) => "hard link",
            // EXDEV (another filesystem) or EPERM (protected_hardlinks): copy instead.
            Err(_) => {
                copy(src, &dst)?;
                "copy"
            }
        },
    };
    let (sha256, bytes) = sha256_file(&dst)?;
    let own = src.with_file_name(format!(
        "{}.sha256",
        src.file_name().and_then(|n| n.to_str()).unwrap_or_default()
    ));
    if let Ok(text) = std::fs::read_to_string(&own) {
        let theirs = ze_init::install::parse_sidecar(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", own.display()))?;
        if theirs != sha256 {
            bail!(
                "{} says {theirs}, but {} hashes to {sha256}",
                own.display(),
                src.display()
            );
        }
    }
    Ok(Placed {
        name: name.to_string(),
        sha256,
        bytes,
        how,
    })
}

fn sha256_file(p: &Path) -> Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_lexicographically_last_img_is_chosen() {
        let n = names(&[
            "ze-20260617-160000.img",
            "ze-20260701-090000.img",
            "ze-20260801-000000.img.gz",
            "other.bin",
        ]);
        assert_eq!(
            choose_image(&n, None, None).unwrap(),
            "ze-20260701-090000.img"
        );
        // Byte order: an upper-case name sorts before every lower-case one.
        assert_eq!(
            choose_image(&names(&["a.img", "Z.img"]), None, None).unwrap(),
            "a.img"
        );
    }

    #[test]
    fn without_an_img_the_last_name_of_all_is_chosen() {
        let n = names(&["a.img.gz", "b.img.gz"]);
        assert_eq!(choose_image(&n, None, None).unwrap(), "b.img.gz");
    }

    #[test]
    fn an_explicit_name_wins_but_must_exist_and_agree() {
        let n = names(&["a.img", "b.img"]);
        assert_eq!(choose_image(&n, Some("a.img"), None).unwrap(), "a.img");
        assert_eq!(choose_image(&n, None, Some("a.img")).unwrap(), "a.img");
        assert_eq!(
            choose_image(&n, Some("a.img"), Some("a.img")).unwrap(),
            "a.img"
        );
        let e = choose_image(&n, Some("a.img"), Some("b.img")).unwrap_err();
        assert!(e.to_string().contains("disagree"), "{e}");
        let e = choose_image(&n, Some("c.img"), None).unwrap_err();
        assert!(e.to_string().contains("not one of the images"), "{e}");
    }

    #[test]
    fn kernel_args_put_server_port_and_image_first() {
        let s = Ipv4Addr::new(10, 0, 0, 1);
        let (a, w) = kernel_args(s, 80, "x.img", "").unwrap();
        assert_eq!(a, "ze.server=10.0.0.1 ze.image=x.img");
        assert!(w.is_empty());
        let (a, _) = kernel_args(s, 8080, "x.img", "panic=-1 ze.image=x.img ze.wait=5").unwrap();
        assert_eq!(
            a,
            "ze.server=10.0.0.1 ze.port=8080 ze.image=x.img panic=-1 ze.wait=5"
        );
    }

    #[test]
    fn kernel_args_are_checked_by_the_installers_parser() {
        let s = Ipv4Addr::new(10, 0, 0, 1);
        let e = kernel_args(s, 80, "x.img", "ze.stall-timeout=0").unwrap_err();
        assert!(
            e.to_string()
                .contains("ze.stall-timeout: \"0\" is not a number of seconds"),
            "{e}"
        );
        let (_, w) = kernel_args(s, 80, "x.img", "ze.stal-timeout=5").unwrap();
        assert!(w.iter().any(|w| w.contains("ze.stal-timeout")), "{w:?}");
        let e = kernel_args(s, 80, "x.img", "ze.server=10.0.0.2").unwrap_err();
        assert!(e.to_string().contains("--server"), "{e}");
        assert!(kernel_args(s, 80, "x.img", "a\nb").is_err());
    }

    #[test]
    fn ipxe_settings_in_the_cmdline_are_left_to_ipxe() {
        let s = Ipv4Addr::new(10, 0, 0, 1);
        let (a, _) = kernel_args(s, 80, "x.img", "ze.mac=${netX/mac}").unwrap();
        assert!(a.ends_with(" ze.mac=${netX/mac}"), "{a}");
    }

    #[test]
    fn quoted_parameters_stay_whole() {
        assert_eq!(
            raw_params(r#"a "b=c d" e="f g"  h"#),
            vec!["a", "\"b=c d\"", "e=\"f g\"", "h"]
        );
    }

    #[test]
    fn boot_ipxe_picks_consoles_by_buildarch() {
        let s = boot_ipxe(
            "http://10.0.0.1/install/boot",
            "ze.server=10.0.0.1 ze.image=x.img",
        );
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains("set ze-base http://10.0.0.1/install/boot\n"));
        assert!(s.contains("set ze-console console=tty0 console=ttyS0\n"));
        assert!(s.contains(
            "iseq ${buildarch} arm64 && set ze-console console=tty0 console=ttyS0 console=ttyAMA0 ||\n"
        ));
        assert!(s.contains(
            "kernel ${ze-base}/vmlinuz initrd=initrd.img.gz ${ze-console} ze.server=10.0.0.1 ze.image=x.img || goto failed\n"
        ));
        assert!(s.contains("initrd ${ze-base}/initrd.img.gz || goto failed\n"));
        // No console name outside the set lines: x86 never gets ttyAMA0 by default.
        let kernel = s.lines().find(|l| l.starts_with("kernel ")).unwrap();
        assert!(!kernel.contains("ttyAMA0"));
    }

    #[test]
    fn a_console_in_the_cmdline_replaces_the_set() {
        let s = boot_ipxe("http://h/install/boot", "ze.server=h console=ttyS1,115200");
        assert!(s.contains("set ze-console\n"));
        assert!(!s.contains("iseq"));
    }

    #[test]
    fn base_url_names_the_port_unless_80() {
        let s = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(base_url(s, 80), "http://10.0.0.1/install/boot");
        assert_eq!(base_url(s, 8080), "http://10.0.0.1:8080/install/boot");
    }

    #[test]
    fn dnsmasq_conf_sends_ipxe_to_http_and_firmware_to_tftp() {
        let c = dnsmasq_conf(
            Path::new("/srv/pxe"),
            Some(Path::new("/srv/pxe/tftp")),
            "http://10.0.0.1/install/boot",
        );
        for line in [
            "dhcp-userclass=set:ipxe,iPXE",
            "dhcp-boot=tag:ipxe,http://10.0.0.1/install/boot/boot.ipxe",
            "enable-tftp",
            "tftp-root=/srv/pxe/tftp",
            "dhcp-match=set:bios,option:client-arch,0",
            "dhcp-match=set:efi-x86_64,option:client-arch,7",
            "dhcp-match=set:efi-x86_64,option:client-arch,9",
            "dhcp-boot=tag:!ipxe,tag:bios,undionly.kpxe",
            "dhcp-boot=tag:!ipxe,tag:efi-x86_64,ipxe.efi",
        ] {
            assert!(c.lines().any(|l| l == line), "missing {line:?} in\n{c}");
        }
        let no_tftp = dnsmasq_conf(Path::new("/srv/pxe"), None, "http://h/install/boot");
        assert!(!no_tftp.contains("enable-tftp"));
        assert!(no_tftp.contains("dhcp-boot=tag:ipxe,"));
    }

    #[test]
    fn the_proxy_conf_uses_boot_menus() {
        let c = dnsmasq_proxy_conf(
            Path::new("/srv/pxe"),
            Some(Path::new("/srv/pxe/tftp")),
            "http://10.0.0.1/install/boot",
        );
        for line in [
            r#"dhcp-userclass=set:ipxe,iPXE"#,
            r#"pxe-service=tag:ipxe,x86PC,"ze-install",http://10.0.0.1/install/boot/boot.ipxe"#,
            r#"pxe-service=tag:ipxe,BC_EFI,"ze-install",http://10.0.0.1/install/boot/boot.ipxe"#,
            r#"pxe-service=tag:!ipxe,x86PC,"ze-install",undionly.kpxe"#,
            r#"pxe-service=tag:!ipxe,BC_EFI,"ze-install",ipxe.efi"#,
            r#"pxe-service=tag:!ipxe,x86-64_EFI,"ze-install",ipxe.efi"#,
            r#"tftp-root=/srv/pxe/tftp"#,
        ] {
            assert!(c.lines().any(|l| l == line), "missing {line:?} in\n{c}");
        }
        // dhcp-boot means nothing in proxy mode; the range is the operator's.
        assert!(!c.contains("\ndhcp-boot"));
        assert!(!c.contains("\ndhcp-range"));
    }

    #[test]
    fn the_dhcpd_conf_has_the_user_class_rule_first() {
        let c = dhcpd_conf(
            Path::new("/srv/pxe"),
            true,
            Ipv4Addr::new(10, 0, 0, 1),
            "http://10.0.0.1/install/boot",
        );
        let ipxe = c.find(r#"option user-class = "iPXE""#).unwrap();
        let efi = c.find(r#"filename "ipxe.efi""#).unwrap();
        assert!(ipxe < efi, "{c}");
        assert!(c.contains("next-server 10.0.0.1;\n"));
        assert!(c.contains("    filename \"http://10.0.0.1/install/boot/boot.ipxe\";\n"));
        assert!(c.contains("option pxe-system-type = 00:00 {\n    filename \"undionly.kpxe\";"));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
        let plain = dhcpd_conf(
            Path::new("/x"),
            false,
            Ipv4Addr::new(10, 0, 0, 1),
            "http://h",
        );
        assert!(!plain.contains("next-server"));
        assert!(plain.contains("filename \"http://h/boot.ipxe\";"));
    }

    #[test]
    fn nginx_conf_takes_status_puts_and_lists_them_as_json() {
        let c = nginx_conf(Path::new("/srv/pxe"), Ipv4Addr::new(10, 0, 0, 1), 80);
        let loc = &c[c.find("location /install/status/").unwrap()..];
        let loc = &loc[..loc.find('}').unwrap()];
        for d in [
            "dav_methods PUT;",
            "autoindex on;",
            "autoindex_format json;",
            "index ze-no-index;",
        ] {
            assert!(loc.contains(d), "{d} missing in {loc}");
        }
        assert!(STATUS_PAGE.contains("autoindex_format json"));
        assert!(!STATUS_PAGE.contains("http://") && !STATUS_PAGE.contains("https://"));
    }

    #[test]
    fn nginx_conf_serves_install_only() {
        let c = nginx_conf(Path::new("/srv/pxe"), Ipv4Addr::new(10, 0, 0, 1), 8080);
        assert!(c.contains("listen 10.0.0.1:8080;"));
        assert!(c.contains("root /srv/pxe;"));
        assert!(c.contains("location /install/ {"));
        assert!(c.contains("# limit_rate 50m;"));
        // Balanced braces: a copy-paste of the server block starts and ends cleanly.
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }
}
