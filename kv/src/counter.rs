//! A second, deliberately tiny [`StateMachine`]: a replicated counter.
//!
//! Shows that the runtimes and the simulator are not KV-specific: anything
//! with deterministic `apply`, `snapshot` and `restore` plugs in. Commands are
//! a little-endian `i64` to add; the response is the new total, or `None` for
//! a malformed command. Snapshot: magic `XCNT`, version 1, applied index
//! `u64`, total `i64`, crc32 of the preceding bytes (25 bytes in all).
//! Invariant: the total is the wrapping sum of every well-formed command.

use std::io;

use thiserror::Error;
use xraft::{LogIndex, StateMachine};

const MAGIC: [u8; 4] = *b"XCNT";
const VERSION: u8 = 1;
const BODY_BYTES: usize = 4 + 1 + 8 + 8;

/// A replicated counter. See the module doc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    total: i64,
    applied: LogIndex,
}

impl Counter {
    /// The current total.
    pub fn total(&self) -> i64 {
        self.total
    }

    /// Index of the last command applied.
    pub fn applied_index(&self) -> LogIndex {
        self.applied
    }

    /// Encodes a command that adds `delta`.
    pub fn add(delta: i64) -> [u8; 8] {
        delta.to_le_bytes()
    }
}

/// Why a counter snapshot could not be restored.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CounterSnapshotError {
    /// Reading failed or the input was too short.
    #[error("reading the counter snapshot: {0}")]
    Io(#[from] io::Error),
    /// Not a counter snapshot of a known version.
    #[error("not a counter snapshot (bad magic or version)")]
    Foreign,
    /// The checksum does not match.
    #[error("counter snapshot checksum mismatch")]
    Checksum,
    /// Bytes follow the snapshot.
    #[error("bytes after the end of the counter snapshot")]
    Trailing,
}

impl StateMachine for Counter {
    type Response = Option<i64>;
    type Snapshot = io::Cursor<Vec<u8>>;
    type Error = CounterSnapshotError;

    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Option<i64> {
        self.applied = index;
        let delta = i64::from_le_bytes(command.try_into().ok()?);
        self.total = self.total.wrapping_add(delta);
        Some(self.total)
    }

    /// The state is 16 bytes, so it is simply encoded up front.
    fn snapshot(&self) -> io::Cursor<Vec<u8>> {
        let mut out = Vec::with_capacity(BODY_BYTES + 4);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.applied.0.to_le_bytes());
        out.extend_from_slice(&self.total.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        io::Cursor::new(out)
    }

    fn restore(&mut self, input: &mut dyn io::Read) -> Result<(), CounterSnapshotError> {
        let mut buf = [0u8; BODY_BYTES + 4];
        input.read_exact(&mut buf)?;
        if buf[..4] != MAGIC || buf[4] != VERSION {
            return Err(CounterSnapshotError::Foreign);
        }
        let word = |at: usize| -> [u8; 8] {
            let mut w = [0u8; 8];
            w.copy_from_slice(&buf[at..at + 8]);
            w
        };
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&buf[BODY_BYTES..]);
        if crc32fast::hash(&buf[..BODY_BYTES]) != u32::from_le_bytes(crc) {
            return Err(CounterSnapshotError::Checksum);
        }
        if input.read(&mut [0u8; 1])? != 0 {
            return Err(CounterSnapshotError::Trailing);
        }
        self.applied = LogIndex(u64::from_le_bytes(word(5)));
        self.total = i64::from_le_bytes(word(13));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn apply_snapshot_restore() {
        let mut c = Counter::default();
        assert_eq!(c.apply(LogIndex(1), &Counter::add(5)), Some(5));
        assert_eq!(c.apply(LogIndex(2), &Counter::add(-7)), Some(-2));
        assert_eq!(c.apply(LogIndex(3), b"bad"), None);
        let mut bytes = Vec::new();
        c.snapshot().read_to_end(&mut bytes).expect("in memory");
        let mut d = Counter::default();
        d.restore(&mut &bytes[..]).expect("valid snapshot");
        assert_eq!(d, c);
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert!(matches!(d.restore(&mut &bad[..]), Err(CounterSnapshotError::Checksum)));
        assert!(d.restore(&mut &bytes[..20]).is_err());
        assert_eq!(d, c, "a failed restore leaves the state unchanged");
    }
}
