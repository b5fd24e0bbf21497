//! A fixed set of large reusable buffers passed between the pipeline's threads. A stage
//! takes a buffer, fills it, sends it on, and the last stage to need it gives it back, so
//! memory stays flat whatever the image size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

pub struct Pool {
    give: SyncSender<Vec<u8>>,
    take: Receiver<Vec<u8>>,
}

/// A handle for returning buffers from another thread.
#[derive(Clone)]
pub struct Returner(SyncSender<Vec<u8>>);

impl Pool {
    pub fn new(count: usize, size: usize) -> Pool {
        let (give, take) = sync_channel(count);
        for _ in 0..count {
            give.send(vec![0u8; size])
                .expect("pool has room for its own buffers");
        }
        Pool { give, take }
    }

    /// Blocks until a buffer is free, or returns `None` once `abort` is set: when a
    /// stage fails, buffers stranded in dropped channels never come back, and the
    /// producer must not wait for them forever.
    pub fn take(&self, abort: &AtomicBool) -> Option<Vec<u8>> {
        loop {
            match self.take.recv_timeout(Duration::from_millis(50)) {
                Ok(b) => return Some(b),
                Err(RecvTimeoutError::Timeout) if !abort.load(Ordering::Relaxed) => {}
                Err(_) => return None,
            }
        }
    }

    pub fn returner(&self) -> Returner {
        Returner(self.give.clone())
    }
}

impl Returner {
    pub fn give(&self, buf: Vec<u8>) {
        // The pool may already be gone while the pipeline shuts down; the buffer is
        // then simply freed.
        let _ = self.0.send(buf);
    }
}

/// A filled buffer: `len` valid bytes at the start of `buf`.
pub struct Chunk {
    pub buf: Vec<u8>,
    pub len: usize,
}

impl Chunk {
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
