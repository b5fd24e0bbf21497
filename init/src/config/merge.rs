//! One `Config` from up to five sources, each setting tracked back to where it came from.
//!
//! Precedence, lowest first (SPEC.md "kldload answers file"):
//!
//! 1. the initrd's `/etc/kldload/autoinstall.env`,
//! 2. the ISO media's `/ze-install/autoinstall.env`,
//! 3. the file `kldload.answers=` names (fetched once the network is up),
//! 4. `kldload.<key>=` parameters on the kernel command line,
//! 5. `ze.*` parameters and `ip=` on the kernel command line.
//!
//! The sources arrive in another order (the command line before the ISO and the URL),
//! so [`ConfigBuilder`] keeps every source and [`ConfigBuilder::build`] re-validates the
//! whole stack each time one arrives: a later-arriving file still loses to the command
//! line. Only the winning value of a key is validated, so a command-line key can correct
//! a bad value baked into the initrd.

use super::answers::{self, AnswersError, Meaning, NET_KEYS};
use super::ip::{self, Device, IpConfig, StaticIp};
use super::{Answers, Config, ConfigError, KEYS, Parsed, apply, check, cmdline, invalid};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// A source, in precedence order: a later layer wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    Default,
    InitrdAnswers,
    IsoAnswers,
    UrlAnswers,
    KldloadCmdline,
    Cmdline,
}

/// Where one setting came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub from: Layer,
    /// The file's path (or URL) for answers files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl Origin {
    pub const DEFAULT: Origin = Origin {
        from: Layer::Default,
        file: None,
        line: None,
    };

    fn cmdline(from: Layer) -> Origin {
        Origin {
            from,
            file: None,
            line: None,
        }
    }

    fn file(from: Layer, file: &str, line: usize) -> Origin {
        Origin {
            from,
            file: Some(file.to_string()),
            line: Some(line),
        }
    }

    /// True for answers files, whose errors add ` (<file> line <n>)` after the key.
    pub fn is_file(&self) -> bool {
        self.file.is_some()
    }
}

/// `/etc/kldload/autoinstall.env line 3`, `kernel command line`, `default`.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line, self.from) {
            (Some(file), Some(line), _) => write!(f, "{file} line {line}"),
            (Some(file), None, _) => f.write_str(file),
            (None, _, Layer::Default) => f.write_str("default"),
            (None, _, _) => f.write_str("kernel command line"),
        }
    }
}

/// One `key=value` from any source, with the key resolved to the one it sets.
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    /// What it sets: a `ze.*` key, `ip`, `kldload.answers`, or a `KLDLOAD_NET_*` key.
    pub key: &'static str,
    /// As written: `KLDLOAD_DISK`, `kldload.disk`, `ze.target`. Errors name this.
    pub name: String,
    /// `None` for a bare command-line parameter (`ze.port`), which is an error.
    pub value: Option<String>,
    pub origin: Origin,
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: &dyn fmt::Debug = match &self.value {
            Some(_) if answers::is_secret(self.key) || answers::is_secret(&self.name) => {
                &"(hidden)"
            }
            v => v,
        };
        f.debug_struct("Setting")
            .field("key", &self.key)
            .field("name", &self.name)
            .field("value", value)
            .field("origin", &self.origin)
            .finish()
    }
}

/// Which source set a value of the final `Config`, for `ze-init plan`'s `sources` map:
/// `{"from": "initrd-answers", "file": "/etc/kldload/autoinstall.env", "line": 3,
/// "key": "KLDLOAD_DISK"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetBy {
    #[serde(flatten)]
    pub origin: Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl SetBy {
    fn default_value() -> SetBy {
        SetBy {
            origin: Origin::DEFAULT,
            key: None,
        }
    }

    fn of(s: &Setting) -> SetBy {
        SetBy {
            origin: s.origin.clone(),
            key: Some(s.name.clone()),
        }
    }
}

/// One source's settings and the findings that are only warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Input {
    settings: Vec<Setting>,
    warnings: Vec<String>,
    /// Names only: the values of these keys are never kept (one is a password).
    not_applicable: Vec<String>,
}

/// Whether the file `kldload.answers` names has been dealt with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum UrlFile {
    #[default]
    NotYet,
    Merged,
    /// `auto` found no file (404 on every URL).
    NoneFound,
}

/// An answers file that cannot be read, or a configuration that is invalid once it is
/// merged. Printed as the one `FATAL: config: …` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Answers(#[from] AnswersError),
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Keeps every source seen so far and builds the `Config` they add up to.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    initrd: Option<Input>,
    iso: Option<Input>,
    url: Option<Input>,
    cmdline: Option<Input>,
    url_file: UrlFile,
}

impl ConfigBuilder {
    pub fn new() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The initrd's answers file (PID 1: [`answers::INITRD_PATH`]; host mode:
    /// `--answers FILE`). `file` names it in errors and in `sources`.
    pub fn add_initrd_answers(&mut self, file: &str, bytes: &[u8]) -> Result<(), AnswersError> {
        self.initrd = Some(file_input(Layer::InitrdAnswers, file, bytes)?);
        Ok(())
    }

    /// The kernel command line: `ze.*`, `ip=` and `kldload.*` parameters.
    pub fn add_cmdline(&mut self, line: &str) {
        self.cmdline = Some(cmdline_input(line));
    }

    /// The ISO media's answers file, after the media is found and mounted. `file` names
    /// it, e.g. `"/ze-install/autoinstall.env on /dev/sr0"`. Returns the configuration
    /// rebuilt with it; the command line still wins over it.
    pub fn merge_iso_answers(&mut self, file: &str, bytes: &[u8]) -> Result<Parsed, MergeError> {
        self.iso = Some(file_input(Layer::IsoAnswers, file, bytes)?);
        Ok(self.build()?)
    }

    /// The file `kldload.answers` named, fetched once the network is up (see
    /// [`answers::answers_urls`] and [`answers::fetch_answers`]). It ranks above the
    /// initrd and ISO files and below the command line. If the returned `config.ip`
    /// differs from the one the network came up with, the network stage must apply it.
    pub fn merge_url_answers(&mut self, url: &str, bytes: &[u8]) -> Result<Parsed, MergeError> {
        let mut input = file_input(Layer::UrlAnswers, url, bytes)?;
        // No chains: a fetched file cannot send us to fetch another.
        input.settings.retain(|s| {
            if s.key != "kldload.answers" {
                return true;
            }
            input.warnings.push(format!(
                "{} ({}) ignored: a fetched answers file cannot name another",
                s.name, s.origin
            ));
            false
        });
        self.url = Some(input);
        self.url_file = UrlFile::Merged;
        Ok(self.build()?)
    }

    /// `kldload.answers=auto` found no file: settle the configuration without one.
    pub fn no_url_answers(&mut self) -> Result<Parsed, ConfigError> {
        self.url_file = UrlFile::NoneFound;
        self.build()
    }

    /// True while `kldload.answers` names a file that has not been merged (or found
    /// missing) yet. Until then the rules that span keys (`ze.server` is required…) are
    /// not checked, since that file may still supply the missing key.
    pub fn url_answers_pending(&self) -> bool {
        self.url_file == UrlFile::NotYet
    }

    fn inputs(&self) -> Vec<&Input> {
        [&self.initrd, &self.iso, &self.url, &self.cmdline]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Each key's winning setting.
    fn winners<'a>(inputs: &[&'a Input]) -> BTreeMap<&'static str, &'a Setting> {
        // Later wins: sort by layer (stable, so file and command-line order is kept
        // within one layer), then let each key's last setting stand.
        let mut all: Vec<&Setting> = inputs.iter().flat_map(|i| &i.settings).collect();
        all.sort_by_key(|s| s.origin.from);
        let mut winner = BTreeMap::new();
        for s in all {
            winner.insert(s.key, s);
        }
        winner
    }

    /// Only `keys` (`ze.*` keys), each applied on its own to a default `Config`, with
    /// each key's error kept apart instead of stopping at the first. The recovery
    /// console needs `ze.source` and the secrets even when another key made the whole
    /// configuration invalid (the FATAL it is showing).
    pub fn build_keys(&self, keys: &[&str]) -> (Config, Vec<ConfigError>) {
        let inputs = self.inputs();
        let winner = Self::winners(&inputs);
        let mut c = Config::default();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        // Only `ze.*` keys: the network keys are merged as a group by build().
        for key in keys.iter().filter(|k| KEYS.iter().any(|(z, _)| z == *k)) {
            let Some(s) = winner.get(key) else { continue };
            let applied = value_of(s)
                .and_then(|v| apply(&mut c, s.key, v, &mut warnings).map_err(|e| at(e, s)));
            if let Err(e) = applied {
                errors.push(e);
            }
        }
        (c, errors)
    }

    /// The configuration every source seen so far adds up to.
    pub fn build(&self) -> Result<Parsed, ConfigError> {
        let inputs = self.inputs();
        let mut warnings: Vec<String> = inputs.iter().flat_map(|i| i.warnings.clone()).collect();
        let winner = Self::winners(&inputs);

        let mut c = Config::default();
        let mut sources = BTreeMap::new();
        for (key, _) in KEYS.iter().chain(&[("kldload.answers", "-")]) {
            let field = field_name(key);
            let Some(s) = winner.get(key) else {
                sources.insert(field, SetBy::default_value());
                continue;
            };
            let value = value_of(s)?;
            apply(&mut c, key, value, &mut warnings).map_err(|e| at(e, s))?;
            sources.insert(field, SetBy::of(s));
        }
        network(&winner, &mut c, &mut sources, &mut warnings)?;

        let pending = c.answers.is_some() && self.url_answers_pending();
        if !pending {
            check(&c)?;
        } else if c.answers == Some(Answers::Auto) && c.server.is_none() {
            // auto cannot even be fetched without the server.
            check(&c)?;
        }

        let mut na: Vec<String> = inputs
            .iter()
            .flat_map(|i| i.not_applicable.clone())
            .collect();
        na.sort();
        na.dedup();
        if !na.is_empty() {
            warnings.push(format!(
                "not applicable to an image install, ignored: {}",
                na.join(", ")
            ));
        }
        Ok(Parsed {
            config: c,
            warnings,
            sources,
        })
    }
}

fn value_of(s: &Setting) -> Result<&str, ConfigError> {
    s.value
        .as_deref()
        .ok_or_else(|| at(invalid(s.key, "needs a value (key=value)"), s))
}

/// Re-labels an error with the key as written and where it was written.
fn at(mut e: ConfigError, s: &Setting) -> ConfigError {
    e.key = s.name.clone();
    e.origin = Some(s.origin.clone());
    e
}

/// The `Config` field a key sets, as it is named in the plan's JSON.
fn field_name(key: &str) -> String {
    match key {
        "kldload.answers" => "answers".into(),
        k => k.trim_start_matches("ze.").replace('-', "_"),
    }
}

fn file_input(layer: Layer, file: &str, bytes: &[u8]) -> Result<Input, AnswersError> {
    let entries = answers::parse(file, bytes)?;
    let mut input = Input::default();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &entries {
        let origin = Origin::file(layer, file, e.line);
        if let Some(first) = seen.insert(&e.key, e.line) {
            input.warnings.push(format!(
                "{} is set twice in {file} (lines {first} and {}); the later wins",
                e.key, e.line
            ));
        }
        match answers::meaning(&e.key) {
            Meaning::Sets(key) => input.settings.push(Setting {
                key,
                name: e.key.clone(),
                value: Some(e.value.clone()),
                origin,
            }),
            Meaning::NotApplicable => input.not_applicable.push(e.key.clone()),
            Meaning::Unknown => input
                .warnings
                .push(format!("unknown key {} ({origin}) ignored", e.key)),
            Meaning::Foreign => input.warnings.push(format!(
                "{} ({origin}) is neither a KLDLOAD_ nor a ZE_ key; ignored",
                e.key
            )),
        }
    }
    Ok(input)
}

fn cmdline_input(line: &str) -> Input {
    let mut input = Input::default();
    for p in cmdline::tokenize(line) {
        // Test builds only (crate::fault); a release build warns about it as unknown.
        if cfg!(feature = "fault-injection") && p.key == "ze.fault" {
            continue;
        }
        if p.key.starts_with("ze.") || p.key == "ip" {
            let Some(&(key, _)) = KEYS.iter().chain(&[("ip", "-")]).find(|(k, _)| *k == p.key)
            else {
                input
                    .warnings
                    .push(format!("unknown key {} ignored", p.key));
                continue;
            };
            input.settings.push(Setting {
                key,
                name: p.key,
                value: p.value,
                origin: Origin::cmdline(Layer::Cmdline),
            });
        } else if let Some(var) = answers::kldload_param_name(&p.key) {
            match answers::meaning(&var) {
                Meaning::Sets(key) => input.settings.push(Setting {
                    key,
                    name: p.key,
                    value: p.value,
                    origin: Origin::cmdline(Layer::KldloadCmdline),
                }),
                Meaning::NotApplicable => input.not_applicable.push(var),
                Meaning::Unknown | Meaning::Foreign => input
                    .warnings
                    .push(format!("unknown key {} ignored", p.key)),
            }
        }
        // Everything else (console=, quiet, root=…) is the kernel's.
    }
    input
}

/// Turns `ip=` or the `KLDLOAD_NET_*` keys into `config.ip`. Unless `ip=` overrides
/// them, every given `KLDLOAD_NET_*` value is validated, used by DHCP or not: a bad
/// value of a mapped key is FATAL.
fn network(
    w: &BTreeMap<&str, &Setting>,
    c: &mut Config,
    sources: &mut BTreeMap<String, SetBy>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let get = |k: &str| w.get(k).copied();
    let given: Vec<&Setting> = NET_KEYS.iter().filter_map(|k| get(k)).collect();

    // ip= outranks every KLDLOAD_NET_* key and replaces them as a whole, so they are
    // not validated either (as any overridden value).
    if let Some(s) = get("ip") {
        c.ip = ip::parse(value_of(s)?).map_err(|why| at(invalid("ip", why), s))?;
        sources.insert("ip".into(), SetBy::of(s));
        if !given.is_empty() {
            warnings.push(format!(
                "ip= on the kernel command line overrides {}",
                names(&given)
            ));
        }
        return Ok(());
    }
    let net = Net::parse(w)?;
    sources.insert(
        "ip".into(),
        get(answers::NET_METHOD).map_or_else(SetBy::default_value, SetBy::of),
    );
    if !net.is_static {
        let unused: Vec<&Setting> = given
            .into_iter()
            .filter(|s| s.key != answers::NET_METHOD && s.key != answers::NET_DNS)
            .collect();
        if !unused.is_empty() {
            warnings.push(format!(
                "{} ignored: they apply only with KLDLOAD_NET_METHOD=static",
                names(&unused)
            ));
        }
        return Ok(());
    }
    let method = get(answers::NET_METHOD).expect("static comes from KLDLOAD_NET_METHOD");
    let Some((address, cidr)) = net.ip else {
        return Err(invalid(
            answers::NET_IP,
            format!(
                "is required when KLDLOAD_NET_METHOD=static ({} in {})",
                method.name, method.origin
            ),
        ));
    };
    let prefix = match (cidr, net.prefix) {
        (Some(a), Some(b)) if a != b => {
            let s = get(answers::NET_PREFIX).expect("prefix was given");
            return Err(at(
                invalid(
                    answers::NET_PREFIX,
                    format!("\"{b}\" disagrees with the /{a} of KLDLOAD_NET_IP"),
                ),
                s,
            ));
        }
        (Some(p), _) | (None, Some(p)) => p,
        // kldload's default (seed 000: KLDLOAD_NET_PREFIX=24).
        (None, None) => 24,
    };
    c.ip = IpConfig::Static(StaticIp {
        address,
        prefix,
        gateway: net.gateway,
        hostname: None,
        device: net.device,
        dns: net.dns,
    });
    let parts = [
        ("ip.address", answers::NET_IP),
        ("ip.prefix", answers::NET_PREFIX),
        ("ip.gateway", answers::NET_GW),
        ("ip.device", answers::NET_IFACE),
        ("ip.dns", answers::NET_DNS),
    ];
    for (field, key) in parts {
        let by = match get(key) {
            Some(s) => SetBy::of(s),
            None if field == "ip.prefix" && cidr.is_some() => {
                SetBy::of(get(answers::NET_IP).expect("address was given"))
            }
            None => SetBy::default_value(),
        };
        sources.insert(field.into(), by);
    }
    Ok(())
}

fn names(settings: &[&Setting]) -> String {
    settings
        .iter()
        .map(|s| format!("{} ({})", s.name, s.origin))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `KLDLOAD_NET_*` values, each validated.
#[derive(Debug, Default)]
struct Net {
    is_static: bool,
    device: Option<Device>,
    /// The address, and the prefix when written as `a.b.c.d/nn`.
    ip: Option<(Ipv4Addr, Option<u8>)>,
    prefix: Option<u8>,
    gateway: Option<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
}

impl Net {
    fn parse(w: &BTreeMap<&str, &Setting>) -> Result<Net, ConfigError> {
        let mut net = Net::default();
        for key in NET_KEYS {
            let Some(s) = w.get(key).copied() else {
                continue;
            };
            let v = value_of(s)?;
            let bad = |why: &str| at(invalid(key, format!("{v:?} {why}")), s);
            match key {
                answers::NET_METHOD => {
                    net.is_static = match v.to_ascii_lowercase().as_str() {
                        "dhcp" => false,
                        "static" => true,
                        _ => return Err(bad("is not a method; use dhcp or static")),
                    }
                }
                answers::NET_IFACE => {
                    net.device = Some(
                        Device::parse(v)
                            .ok_or_else(|| bad("is neither an interface name nor a MAC address"))?,
                    )
                }
                answers::NET_IP => {
                    let (a, p) = match v.split_once('/') {
                        Some((a, p)) => (a, Some(parse_prefix(p).ok_or_else(|| bad(PREFIX))?)),
                        None => (v, None),
                    };
                    let a = host_address(a).map_err(bad)?;
                    net.ip = Some((a, p));
                }
                answers::NET_PREFIX => {
                    net.prefix = Some(parse_prefix(v).ok_or_else(|| bad(PREFIX))?)
                }
                answers::NET_GW => net.gateway = Some(host_address(v).map_err(bad)?),
                answers::NET_DNS => {
                    // kldload writes "1.1.1.1,8.8.8.8"; spaces after commas are forgiven.
                    for item in v.split([',', ' ']).filter(|i| !i.is_empty()) {
                        net.dns.push(host_address(item).map_err(|why| {
                            at(invalid(key, format!("{item:?} in {v:?} {why}")), s)
                        })?);
                    }
                }
                _ => unreachable!("NET_KEYS"),
            }
        }
        Ok(net)
    }
}

const PREFIX: &str = "is not a prefix length (0-32)";

fn parse_prefix(s: &str) -> Option<u8> {
    s.parse::<u8>()
        .ok()
        .filter(|p| *p <= 32 && !s.starts_with('+'))
}

/// A unicast IPv4 address a host can have or route through.
fn host_address(s: &str) -> Result<Ipv4Addr, &'static str> {
    let a: Ipv4Addr = s.parse().map_err(|_| "is not an IPv4 address")?;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
        return Err("cannot be a host address");
    }
    Ok(a)
}

#[cfg(test)]
mod tests;
