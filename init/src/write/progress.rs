//! Download/write progress, shared by the pipeline's threads through atomics, and
//! formatted at most once per interval for the consoles.

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Progress {
    started: Instant,
    /// Bytes of the image as stored/served so far (compressed for a gzip image).
    bytes_in: AtomicU64,
    /// Size of the stored image when known (Content-Length); 0 when unknown.
    total_in: AtomicU64,
    /// Bytes of the (decompressed) image handed to the target.
    bytes_out: AtomicU64,
    /// The stored image is gzip: the written size differs from the stored one.
    gzip: AtomicBool,
    /// All bytes are in; the pipeline is flushing and checking the digest.
    verifying: AtomicBool,
}

/// A point-in-time view, also what the status document publishes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Snapshot {
    pub bytes_in: u64,
    pub total_in: Option<u64>,
    pub bytes_out: u64,
    pub gzip: bool,
    pub elapsed: f64,
    /// Bytes per second over the whole run so far.
    pub rate: f64,
    /// Seconds left at `rate`, when the total is known and the rate is not zero.
    pub eta: Option<f64>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            started: Instant::now(),
            bytes_in: AtomicU64::new(0),
            total_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            gzip: AtomicBool::new(false),
            verifying: AtomicBool::new(false),
        }
    }

    pub fn set_verifying(&self, v: bool) {
        self.verifying.store(v, Ordering::Relaxed);
    }

    pub fn verifying(&self) -> bool {
        self.verifying.load(Ordering::Relaxed)
    }

    pub fn set_gzip(&self, gzip: bool) {
        self.gzip.store(gzip, Ordering::Relaxed);
    }

    pub fn set_total(&self, total: Option<u64>) {
        self.total_in.store(total.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn add_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_out(&self, n: u64) {
        self.bytes_out.store(n, Ordering::Relaxed);
    }

    /// After a restart from byte 0.
    pub fn reset(&self) {
        self.bytes_in.store(0, Ordering::Relaxed);
        self.bytes_out.store(0, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let total = self.total_in.load(Ordering::Relaxed);
        let mut s = snapshot(
            self.bytes_in.load(Ordering::Relaxed),
            (total > 0).then_some(total),
            self.bytes_out.load(Ordering::Relaxed),
            self.started.elapsed(),
        );
        s.gzip = self.gzip.load(Ordering::Relaxed);
        s
    }
}

/// Rate and ETA from raw counters.
pub fn snapshot(
    bytes_in: u64,
    total_in: Option<u64>,
    bytes_out: u64,
    elapsed: Duration,
) -> Snapshot {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        bytes_in as f64 / secs
    } else {
        0.0
    };
    let eta = match total_in {
        Some(t) if rate > 0.0 => Some(t.saturating_sub(bytes_in) as f64 / rate),
        _ => None,
    };
    Snapshot {
        bytes_in,
        total_in,
        bytes_out,
        gzip: false,
        elapsed: secs,
        rate,
        eta,
    }
}

/// `512.0 MiB of 1.0 GiB (50%), 85.3 MB/s, ETA 6 s`; `written 1.8 GiB` is added for a
/// gzip image, whose written size differs from the stored one.
pub fn line(s: &Snapshot) -> String {
    use crate::disk::human_size;
    let mut out = human_size(s.bytes_in);
    if let Some(t) = s.total_in {
        let pct = (s.bytes_in * 100).checked_div(t).unwrap_or(100);
        out.push_str(&format!(" of {} ({pct}%)", human_size(t)));
    }
    out.push_str(&format!(", {:.1} MB/s", s.rate / 1e6));
    if let Some(eta) = s.eta {
        out.push_str(&format!(", ETA {}", human_duration(eta)));
    }
    if s.gzip {
        out.push_str(&format!(", written {}", human_size(s.bytes_out)));
    }
    out
}

/// `7 s`, `2 min 05 s`, `1 h 02 min`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_follow_the_counters() {
        let s = snapshot(
            50_000_000,
            Some(100_000_000),
            50_000_000,
            Duration::from_secs(2),
        );
        assert_eq!(s.rate, 25_000_000.0);
        assert_eq!(s.eta, Some(2.0));
        assert_eq!(line(&s), "47.7 MiB of 95.4 MiB (50%), 25.0 MB/s, ETA 2 s");
    }

    #[test]
    fn unknown_total_has_no_percent_or_eta() {
        let mut s = snapshot(3 << 20, None, 12 << 20, Duration::from_secs(1));
        s.gzip = true;
        assert_eq!(s.eta, None);
        assert_eq!(line(&s), "3.0 MiB, 3.1 MB/s, written 12.0 MiB");
    }

    #[test]
    fn a_raw_image_shows_no_written_size_even_while_the_writer_lags() {
        let s = snapshot(32 << 20, Some(64 << 20), 27 << 20, Duration::from_secs(2));
        assert!(!line(&s).contains("written"), "{}", line(&s));
    }

    #[test]
    fn zero_elapsed_or_zero_rate_gives_no_eta() {
        let s = snapshot(0, Some(10), 0, Duration::ZERO);
        assert_eq!((s.rate, s.eta), (0.0, None));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(6.4), "6 s");
        assert_eq!(human_duration(125.0), "2 min 05 s");
        assert_eq!(human_duration(3720.0), "1 h 02 min");
    }
}
