//! Snapshot files: atomic creation through a writer, chunked reads, and
//! recovery of the newest durable snapshot.
//!
//! Owns `snap-<index>-<term>.snap` files and their `*.tmp` precursors. A file
//! is a header (magic, metadata length, header CRC32C, postcard-encoded
//! [`SnapshotMeta`]), the application's bytes, and a trailer (data length,
//! data CRC32C, trailer CRC32C). Chunk offsets count application bytes only.
//!
//! Invariants:
//! - a `.snap` file exists only after its bytes were synced under a `.tmp`
//!   name and renamed; the rename is made durable by a directory sync before
//!   the snapshot counts as durable (becomes [`SnapshotShared::latest`]);
//! - older snapshots are deleted only after the newer one is durable, and a
//!   snapshot is accepted only if it is newer (higher index) than the latest;
//! - on open, `.tmp` files are leftovers of interrupted writes and are
//!   removed; the newest `.snap` must verify completely, older ones are
//!   removed (a crash may have left them behind).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use xraft::{LogIndex, SnapshotMeta, Term};

use crate::codec::{le_u32, le_u64};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::sync_dir;

const MAGIC: [u8; 8] = *b"XRSNAP\0\x01";
const HEADER_FIXED_LEN: u64 = 16;
const TRAILER_LEN: u64 = 16;
const WRITE_BUFFER_BYTES: usize = 256 << 10;

/// State shared by the storage and every snapshot writer: where snapshots
/// live and which one is the newest durable.
#[derive(Debug)]
pub(crate) struct SnapshotShared {
    dir: PathBuf,
    latest: Mutex<Option<SnapshotMeta>>,
    next_tmp: AtomicU64,
    meta_bytes_max: u32,
}

impl SnapshotShared {
    /// Recovers the newest durable snapshot in `dir`, removing older ones.
    pub fn recover(dir: &Path, meta_bytes_max: u32) -> Result<Arc<Self>> {
        let mut found = list_snapshots(dir)?;
        found.sort_by_key(|(index, term, _)| (*index, *term));
        let latest = match found.pop() {
            None => None,
            Some((index, term, path)) => {
                let mut reader = SnapshotReader::open(&path, meta_bytes_max)?;
                reader.verify()?;
                if reader.meta.index != index || reader.meta.term != term {
                    let reason = "snapshot metadata differs from its file name";
                    return Err(Error::Corrupt { path, offset: 0, reason });
                }
                Some(reader.meta)
            }
        };
        for (_, _, path) in &found {
            fs::remove_file(path).at(path)?;
        }
        if !found.is_empty() {
            sync_dir(dir)?;
        }
        let shared = SnapshotShared {
            dir: dir.to_path_buf(),
            latest: Mutex::new(latest),
            next_tmp: AtomicU64::new(0),
            meta_bytes_max,
        };
        Ok(Arc::new(shared))
    }

    /// The newest durable snapshot's metadata.
    pub fn latest(&self) -> Option<SnapshotMeta> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The newest durable snapshot's index and term, (0, 0) if none: no
    /// membership copied, for the write path.
    pub fn latest_point(&self) -> (LogIndex, Term) {
        let g = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        g.as_ref().map_or((LogIndex::ZERO, Term::ZERO), |m| (m.index, m.term))
    }

    /// A reader over the newest durable snapshot, verified end to end. A
    /// newer snapshot may replace (and delete) the file between looking up
    /// the newest and opening it: then the lookup is made again.
    pub fn reader(&self) -> Result<Option<SnapshotReader>> {
        let mut attempts = 0;
        loop {
            let Some(meta) = self.latest() else { return Ok(None) };
            let path = self.dir.join(file_name(meta.index, meta.term));
            let mut reader = match SnapshotReader::open(&path, self.meta_bytes_max) {
                Err(Error::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound
                        && attempts < 3
                        && self.latest() != Some(meta) =>
                {
                    attempts += 1;
                    continue;
                }
                r => r?,
            };
            reader.verify()?;
            return Ok(Some(reader));
        }
    }
}

/// A cloneable, thread-safe way to read the newest durable snapshot without
/// the [`Storage`](crate::Storage) (which one thread owns): opening a
/// reader reads and checksums the whole snapshot, which should not hold up
/// the thread that syncs the log.
#[derive(Clone, Debug)]
pub struct SnapshotSource {
    pub(crate) shared: Arc<SnapshotShared>,
}

impl SnapshotSource {
    /// The newest durable snapshot's metadata.
    pub fn latest(&self) -> Option<SnapshotMeta> {
        self.shared.latest()
    }

    /// A reader over the newest durable snapshot, verified end to end
    /// (reads the whole file: call it off latency-sensitive threads).
    pub fn reader(&self) -> Result<Option<SnapshotReader>> {
        self.shared.reader()
    }
}

/// Writes one snapshot: application bytes through [`Write`] (a local
/// snapshot) or [`SnapshotWriter::write_chunk`] (chunks from a leader), then
/// [`SnapshotWriter::finish`] makes it durable. Dropping an unfinished
/// writer removes its temporary file. `Send`, so it can run on another
/// thread than the storage.
#[derive(Debug)]
pub struct SnapshotWriter {
    shared: Arc<SnapshotShared>,
    meta: SnapshotMeta,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    data_len: u64,
    crc: u32,
}

impl SnapshotWriter {
    /// Starts a temporary file for `meta`.
    pub(crate) fn create(shared: Arc<SnapshotShared>, meta: SnapshotMeta) -> Result<Self> {
        let n = shared.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = shared.dir.join(format!("snap-{:020}-{:020}.{n}.tmp", meta.index.0, meta.term.0));
        let encoded = postcard::to_allocvec(&meta)
            .map_err(|_| Error::InvalidOptions("snapshot metadata could not be encoded"))?;
        if encoded.len() > shared.meta_bytes_max as usize {
            return Err(Error::InvalidOptions("snapshot metadata exceeds snapshot_meta_bytes_max"));
        }
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp).at(&tmp)?;
        let mut file = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
        let mut header = Vec::with_capacity(HEADER_FIXED_LEN as usize + encoded.len());
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header), &encoded);
        header.extend_from_slice(&crc.to_le_bytes());
        header.extend_from_slice(&encoded);
        let mut writer = SnapshotWriter { shared, meta, tmp, file: None, data_len: 0, crc: 0 };
        // `writer` now owns `tmp`: its Drop removes the file if this fails.
        file.write_all(&header).at(&writer.tmp)?;
        writer.file = Some(file);
        Ok(writer)
    }

    /// The metadata this snapshot is for.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Application bytes received so far: the offset the next chunk must start at.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Writes a chunk received at `offset`. A chunk that repeats bytes
    /// already received (a retransmission) is accepted and only its new
    /// part, if any, is written; a chunk that starts past the end is refused.
    pub fn write_chunk(&mut self, offset: u64, chunk: &[u8]) -> Result<()> {
        if offset > self.data_len {
            return Err(Error::ChunkOutOfOrder { offset, expected: self.data_len });
        }
        let skip = (self.data_len - offset).min(chunk.len() as u64) as usize;
        self.append(&chunk[skip..]).at(&self.tmp)
    }

    /// Syncs the file, renames it into place and syncs the directory; then
    /// removes older snapshots. Returns the metadata, now the latest durable
    /// snapshot. Fails with `Error::StaleSnapshot` if a snapshot at the same
    /// or a higher index became durable meanwhile.
    pub fn finish(mut self) -> Result<SnapshotMeta> {
        let result = self.finish_inner();
        if result.is_err() {
            // Best effort: the temporary file is garbage either way, and open removes it.
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }

    fn finish_inner(&mut self) -> Result<SnapshotMeta> {
        let tmp = self.tmp.clone();
        let Some(mut file) = self.file.take() else {
            return Err(Error::Poisoned);
        };
        let mut trailer = [0u8; TRAILER_LEN as usize];
        trailer[0..8].copy_from_slice(&self.data_len.to_le_bytes());
        trailer[8..12].copy_from_slice(&self.crc.to_le_bytes());
        let tcrc = crc32c::crc32c(&trailer[0..12]);
        trailer[12..16].copy_from_slice(&tcrc.to_le_bytes());
        file.write_all(&trailer).at(&tmp)?;
        let file = file.into_inner().map_err(|e| e.into_error()).at(&tmp)?;
        file.sync_all().at(&tmp)?;
        drop(file);

        let shared = Arc::clone(&self.shared);
        let mut latest = shared.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = latest.as_ref() {
            if self.meta.index <= l.index {
                return Err(Error::StaleSnapshot { index: self.meta.index, latest: l.index });
            }
        }
        let name = file_name(self.meta.index, self.meta.term);
        let path = shared.dir.join(&name);
        fs::rename(&tmp, &path).at(&path)?;
        sync_dir(&shared.dir)?;
        *latest = Some(self.meta.clone());
        // The new snapshot is durable: older ones may go now.
        let mut removed = false;
        for (_, _, old) in list_snapshots(&shared.dir)? {
            if old != path {
                fs::remove_file(&old).at(&old)?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&shared.dir)?;
        }
        Ok(self.meta.clone())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("snapshot writer already finished"));
        };
        file.write_all(bytes)?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.data_len += bytes.len() as u64;
        Ok(())
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Best effort: an unfinished snapshot is garbage; open removes leftovers.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a durable snapshot: its metadata, and its application bytes by
/// offset (for sending chunks to a follower) or sequentially through
/// [`Read`] (for restoring a state machine).
#[derive(Debug)]
pub struct SnapshotReader {
    path: PathBuf,
    file: File,
    meta: SnapshotMeta,
    data_offset: u64,
    data_len: u64,
    data_crc: u32,
    pos: u64,
}

impl SnapshotReader {
    /// Opens and checks the header and trailer (not the data; see `verify`).
    pub(crate) fn open(path: &Path, meta_bytes_max: u32) -> Result<Self> {
        let corrupt = |offset, reason| Error::Corrupt { path: path.to_path_buf(), offset, reason };
        let file = File::open(path).at(path)?;
        let file_len = file.metadata().at(path)?.len();
        if file_len < HEADER_FIXED_LEN + TRAILER_LEN {
            return Err(corrupt(0, "snapshot file too short"));
        }
        let mut fixed = [0u8; HEADER_FIXED_LEN as usize];
        file.read_exact_at(&mut fixed, 0).at(path)?;
        if fixed[0..8] != MAGIC {
            return Err(corrupt(0, "not a snapshot file"));
        }
        let meta_len = le_u32(&fixed[8..12]);
        if meta_len > meta_bytes_max
            || HEADER_FIXED_LEN + u64::from(meta_len) + TRAILER_LEN > file_len
        {
            return Err(corrupt(8, "snapshot metadata length out of bounds"));
        }
        let mut encoded = vec![0u8; meta_len as usize];
        file.read_exact_at(&mut encoded, HEADER_FIXED_LEN).at(path)?;
        if crc32c::crc32c_append(crc32c::crc32c(&fixed[0..12]), &encoded) != le_u32(&fixed[12..16])
        {
            return Err(corrupt(0, "snapshot header checksum mismatch"));
        }
        let meta: SnapshotMeta = postcard::from_bytes(&encoded)
            .map_err(|_| corrupt(HEADER_FIXED_LEN, "snapshot metadata does not decode"))?;
        let mut trailer = [0u8; TRAILER_LEN as usize];
        let trailer_at = file_len - TRAILER_LEN;
        file.read_exact_at(&mut trailer, trailer_at).at(path)?;
        if crc32c::crc32c(&trailer[0..12]) != le_u32(&trailer[12..16]) {
            return Err(corrupt(trailer_at, "snapshot trailer checksum mismatch"));
        }
        let data_offset = HEADER_FIXED_LEN + u64::from(meta_len);
        let data_len = le_u64(&trailer[0..8]);
        if data_offset.checked_add(data_len) != Some(trailer_at) {
            return Err(corrupt(trailer_at, "snapshot data length differs from the file size"));
        }
        let data_crc = le_u32(&trailer[8..12]);
        Ok(SnapshotReader {
            path: path.to_path_buf(),
            file,
            meta,
            data_offset,
            data_len,
            data_crc,
            pos: 0,
        })
    }

    /// Reads all application bytes and checks their CRC32C.
    pub(crate) fn verify(&mut self) -> Result<()> {
        let mut buf = vec![0u8; WRITE_BUFFER_BYTES];
        let mut crc = 0;
        let mut offset = 0;
        while offset < self.data_len {
            let n = self.read_chunk_into(offset, &mut buf)?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            offset += n as u64;
        }
        if crc != self.data_crc {
            let offset = self.data_offset;
            let reason = "snapshot data checksum mismatch";
            return Err(Error::Corrupt { path: self.path.clone(), offset, reason });
        }
        Ok(())
    }

    /// The snapshot's metadata.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Number of application bytes.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Reads up to `max_len` application bytes starting at `offset`; empty
    /// at or past the end. Allocates at most `min(max_len, remaining)`.
    pub fn read_chunk(&self, offset: u64, max_len: usize) -> Result<Vec<u8>> {
        let remaining = self.data_len.saturating_sub(offset);
        let n = remaining.min(max_len as u64) as usize;
        let mut buf = vec![0u8; n];
        let got = self.read_chunk_into(offset, &mut buf)?;
        buf.truncate(got);
        Ok(buf)
    }

    /// Fills as much of `buf` as the snapshot has from `offset`; returns the
    /// number of bytes read (0 at or past the end).
    pub fn read_chunk_into(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let remaining = self.data_len.saturating_sub(offset);
        let n = remaining.min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        // `offset < data_len` here, and `data_offset + data_len` is the
        // trailer's offset (checked at open): no overflow.
        self.file.read_exact_at(&mut buf[..n], self.data_offset + offset).at(&self.path)?;
        Ok(n)
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_chunk_into(self.pos, buf).map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// File name of the snapshot at `index`/`term`.
fn file_name(index: LogIndex, term: Term) -> String {
    format!("snap-{:020}-{:020}.snap", index.0, term.0)
}

/// Every `.snap` file in `dir` with the index and term from its name.
fn list_snapshots(dir: &Path) -> Result<Vec<(LogIndex, Term, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("snap-").and_then(|r| r.strip_suffix(".snap")) else {
            continue;
        };
        let mut parts = rest.split('-');
        let (Some(i), Some(t), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let (Ok(i), Ok(t)) = (i.parse(), t.parse()) {
            out.push((LogIndex(i), Term(t), entry.path()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use xraft::{Membership, NodeId};

    use super::*;

    fn meta(i: u64, t: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(i),
            term: Term(t),
            membership: Membership::with_voters([NodeId(1), NodeId(2)]),
        }
    }

    #[test]
    fn write_finish_read_back_in_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = SnapshotShared::recover(dir.path(), 1 << 20).expect("recover");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut w = SnapshotWriter::create(Arc::clone(&shared), meta(10, 2)).expect("create");
        for (k, chunk) in data.chunks(999).enumerate() {
            w.write_chunk(k as u64 * 999, chunk).expect("chunk");
            // A retransmission of the same chunk is harmless.
            w.write_chunk(k as u64 * 999, chunk).expect("dup");
        }
        assert!(matches!(w.write_chunk(20_000, b"x"), Err(Error::ChunkOutOfOrder { .. })));
        assert_eq!(w.finish().expect("finish"), meta(10, 2));
        let r = shared.reader().expect("reader").expect("some");
        assert_eq!(r.meta(), &meta(10, 2));
        let mut back = Vec::new();
        let mut off = 0;
        loop {
            let c = r.read_chunk(off, 1000).expect("chunk");
            if c.is_empty() {
                break;
            }
            off += c.len() as u64;
            back.extend_from_slice(&c);
        }
        assert_eq!(back, data);
    }

    #[test]
    fn newer_replaces_older_and_stale_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = SnapshotShared::recover(dir.path(), 1 << 20).expect("recover");
        let mut w = SnapshotWriter::create(Arc::clone(&shared), meta(10, 2)).expect("create");
        w.write_all(b"old").expect("write");
        w.finish().expect("finish");
        let stale = SnapshotWriter::create(Arc::clone(&shared), meta(10, 2)).expect("create");
        let mut w = SnapshotWriter::create(Arc::clone(&shared), meta(20, 3)).expect("create");
        w.write_all(b"new").expect("write");
        w.finish().expect("finish");
        assert!(matches!(stale.finish(), Err(Error::StaleSnapshot { .. })));
        let names: Vec<_> =
            fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let again = SnapshotShared::recover(dir.path(), 1 << 20).expect("recover");
        assert_eq!(again.latest(), Some(meta(20, 3)));
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = SnapshotShared::recover(dir.path(), 1 << 20).expect("recover");
        let mut w = SnapshotWriter::create(Arc::clone(&shared), meta(10, 2)).expect("create");
        w.write_all(b"abc").expect("write");
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[test]
    fn every_bit_flip_is_detected_on_recover() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = SnapshotShared::recover(dir.path(), 1 << 20).expect("recover");
        let mut w = SnapshotWriter::create(Arc::clone(&shared), meta(10, 2)).expect("create");
        w.write_all(b"some state bytes").expect("write");
        w.finish().expect("finish");
        let path = dir.path().join(file_name(LogIndex(10), Term(2)));
        let good = fs::read(&path).expect("read");
        for bit in 0..good.len() * 8 {
            let mut b = good.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            fs::write(&path, &b).expect("write");
            assert!(SnapshotShared::recover(dir.path(), 1 << 20).is_err(), "flip {bit}");
        }
    }
}
