//! The disk decision: which disk the image goes to, and why every other disk does not.
//! Pure over the sysfs, /dev and /proc roots; nothing here opens a device.
//!
//! Rules (docs/disks.md explains each):
//! - candidates are `/sys/block/*` minus virtual devices, size 0, `ro=1`,
//!   `removable=1`, USB disks, the install media and disks in use (mounted, swap,
//!   holders);
//! - ranked NVMe, virtio, SCSI/SATA/SAS, MMC, others, then natural name order;
//! - HTTP takes the first candidate; ISO requires exactly one;
//! - `ze.target` names the disk instead; it is resolved through `/dev` and must be a
//!   whole disk that exists, is writable, is not the install media and is not in use.

use super::mounts::{self, MountsError, Usage};
use super::{BlockDevice, Transport, byid, human_size, natural_cmp, never_disk};
use serde::{Serialize, Serializer};
use std::io;
use std::path::Path;

/// The roots the plan reads: sysfs, /dev (by-id and by-path links), /proc (mounts).
#[derive(Debug, Clone, Copy)]
pub struct Roots<'a> {
    pub sys: &'a Path,
    pub dev: &'a Path,
    pub proc: &'a Path,
}

impl<'a> From<&'a crate::boot::Env> for Roots<'a> {
    fn from(env: &'a crate::boot::Env) -> Roots<'a> {
        Roots {
            sys: &env.sys_root,
            dev: &env.dev_root,
            proc: &env.proc_root,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Take the first candidate.
    Http,
    /// Require exactly one candidate (the install media excluded).
    Iso,
}

impl From<crate::config::Source> for Mode {
    fn from(s: crate::config::Source) -> Mode {
        match s {
            crate::config::Source::Http => Mode::Http,
            crate::config::Source::Iso => Mode::Iso,
        }
    }
}

/// What the caller asks for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub mode: Mode,
    /// `ze.target` as given (`/dev/sda`, `/dev/disk/by-id/…`).
    pub target: Option<&'a str>,
    /// Disks that hold the install media (names, `/dev/` paths, or a partition of
    /// the disk: `sdb`, `/dev/sdb`, `sdb1`). Never targets.
    pub exclude: &'a [String],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The target.
    Taken,
    /// Could be a target, but another disk was taken (or none could be chosen).
    Candidate,
    /// Never a target: the reason says why.
    Skipped,
    /// Holds the install media.
    Excluded,
    /// Named by `ze.target` but unsuitable.
    Refused,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Taken => "taken",
            Verdict::Candidate => "candidate",
            Verdict::Skipped => "skipped",
            Verdict::Excluded => "excluded",
            Verdict::Refused => "refused",
        }
    }
}

/// One line of the decision table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub disk: BlockDevice,
    pub verdict: Verdict,
    pub reason: String,
}

/// Why no disk was chosen, or why the chosen disk cannot take the image. Each names the
/// device and the reason.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no disk to install on ({summary})")]
    NoDisk { summary: String },
    #[error(
        "ze.source=iso needs exactly one target disk but found {}: {}; name one with ze.target",
        .candidates.len(),
        .candidates.join(", ")
    )]
    Ambiguous { candidates: Vec<String> },
    #[error("ze.target={target}: cannot resolve {link}: {source}{hint}")]
    Resolve {
        target: String,
        link: String,
        hint: String,
        #[source]
        source: io::Error,
    },
    #[error("ze.target={target}: /dev/{device} {reason}")]
    Refused {
        target: String,
        device: String,
        reason: String,
    },
    #[error("/dev/{device} is {}, image needs {}", human_size(*.size), human_size(*.needed))]
    TooSmall {
        device: String,
        size: u64,
        needed: u64,
    },
    #[error(transparent)]
    Mounts(#[from] MountsError),
}

/// The whole decision: every disk with its verdict, and the outcome.
#[derive(Debug)]
pub struct Decision {
    pub mode: Mode,
    pub requested: Option<String>,
    pub rows: Vec<Row>,
    /// The chosen disk's name, or why there is none.
    pub outcome: Result<String, PlanError>,
}

impl Decision {
    /// The chosen disk.
    pub fn target(&self) -> Result<&BlockDevice, &PlanError> {
        match &self.outcome {
            Ok(name) => Ok(&self
                .rows
                .iter()
                .find(|r| &r.disk.name == name)
                .expect("the chosen disk is a row")
                .disk),
            Err(e) => Err(e),
        }
    }

    /// Consumes the decision once its table is printed.
    pub fn into_target(self) -> Result<BlockDevice, PlanError> {
        let name = self.outcome?;
        Ok(self
            .rows
            .into_iter()
            .find(|r| r.disk.name == name)
            .expect("the chosen disk is a row")
            .disk)
    }

    /// The table as log lines (one `log::info!` each), header first, outcome last.
    pub fn log_lines(&self) -> Vec<String> {
        let model = |d: &BlockDevice| -> String {
            if d.model.is_empty() {
                "-".into()
            } else {
                d.model.chars().take(32).collect()
            }
        };
        let wn = self
            .rows
            .iter()
            .map(|r| r.disk.name.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let wm = self
            .rows
            .iter()
            .map(|r| model(&r.disk).chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        let mut out = vec![format!(
            "disk plan: source={}, ze.target={}, {} block devices",
            match self.mode {
                Mode::Http => "http",
                Mode::Iso => "iso",
            },
            self.requested.as_deref().unwrap_or("(none)"),
            self.rows.len()
        )];
        out.push(format!(
            "  {:<wn$}  {:>10}  {:<9}  {:<7}  {:<wm$}  DECISION",
            "DEVICE", "SIZE", "TRANSPORT", "MEDIA", "MODEL"
        ));
        for r in &self.rows {
            let d = &r.disk;
            out.push(format!(
                "  {:<wn$}  {:>10}  {:<9}  {:<7}  {:<wm$}  {}: {}",
                d.name,
                human_size(d.size),
                d.transport.as_str(),
                d.media.as_str(),
                model(d),
                r.verdict.as_str(),
                r.reason
            ));
        }
        out.push(match &self.outcome {
            Ok(name) => format!("disk plan: target /dev/{name}"),
            Err(e) => format!("disk plan: no target: {e}"),
        });
        out
    }
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Doc<'a> {
            mode: Mode,
            requested: Option<&'a str>,
            target: Option<String>,
            error: Option<String>,
            disks: &'a [Row],
        }
        Doc {
            mode: self.mode,
            requested: self.requested.as_deref(),
            target: self.outcome.as_ref().ok().map(|n| format!("/dev/{n}")),
            error: self.outcome.as_ref().err().map(|e| e.to_string()),
            disks: &self.rows,
        }
        .serialize(s)
    }
}

/// Refuses a target smaller than the image; called once the image size is known.
pub fn check_fits(disk: &BlockDevice, image_bytes: u64) -> Result<(), PlanError> {
    if disk.size < image_bytes {
        return Err(PlanError::TooSmall {
            device: disk.name.clone(),
            size: disk.size,
            needed: image_bytes,
        });
    }
    Ok(())
}

/// Why a disk is busy: its mounted partitions, swap, and holders.
fn in_use(d: &BlockDevice, usage: &Usage, dev_root: &Path) -> Option<String> {
    let members: Vec<(&str, &str)> = std::iter::once((d.name.as_str(), d.dev.as_str()))
        .chain(
            d.partitions
                .iter()
                .map(|p| (p.name.as_str(), p.dev.as_str())),
        )
        .collect();
    // The device a mount source or swap file names, through /dev links (by-uuid…).
    let source_name = |src: &str| -> Option<String> {
        src.starts_with("/dev/")
            .then(|| byid::resolve(dev_root, src).ok())
            .flatten()
    };
    let mut why = Vec::new();
    let mut mounted = Vec::new();
    for m in &usage.mounts {
        let by_dev = m.dev.as_deref().filter(|v| !v.starts_with("0:"));
        let src = source_name(&m.source);
        if let Some((name, _)) = members.iter().find(|(n, dev)| {
            (!dev.is_empty() && by_dev == Some(*dev)) || src.as_deref() == Some(*n)
        }) {
            mounted.push(format!("{name} on {}", m.target));
        }
    }
    if !mounted.is_empty() {
        why.push(format!("mounted: {}", mounted.join(", ")));
    }
    let swaps: Vec<String> = usage
        .swaps
        .iter()
        .filter_map(|s| source_name(s))
        .filter(|n| members.iter().any(|(m, _)| m == n))
        .collect();
    if !swaps.is_empty() {
        why.push(format!("in use as swap: {}", swaps.join(", ")));
    }
    if !d.holders.is_empty() {
        why.push(format!("held by {}", d.holders.join(", ")));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Maps `exclude` entries (names, /dev paths, partitions) to whole-disk names.
fn excluded_disks(disks: &[BlockDevice], exclude: &[String]) -> Vec<String> {
    exclude
        .iter()
        .filter_map(|e| {
            let n = e.strip_prefix("/dev/").unwrap_or(e);
            disks
                .iter()
                .find(|d| d.name == n || d.partitions.iter().any(|p| p.name == n))
                .map(|d| d.name.clone())
        })
        .collect()
}

/// Why a disk can never be a target, whoever asks for it.
fn never_target(d: &BlockDevice) -> Option<String> {
    if let Some(kind) = never_disk(&d.name) {
        return Some(format!("is {kind}"));
    }
    if d.size == 0 {
        return Some("has size 0 (no medium)".into());
    }
    if d.read_only {
        return Some("is read-only (ro=1)".into());
    }
    None
}

fn ranked(a: &BlockDevice, b: &BlockDevice) -> std::cmp::Ordering {
    a.transport
        .rank()
        .cmp(&b.transport.rank())
        .then_with(|| natural_cmp(&a.name, &b.name))
}

fn describe(d: &BlockDevice) -> String {
    let mut s = format!(
        "/dev/{} ({} {}",
        d.name,
        human_size(d.size),
        d.transport.as_str()
    );
    if !d.model.is_empty() {
        s.push(' ');
        s.push_str(&d.model);
    }
    s.push(')');
    s
}

/// Decides. Reads sysfs, /dev links and the mount table; writes nothing.
pub fn plan(roots: Roots<'_>, req: Request<'_>) -> Decision {
    let mut disks = super::scan(roots.sys);
    super::small_sort(&mut disks, &ranked);
    let (usage, usage_err) = match mounts::read(roots.proc) {
        Ok(u) => (u, None),
        Err(e) => (Usage::default(), Some(e)),
    };
    let excluded = excluded_disks(&disks, req.exclude);

    // First pass: every disk's eligibility for automatic choice.
    let mut rows: Vec<Row> = disks
        .into_iter()
        .map(|d| {
            let (verdict, reason) = if let Some(r) = never_target(&d) {
                (Verdict::Skipped, r)
            } else if excluded.contains(&d.name) {
                (Verdict::Excluded, "holds the install media".into())
            } else if d.removable {
                (Verdict::Skipped, "is removable (removable=1)".into())
            } else if d.transport == Transport::Usb {
                (
                    Verdict::Skipped,
                    "is a USB disk; name it with ze.target to install on it".into(),
                )
            } else if let Some(r) = in_use(&d, &usage, roots.dev) {
                (Verdict::Skipped, format!("is in use ({r})"))
            } else {
                (Verdict::Candidate, String::new())
            };
            Row {
                disk: d,
                verdict,
                reason,
            }
        })
        .collect();

    let outcome = match req.target {
        Some(t) => choose_named(roots, &mut rows, &usage, &excluded, t),
        None => choose_auto(&mut rows, req.mode),
    };
    let outcome = match (outcome, usage_err) {
        (Ok(name), Some(e)) => {
            for r in rows.iter_mut().filter(|r| r.disk.name == name) {
                r.verdict = Verdict::Candidate;
                r.reason = "mount table unreadable".into();
            }
            Err(PlanError::Mounts(e))
        }
        (o, _) => o,
    };
    Decision {
        mode: req.mode,
        requested: req.target.map(str::to_string),
        rows,
        outcome,
    }
}

fn choose_auto(rows: &mut [Row], mode: Mode) -> Result<String, PlanError> {
    let candidates: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].verdict == Verdict::Candidate)
        .collect();
    match (mode, candidates.as_slice()) {
        (_, []) => {
            // Real disks by name; the kernel-made ones (a row of loop devices) by count.
            let mut parts: Vec<String> = rows
                .iter()
                .filter(|r| r.disk.transport != Transport::Virtual)
                .map(|r| format!("{} {}", r.disk.name, r.reason))
                .collect();
            let virtual_count = rows.len() - parts.len();
            if virtual_count > 0 {
                parts.push(format!("{virtual_count} loop, RAM, dm or md devices"));
            }
            let summary = if rows.is_empty() {
                "no block devices".to_string()
            } else {
                parts.join("; ")
            };
            Err(PlanError::NoDisk { summary })
        }
        (Mode::Http, [first, ..]) | (Mode::Iso, [first]) => {
            let first = *first;
            let name = rows[first].disk.name.clone();
            rows[first].verdict = Verdict::Taken;
            rows[first].reason = match mode {
                Mode::Http => "first candidate".into(),
                Mode::Iso => "the only candidate".into(),
            };
            for &i in &candidates[1..] {
                rows[i].reason = format!("ranked after {name}");
            }
            Ok(name)
        }
        (Mode::Iso, many) => {
            for &i in many {
                rows[i].reason = format!("one of {} candidates; ze.target must choose", many.len());
            }
            Err(PlanError::Ambiguous {
                candidates: many.iter().map(|&i| describe(&rows[i].disk)).collect(),
            })
        }
    }
}

fn choose_named(
    roots: Roots<'_>,
    rows: &mut [Row],
    usage: &Usage,
    excluded: &[String],
    target: &str,
) -> Result<String, PlanError> {
    let via_link = target.starts_with("/dev/disk/");
    let name = match byid::resolve(roots.dev, target) {
        Ok(n) => n,
        // No udev (the initrd): derive the link names from sysfs.
        Err(e) if via_link && e.kind() == io::ErrorKind::NotFound => {
            let disks: Vec<BlockDevice> = rows.iter().map(|r| r.disk.clone()).collect();
            let rel = &target["/dev/".len()..];
            byid::find(roots.sys, &disks, rel).ok_or_else(|| PlanError::Resolve {
                target: target.into(),
                link: target.into(),
                hint: " (no such link, and no disk has that id or path; without udev only \
                       virtio-, nvme-, wwn- ids and virtio/NVMe PCI paths are known)"
                    .into(),
                source: e,
            })?
        }
        Err(e) => {
            return Err(PlanError::Resolve {
                target: target.into(),
                link: target.into(),
                hint: String::new(),
                source: e,
            });
        }
    };
    let refuse = |device: &str, reason: String| PlanError::Refused {
        target: target.into(),
        device: device.into(),
        reason,
    };
    if name.contains('/') {
        return Err(refuse(&name, "is not a whole disk".into()));
    }
    let Some(idx) = rows.iter().position(|r| r.disk.name == name) else {
        if let Some(r) = rows
            .iter()
            .find(|r| r.disk.partitions.iter().any(|p| p.name == name))
        {
            return Err(refuse(
                &name,
                format!("is a partition of {}; give the whole disk", r.disk.name),
            ));
        }
        return Err(refuse(&name, "does not exist (not in /sys/block)".into()));
    };
    let d = &rows[idx].disk;
    let problem = never_target(d)
        .or_else(|| {
            excluded
                .contains(&d.name)
                .then(|| "holds the install media".to_string())
        })
        .or_else(|| in_use(d, usage, roots.dev).map(|r| format!("is in use ({r})")));
    for (i, r) in rows.iter_mut().enumerate() {
        if i != idx && r.verdict == Verdict::Candidate {
            r.reason = "not named by ze.target".into();
        }
    }
    let row = &mut rows[idx];
    if let Some(reason) = problem {
        row.verdict = Verdict::Refused;
        row.reason = format!("named by ze.target but {reason}");
        return Err(refuse(&name, reason));
    }
    row.verdict = Verdict::Taken;
    row.reason = if via_link {
        format!("named by ze.target ({target})")
    } else {
        "named by ze.target".into()
    };
    if row.disk.removable || row.disk.transport == Transport::Usb {
        row.reason
            .push_str("; removable or USB, taken because it was named");
    }
    Ok(name)
}
