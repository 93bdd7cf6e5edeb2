//! Byte layout of log segments, and the pure scanner that recovery and the
//! fuzz target share.
//!
//! Owns the segment header and record encodings and [`scan_segment`], which
//! reads a whole segment from a byte slice without I/O. Invariants:
//! - every record is `RECORD_HEADER_LEN` bytes of header, its payload, and
//!   one end mark byte ([`RECORD_END_MARK`], never zero); the header carries
//!   the payload length, kind, index and term, a CRC32C of the payload and a
//!   CRC32C of the header itself; both checksums are seeded with the
//!   segment's random salt, so bytes copied from another segment (or an
//!   entry payload that embeds a record) never validate here;
//! - indexes inside a segment are consecutive from the header's first index;
//! - a length is checked against its bound before any slice is taken;
//! - segment files may end in zeros (space preallocated by the writer and
//!   not yet used). Let `z` be the offset just past the last non-zero byte.
//!   The scanner calls a bad record a *torn tail* only when it cannot be a
//!   completed write because its last byte, the non-zero end mark, is not
//!   before `z`: a header that fails its checksum with fewer than
//!   `RECORD_HEADER_LEN + 1` bytes before `z`, or a valid header whose
//!   record would end at or past `z`. This covers a write cut short by the
//!   end of the file and one whose last pages never reached preallocated
//!   space. Any other bad record (a checksum mismatch with the end mark
//!   written, a bad end mark, a bad field under a valid checksum, a record
//!   out of sequence) is corruption, reported with its offset. A flipped bit
//!   is never mistaken for a torn write: it cannot zero the end mark (four
//!   bits set) nor move `z` below a complete record.

use std::ops::Range;

use xraft::{Entry, EntryKind, LogIndex, Term};

/// First bytes of every segment file; the last byte is the format version
/// (2: records end with [`RECORD_END_MARK`]; version 1 had no end mark and
/// is not read).
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"XRSEG\0\0\x02";
/// The last byte of every record: non-zero, so a record whose end never
/// reached preallocated (zero) space is told apart from a complete one.
pub(crate) const RECORD_END_MARK: u8 = 0xA5;
/// Size of the segment header.
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;
/// Size of a record header (the payload follows).
pub(crate) const RECORD_HEADER_LEN: usize = 32;

/// Encodes a segment header: magic, first index, salt, reserved zeros, CRC32C.
pub(crate) fn encode_segment_header(first: LogIndex, salt: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..16].copy_from_slice(&first.0.to_le_bytes());
    h[16..20].copy_from_slice(&salt.to_le_bytes());
    // 20..28 reserved, zero.
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends the record for `entry` to `buf`: no allocation beyond `buf`'s growth.
#[inline]
pub(crate) fn encode_record(buf: &mut Vec<u8>, salt: u32, entry: &Entry) {
    encode_record_parts(buf, salt, entry.index, entry.term, entry.kind, &entry.data);
}

/// Appends one record built from its parts to `buf`.
///
/// Layout (little endian): payload length u32, kind u8, 3 reserved zero
/// bytes, index u64, term u64, payload CRC32C u32, header CRC32C u32 (over
/// the 28 bytes before it), then the payload, then [`RECORD_END_MARK`].
pub(crate) fn encode_record_parts(
    buf: &mut Vec<u8>,
    salt: u32,
    index: LogIndex,
    term: Term,
    kind: EntryKind,
    data: &[u8],
) {
    let mut h = [0u8; RECORD_HEADER_LEN];
    // The caller bounds the payload by `record_bytes_max` (at most 1 GiB).
    h[0..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
    h[4] = kind as u8;
    h[8..16].copy_from_slice(&index.0.to_le_bytes());
    h[16..24].copy_from_slice(&term.0.to_le_bytes());
    h[24..28].copy_from_slice(&crc32c::crc32c_append(salt, data).to_le_bytes());
    let header_crc = crc32c::crc32c_append(salt, &h[0..28]);
    h[28..32].copy_from_slice(&header_crc.to_le_bytes());
    buf.reserve(RECORD_HEADER_LEN + data.len() + 1);
    buf.extend_from_slice(&h);
    buf.extend_from_slice(data);
    buf.push(RECORD_END_MARK);
}

/// Where one valid record sits in the scanned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordRef {
    /// Offset of the record header.
    pub offset: u64,
    /// The entry's index.
    pub index: LogIndex,
    /// The entry's term.
    pub term: Term,
    /// The entry's kind.
    pub kind: EntryKind,
    /// The payload's byte range.
    pub data: Range<usize>,
}

/// How a scanned segment ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TailState {
    /// The last record ends exactly at the end of the bytes.
    Clean,
    /// Bytes from `offset` to the end are an unfinished write.
    Torn {
        /// Where the unfinished record starts (= the valid length).
        offset: u64,
    },
}

/// A segment whose header is valid.
#[derive(Clone, Debug)]
pub(crate) struct ScannedSegment {
    /// Index of the first record (from the header).
    pub first: LogIndex,
    /// The checksum salt (from the header).
    pub salt: u32,
    /// Every valid record, in order.
    pub records: Vec<RecordRef>,
    /// Bytes covered by the header and the valid records.
    pub valid_len: u64,
    /// How the bytes end.
    pub tail: TailState,
}

/// The outcome of scanning a segment's bytes.
#[derive(Clone, Debug)]
pub(crate) enum ScanOutcome {
    /// The file is no longer than a header and the header is not valid: the
    /// creation of the segment was interrupted (headers are made durable
    /// before any record is written).
    HeaderTorn,
    /// The header is valid; records as found.
    Segment(ScannedSegment),
}

/// Damage found by the scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScanError {
    /// Offset of the bad header or record.
    pub offset: u64,
    /// What was wrong.
    pub reason: &'static str,
}

/// Scans a whole segment. `record_bytes_max` bounds payload lengths.
pub(crate) fn scan_segment(bytes: &[u8], record_bytes_max: u32) -> Result<ScanOutcome, ScanError> {
    let Some((first, salt)) = decode_segment_header(bytes) else {
        if bytes.len() <= SEGMENT_HEADER_LEN {
            return Ok(ScanOutcome::HeaderTorn);
        }
        return Err(ScanError { offset: 0, reason: "bad segment header" });
    };
    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut expected = first;
    let written = written_len(bytes);
    let tail = loop {
        if pos == bytes.len() {
            break TailState::Clean;
        }
        match decode_record(bytes, written, pos, salt, record_bytes_max)? {
            Decoded::Record(rec, end) => {
                if rec.index != expected {
                    return Err(ScanError { offset: pos as u64, reason: "record out of sequence" });
                }
                records.push(rec);
                expected = expected.next();
                pos = end;
            }
            Decoded::Torn => break TailState::Torn { offset: pos as u64 },
        }
    };
    Ok(ScanOutcome::Segment(ScannedSegment { first, salt, records, valid_len: pos as u64, tail }))
}

/// Result of decoding the record that starts at some offset.
#[derive(Clone, Debug)]
pub(crate) enum Decoded {
    /// A valid record and the offset just past it.
    Record(RecordRef, usize),
    /// An unfinished write (see the module doc for the rule).
    Torn,
}

/// Bytes before the trailing zeros of `bytes`: one past its last non-zero
/// byte (0 if all are zero).
pub(crate) fn written_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

/// Decodes the record at `pos` in `bytes`, whose bytes from `written` on are
/// all zero (see [`written_len`]).
pub(crate) fn decode_record(
    bytes: &[u8],
    written: usize,
    pos: usize,
    salt: u32,
    record_bytes_max: u32,
) -> Result<Decoded, ScanError> {
    let rest = &bytes[pos.min(bytes.len())..];
    let err = |reason| ScanError { offset: pos as u64, reason };
    // A complete record's end mark is non-zero, so it ends before `written`.
    let cut_short = |end_mark: usize| end_mark >= written;
    let Some(h) = rest.get(..RECORD_HEADER_LEN) else {
        return Ok(Decoded::Torn);
    };
    if crc32c::crc32c_append(salt, &h[0..28]) != le_u32(&h[28..32]) {
        if cut_short(pos + RECORD_HEADER_LEN) {
            return Ok(Decoded::Torn);
        }
        return Err(err("record header checksum mismatch"));
    }
    let len = le_u32(&h[0..4]);
    let kind = match h[4] {
        0 => EntryKind::Normal,
        1 => EntryKind::Noop,
        2 => EntryKind::Config,
        _ => return Err(err("unknown entry kind")),
    };
    if h[5..8] != [0, 0, 0] {
        return Err(err("reserved record bytes are not zero"));
    }
    if len > record_bytes_max {
        return Err(err("record longer than record_bytes_max"));
    }
    let start = pos + RECORD_HEADER_LEN;
    let end = start + len as usize;
    if cut_short(end) {
        return Ok(Decoded::Torn);
    }
    // `end < written <= bytes.len()`: both slices are in range.
    let data = &bytes[start..end];
    if bytes[end] != RECORD_END_MARK {
        return Err(err("bad record end mark"));
    }
    if crc32c::crc32c_append(salt, data) != le_u32(&h[24..28]) {
        return Err(err("record payload checksum mismatch"));
    }
    let rec = RecordRef {
        offset: pos as u64,
        index: LogIndex(le_u64(&h[8..16])),
        term: Term(le_u64(&h[16..24])),
        kind,
        data: start..end,
    };
    Ok(Decoded::Record(rec, end + 1))
}

/// The first index and salt of a valid segment header, or `None`.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> Option<(LogIndex, u32)> {
    let h = bytes.get(..SEGMENT_HEADER_LEN)?;
    let valid = h[0..8] == SEGMENT_MAGIC
        && h[20..28] == [0; 8]
        && crc32c::crc32c(&h[0..28]) == le_u32(&h[28..32]);
    valid.then(|| (LogIndex(le_u64(&h[8..16])), le_u32(&h[16..20])))
}

/// Reads a little-endian u32 from a 4-byte slice.
pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Reads a little-endian u64 from an 8-byte slice.
pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The body of the `storage_segment` fuzz target: scans arbitrary bytes as a
/// segment and checks the scanner's promises. Never panics unless one is
/// broken: the scan returns an error at an in-range offset, or a header-torn
/// verdict only for short input, or records whose re-encoding reproduces the
/// valid prefix byte for byte, with a torn tail only past that prefix.
pub fn fuzz_check(data: &[u8]) {
    const RECORD_BYTES_MAX: u32 = 1 << 20;
    match scan_segment(data, RECORD_BYTES_MAX) {
        Err(e) => assert!(e.offset < data.len() as u64, "error offset out of range"),
        Ok(ScanOutcome::HeaderTorn) => assert!(data.len() <= SEGMENT_HEADER_LEN),
        Ok(ScanOutcome::Segment(s)) => {
            let mut again = encode_segment_header(s.first, s.salt).to_vec();
            for (i, r) in s.records.iter().enumerate() {
                assert_eq!(r.index.0, s.first.0 + i as u64, "indexes not consecutive");
                encode_record_parts(
                    &mut again,
                    s.salt,
                    r.index,
                    r.term,
                    r.kind,
                    &data[r.data.clone()],
                );
            }
            assert_eq!(again.len() as u64, s.valid_len, "valid length differs");
            assert_eq!(&again[..], &data[..again.len()], "re-encoding differs");
            match s.tail {
                TailState::Clean => assert_eq!(s.valid_len, data.len() as u64),
                TailState::Torn { offset } => {
                    assert_eq!(offset, s.valid_len);
                    assert!(offset < data.len() as u64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entry(i: u64, t: u64, data: &'static [u8]) -> Entry {
        Entry {
            index: LogIndex(i),
            term: Term(t),
            kind: EntryKind::Normal,
            data: Bytes::from_static(data),
        }
    }

    fn segment(n: u64) -> Vec<u8> {
        let mut buf = encode_segment_header(LogIndex(5), 0xdead_beef).to_vec();
        for i in 0..n {
            encode_record(&mut buf, 0xdead_beef, &entry(5 + i, 2, b"hello world"));
        }
        buf
    }

    fn scanned(bytes: &[u8]) -> ScannedSegment {
        match scan_segment(bytes, 1 << 20) {
            Ok(ScanOutcome::Segment(s)) => s,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = segment(3);
        let s = scanned(&bytes);
        assert_eq!(s.first, LogIndex(5));
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.tail, TailState::Clean);
        assert_eq!(&bytes[s.records[2].data.clone()], b"hello world");
        fuzz_check(&bytes);
    }

    #[test]
    fn every_cut_is_torn_never_corrupt() {
        let bytes = segment(3);
        let one = RECORD_HEADER_LEN + 11 + 1;
        for cut in SEGMENT_HEADER_LEN + 1..bytes.len() {
            let s = scanned(&bytes[..cut]);
            let whole = (cut - SEGMENT_HEADER_LEN) / one;
            assert_eq!(s.records.len(), whole, "cut {cut}");
            let torn = !(cut - SEGMENT_HEADER_LEN).is_multiple_of(one);
            assert_eq!(matches!(s.tail, TailState::Torn { .. }), torn, "cut {cut}");
            fuzz_check(&bytes[..cut]);
        }
        for cut in 0..=SEGMENT_HEADER_LEN - 1 {
            assert!(matches!(scan_segment(&bytes[..cut], 1 << 20), Ok(ScanOutcome::HeaderTorn)));
        }
    }

    /// A write into preallocated space that stopped anywhere (the rest of
    /// the file still zeros) is a torn tail, never corruption.
    #[test]
    fn every_cut_into_preallocated_zeros_is_torn_never_corrupt() {
        let bytes = segment(3);
        let one = RECORD_HEADER_LEN + 11 + 1;
        for cut in SEGMENT_HEADER_LEN + 1..=bytes.len() {
            let mut b = bytes[..cut].to_vec();
            b.resize(bytes.len() + 4096, 0);
            let s = scanned(&b);
            assert_eq!(s.records.len(), (cut - SEGMENT_HEADER_LEN) / one, "cut {cut}");
            assert!(matches!(s.tail, TailState::Torn { .. }), "cut {cut}");
            fuzz_check(&b);
        }
    }

    /// A record whose end mark was written but whose payload has a hole of
    /// zeros (pages persisted out of order) is not provably torn: corruption.
    #[test]
    fn zeroed_payload_with_end_mark_written_is_corruption() {
        let mut bytes = segment(2);
        let second = SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 12;
        bytes[second + RECORD_HEADER_LEN..second + RECORD_HEADER_LEN + 11].fill(0);
        bytes.resize(bytes.len() + 4096, 0);
        let e = scan_segment(&bytes, 1 << 20).expect_err("corruption");
        assert_eq!(e.offset, second as u64);
    }

    #[test]
    fn zero_tail_is_torn() {
        let mut bytes = segment(2);
        bytes.extend_from_slice(&[0u8; 100]);
        let s = scanned(&bytes);
        assert_eq!(s.records.len(), 2);
        assert!(matches!(s.tail, TailState::Torn { .. }));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        // With preallocated zeros after the records too: a flipped bit in the
        // last record is never taken for a write that did not finish.
        let mut bytes = segment(3);
        let records_end = bytes.len();
        bytes.resize(records_end + 64, 0);
        for byte in 0..records_end {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[byte] ^= 1 << bit;
                let r = scan_segment(&b, 1 << 20);
                assert!(r.is_err(), "flip at {byte}.{bit} not detected: {r:?}");
            }
        }
    }

    #[test]
    fn bad_record_followed_by_good_is_corruption_at_its_offset() {
        let mut bytes = segment(3);
        let second = SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 12;
        bytes[second + RECORD_HEADER_LEN + 2] ^= 0x40;
        let e = scan_segment(&bytes, 1 << 20).expect_err("corruption");
        assert_eq!(e.offset, second as u64);
    }

    #[test]
    fn over_long_record_is_refused_before_slicing() {
        let bytes = segment(1);
        assert!(scan_segment(&bytes, 4).is_err());
    }
}
