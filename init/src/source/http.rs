//! Downloads from the install server, with stall detection and Range resume.
//!
//! A read that delivers no byte for the stall timeout (60 s, `ze.stall-timeout`) fails
//! the connection. After a stall or a dropped connection the download asks for the rest
//! with `Range: bytes=<next>-` (and `If-Range` with the first response's validator, so a
//! file replaced on the server is never spliced): a 206 resumes transparently; a 200
//! means the server ignored the Range, and the reader starts over from byte 0, telling
//! the pipeline with a [`Restarted`](super::Restarted) error so it can reset its hash and
//! write position. At most 3 attempts in a row that deliver less than 1 MiB each, with a
//! backoff of 5 s doubling; a 404 or any other HTTP error status is final at once.

use super::restarted;
use std::io::{self, Read};
use std::time::Duration;

/// A retry's progress below this does not reset the attempt count.
const PROGRESS_RESETS_ATTEMPTS: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct Settings {
    pub stall: Duration,
    pub connect: Duration,
    pub attempts: u32,
    pub backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            stall: Duration::from_secs(60),
            connect: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("GET {url}: {status} {reason}")]
    Status {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("GET {url}: {what}; gave up after {attempts} attempts")]
    GaveUp {
        url: String,
        what: String,
        attempts: u32,
    },
    #[error("GET {url}: {what}")]
    Body { url: String, what: String },
}

impl HttpError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, HttpError::Status { status: 404, .. })
    }
}

/// An HTTP client for one server.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    settings: Settings,
}

impl Client {
    /// `base` is `http://host:port` without a trailing slash.
    pub fn new(base: &str, settings: Settings) -> Client {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(settings.connect))
            // Per read, restarting with every byte received: exactly a stall timeout.
            .timeout_per_read(Some(settings.stall))
            .http_status_as_error(false)
            .user_agent(concat!("ze-install/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            base: base.trim_end_matches('/').to_string(),
            settings,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Starts a download of `path`. Connection failures are retried; an HTTP error
    /// status is returned at once.
    pub fn open(&self, path: &str) -> Result<Download, HttpError> {
        let mut d = Download {
            client: self.clone(),
            url: self.url(path),
            body: None,
            pos: 0,
            total: None,
            validator: None,
            fails: 0,
            since_fail: 0,
            resumes: 0,
            restarts: 0,
        };
        d.reconnect().map_err(|e| into_http_error(e, &d.url))?;
        Ok(d)
    }

    /// A small file in memory (checksum sidecar, database, answers file). `Ok(None)`
    /// on 404; a body over `limit` bytes is an error.
    pub fn fetch(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, HttpError> {
        let mut d = match self.open(path) {
            Ok(d) => d,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let url = d.url.clone();
        if d.total.is_some_and(|t| t > limit) {
            return Err(HttpError::Body {
                url,
                what: format!(
                    "{} bytes is more than the {limit} allowed",
                    d.total.unwrap()
                ),
            });
        }
        let mut out = Vec::new();
        (&mut d)
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| into_http_error(e, &url))?;
        if out.len() as u64 > limit {
            return Err(HttpError::Body {
                url,
                what: format!("more than the {limit} bytes allowed"),
            });
        }
        Ok(Some(out))
    }
}

fn into_http_error(e: io::Error, url: &str) -> HttpError {
    match e.get_ref().and_then(|i| i.downcast_ref::<HttpError>()) {
        Some(_) => *e
            .into_inner()
            .expect("checked above")
            .downcast::<HttpError>()
            .expect("checked above"),
        None => HttpError::Body {
            url: url.to_string(),
            what: e.to_string(),
        },
    }
}

/// An image download that resumes itself. `Read` yields the body; a
/// [`Restarted`](super::Restarted) error means it started over from byte 0.
pub struct Download {
    client: Client,
    url: String,
    body: Option<ureq::BodyReader<'static>>,
    pos: u64,
    total: Option<u64>,
    /// ETag or Last-Modified of the first response, sent as If-Range.
    validator: Option<String>,
    /// Failed attempts in a row.
    fails: u32,
    /// Bytes received since the last failure.
    since_fail: u64,
    pub resumes: u32,
    pub restarts: u32,
}

impl Download {
    /// Content-Length of the whole file, when the server sent one.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn give_up(&self, what: String) -> io::Error {
        io::Error::other(HttpError::GaveUp {
            url: self.url.clone(),
            what,
            attempts: self.client.settings.attempts,
        })
    }

    /// Records a failed attempt; sleeps the backoff, or gives up.
    fn failure(&mut self, what: String) -> io::Result<()> {
        self.body = None;
        if self.since_fail >= PROGRESS_RESETS_ATTEMPTS {
            self.fails = 0;
        }
        self.since_fail = 0;
        self.fails += 1;
        let at = match self.total {
            Some(t) => format!("at byte {} of {t}", self.pos),
            None => format!("at byte {}", self.pos),
        };
        if self.fails >= self.client.settings.attempts {
            return Err(self.give_up(format!("{what} {at}")));
        }
        let wait = self.client.settings.backoff * (1 << (self.fails - 1));
        log::warn!(
            "{}: {what} {at}; retrying in {} s (attempt {} of {})",
            self.url,
            wait.as_secs_f64(),
            self.fails + 1,
            self.client.settings.attempts
        );
        std::thread::sleep(wait);
        Ok(())
    }

    fn reconnect(&mut self) -> io::Result<()> {
        loop {
            let mut req = self.client.agent.get(&self.url);
            let resume = self.pos > 0;
            if resume {
                req = req.header("Range", format!("bytes={}-", self.pos));
                if let Some(v) = &self.validator {
                    req = req.header("If-Range", v);
                }
            }
            let resp = match req.call() {
                Ok(r) => r,
                Err(e) => {
                    self.failure(describe_ureq(&e, &self.client.settings))?;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            match status {
                206 if resume => {
                    let start = header("content-range").and_then(|r| content_range_start(&r));
                    if start != Some(self.pos) {
                        self.failure(format!(
                            "the server resumed at the wrong place ({:?})",
                            header("content-range")
                        ))?;
                        continue;
                    }
                    log::info!("{}: resuming at byte {}", self.url, self.pos);
                    self.resumes += 1;
                    self.body = Some(resp.into_body().into_reader());
                    return Ok(());
                }
                200 => {
                    self.total = header("content-length").and_then(|v| v.parse().ok());
                    self.validator = header("etag")
                        .filter(|e| !e.starts_with("W/"))
                        .or_else(|| header("last-modified"));
                    self.body = Some(resp.into_body().into_reader());
                    if resume {
                        log::warn!(
                            "{}: the server ignored Range; starting over from byte 0",
                            self.url
                        );
                        self.pos = 0;
                        self.since_fail = 0;
                        self.restarts += 1;
                        return Err(restarted());
                    }
                    return Ok(());
                }
                _ => {
                    let reason = resp.status().canonical_reason().unwrap_or("").to_string();
                    return Err(io::Error::other(HttpError::Status {
                        url: self.url.clone(),
                        status,
                        reason,
                    }));
                }
            }
        }
    }
}

fn describe_ureq(e: &ureq::Error, s: &Settings) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("no answer within {} s", s.stall.as_secs_f64()),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

fn is_stall(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) || e
        .get_ref()
        .and_then(|i| i.downcast_ref::<ureq::Error>())
        .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

/// `bytes 100-199/200` → 100.
pub fn content_range_start(v: &str) -> Option<u64> {
    v.strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.body.is_none() {
                self.reconnect()?;
            }
            let body = self.body.as_mut().expect("reconnect sets a body");
            match body.read(buf) {
                Ok(0) if self.total.is_some_and(|t| self.pos < t) => {
                    self.failure("the connection closed early".into())?
                }
                Ok(0) => return Ok(0),
                Ok(n) => {
                    self.pos += n as u64;
                    self.since_fail += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.failure("the connection closed early".into())?
                }
                Err(e) if is_stall(&e) => self.failure(format!(
                    "stalled (no data for {} s)",
                    self.client.settings.stall.as_secs_f64()
                ))?,
                Err(e) => self.failure(format!("connection lost ({e})"))?,
            }
        }
    }
}

/// One GET of a small document at any URL (an answers file): the status and at most
/// `limit` bytes of body, or the transport error. No retries: the caller decides.
pub fn get_small(url: &str, limit: u64, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("ze-install/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent: ureq::Agent = config.into();
    let resp = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    resp.into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/1"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_start("bytes x-1/2"), None);
    }
}
