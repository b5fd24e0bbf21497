//! The write pipeline: read → sha256 → (gzip decode) → write, on separate threads that
//! pass a small fixed pool of large buffers, so memory stays flat whatever the image
//! size and hashing, decompression and I/O overlap.
//!
//! Order of writes, so the disk is never left bootable with a partial image:
//! 1. zero the first MiB (and a block device's last MiB: the backup GPT) and flush —
//!    from here until step 4 the disk boots nothing, even after a power cut;
//! 2. write everything except the first MiB, which is held in memory;
//! 3. flush, then compare the digest of the stored bytes with the expected one;
//! 4. write the first MiB and flush again.
//!
//! On any failure after step 1 the first (and last) MiB are zeroed again.

pub mod pool;
pub mod progress;
pub mod target;
pub mod zero;

use crate::source::is_restart;
use pool::{Chunk, Pool, Returner};
pub use progress::Progress;
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};
pub use target::{HEAD, Target};

/// Pipeline buffer size and count per pool.
const BUF: usize = 1 << 20;
const BUFS: usize = 6;

#[derive(Debug, Clone)]
pub struct Options {
    /// Expected sha256 of the stored bytes, lowercase hex; `None` writes unverified.
    pub expected_sha256: Option<String>,
    /// Interval between progress lines.
    pub progress_every: Duration,
    /// How many times the source may restart from byte 0 (server ignoring Range).
    pub max_restarts: u32,
    /// Name for log lines.
    pub label: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            expected_sha256: None,
            progress_every: Duration::from_secs(2),
            max_restarts: 3,
            label: "image".into(),
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// Bytes as stored/served (what the digest covers).
    pub stored_bytes: u64,
    /// Bytes of the image on the target (decompressed).
    pub image_bytes: u64,
    pub sha256: String,
    pub gzip: bool,
    pub verified: bool,
    /// Bytes turned into BLKZEROOUT or holes instead of writes.
    pub zeroed_bytes: u64,
    pub restarts: u32,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Source(io::Error),
    #[error("gzip: {0}")]
    Gzip(String),
    #[error("{path}: {source} (at byte {offset})")]
    Target {
        path: String,
        offset: u64,
        source: io::Error,
    },
    #[error("sha256 mismatch: expected {expected}, got {actual} over {bytes} bytes")]
    Digest {
        expected: String,
        actual: String,
        bytes: u64,
    },
    #[error("the source restarted from byte 0 more than {0} times")]
    Restarts(u32),
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the image read from `src` to `target` in the safe order described above.
pub fn write_image(
    src: &mut (dyn Read + Send),
    target: &mut Target,
    opts: &Options,
    progress: &Progress,
) -> Result<Outcome, WriteError> {
    let started = Instant::now();
    let result = std::thread::scope(|s| {
        let (stop_tx, stop_rx) = sync_channel::<()>(0);
        let label = opts.label.clone();
        let every = opts.progress_every;
        s.spawn(move || report(stop_rx, &label, every, progress));
        let r = write_all(src, target, opts, progress);
        drop(stop_tx);
        r
    });
    let result = result.map(|mut o| {
        o.seconds = started.elapsed().as_secs_f64();
        o
    });
    if result.is_err()
        && let Err(e) = target.invalidate()
    {
        log::error!(
            "could not zero the first MiB of {}: {e}",
            target.path().display()
        );
    }
    result
}

fn report(stop: Receiver<()>, label: &str, every: Duration, progress: &Progress) {
    use std::sync::mpsc::RecvTimeoutError;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        log::info!("writing {label}: {}", progress::line(&progress.snapshot()));
    }
}

fn write_all(
    src: &mut (dyn Read + Send),
    target: &mut Target,
    opts: &Options,
    progress: &Progress,
) -> Result<Outcome, WriteError> {
    let terr = |t: &Target, offset: u64, source: io::Error| WriteError::Target {
        path: t.path().display().to_string(),
        offset,
        source,
    };
    target.invalidate().map_err(|e| terr(target, 0, e))?;
    let mut restarts = 0;
    let pass = loop {
        match run_once(src, target, progress) {
            Ok(p) => break p,
            Err(Stop::Restart) => {
                restarts += 1;
                if restarts > opts.max_restarts {
                    return Err(WriteError::Restarts(opts.max_restarts));
                }
                log::warn!(
                    "{}: the source restarted; writing again from byte 0",
                    opts.label
                );
                target.reset().map_err(|e| terr(target, 0, e))?;
                progress.reset();
            }
            Err(Stop::Fail(e)) => return Err(e),
        }
    };
    progress.set_verifying(true);
    target
        .flush()
        .map_err(|e| terr(target, pass.image_bytes, e))?;
    let verified = match &opts.expected_sha256 {
        Some(want) if *want != pass.sha256 => {
            return Err(WriteError::Digest {
                expected: want.clone(),
                actual: pass.sha256,
                bytes: pass.stored_bytes,
            });
        }
        Some(_) => true,
        None => false,
    };
    // Verified (or knowingly unverified): now the disk may become bootable.
    target
        .write_at(0, &pass.head)
        .map_err(|e| terr(target, 0, e))?;
    target
        .set_len(pass.image_bytes)
        .map_err(|e| terr(target, pass.image_bytes, e))?;
    target.flush().map_err(|e| terr(target, 0, e))?;
    Ok(Outcome {
        stored_bytes: pass.stored_bytes,
        image_bytes: pass.image_bytes,
        sha256: pass.sha256,
        gzip: pass.gzip,
        verified,
        zeroed_bytes: pass.zeroed,
        restarts,
        seconds: 0.0,
    })
}

/// One pass over the source, from byte 0.
struct Pass {
    head: Vec<u8>,
    image_bytes: u64,
    stored_bytes: u64,
    sha256: String,
    gzip: bool,
    zeroed: u64,
}

enum Stop {
    Restart,
    Fail(WriteError),
}

/// A stage's end: `Gone` means a neighbour hung up, which is never the root cause.
enum StageErr {
    Gone,
    Restart,
    Fail(WriteError),
}

fn source_err(e: io::Error) -> StageErr {
    if is_restart(&e) {
        StageErr::Restart
    } else {
        StageErr::Fail(WriteError::Source(e))
    }
}

/// Reads until `buf` is full or the source ends.
fn fill(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn run_once(
    src: &mut (dyn Read + Send),
    target: &mut Target,
    progress: &Progress,
) -> Result<Pass, Stop> {
    let abort = AtomicBool::new(false);
    let raw = Pool::new(BUFS, BUF);
    // The first buffer is read here so the route (gzip or raw) is known up front.
    let mut first = raw.take(&abort).expect("a fresh pool has buffers");
    let n = fill(src, &mut first).map_err(|e| match source_err(e) {
        StageErr::Restart => Stop::Restart,
        StageErr::Fail(e) => Stop::Fail(e),
        StageErr::Gone => unreachable!(),
    })?;
    progress.add_in(n as u64);
    let gzip = n >= 2 && first[..2] == [0x1f, 0x8b];
    progress.set_gzip(gzip);
    let first = Chunk { buf: first, len: n };

    std::thread::scope(|s| {
        let (tx_raw, rx_raw) = sync_channel::<Chunk>(BUFS);
        let (tx_hashed, rx_hashed) = sync_channel::<Chunk>(BUFS);
        let abort = &abort;
        // Only the reader takes raw buffers; the decoder or the writer gives them back.
        let raw_back = raw.returner();
        let reader = s.spawn(move || {
            let r = read_stage(src, &raw, first, tx_raw, abort, progress);
            if r.is_err() {
                abort.store(true, Ordering::Relaxed);
            }
            r
        });
        let hasher = s.spawn(move || hash_stage(rx_raw, tx_hashed));
        let (writer, decoder) = if gzip {
            let out = Pool::new(BUFS, BUF);
            let (tx_out, rx_out) = sync_channel::<Chunk>(BUFS);
            let out_back = out.returner();
            let decoder = s.spawn(move || {
                let r = decode_stage(rx_hashed, raw_back, &out, tx_out, abort);
                if r.is_err() {
                    abort.store(true, Ordering::Relaxed);
                }
                r
            });
            let w = write_stage(rx_out, out_back, target, progress);
            (w, Some(decoder))
        } else {
            (write_stage(rx_hashed, raw_back, target, progress), None)
        };
        if writer.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        let reader = reader.join().expect("reader thread panicked");
        let hasher = hasher.join().expect("hasher thread panicked");
        let decoder = decoder.map(|d| d.join().expect("decoder thread panicked"));

        // The root cause is the first real failure in pipeline order: a network error
        // also makes the decoder see a truncated stream, and a full disk makes every
        // upstream stage see its neighbour hang up (`Gone`).
        for e in [reader.err(), decoder.and_then(Result::err)]
            .into_iter()
            .flatten()
        {
            match e {
                StageErr::Restart => return Err(Stop::Restart),
                StageErr::Fail(e) => return Err(Stop::Fail(e)),
                StageErr::Gone => {}
            }
        }
        let w = writer.map_err(Stop::Fail)?;
        let (sha256, stored_bytes) = hasher.map_err(|_| {
            Stop::Fail(WriteError::Source(io::Error::other(
                "the hashing stage stopped early",
            )))
        })?;
        Ok(Pass {
            head: w.head,
            image_bytes: w.len,
            stored_bytes,
            sha256,
            gzip,
            zeroed: w.zeroed,
        })
    })
}

fn read_stage(
    src: &mut (dyn Read + Send),
    pool: &Pool,
    first: Chunk,
    tx: SyncSender<Chunk>,
    abort: &AtomicBool,
    progress: &Progress,
) -> Result<(), StageErr> {
    let mut last_full = first.len == first.buf.len();
    tx.send(first).map_err(|_| StageErr::Gone)?;
    while last_full {
        let Some(mut buf) = pool.take(abort) else {
            return Err(StageErr::Gone);
        };
        let n = fill(src, &mut buf).map_err(source_err)?;
        if n == 0 {
            break;
        }
        progress.add_in(n as u64);
        last_full = n == buf.len();
        tx.send(Chunk { buf, len: n }).map_err(|_| StageErr::Gone)?;
    }
    Ok(())
}

fn hash_stage(rx: Receiver<Chunk>, tx: SyncSender<Chunk>) -> Result<(String, u64), StageErr> {
    let mut h = Sha256::new();
    let mut bytes = 0u64;
    for c in rx {
        h.update(c.data());
        bytes += c.len as u64;
        tx.send(c).map_err(|_| StageErr::Gone)?;
    }
    Ok((hex(&h.finalize()), bytes))
}

/// Hashed chunks as one byte stream; consumed buffers go back to the raw pool.
struct ChunkStream {
    rx: Receiver<Chunk>,
    cur: Option<Chunk>,
    pos: usize,
    back: Returner,
    /// Bytes consumed so far (for error messages).
    consumed: u64,
}

impl Read for ChunkStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkStream {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.cur.as_ref().is_none_or(|c| self.pos >= c.len) {
            if let Some(c) = self.cur.take() {
                self.back.give(c.buf);
            }
            match self.rx.recv() {
                Ok(c) => {
                    self.cur = Some(c);
                    self.pos = 0;
                }
                Err(_) => return Ok(&[]),
            }
        }
        let c = self.cur.as_ref().expect("loop leaves a chunk with data");
        Ok(&c.buf[self.pos..c.len])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.consumed += n as u64;
    }
}

fn decode_stage(
    rx: Receiver<Chunk>,
    back: Returner,
    out: &Pool,
    tx: SyncSender<Chunk>,
    abort: &AtomicBool,
) -> Result<(), StageErr> {
    let mut stream = ChunkStream {
        rx,
        cur: None,
        pos: 0,
        back,
        consumed: 0,
    };
    let gz = |e: String| StageErr::Fail(WriteError::Gzip(e));
    let mut members = 0u64;
    loop {
        // Concatenated members (pigz --independent, bgzip) decode as one stream, as
        // `gzip -dc` does; anything after the last member that is not another member
        // is trailing data, which we refuse rather than ignore.
        let next = stream.fill_buf().map_err(|e| gz(e.to_string()))?;
        if next.is_empty() {
            break;
        }
        if members > 0 && !(next.len() >= 2 && next[..2] == [0x1f, 0x8b]) {
            return Err(gz(format!(
                "trailing data after the compressed stream at byte {}",
                stream.consumed
            )));
        }
        let mut dec = flate2::bufread::GzDecoder::new(&mut stream);
        loop {
            let Some(mut buf) = out.take(abort) else {
                return Err(StageErr::Gone);
            };
            let n = match fill(&mut dec, &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(gz("the compressed stream is truncated".into()));
                }
                Err(e) => return Err(gz(e.to_string())),
            };
            if n == 0 {
                break;
            }
            let full = n == buf.len();
            tx.send(Chunk { buf, len: n }).map_err(|_| StageErr::Gone)?;
            if !full {
                break;
            }
        }
        members += 1;
    }
    if members == 0 {
        return Err(gz("empty stream".into()));
    }
    Ok(())
}

struct Written {
    head: Vec<u8>,
    len: u64,
    zeroed: u64,
}

fn write_stage(
    rx: Receiver<Chunk>,
    back: Returner,
    target: &mut Target,
    progress: &Progress,
) -> Result<Written, WriteError> {
    let mut pos = 0u64;
    let mut head = Vec::with_capacity(HEAD as usize);
    let mut zeroes = Zeroes::default();
    for chunk in rx {
        let data = chunk.data();
        let mut skip = 0;
        if pos < HEAD {
            skip = ((HEAD - pos) as usize).min(data.len());
            head.extend_from_slice(&data[..skip]);
        }
        let rest = &data[skip..];
        let at = pos + skip as u64;
        for run in zero::runs(rest, at) {
            match run {
                zero::Run::Data(s, l) => {
                    zeroes.flush(target)?;
                    let offset = at + s as u64;
                    target
                        .write_at(offset, &rest[s..s + l])
                        .map_err(|source| target_error(target, offset, source))?;
                }
                zero::Run::Zero(s, l) => zeroes.add(target, at + s as u64, l as u64)?,
            }
        }
        pos += data.len() as u64;
        progress.set_out(pos);
        back.give(chunk.buf);
    }
    zeroes.flush(target)?;
    Ok(Written {
        head,
        len: pos,
        zeroed: zeroes.total,
    })
}

/// A zero run is issued once it ends, not per chunk: an image's zero runs are usually
/// longer than a buffer, and one BLKZEROOUT per run instead of one per MiB cuts the
/// synchronous ioctls on a block device about threefold for a typical sparse image.
/// A run is issued at [`Zeroes::MAX`] anyway, so progress stays honest on devices
/// where zeroing is slow.
#[derive(Default)]
struct Zeroes {
    /// (offset, len) not yet issued.
    pending: Option<(u64, u64)>,
    total: u64,
}

impl Zeroes {
    const MAX: u64 = 64 << 20;

    fn add(&mut self, target: &mut Target, offset: u64, len: u64) -> Result<(), WriteError> {
        self.total += len;
        match &mut self.pending {
            Some((o, l)) if *o + *l == offset && *l + len <= Self::MAX => *l += len,
            _ => {
                self.flush(target)?;
                self.pending = Some((offset, len));
            }
        }
        Ok(())
    }

    fn flush(&mut self, target: &mut Target) -> Result<(), WriteError> {
        if let Some((offset, len)) = self.pending.take() {
            target
                .zero(offset, len)
                .map_err(|source| target_error(target, offset, source))?;
        }
        Ok(())
    }
}

fn target_error(target: &Target, offset: u64, source: io::Error) -> WriteError {
    WriteError::Target {
        path: target.path().display().to_string(),
        offset,
        source,
    }
}

#[cfg(test)]
mod tests;
