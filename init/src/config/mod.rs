//! One typed configuration, built from the kernel command line and kldload answers
//! files (docs/answers.md). Every key of SPEC.md's table is validated here; an invalid
//! value is a [`ConfigError`] that names the key, where it was set when that was a
//! file, and what is wrong with its value.

pub mod answers;
pub mod cmdline;
pub mod ip;
pub mod merge;

pub use ip::{Device, IpConfig, StaticIp};
pub use merge::{ConfigBuilder, Layer, MergeError, Origin, SetBy};

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// Every `ze.*` key this build understands, with its default as documented in
/// docs/cmdline.md (a unit test keeps the two in step).
pub const KEYS: &[(&str, &str)] = &[
    ("ze.source", "http"),
    ("ze.server", "-"),
    ("ze.port", "80"),
    ("ze.image", "ze.img"),
    ("ze.target", "-"),
    ("ze.wait", "30"),
    ("ze.media-id", "-"),
    ("ze.mac", "-"),
    ("ze.shell-auth", "-"),
    ("ze.rescue-auth", "-"),
    ("ze.sha256", "-"),
    ("ze.log", "info"),
    ("ze.stall-timeout", "60"),
    ("ze.dry-run", "0"),
    ("ze.report", "-"),
    ("ze.hostname", "-"),
];

/// Other keys we read from the command line.
pub const OTHER_KEYS: &[&str] = &["ip", "kldload.answers"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Http,
    Iso,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    pub fn to_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
        }
    }
}

/// A MAC address, printed lowercase with colons.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Accepts `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`, any case.
    pub fn parse(s: &str) -> Option<Mac> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() != 6 {
            return None;
        }
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(parts) {
            if part.len() != 2 {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        Some(Mac(mac))
    }

    /// `52-54-00-12-34-56`, the form used in per-machine file names.
    pub fn hyphenated(&self) -> String {
        self.to_string().replace(':', "-")
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A credential verifier (a hash, never a password). It is still kept out of every log
/// line and JSON document: it serializes and prints as `(set)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(set)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("(set)")
    }
}

/// `ze.report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Report {
    Default,
    Off,
    Url(String),
}

impl Config {
    /// The status URL prefix in effect, if any.
    pub fn report_prefix(&self) -> Option<String> {
        match (&self.report, self.source, self.server) {
            (Report::Url(u), _, _) => Some(u.clone()),
            (Report::Default, Source::Http, Some(s)) => {
                Some(format!("http://{s}:{}/install/status/", self.port))
            }
            _ => None,
        }
    }
}

/// Where `kldload.answers` points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Answers {
    /// Per-MAC lookup on the install server (`kldload.answers=auto`).
    Auto,
    Url(String),
}

/// The installer's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    pub source: Source,
    pub server: Option<Ipv4Addr>,
    pub port: u16,
    pub image: String,
    pub target: Option<String>,
    pub wait: u32,
    pub media_id: Option<String>,
    pub mac: Option<Mac>,
    pub shell_auth: Option<Secret>,
    pub rescue_auth: Option<Secret>,
    pub sha256: Option<String>,
    pub log: LogLevel,
    /// Seconds without a byte before a download counts as stalled.
    pub stall_timeout: u32,
    /// Do everything up to the write (network, disk decision, image size), then stop.
    pub dry_run: bool,
    /// Where status documents are PUT: a URL prefix, `Off`, or `Default` (the install
    /// server's `/install/status/` for HTTP installs, nothing for ISO).
    pub report: Report,
    pub ip: IpConfig,
    pub answers: Option<Answers>,
    /// Sent as DHCP option 12 (RFC 2132 §3.14), so the DHCP server and its DNS know
    /// the machine by name. `ze.hostname` or `KLDLOAD_HOSTNAME`.
    pub hostname: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: Source::Http,
            server: None,
            port: 80,
            image: "ze.img".into(),
            target: None,
            wait: 30,
            media_id: None,
            mac: None,
            shell_auth: None,
            rescue_auth: None,
            sha256: None,
            log: LogLevel::Info,
            stall_timeout: 60,
            dry_run: false,
            report: Report::Default,
            ip: IpConfig::default(),
            answers: None,
            hostname: None,
        }
    }
}

/// A parsed configuration plus the non-fatal findings (unknown keys, weak secrets) and,
/// for each field of `config`, the source that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parsed {
    pub config: Config,
    pub warnings: Vec<String>,
    /// Keyed by the field's name in `config` (`target`, `media_id`; the parts of a
    /// static network as `ip.address`, `ip.prefix`…); fields no source set say
    /// `{"from": "default"}`.
    pub sources: BTreeMap<String, SetBy>,
}

/// An invalid value: names the key as it was written, where (for answers files), the
/// value and the problem: `ze.port: "99999" is not a port number (1-65535)`,
/// `KLDLOAD_DISK (/etc/kldload/autoinstall.env line 3): "/dev/sda1" is a partition; …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}{}: {problem}", in_file(.origin))]
pub struct ConfigError {
    pub key: String,
    /// Where the bad value was set; `None` for rules that span keys.
    pub origin: Option<Origin>,
    pub problem: String,
}

fn in_file(origin: &Option<Origin>) -> String {
    match origin {
        Some(o) if o.is_file() => format!(" ({o})"),
        _ => String::new(),
    }
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        origin: None,
        problem: problem.into(),
    }
}

/// Parses a whole kernel command line. Non-`ze.*` parameters other than `ip=` and
/// `kldload.*` belong to the kernel and are ignored. A key given twice takes the later
/// value, as the kernel does. (The command line alone; [`ConfigBuilder`] adds answers
/// files below it.)
pub fn from_cmdline(line: &str) -> Result<Parsed, ConfigError> {
    let mut b = ConfigBuilder::new();
    b.add_cmdline(line);
    b.build()
}

/// Sets one key. `value` is the raw text; the error quotes it.
pub fn apply(
    c: &mut Config,
    key: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let bad = |why: &str| invalid(key, format!("{value:?} {why}"));
    match key {
        "ze.source" => {
            c.source = match value {
                "http" => Source::Http,
                "iso" => Source::Iso,
                _ => return Err(bad("is not a source; use http or iso")),
            }
        }
        "ze.server" => {
            let a: Ipv4Addr = value.parse().map_err(|_| bad("is not an IPv4 address"))?;
            if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
                return Err(bad("cannot be a server address"));
            }
            c.server = Some(a);
        }
        "ze.port" => {
            c.port = value
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("is not a port number (1-65535)"))?
        }
        "ze.image" => {
            valid_image_name(value).map_err(bad)?;
            c.image = value.to_string();
        }
        "ze.target" => {
            valid_target(value).map_err(|why| bad(&why))?;
            c.target = Some(value.to_string());
        }
        "ze.wait" => {
            c.wait = value
                .parse()
                .map_err(|_| bad("is not a count of probe attempts (0 skips the probe)"))?
        }
        "ze.media-id" => {
            if value.len() != 32 || !is_lower_hex(value) {
                return Err(bad("is not 32 lowercase hex digits"));
            }
            c.media_id = Some(value.to_string());
        }
        "ze.mac" => {
            c.mac = Some(
                Mac::parse(value)
                    .ok_or_else(|| bad("is not a MAC address (six hex octets, : or -)"))?,
            )
        }
        "ze.shell-auth" => {
            if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(key, "is not a sha256 hex digest (64 hex digits)"));
            }
            warnings.push(
                "ze.shell-auth is an unsalted sha256 of the password and is weak; prefer ze.rescue-auth (argon2id)"
                    .into(),
            );
            c.shell_auth = Some(Secret(value.to_ascii_lowercase()));
        }
        "ze.rescue-auth" => {
            // The value is a verifier, but it is still not echoed back in the error.
            check_argon2id_phc(value).map_err(|why| invalid(key, why))?;
            c.rescue_auth = Some(Secret(value.to_string()));
        }
        "ze.sha256" => {
            if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("is not a sha256 hex digest (64 hex digits)"));
            }
            c.sha256 = Some(value.to_ascii_lowercase());
        }
        "ze.hostname" => {
            if !ip::valid_hostname(value) {
                return Err(bad(
                    "is not a host name (letters, digits and inner hyphens; dot-separated labels)",
                ));
            }
            c.hostname = Some(value.to_string());
        }
        "ze.log" => {
            c.log = match value {
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warn" => LogLevel::Warn,
                "error" => LogLevel::Error,
                _ => return Err(bad("is not a log level; use debug, info, warn or error")),
            }
        }
        "ze.stall-timeout" => {
            c.stall_timeout = value
                .parse()
                .ok()
                .filter(|s| (1..=3600).contains(s))
                .ok_or_else(|| bad("is not a number of seconds (1-3600)"))?
        }
        "ze.report" => {
            c.report = if value == "off" {
                Report::Off
            } else if value.starts_with("http://") && value.len() > "http://".len() {
                // Documents are named under the prefix: make it a directory.
                let mut v = value.to_string();
                if !v.ends_with('/') {
                    v.push('/');
                }
                Report::Url(v)
            } else {
                return Err(bad("is not off or an http:// URL prefix"));
            }
        }
        "ze.dry-run" => {
            c.dry_run = match value {
                "1" | "yes" | "true" => true,
                "0" | "no" | "false" => false,
                _ => return Err(bad("is not 1 or 0")),
            }
        }
        "ip" => c.ip = ip::parse(value).map_err(|why| invalid(key, why))?,
        "kldload.answers" => {
            c.answers = Some(if value == "auto" {
                Answers::Auto
            } else if value.starts_with("http://") && value.len() > "http://".len() {
                Answers::Url(value.to_string())
            } else {
                return Err(bad("is not auto or an http:// URL"));
            })
        }
        _ => unreachable!("apply() called with unknown key {key}"),
    }
    Ok(())
}

/// Rules that involve more than one key.
pub fn check(c: &Config) -> Result<(), ConfigError> {
    match c.source {
        Source::Http if c.server.is_none() => {
            Err(invalid("ze.server", "is required when ze.source=http"))
        }
        Source::Iso if c.media_id.is_none() => {
            Err(invalid("ze.media-id", "is required when ze.source=iso"))
        }
        _ if c.answers == Some(Answers::Auto) && c.server.is_none() => Err(invalid(
            "kldload.answers",
            "auto fetches from ze.server, which is not set",
        )),
        _ => Ok(()),
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A file name served under `/install/image/`: `[A-Za-z0-9._+-]`, not `.` or `..`.
pub fn valid_image_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if s.len() > 255 {
        return Err("is longer than 255 bytes");
    }
    if s.contains('/') {
        return Err("must be a file name, not a path");
    }
    if s == "." || s == ".." {
        return Err("is not a file name");
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
    {
        return Err(match c {
            ' ' => "contains a space",
            _ => "contains a character outside [A-Za-z0-9._+-]",
        });
    }
    Ok(())
}

/// A whole-disk device path. Symlinks under `/dev/disk/by-id` and `/dev/disk/by-path` are
/// accepted here and resolved (and re-checked) by the disk plan.
pub fn valid_target(s: &str) -> Result<(), String> {
    for dir in ["/dev/disk/by-id/", "/dev/disk/by-path/"] {
        if let Some(name) = s.strip_prefix(dir) {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(format!("is not a link name under {dir}"));
            }
            return Ok(());
        }
    }
    let Some(name) = s.strip_prefix("/dev/") else {
        return Err("must be a /dev path".into());
    };
    match disk_name_kind(name) {
        Some(DiskName::Whole) => Ok(()),
        Some(DiskName::Partition) => Err("is a partition; give the whole disk".into()),
        None => Err(
            "is not a whole-disk name (sd*, vd*, xvd*, hd*, nvme*n*, mmcblk*, /dev/disk/by-id/…, /dev/disk/by-path/…)"
                .into(),
        ),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DiskName {
    Whole,
    Partition,
}

/// Classifies a kernel block device name of the kinds we may write to.
pub fn disk_name_kind(name: &str) -> Option<DiskName> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    // sda, vdb, xvdc, hdd, sdaa; partitions add digits: sda1.
    for prefix in ["xvd", "sd", "vd", "hd"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let split = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (l, d) = rest.split_at(split);
            return match (letters(l), d.is_empty(), digits(d)) {
                (true, true, _) => Some(DiskName::Whole),
                (true, false, true) => Some(DiskName::Partition),
                _ => None,
            };
        }
    }
    // nvme0n1, partitions nvme0n1p1.
    if let Some(rest) = name.strip_prefix("nvme") {
        let (ctrl, ns) = rest.split_once('n')?;
        if !digits(ctrl) {
            return None;
        }
        return match ns.split_once('p') {
            None if digits(ns) => Some(DiskName::Whole),
            Some((n, p)) if digits(n) && digits(p) => Some(DiskName::Partition),
            _ => None,
        };
    }
    // mmcblk0, partitions mmcblk0p1.
    if let Some(rest) = name.strip_prefix("mmcblk") {
        return match rest.split_once('p') {
            None if digits(rest) => Some(DiskName::Whole),
            Some((n, p)) if digits(n) && digits(p) => Some(DiskName::Partition),
            _ => None,
        };
    }
    None
}

/// Checks a PHC string is argon2id, version 19, with m, t and p parameters, a salt
/// and a hash. The verification itself lives with the recovery console.
pub fn check_argon2id_phc(s: &str) -> Result<(), String> {
    use argon2::PasswordHash;
    let h = PasswordHash::new(s).map_err(|e| format!("is not a PHC string ({e})"))?;
    if h.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "uses {}, expected $argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>",
            h.algorithm.as_str()
        ));
    }
    if h.version != Some(19) {
        return Err("must be version v=19".into());
    }
    for p in ["m", "t", "p"] {
        let v = h
            .params
            .get_decimal(p)
            .ok_or_else(|| format!("lacks the {p}= parameter"))?;
        if v == 0 {
            return Err(format!("has {p}=0"));
        }
    }
    if h.salt.is_none() || h.hash.is_none() {
        return Err("lacks a salt or a hash".into());
    }
    argon2::Params::try_from(&h).map_err(|e| format!("has unusable parameters ({e})"))?;
    Ok(())
}

#[cfg(test)]
mod tests;
