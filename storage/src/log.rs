//! The segmented log: buffered appends, group-commit sync, suffix
//! truncation, compaction, snapshot installation and recovery.
//!
//! Owns the `seg-<first index>.log` files. Each segment is a header (see
//! `codec`) followed by records with consecutive indexes; segments join up
//! with no gap. The newest segment is the *tail*: the only one written to.
//!
//! Invariants:
//! - every segment but the tail is completely written and synced (a roll
//!   syncs the old tail before the new segment is created, and a new
//!   segment's header is synced, with its directory entry, before any
//!   record is written), so only the tail can end in a torn write;
//! - appends are encoded into `buf` and reach the file in one positioned
//!   write per `sync` (or when `buf` passes its bound); `sync` issues one
//!   `fdatasync` on the tail, the only file with unsynced bytes;
//! - the tail file is preallocated: zeros are written (and synced) past the
//!   records, `preallocate_bytes` at a time, before any record lands there,
//!   so a sync of records rewrites allocated blocks and commits no new file
//!   size. Past `written` the tail file holds only zeros, up to `file_len`;
//!   closed segments are trimmed to their records when the tail rolls, and
//!   recovery trims the tail's zeros (and any torn write) the same way;
//! - a truncation of bytes already in a file is made durable at once
//!   (`ftruncate` + `fdatasync`, later segments deleted newest first), so
//!   new records never land on top of stale ones a crash could resurrect.
//!   The entries dropped conflict with a leader's log, hence were never
//!   committed (Raft §5.3, Log Matching), so making the drop durable early
//!   is safe;
//! - entries at or below `base` are not readable; segments wholly at or
//!   below it are deleted by `compact` (oldest first) except the tail;
//! - discarding the whole log deletes segments newest first, so a crash
//!   midway leaves a prefix of the old log, which recovery discards again
//!   by the same rule (see [`Log::open`]);
//! - every segment deletion is made durable (directory `fsync`) before the
//!   next one, so the order above holds on disk whatever order a file
//!   system would otherwise persist unlinks in.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use xraft::{Entry, LogIndex, SnapshotMeta, Term};

use crate::codec::{
    decode_record, encode_record, encode_segment_header, scan_segment, Decoded, ScanOutcome,
    TailState, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{random_u64, sync_dir};

/// Where one entry sits in its segment.
#[derive(Clone, Copy, Debug)]
struct Slot {
    offset: u64,
    term: Term,
}

/// One segment's in-memory index.
#[derive(Debug)]
struct Segment {
    first: LogIndex,
    salt: u32,
    slots: Vec<Slot>,
    /// Logical length: header plus every record, written or buffered.
    len: u64,
}

impl Segment {
    /// One past the last index in this segment.
    fn next(&self) -> LogIndex {
        LogIndex(self.first.0 + self.slots.len() as u64)
    }

    fn slot(&self, index: LogIndex) -> Option<Slot> {
        let i = index.0.checked_sub(self.first.0)?;
        self.slots.get(usize::try_from(i).ok()?).copied()
    }
}

/// The bounds the log needs from `Options`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogBounds {
    pub segment_bytes_max: u64,
    pub record_bytes_max: u32,
    pub write_buffer_bytes_max: usize,
    pub preallocate_bytes: u64,
}

/// The log of one data directory.
#[derive(Debug)]
pub(crate) struct Log {
    dir: PathBuf,
    bounds: LogBounds,
    /// Entries at or below `base` are compacted or covered by a snapshot.
    base: LogIndex,
    /// Oldest first; the last one is the tail.
    segments: Vec<Segment>,
    /// The tail's file (`Some` iff `segments` is not empty).
    tail_file: Option<File>,
    /// Bytes of the tail actually written to its file.
    written: u64,
    /// Length of the tail file: zeros from `written` to here.
    file_len: u64,
    /// Whether the tail file has written bytes not yet synced.
    unsynced: bool,
    /// Encoded records of the tail not yet written (they start at `written`).
    buf: Vec<u8>,
}

impl Log {
    /// Opens the log in `dir`, reconciled with the newest durable snapshot,
    /// and returns it with the entries after the snapshot.
    ///
    /// Recovery rules, in order: a torn tail of the last segment is cut off
    /// (durably); a bad header or record anywhere else is `Corrupt`, a
    /// segment that does not continue the previous one is `LogGap`. Then,
    /// with `S` the snapshot (index 0, term 0 if none): a log starting at
    /// `S.index + 1` is kept; a log starting at or below `S.index` is kept
    /// only if it holds `S.index` with `S.term`, and otherwise discarded
    /// whole (an install whose log discard was interrupted); a log starting
    /// above `S.index + 1` is `LogGap`.
    pub fn open(
        dir: &Path,
        bounds: LogBounds,
        snapshot: Option<&SnapshotMeta>,
    ) -> Result<(Self, Vec<Entry>)> {
        let (base, base_term) =
            snapshot.map_or((LogIndex::ZERO, Term::ZERO), |s| (s.index, s.term));
        let mut log = Log {
            dir: dir.to_path_buf(),
            bounds,
            base,
            segments: Vec::new(),
            tail_file: None,
            written: 0,
            file_len: 0,
            unsynced: false,
            buf: Vec::new(),
        };
        let files = list_segments(dir)?;
        let mut entries = Vec::new();
        for (i, (name_first, path)) in files.iter().enumerate() {
            let last = i + 1 == files.len();
            let bytes = fs::read(path).at(path)?;
            let scan = scan_segment(&bytes, bounds.record_bytes_max).map_err(|e| {
                Error::Corrupt { path: path.clone(), offset: e.offset, reason: e.reason }
            })?;
            let seg = match scan {
                ScanOutcome::HeaderTorn if last => {
                    fs::remove_file(path).at(path)?;
                    sync_dir(dir)?;
                    continue;
                }
                ScanOutcome::HeaderTorn => {
                    let reason = "torn header in a segment that is not the last";
                    return Err(Error::Corrupt { path: path.clone(), offset: 0, reason });
                }
                ScanOutcome::Segment(s) => s,
            };
            if seg.first != *name_first {
                let reason = "segment header index differs from its file name";
                return Err(Error::Corrupt { path: path.clone(), offset: 8, reason });
            }
            if let TailState::Torn { offset } = seg.tail {
                if !last {
                    let reason = "incomplete record in a segment that is not the last";
                    return Err(Error::Corrupt { path: path.clone(), offset, reason });
                }
                let f = OpenOptions::new().write(true).open(path).at(path)?;
                f.set_len(offset).at(path)?;
                f.sync_data().at(path)?;
            }
            if let Some(prev) = log.segments.last() {
                if seg.first != prev.next() {
                    let (expected, found) = (prev.next(), seg.first);
                    return Err(Error::LogGap { path: path.clone(), expected, found });
                }
            }
            let data = Bytes::from(bytes);
            let mut slots = Vec::with_capacity(seg.records.len());
            for r in &seg.records {
                slots.push(Slot { offset: r.offset, term: r.term });
                if r.index > base {
                    // Each entry gets its own buffer: a state machine may
                    // keep slices of an entry (zero-copy decode), which must
                    // not pin the whole segment.
                    let data = Bytes::copy_from_slice(&data[r.data.clone()]);
                    entries.push(Entry { index: r.index, term: r.term, kind: r.kind, data });
                }
            }
            log.segments.push(Segment {
                first: seg.first,
                salt: seg.salt,
                slots,
                len: seg.valid_len,
            });
        }
        if let Some(first) = log.segments.first().map(|s| s.first) {
            if first > base.next() || (snapshot.is_none() && first != LogIndex(1)) {
                let path = dir.join(segment_name(first));
                return Err(Error::LogGap { path, expected: base.next(), found: first });
            }
            if first <= base && log.term_at(base) != Some(base_term) {
                log.discard_all()?;
                entries.clear();
            }
        }
        if let Some(tail) = log.segments.last() {
            let path = dir.join(segment_name(tail.first));
            let file = OpenOptions::new().read(true).write(true).open(&path).at(&path)?;
            log.written = tail.len;
            log.file_len = tail.len;
            log.tail_file = Some(file);
        }
        Ok((log, entries))
    }

    /// First readable index.
    pub fn first_index(&self) -> LogIndex {
        self.base.next()
    }

    /// Last index (the compaction point if no entry is above it).
    pub fn last_index(&self) -> LogIndex {
        self.next_index().prev()
    }

    /// The compaction point: entries at or below it are not readable.
    pub fn base(&self) -> LogIndex {
        self.base
    }

    fn next_index(&self) -> LogIndex {
        self.segments.last().map_or(self.base.next(), Segment::next).max(self.base.next())
    }

    /// Term of a stored entry, readable or not; `None` if not stored.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.segments.iter().rev().find(|s| s.first <= index)?.slot(index).map(|s| s.term)
    }

    /// Encodes `entries` (consecutive, validated by the caller except for
    /// position) after discarding any stored entry at or after `entries[0]`.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first().map(|e| e.index) else { return Ok(()) };
        if first <= self.base {
            return Err(Error::AppendBelowBase { index: first, base: self.base });
        }
        let next = self.next_index();
        if first > next {
            return Err(Error::AppendGap { index: first, last: next.prev() });
        }
        if first < next {
            self.truncate_from(first)?;
        }
        for entry in entries {
            let roll = match self.segments.last() {
                None => true,
                Some(t) => t.len >= self.bounds.segment_bytes_max && !t.slots.is_empty(),
            };
            if roll {
                self.roll(entry.index)?;
            }
            let Some(tail) = self.segments.last_mut() else {
                unreachable!("roll leaves a tail segment");
            };
            let before = self.buf.len();
            encode_record(&mut self.buf, tail.salt, entry);
            tail.slots.push(Slot { offset: tail.len, term: entry.term });
            tail.len += (self.buf.len() - before) as u64;
            if self.buf.len() >= self.bounds.write_buffer_bytes_max {
                self.flush_buf()?;
            }
        }
        Ok(())
    }

    /// Writes buffered records and syncs the tail: one write, one `fdatasync`.
    pub fn sync(&mut self) -> Result<()> {
        self.flush_buf()?;
        if self.unsynced {
            if let Some(f) = &self.tail_file {
                f.sync_data().at_path(|| self.tail_path())?;
            }
            self.unsynced = false;
        }
        Ok(())
    }

    /// Moves the compaction point to `through` (checked by the caller) and
    /// deletes every non-tail segment wholly at or below it, oldest first.
    pub fn compact(&mut self, through: LogIndex) -> Result<()> {
        if through <= self.base {
            return Ok(());
        }
        self.base = through;
        let keep_from = self.segments.len().saturating_sub(1);
        let n =
            self.segments[..keep_from].iter().take_while(|s| s.next() <= through.next()).count();
        // Each deletion is made durable before the next, so a crash leaves a
        // suffix of the segments whatever order the file system would
        // otherwise persist unlinks in (a gap would not open).
        for seg in &self.segments[..n] {
            let path = self.dir.join(segment_name(seg.first));
            fs::remove_file(&path).at(&path)?;
            sync_dir(&self.dir)?;
        }
        self.segments.drain(..n);
        Ok(())
    }

    /// Applies a durable snapshot: if the log holds `meta.index` with
    /// `meta.term` it is compacted through it, otherwise discarded whole.
    pub fn install(&mut self, meta: &SnapshotMeta) -> Result<()> {
        if self.term_at(meta.index) == Some(meta.term) {
            return self.compact(meta.index);
        }
        self.restart_after(meta.index)
    }

    /// Discards every stored entry; the log goes on after `index` (a
    /// durable snapshot's, which covers everything up to it).
    pub fn restart_after(&mut self, index: LogIndex) -> Result<()> {
        self.discard_all()?;
        self.base = self.base.max(index);
        Ok(())
    }

    /// Reads entries `lo..hi` (readable, checked by the caller), verifying
    /// checksums. Writes out buffered records first (without a sync).
    pub fn read(&mut self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>> {
        self.flush_buf()?;
        let mut out = Vec::with_capacity((hi.0 - lo.0) as usize);
        let mut index = lo;
        while index < hi {
            let Some(seg) = self.segments.iter().rev().find(|s| s.first <= index) else { break };
            let seg_hi = hi.min(seg.next());
            let (Some(start), end) =
                (seg.slot(index), seg.slot(seg_hi).map_or(seg.len, |s| s.offset))
            else {
                break;
            };
            let path = self.dir.join(segment_name(seg.first));
            let mut bytes = vec![0u8; (end - start.offset) as usize];
            let f = File::open(&path).at(&path)?;
            f.read_exact_at(&mut bytes, start.offset).at(&path)?;
            let bytes = Bytes::from(bytes);
            let mut pos = 0;
            while index < seg_hi {
                let corrupt =
                    |offset, reason| Error::Corrupt { path: path.clone(), offset, reason };
                // The range ends with a record's (non-zero) end mark.
                let written = bytes.len();
                let max = self.bounds.record_bytes_max;
                match decode_record(&bytes, written, pos, seg.salt, max) {
                    Ok(Decoded::Record(r, next)) if r.index == index => {
                        // Its own buffer, as at recovery (see `open`).
                        let data = Bytes::copy_from_slice(&bytes[r.data]);
                        out.push(Entry { index, term: r.term, kind: r.kind, data });
                        pos = next;
                    }
                    Ok(_) => {
                        return Err(corrupt(start.offset + pos as u64, "record changed on disk"))
                    }
                    Err(e) => return Err(corrupt(start.offset + e.offset, e.reason)),
                }
                index = index.next();
            }
        }
        Ok(out)
    }

    /// Drops stored entries at and after `index` (which is stored).
    fn truncate_from(&mut self, index: LogIndex) -> Result<()> {
        let Some(k) = self.segments.iter().rposition(|s| s.first <= index) else {
            unreachable!("append checked that `index` is above base and stored");
        };
        if k + 1 < self.segments.len() {
            // Into an older segment: delete the newer ones, newest first.
            self.buf.clear();
            self.tail_file = None;
            // Newest first, each durable before the next: a crash leaves a
            // prefix of the segments (see `compact`).
            for seg in self.segments[k + 1..].iter().rev() {
                let path = self.dir.join(segment_name(seg.first));
                fs::remove_file(&path).at(&path)?;
                sync_dir(&self.dir)?;
            }
            self.segments.truncate(k + 1);
            let path = self.tail_path();
            let file = OpenOptions::new().read(true).write(true).open(&path).at(&path)?;
            self.tail_file = Some(file);
            self.written = self.segments[k].len;
            self.file_len = self.segments[k].len;
            self.unsynced = false;
        }
        let tail = &mut self.segments[k];
        let Some(slot) = tail.slot(index) else {
            unreachable!("append checked that `index` is stored");
        };
        tail.slots.truncate((index.0 - tail.first.0) as usize);
        tail.len = slot.offset;
        if slot.offset >= self.written {
            self.buf.truncate((slot.offset - self.written) as usize);
            return Ok(());
        }
        self.buf.clear();
        let path = self.tail_path();
        if let Some(f) = &self.tail_file {
            f.set_len(slot.offset).at(&path)?;
            f.sync_data().at(&path)?;
        }
        self.written = slot.offset;
        self.file_len = slot.offset;
        self.unsynced = false;
        Ok(())
    }

    /// Closes the tail (written, trimmed to its records and synced) and
    /// starts a segment at `first`.
    fn roll(&mut self, first: LogIndex) -> Result<()> {
        self.sync()?;
        if self.file_len > self.written {
            let path = self.tail_path();
            if let Some(f) = &self.tail_file {
                f.set_len(self.written).at(&path)?;
                f.sync_data().at(&path)?;
            }
            self.file_len = self.written;
        }
        let path = self.dir.join(segment_name(first));
        let salt = random_u64() as u32;
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(&path).at(&path)?;
        file.write_all_at(&encode_segment_header(first, salt), 0).at(&path)?;
        file.sync_data().at(&path)?;
        sync_dir(&self.dir)?;
        let len = SEGMENT_HEADER_LEN as u64;
        self.segments.push(Segment { first, salt, slots: Vec::new(), len });
        self.tail_file = Some(file);
        self.written = len;
        self.file_len = len;
        self.unsynced = false;
        Ok(())
    }

    /// Deletes every segment, newest first, and syncs the directory.
    fn discard_all(&mut self) -> Result<()> {
        self.buf.clear();
        self.tail_file = None;
        self.file_len = 0;
        self.unsynced = false;
        for seg in self.segments.iter().rev() {
            let path = self.dir.join(segment_name(seg.first));
            fs::remove_file(&path).at(&path)?;
            sync_dir(&self.dir)?;
        }
        self.segments.clear();
        Ok(())
    }

    /// Writes the buffered records to the tail file in one positioned write,
    /// preallocating first if they would not fit in the zeros.
    fn flush_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let end = self.written + self.buf.len() as u64;
        if end > self.file_len {
            self.extend_tail(end)?;
        }
        let Some(f) = &self.tail_file else {
            unreachable!("records are only buffered for an open tail");
        };
        f.write_all_at(&self.buf, self.written).at_path(|| self.tail_path())?;
        self.written = end;
        // Past the zeros if preallocation was skipped: the write grew the file.
        self.file_len = self.file_len.max(end);
        self.buf.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Preallocates ahead of need: if less than half of `preallocate_bytes`
    /// of zeros is left past the buffered records, writes (and syncs) more.
    /// Meant for idle moments, so that a sync of records rarely has to.
    pub fn preallocate(&mut self) -> Result<()> {
        let used = self.written + self.buf.len() as u64;
        if self.file_len >= used + self.bounds.preallocate_bytes / 2 {
            return Ok(());
        }
        self.extend_tail(used)
    }

    /// Preallocates the tail past `need` bytes: zeros from its end to
    /// `need` plus `preallocate_bytes` (never past the segment's size, which
    /// a tail about to close could not use), written and synced before any
    /// record is written there, so a crash cannot leave unwritten blocks
    /// (whose content the file system need not define) under a record.
    /// It does nothing with preallocation off (or no tail), near the
    /// segment's end, or when writing the zeros fails (a full disk):
    /// nothing synced is at risk then, and the record write grows the file
    /// itself. A failed sync is an error (it covers earlier writes too).
    fn extend_tail(&mut self, need: u64) -> Result<()> {
        let step = self.bounds.preallocate_bytes;
        let Some(f) = &self.tail_file else { return Ok(()) };
        let from = need.max(self.file_len);
        let target = from.saturating_add(step).min(need.max(self.bounds.segment_bytes_max));
        if step == 0 || target <= from {
            return Ok(());
        }
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut at = self.file_len;
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            if f.write_all_at(&ZEROS[..n], at).is_err() {
                // Some zeros may have landed and grown the file: take its
                // real length, so that `roll` still trims a closing segment
                // to its records (a closed segment ending in zeros would
                // not open).
                let len = f.metadata().map_or(self.file_len, |m| m.len());
                self.file_len = self.file_len.max(len);
                return Ok(());
            }
            at += n as u64;
        }
        f.sync_data().at_path(|| self.tail_path())?;
        self.file_len = target;
        Ok(())
    }

    fn tail_path(&self) -> PathBuf {
        self.segments
            .last()
            .map_or_else(|| self.dir.clone(), |s| self.dir.join(segment_name(s.first)))
    }
}

/// Bytes each log record takes on disk besides its payload (the record
/// header and the end mark).
pub const RECORD_OVERHEAD_BYTES: usize = RECORD_HEADER_LEN + 1;

/// File name of the segment whose first index is `first`.
pub(crate) fn segment_name(first: LogIndex) -> String {
    format!("seg-{:020}.log", first.0)
}

/// Whether `name` is a segment file name.
pub(crate) fn is_segment_name(name: &str) -> bool {
    parse_segment_name(name).is_some()
}

fn parse_segment_name(name: &str) -> Option<LogIndex> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    (digits.len() == 20).then(|| digits.parse().ok().map(LogIndex)).flatten()
}

/// Segment files in `dir`, in index order.
fn list_segments(dir: &Path) -> Result<Vec<(LogIndex, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push((first, entry.path()));
        }
    }
    out.sort_by_key(|(first, _)| *first);
    Ok(out)
}
