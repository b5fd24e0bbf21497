//! Live install status: each machine PUTs a JSON document to the install server
//! (`<ze.report><mac-with-hyphens>.json`) at every stage change and every 5 s during the
//! download, so operators — and the status page `ze-pack pxe` writes — see the fleet
//! from elsewhere. Any web server that accepts PUT works (nginx `dav_methods PUT`).
//!
//! Reporting is best effort and off the write path: a thread of its own builds and sends
//! the document with a short timeout; the first failure is logged once, later ones are
//! not, and the install never waits for it except for a bounded final report. The
//! document carries no secrets (the configuration's secrets print as `(set)`, and the
//! log lines never hold one); URL credentials in log lines are masked anyway.

use crate::write::Progress;
use crate::write::progress::Snapshot;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the document goes out while the image is downloading.
pub const DOWNLOAD_INTERVAL: Duration = Duration::from_secs(5);
/// How long the final report waits for a server that has not answered yet.
pub const FIRST_ANSWER_GRACE: Duration = Duration::from_millis(500);
/// Timeout of one PUT: a dead status server costs the reporter thread this, never the
/// install.
pub const PUT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Network,
    Plan,
    Download,
    Verify,
    Inject,
    Done,
    Failed,
}

/// What the machine is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// Every NIC's MAC, `name=mac`.
    pub macs: Vec<String>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub serial: Option<String>,
    pub uuid: Option<String>,
}

impl Machine {
    /// MACs from sysfs, DMI from `/sys/class/dmi/id` when the firmware provides it.
    pub fn read(sys_root: &Path) -> Machine {
        let dmi = sys_root.join("class/dmi/id");
        let field = |f: &str| {
            std::fs::read_to_string(dmi.join(f))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        Machine {
            macs: crate::net::interfaces(sys_root)
                .into_iter()
                .map(|i| format!("{}={}", i.name, i.mac))
                .collect(),
            vendor: field("sys_vendor"),
            product: field("product_name"),
            serial: field("product_serial"),
            uuid: field("product_uuid"),
        }
    }
}

/// The network the install runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Network {
    pub interface: String,
    pub mac: String,
    pub address: Option<String>,
    pub method: String,
}

/// The document, schema 1 (docs/status.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    pub schema: u32,
    pub version: &'static str,
    pub machine: Machine,
    pub network: Option<Network>,
    pub stage: Stage,
    pub image: Option<String>,
    pub target: Option<String>,
    /// The disk decision, as `ze-init plan` prints it.
    pub disk: Option<serde_json::Value>,
    pub progress: Option<Snapshot>,
    pub fatal: Option<String>,
    pub done: Option<String>,
    /// The last log lines, oldest first.
    pub log: Vec<String>,
    /// Seconds since the Unix epoch, by the machine's clock (often the RTC's idea).
    pub started_at: u64,
    pub updated_at: u64,
    /// Seconds since the installer started.
    pub elapsed: f64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `http://user:pass@host/…` → `http://***@host/…`, anywhere in a line.
pub fn mask_credentials(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

struct Shared {
    doc: Mutex<Document>,
    /// Something changed: send now.
    dirty: Mutex<bool>,
    wake: Condvar,
    progress: Mutex<Option<Arc<Progress>>>,
    stop: AtomicBool,
    /// Set once the first failure was logged.
    complained: AtomicBool,
    /// Last PUT that went through, for `finish`.
    sent: Mutex<u64>,
    started: std::time::Instant,
}

/// The reporter; cheap to clone. Without a URL every call is a no-op.
#[derive(Clone)]
pub struct Reporter {
    url: Option<String>,
    shared: Arc<Shared>,
}

impl Reporter {
    /// Starts the reporter thread, which PUTs to `url` (the full document URL).
    pub fn start(url: Option<String>, machine: Machine) -> Reporter {
        let t = now();
        let shared = Arc::new(Shared {
            doc: Mutex::new(Document {
                schema: 1,
                version: env!("CARGO_PKG_VERSION"),
                machine,
                network: None,
                stage: Stage::Network,
                image: None,
                target: None,
                disk: None,
                progress: None,
                fatal: None,
                done: None,
                log: Vec::new(),
                started_at: t,
                updated_at: t,
                elapsed: 0.0,
            }),
            dirty: Mutex::new(true),
            wake: Condvar::new(),
            progress: Mutex::new(None),
            stop: AtomicBool::new(false),
            complained: AtomicBool::new(false),
            sent: Mutex::new(0),
            started: std::time::Instant::now(),
        });
        let r = Reporter { url, shared };
        if let Some(url) = r.url.clone() {
            log::info!("status: reporting to {}", mask_credentials(&url));
            let me = r.clone();
            std::thread::Builder::new()
                .name("status".into())
                .spawn(move || me.run(&url))
                .ok();
        }
        r
    }

    /// A reporter that reports nowhere.
    pub fn off() -> Reporter {
        Reporter::start(None, Machine::default())
    }

    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    fn update(&self, f: impl FnOnce(&mut Document)) {
        if self.url.is_none() {
            return;
        }
        f(&mut lock(&self.shared.doc));
        *lock(&self.shared.dirty) = true;
        self.shared.wake.notify_all();
    }

    pub fn stage(&self, s: Stage) {
        self.update(|d| d.stage = s);
    }

    pub fn network(&self, n: Network) {
        self.update(|d| d.network = Some(n));
    }

    pub fn disk(&self, target: &str, decision: serde_json::Value) {
        self.update(|d| {
            d.target = Some(target.to_string());
            d.disk = Some(decision);
        });
    }

    pub fn image(&self, image: &str) {
        self.update(|d| d.image = Some(image.to_string()));
    }

    /// Reports this download's progress every [`DOWNLOAD_INTERVAL`] from now on.
    pub fn download(&self, p: Arc<Progress>) {
        *lock(&self.shared.progress) = Some(p);
        self.stage(Stage::Download);
    }

    pub fn failed(&self, fatal: &str) {
        self.update(|d| {
            d.stage = Stage::Failed;
            d.fatal = Some(fatal.to_string());
        });
    }

    pub fn done(&self, line: &str) {
        self.update(|d| {
            d.stage = Stage::Done;
            d.done = Some(line.to_string());
        });
    }

    /// Waits up to `wait` for the latest state to go out, then stops the thread. Called
    /// before the machine reboots or powers off. A server that has not answered a
    /// single PUT yet gets only [`FIRST_ANSWER_GRACE`] (its first PUT may still be on
    /// the way): the install does not pay seconds for a dead status server.
    pub fn finish(&self, wait: Duration) {
        if self.url.is_none() {
            return;
        }
        let wait = match *lock(&self.shared.sent) {
            0 => wait.min(FIRST_ANSWER_GRACE),
            _ => wait,
        };
        let want = {
            let d = lock(&self.shared.doc);
            d.updated_at.max(1)
        };
        let deadline = std::time::Instant::now() + wait;
        *lock(&self.shared.dirty) = true;
        self.shared.wake.notify_all();
        while std::time::Instant::now() < deadline {
            if !*lock(&self.shared.dirty) && *lock(&self.shared.sent) >= want {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
    }

    /// The document as it would be sent now.
    pub fn snapshot(&self) -> Document {
        let mut d = lock(&self.shared.doc).clone();
        d.log = crate::logger::recent()
            .iter()
            .map(|l| mask_credentials(l))
            .collect();
        if let Some(p) = lock(&self.shared.progress).as_ref() {
            d.progress = Some(p.snapshot());
            if d.stage == Stage::Download && p.verifying() {
                d.stage = Stage::Verify;
            }
        }
        d.updated_at = now();
        d.elapsed = self.shared.started.elapsed().as_secs_f64();
        d
    }

    fn run(&self, url: &str) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(PUT_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        loop {
            {
                let dirty = lock(&self.shared.dirty);
                let downloading = lock(&self.shared.doc).stage == Stage::Download;
                let wait = if downloading {
                    DOWNLOAD_INTERVAL
                } else {
                    Duration::from_secs(3600)
                };
                let (mut dirty, _) = self
                    .shared
                    .wake
                    .wait_timeout_while(dirty, wait, |d| {
                        !*d && !self.shared.stop.load(Ordering::Relaxed)
                    })
                    .unwrap_or_else(|e| e.into_inner());
                *dirty = false;
            }
            let doc = self.snapshot();
            let body = serde_json::to_vec(&doc).expect("JSON of plain data");
            match agent
                .put(url)
                .header("Content-Type", "application/json")
                .send(&body[..])
            {
                Ok(r) if r.status().is_success() => {
                    *lock(&self.shared.sent) = doc.updated_at.max(1);
                }
                Ok(r) => self.complain(&format!("PUT {url}: HTTP {}", r.status().as_u16())),
                Err(e) => self.complain(&format!("PUT {url}: {e}")),
            }
            if self.shared.stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }

    fn complain(&self, what: &str) {
        if !self.shared.complained.swap(true, Ordering::Relaxed) {
            log::warn!(
                "status: {} (reporting goes on; further failures are not logged)",
                mask_credentials(what)
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The document URL: `<prefix><mac-with-hyphens>.json`.
pub fn document_url(prefix: &str, mac: &str) -> String {
    format!(
        "{prefix}{}.json",
        mac.to_ascii_lowercase().replace(':', "-")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_masked() {
        assert_eq!(
            mask_credentials("GET http://ops:hunter2@10.0.0.1/a.env failed; see https://x@y/z"),
            "GET http://***@10.0.0.1/a.env failed; see https://***@y/z"
        );
        assert_eq!(mask_credentials("no url here"), "no url here");
        assert_eq!(
            mask_credentials("http://10.0.0.1:8080/x"),
            "http://10.0.0.1:8080/x"
        );
    }

    #[test]
    fn document_names_use_the_hyphenated_mac() {
        assert_eq!(
            document_url("http://s/install/status/", "52:54:00:AB:cd:01"),
            "http://s/install/status/52-54-00-ab-cd-01.json"
        );
    }

    #[test]
    fn machine_identity_reads_dmi_when_present() {
        let sys = tempfile::tempdir().unwrap();
        let dmi = sys.path().join("class/dmi/id");
        std::fs::create_dir_all(&dmi).unwrap();
        std::fs::write(dmi.join("product_name"), "Standard PC (i440FX)\n").unwrap();
        std::fs::write(dmi.join("product_uuid"), "\n").unwrap();
        let m = Machine::read(sys.path());
        assert_eq!(m.product.as_deref(), Some("Standard PC (i440FX)"));
        assert_eq!(m.uuid, None);
        assert_eq!(m.serial, None);
    }

    #[test]
    fn the_document_carries_stage_progress_and_no_secret() {
        let r = Reporter {
            url: Some("http://127.0.0.1:1/x.json".into()),
            shared: Reporter::off().shared,
        };
        r.network(Network {
            interface: "eth0".into(),
            mac: "52:54:00:12:34:56".into(),
            address: Some("10.0.2.15/24".into()),
            method: "dhcp".into(),
        });
        let p = Arc::new(Progress::new());
        p.set_total(Some(100));
        p.add_in(50);
        r.download(p);
        crate::logger::init(crate::logger::Target::Stderr, log::LevelFilter::Info);
        let phc =
            "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4";
        let parsed =
            crate::config::from_cmdline(&format!("ze.server=10.0.2.2 ze.rescue-auth={phc}"))
                .unwrap();
        log::info!("config: {}", serde_json::to_string(&parsed.config).unwrap());
        r.failed("download: GET http://10.0.2.2/install/image/ze.img: 404 Not Found");
        let d = r.snapshot();
        assert_eq!(d.stage, Stage::Failed);
        assert_eq!(d.progress.unwrap().bytes_in, 50);
        assert_eq!(d.network.as_ref().unwrap().interface, "eth0");
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"stage\":\"failed\""), "{json}");
        assert!(json.contains("404 Not Found"));
        // The configuration reached the log lines the document carries, redacted.
        assert!(d.log.iter().any(|l| l.contains("config: ")), "{:?}", d.log);
        assert!(json.contains("(set)"), "{json}");
        assert!(
            !json.contains("c29tZXNhbHQ"),
            "a secret reached the document: {json}"
        );
    }
}
