//! The KV snapshot format: writing it as a bounded-chunk stream and reading
//! it back.
//!
//! Layout (integers little endian, `varint` = LEB128 of a u64):
//!
//! ```text
//! magic "XKVS" | version u8 = 1 | applied_index u64 | sessions u64 | entries u64
//! sessions × (client u64 | last_seq u64 | last_index u64 | varint len | postcard KvResponse)
//! entries  × (varint key_len | key | varint value_len | value)
//! crc32 u32 of every byte above
//! ```
//!
//! Invariants: sessions are in increasing client order and entries in
//! increasing key order (the reader refuses anything else), so one state has
//! exactly one encoding; the reader checks every length against its bound
//! before allocating and grows buffers only as bytes actually arrive; the
//! checksum and the end of the stream are verified before the caller sees any
//! decoded state.
//!
//! Cost: [`KvSnapshot`] holds `Arc` clones of the store's maps, so taking it
//! is O(1); while it is alive the store's next write copies the key space
//! (one table allocation and O(keys) reference-count increments; keys and
//! values are `Bytes` and are not copied). Reading it out sorts the keys once,
//! when the entries start (O(keys · log keys), on the reader's thread, after
//! which the snapshot lets go of the table), then costs the bytes.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::mem;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;
use xraft::LogIndex;

use crate::command::KvResponse;
use crate::keyspace::KeySpace;
use crate::session::Session;

/// First bytes of every KV snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"XKVS";
/// The format version this crate writes and reads.
pub const SNAPSHOT_VERSION: u8 = 1;

const HEADER_BYTES: usize = 4 + 1 + 8 + 8 + 8;
/// Refills stop adding records to the scratch buffer past this size.
const SCRATCH_TARGET_BYTES: usize = 16 * 1024;
/// Values up to this size are copied into the scratch buffer; larger ones are
/// served from their own `Bytes` without a copy.
const INLINE_VALUE_BYTES: usize = 1024;
/// Largest encoded session response accepted on restore.
const SESSION_RESPONSE_BYTES_MAX: u64 = 1 << 20;

/// Why a snapshot could not be restored. The store is unchanged.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Reading the input failed.
    #[error("reading the snapshot: {0}")]
    Io(#[from] io::Error),
    /// The input ended inside the snapshot.
    #[error("snapshot truncated")]
    Truncated,
    /// The input does not start with the KV snapshot magic.
    #[error("not a KV snapshot (bad magic)")]
    BadMagic,
    /// The snapshot was written by an unknown format version.
    #[error("unsupported KV snapshot version {0}")]
    UnsupportedVersion(u8),
    /// The bytes do not match the checksum.
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// Checksum in the trailer.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
    /// A length exceeds its bound.
    #[error("snapshot {what} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// What the length is of.
        what: &'static str,
        /// The announced length.
        len: u64,
        /// The bound in force.
        max: u64,
    },
    /// Records are out of order or duplicated (not the canonical encoding),
    /// or two sessions claim the same activity index.
    #[error("snapshot {0} out of order")]
    Unordered(&'static str),
    /// A session response does not decode.
    #[error("malformed session response: {0}")]
    Malformed(#[from] postcard::Error),
    /// Bytes follow the checksum.
    #[error("bytes after the end of the snapshot")]
    Trailing,
    /// A varint is longer than ten bytes or overflows a u64.
    #[error("malformed varint")]
    BadVarint,
}

/// A frozen KV state, read out as the snapshot's bytes through [`io::Read`],
/// in chunks of the caller's buffer size. See the module doc for the format
/// and the cost.
#[derive(Debug)]
pub struct KvSnapshot {
    data: Arc<KeySpace>,
    sessions: Arc<BTreeMap<u64, Session>>,
    /// The key space's pairs in key order, taken when the entries start.
    sorted: Vec<(Bytes, Bytes)>,
    stage: Stage,
    scratch: Vec<u8>,
    scratch_pos: usize,
    payload: Bytes,
    crc: crc32fast::Hasher,
}

#[derive(Debug)]
enum Stage {
    Header,
    Sessions(Option<u64>),
    /// Position of the next pair in `sorted`.
    Entries(usize),
    Trailer,
    Done,
}

impl KvSnapshot {
    pub(crate) fn new(
        applied: LogIndex,
        data: Arc<KeySpace>,
        sessions: Arc<BTreeMap<u64, Session>>,
    ) -> Self {
        let mut scratch = Vec::with_capacity(SCRATCH_TARGET_BYTES + 64);
        scratch.extend_from_slice(&SNAPSHOT_MAGIC);
        scratch.push(SNAPSHOT_VERSION);
        scratch.extend_from_slice(&applied.0.to_le_bytes());
        scratch.extend_from_slice(&(sessions.len() as u64).to_le_bytes());
        scratch.extend_from_slice(&(data.len() as u64).to_le_bytes());
        debug_assert_eq!(scratch.len(), HEADER_BYTES);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&scratch);
        KvSnapshot {
            data,
            sessions,
            sorted: Vec::new(),
            stage: Stage::Header,
            scratch,
            scratch_pos: 0,
            payload: Bytes::new(),
            crc,
        }
    }

    /// Reads the whole snapshot into memory (the simulator's way).
    pub fn into_vec(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        // Reading a KvSnapshot never fails.
        self.read_to_end(&mut out).expect("KvSnapshot reads infallibly");
        out
    }

    /// Queues the next records into `scratch` / `payload`. Returns false when
    /// the stream is over.
    fn refill(&mut self) -> bool {
        self.scratch.clear();
        self.scratch_pos = 0;
        loop {
            match &mut self.stage {
                Stage::Header => self.stage = Stage::Sessions(None),
                Stage::Sessions(after) => {
                    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
                    let mut last = None;
                    for (&client, s) in self.sessions.range((lower, Bound::Unbounded)) {
                        encode_session(client, s, &mut self.scratch);
                        last = Some(client);
                        if self.scratch.len() >= SCRATCH_TARGET_BYTES {
                            break;
                        }
                    }
                    match last {
                        Some(client) => {
                            *after = Some(client);
                            break;
                        }
                        None => {
                            // Sort once, then let go of the table.
                            let data = mem::take(&mut self.data);
                            self.sorted = data
                                .sorted()
                                .into_iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            self.stage = Stage::Entries(0);
                        }
                    }
                }
                Stage::Entries(next) => {
                    let start = *next;
                    for (key, value) in &self.sorted[start..] {
                        *next += 1;
                        put_varint(&mut self.scratch, key.len() as u64);
                        self.scratch.extend_from_slice(key);
                        put_varint(&mut self.scratch, value.len() as u64);
                        if value.len() <= INLINE_VALUE_BYTES {
                            self.scratch.extend_from_slice(value);
                        } else {
                            self.payload = value.clone();
                            break;
                        }
                        if self.scratch.len() >= SCRATCH_TARGET_BYTES {
                            break;
                        }
                    }
                    if *next > start {
                        break;
                    }
                    self.sorted = Vec::new();
                    self.stage = Stage::Trailer;
                }
                Stage::Trailer => {
                    let crc = std::mem::take(&mut self.crc).finalize();
                    self.scratch.extend_from_slice(&crc.to_le_bytes());
                    self.stage = Stage::Done;
                    return true;
                }
                Stage::Done => return false,
            }
        }
        self.crc.update(&self.scratch);
        self.crc.update(&self.payload);
        true
    }
}

impl Read for KvSnapshot {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < buf.len() {
            if self.scratch_pos < self.scratch.len() {
                let n = (self.scratch.len() - self.scratch_pos).min(buf.len() - written);
                buf[written..written + n]
                    .copy_from_slice(&self.scratch[self.scratch_pos..self.scratch_pos + n]);
                self.scratch_pos += n;
                written += n;
            } else if !self.payload.is_empty() {
                let n = self.payload.len().min(buf.len() - written);
                buf[written..written + n].copy_from_slice(&self.payload[..n]);
                bytes::Buf::advance(&mut self.payload, n);
                written += n;
            } else if !self.refill() {
                break;
            }
        }
        Ok(written)
    }
}

/// A snapshot's content, decoded and verified.
pub(crate) struct Decoded {
    pub applied: LogIndex,
    pub data: KeySpace,
    pub sessions: BTreeMap<u64, Session>,
}

/// Reads and verifies a whole snapshot from `input`. `item_bytes_max`
/// bounds each key and value.
pub(crate) fn decode(input: &mut dyn Read, item_bytes_max: u64) -> Result<Decoded, SnapshotError> {
    let mut r = CrcReader {
        inner: io::BufReader::with_capacity(64 * 1024, input),
        crc: crc32fast::Hasher::new(),
    };
    let mut header = [0u8; HEADER_BYTES];
    // Magic and version first, so a foreign input is named as such even if short.
    r.read_exact(&mut header[..5])?;
    if header[..4] != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    if header[4] != SNAPSHOT_VERSION {
        return Err(SnapshotError::UnsupportedVersion(header[4]));
    }
    r.read_exact(&mut header[5..])?;
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (applied, session_count, entry_count) = (u64_at(5), u64_at(13), u64_at(21));

    let mut sessions = BTreeMap::new();
    let mut activity = std::collections::BTreeSet::new();
    for _ in 0..session_count {
        let client = r.u64()?;
        let (last_seq, last_index) = (r.u64()?, r.u64()?);
        let len = r.varint()?;
        let bytes = r.bytes(len, SESSION_RESPONSE_BYTES_MAX, "session response")?;
        let response: KvResponse = postcard::from_bytes(&bytes)?;
        if sessions.last_key_value().is_some_and(|(&c, _)| c >= client) {
            return Err(SnapshotError::Unordered("sessions"));
        }
        // Activity indices are log indices of distinct commands: the
        // eviction order relies on their being distinct.
        if !activity.insert(last_index) {
            return Err(SnapshotError::Unordered("session activity"));
        }
        sessions.insert(client, Session { last_seq, last_index, response });
    }

    let mut entries: Vec<(Bytes, Bytes)> = Vec::new();
    for _ in 0..entry_count {
        let len = r.varint()?;
        let key = r.bytes(len, item_bytes_max, "key")?;
        let len = r.varint()?;
        let value = r.bytes(len, item_bytes_max, "value")?;
        if entries.last().is_some_and(|(k, _)| *k >= key) {
            return Err(SnapshotError::Unordered("keys"));
        }
        entries.push((key, value));
    }

    let computed = r.crc.clone().finalize();
    let mut trailer = [0u8; 4];
    read_exact_or_truncated(&mut r.inner, &mut trailer)?;
    let stored = u32::from_le_bytes(trailer);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let mut probe = [0u8; 1];
    if r.inner.read(&mut probe)? != 0 {
        return Err(SnapshotError::Trailing);
    }
    // Input is sorted, so the keys are distinct.
    let data = KeySpace::from_distinct(entries);
    Ok(Decoded { applied: LogIndex(applied), data, sessions })
}

fn encode_session(client: u64, s: &Session, out: &mut Vec<u8>) {
    out.extend_from_slice(&client.to_le_bytes());
    out.extend_from_slice(&s.last_seq.to_le_bytes());
    out.extend_from_slice(&s.last_index.to_le_bytes());
    // A KvResponse encodes into a Vec without failing.
    let response = postcard::to_allocvec(&s.response).expect("KvResponse encodes into a Vec");
    put_varint(out, response.len() as u64);
    out.extend_from_slice(&response);
}

/// Appends `v` as LEB128.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_exact_or_truncated(r: &mut impl Read, buf: &mut [u8]) -> Result<(), SnapshotError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => SnapshotError::Truncated,
        _ => SnapshotError::Io(e),
    })
}

/// A reader that checksums everything read through it.
struct CrcReader<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> CrcReader<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        read_exact_or_truncated(&mut self.inner, buf)?;
        self.crc.update(buf);
        Ok(())
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn varint(&mut self) -> Result<u64, SnapshotError> {
        let mut v = 0u64;
        for i in 0..10 {
            let mut b = [0u8; 1];
            self.read_exact(&mut b)?;
            let low = u64::from(b[0] & 0x7f);
            if i == 9 && b[0] > 1 {
                return Err(SnapshotError::BadVarint);
            }
            v |= low << (7 * i);
            if b[0] & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(SnapshotError::BadVarint)
    }

    /// Reads `len` bytes after checking `len` against `max`; memory grows
    /// with the bytes that actually arrive, not with the announced length.
    fn bytes(&mut self, len: u64, max: u64, what: &'static str) -> Result<Bytes, SnapshotError> {
        if len > max {
            return Err(SnapshotError::TooLarge { what, len, max });
        }
        let mut buf = Vec::new();
        let got = (&mut self.inner).take(len).read_to_end(&mut buf)?;
        if got as u64 != len {
            return Err(SnapshotError::Truncated);
        }
        self.crc.update(&buf);
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_and_rejects_overlong() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = CrcReader { inner: &out[..], crc: crc32fast::Hasher::new() };
            assert_eq!(r.varint().expect("valid"), v);
        }
        let overlong = [0xffu8; 11];
        let mut r = CrcReader { inner: &overlong[..], crc: crc32fast::Hasher::new() };
        assert!(matches!(r.varint(), Err(SnapshotError::BadVarint)));
    }
}
