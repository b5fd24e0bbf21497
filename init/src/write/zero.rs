//! Splitting a chunk into runs of data and of zeroes, aligned to absolute 4 KiB blocks,
//! so long zero runs can become BLKZEROOUT or holes instead of writes.

/// Zero detection granularity; also the alignment of every zero run.
pub const BLOCK: u64 = 4096;
/// Zero runs shorter than this are written as data: not worth a syscall of their own.
pub const MIN_RUN: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// `(offset, len)` relative to the chunk start.
    Data(usize, usize),
    Zero(usize, usize),
}

fn all_zero(b: &[u8]) -> bool {
    // Word loads OR-ed over 64-byte pieces, stopping at the first piece with data (which
    // keeps data blocks cheap). A byte-wise fold is not vectorized at the release
    // profile's opt-level "s" and cost as much CPU as the sha256 of the same bytes.
    let mut pieces = b.chunks_exact(64);
    for piece in &mut pieces {
        let acc = piece.chunks_exact(8).fold(0u64, |acc, w| {
            acc | u64::from_ne_bytes(w.try_into().unwrap())
        });
        if acc != 0 {
            return false;
        }
    }
    pieces.remainder().iter().all(|&x| x == 0)
}

/// Runs covering `data`, which starts at absolute offset `at`. Zero runs start and end
/// on absolute multiples of [`BLOCK`] and are at least [`MIN_RUN`] long; everything
/// else, including partial blocks at either end, is data. Adjacent data runs merge.
pub fn runs(data: &[u8], at: u64) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let push = |out: &mut Vec<Run>, run: Run| match (out.last_mut(), run) {
        (Some(Run::Data(s, l)), Run::Data(s2, l2)) if *s + *l == s2 => *l += l2,
        (Some(Run::Zero(s, l)), Run::Zero(s2, l2)) if *s + *l == s2 => *l += l2,
        _ => out.push(run),
    };
    let first = ((BLOCK - at % BLOCK) % BLOCK).min(data.len() as u64) as usize;
    if first > 0 {
        push(&mut out, Run::Data(0, first));
    }
    let mut i = first;
    while i < data.len() {
        let end = (i + BLOCK as usize).min(data.len());
        let whole = end - i == BLOCK as usize;
        if whole && all_zero(&data[i..end]) {
            push(&mut out, Run::Zero(i, end - i));
        } else {
            push(&mut out, Run::Data(i, end - i));
        }
        i = end;
    }
    // Demote short zero runs to data, then merge neighbours again.
    let mut merged: Vec<Run> = Vec::with_capacity(out.len());
    for r in out {
        let r = match r {
            Run::Zero(s, l) if (l as u64) < MIN_RUN => Run::Data(s, l),
            r => r,
        };
        push(&mut merged, r);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_aligned_zero_runs_are_found() {
        let mut d = vec![1u8; 3 * 4096];
        d.extend(vec![0u8; 32 * 4096]);
        d.extend(vec![2u8; 10]);
        assert_eq!(
            runs(&d, 0),
            vec![
                Run::Data(0, 3 * 4096),
                Run::Zero(3 * 4096, 32 * 4096),
                Run::Data(35 * 4096, 10)
            ]
        );
    }

    #[test]
    fn short_zero_runs_and_partial_blocks_are_data() {
        let mut d = vec![1u8; 100];
        d.extend(vec![0u8; 8 * 4096]);
        d.extend(vec![1u8; 100]);
        assert_eq!(runs(&d, 0), vec![Run::Data(0, d.len())]);
    }

    #[test]
    fn alignment_follows_the_absolute_offset() {
        // The chunk starts 100 bytes before a block boundary: those 100 bytes are data
        // even though they are zero.
        let d = vec![0u8; 100 + 16 * 4096 + 7];
        assert_eq!(
            runs(&d, 4096 - 100),
            vec![
                Run::Data(0, 100),
                Run::Zero(100, 16 * 4096),
                Run::Data(100 + 16 * 4096, 7)
            ]
        );
    }

    #[test]
    fn a_single_set_byte_breaks_a_zero_block() {
        let mut d = vec![0u8; 64 * 4096];
        d[20 * 4096 + 4095] = 1;
        let r = runs(&d, 0);
        assert_eq!(
            r,
            vec![
                Run::Zero(0, 20 * 4096),
                Run::Data(20 * 4096, 4096),
                Run::Zero(21 * 4096, 43 * 4096)
            ]
        );
    }

    #[test]
    fn all_zero_sees_a_set_bit_at_every_position() {
        for len in [0, 1, 63, 64, 65, 4096, 4100] {
            let mut b = vec![0u8; len];
            assert!(all_zero(&b), "len {len}");
            for i in 0..len {
                b[i] = 0x80;
                assert!(!all_zero(&b), "len {len}, byte {i}");
                b[i] = 0;
            }
        }
    }

    #[test]
    fn empty_input_has_no_runs() {
        assert!(runs(&[], 12345).is_empty());
    }
}
