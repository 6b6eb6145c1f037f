//! The WAL bytes SQLite wrote after the capture cursor, kept in memory so that detecting a
//! commit frame, scanning the transaction and reading its pages for the LTX file read no file
//! (each read was a syscall on the commit path: ~12 % of a FUSE worker's time on single-row
//! WAL commits, perf/README.md).
//!
//! Pure bookkeeping: every WAL write after the cursor passes through [`WalTail::record`]. The
//! held bytes are exactly the file's from the cursor to the furthest write, with nothing
//! written beyond them — so a scan that stops where they end sees what a scan of the file
//! would. Whenever that cannot be promised (a write past a gap, a transaction larger than
//! [`WAL_TAIL_BYTES_MAX`], a process that started with a WAL on disk), the tail is unknown and
//! the capture maps the file instead (`WalMap` in `wal.rs`; either is lent out as [`WalBytes`]).
//! It is held again from the next point where nothing past the cursor was written (a new WAL
//! generation, or a capture that reaches the furthest write).

/// Most WAL bytes held: a larger transaction is scanned from the mapped file.
pub const WAL_TAIL_BYTES_MAX: usize = 4 << 20;
/// Most room kept between transactions (a few single-row commits' frames); a large
/// transaction's is given back once it is captured, so idle databases hold little.
const WAL_TAIL_KEPT_BYTES_MAX: usize = 64 << 10;

#[derive(Debug)]
pub enum WalTail {
    /// `bytes` are the WAL's bytes from offset `start` (the cursor) on, and nothing was written
    /// past their end in this generation.
    Held { start: u64, bytes: Vec<u8> },
    /// Not held. `written_end`: where the furthest write of this generation ended, if known.
    Unknown { written_end: Option<u64> },
}

impl Default for WalTail {
    fn default() -> Self {
        WalTail::Unknown { written_end: None }
    }
}

impl WalTail {
    /// Nothing is written from `start` (the first frame of a new WAL generation) on yet.
    pub fn restart(&mut self, start: u64) {
        let bytes = match self {
            WalTail::Held { bytes, .. } => {
                let mut kept = std::mem::take(bytes);
                kept.clear();
                kept
            }
            WalTail::Unknown { .. } => Vec::new(),
        };
        *self = WalTail::Held { start, bytes };
    }

    /// Not held, and what was written is not known either (the WAL was reset or removed).
    pub fn forget(&mut self) {
        *self = WalTail::default();
    }

    /// SQLite wrote `data` at WAL offset `offset` (after the WAL header).
    pub fn record(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        match self {
            WalTail::Held { start, bytes } => {
                let held_end = *start + bytes.len() as u64;
                let fits = offset >= *start
                    && offset <= held_end
                    && end - *start <= WAL_TAIL_BYTES_MAX as u64;
                if !fits {
                    *self = WalTail::Unknown {
                        written_end: Some(held_end.max(end)),
                    };
                    return;
                }
                let (rel, rel_end) = ((offset - *start) as usize, (end - *start) as usize);
                if rel_end > bytes.len() {
                    bytes.resize(rel_end, 0);
                }
                bytes[rel..rel_end].copy_from_slice(data);
            }
            WalTail::Unknown { written_end } => {
                if let Some(e) = written_end {
                    *e = (*e).max(end);
                }
            }
        }
    }

    /// The capture cursor moved to `cursor`: the bytes before it are no longer needed.
    pub fn advance(&mut self, cursor: u64) {
        match self {
            WalTail::Held { start, bytes } => {
                match cursor.checked_sub(*start).map(|d| d as usize) {
                    Some(done) if done <= bytes.len() => {
                        bytes.drain(..done);
                        *start = cursor;
                        if bytes.is_empty() && bytes.capacity() > WAL_TAIL_KEPT_BYTES_MAX {
                            // A large transaction is captured: do not hold its room.
                            *bytes = Vec::new();
                        }
                    }
                    // A cursor past what was written: not ours to explain.
                    _ => self.forget(),
                }
            }
            WalTail::Unknown {
                written_end: Some(e),
            } if *e == cursor => self.restart(cursor),
            WalTail::Unknown { .. } => {}
        }
    }

    /// The `len` bytes at WAL offset `offset`, if held.
    pub fn get(&self, offset: u64, len: usize) -> Option<&[u8]> {
        self.bytes()?.get(offset, len)
    }

    /// The held bytes, if they start at `cursor`: a scan from there reads them instead of the
    /// file.
    pub fn held_from(&self, cursor: u64) -> Option<WalBytes<'_>> {
        self.bytes().filter(|b| b.start == cursor)
    }

    fn bytes(&self) -> Option<WalBytes<'_>> {
        match self {
            WalTail::Held { start, bytes } => Some(WalBytes::new(*start, bytes)),
            WalTail::Unknown { .. } => None,
        }
    }
}

/// WAL bytes at their offsets in the WAL file: the held tail, or the file mapped for one
/// capture (`wal.rs`). Empty when neither: every lookup misses and callers read the file.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalBytes<'a> {
    start: u64,
    bytes: &'a [u8],
}

impl<'a> WalBytes<'a> {
    /// `bytes` are the WAL's from offset `start` on.
    pub fn new(start: u64, bytes: &'a [u8]) -> Self {
        WalBytes { start, bytes }
    }

    /// The `len` bytes at WAL offset `offset`, if these cover them.
    pub fn get(&self, offset: u64, len: usize) -> Option<&'a [u8]> {
        let rel = usize::try_from(offset.checked_sub(self.start)?).ok()?;
        self.bytes.get(rel..rel.checked_add(len)?)
    }

    /// Whether a scan may start at WAL offset `offset`: within these bytes or at their end.
    pub fn covers(&self, offset: u64) -> bool {
        offset
            .checked_sub(self.start)
            .is_some_and(|rel| rel <= self.bytes.len() as u64)
    }

    /// WAL offset of the first byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn as_slice(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(tail: &WalTail) -> Option<(u64, &[u8])> {
        match tail {
            WalTail::Held { start, bytes } => Some((*start, bytes)),
            WalTail::Unknown { .. } => None,
        }
    }

    #[test]
    fn holds_contiguous_and_overwriting_writes_from_the_cursor() {
        let mut tail = WalTail::default();
        tail.record(32, b"ignored: nothing is known yet");
        assert!(held(&tail).is_none());
        tail.restart(32);
        tail.record(32, b"frame-1 ");
        tail.record(40, b"frame-2 ");
        tail.record(36, b"XX"); // an in-place rewrite (checksums, a page written twice)
        assert_eq!(held(&tail), Some((32, &b"framXX1 frame-2 "[..])));
        assert_eq!(tail.get(40, 8), Some(&b"frame-2 "[..]));
        assert_eq!(tail.get(44, 8), None, "past the end");
        assert_eq!(tail.get(8, 4), None, "before the cursor");
        tail.advance(40);
        assert_eq!(held(&tail), Some((40, &b"frame-2 "[..])));
        let held = tail.held_from(40).expect("held from the cursor");
        assert_eq!((held.start(), held.as_slice()), (40, &b"frame-2 "[..]));
        assert!(tail.held_from(32).is_none(), "only from the cursor");
    }

    #[test]
    fn a_gap_forgets_until_a_capture_reaches_the_furthest_write() {
        let mut tail = WalTail::default();
        tail.restart(32);
        tail.record(32, &[1; 8]);
        tail.record(48, &[2; 8]); // a gap at 40..48
        assert!(held(&tail).is_none());
        assert!(tail.get(32, 8).is_none());
        tail.record(40, &[3; 8]);
        tail.advance(48);
        assert!(held(&tail).is_none(), "56 was written past the cursor");
        tail.advance(56);
        assert_eq!(held(&tail), Some((56, &[][..])));
        tail.record(56, &[4; 4]);
        assert_eq!(tail.get(56, 4), Some(&[4u8; 4][..]));
    }

    #[test]
    fn a_transaction_larger_than_the_limit_is_not_held() {
        let mut tail = WalTail::default();
        tail.restart(32);
        let frame = vec![7u8; 1 << 20];
        for i in 0..4u64 {
            tail.record(32 + i * (1 << 20), &frame);
        }
        assert!(held(&tail).is_some(), "4 MiB is held");
        tail.advance(32 + (4 << 20));
        match &tail {
            WalTail::Held { bytes, .. } => {
                assert!(
                    bytes.capacity() <= WAL_TAIL_KEPT_BYTES_MAX,
                    "{} kept",
                    bytes.capacity()
                )
            }
            WalTail::Unknown { .. } => panic!("held after the capture"),
        }
        for i in 0..5u64 {
            tail.record(32 + (4 << 20) + i * (1 << 20), &frame);
        }
        assert!(held(&tail).is_none(), "5 MiB is not held");
        tail.advance(32 + (9 << 20));
        assert!(held(&tail).is_some(), "held again once captured");
    }

    #[test]
    fn unknown_after_a_start_until_the_next_generation() {
        let mut tail = WalTail::default();
        tail.record(32, &[1; 8]);
        tail.advance(40);
        assert!(
            held(&tail).is_none(),
            "what the file held before is not known"
        );
        tail.restart(32);
        assert!(held(&tail).is_some());
        tail.forget();
        assert!(held(&tail).is_none());
    }
}
