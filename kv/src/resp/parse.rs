//! Request parsing: one command's arguments from the front of a buffer.
//!
//! Invariants: the parser never allocates in proportion to an announced
//! length (it records argument positions, one per argument actually present);
//! each count and length is checked against [`RespLimits`] as soon as it is
//! read; `Ok(None)` means only "the buffer ends inside the request"; a
//! returned frame's `consumed` is in `1..=buf.len()` and its argument ranges
//! lie inside `..consumed`.
//!
//! Cost: bulk bodies are skipped by length, not scanned. The stateless
//! [`parse_frame`] and [`split_command`] re-scan a request that arrives in
//! pieces from its start on each call, at O(arguments seen) per call, so a
//! client trickling a million-argument array would cost a server quadratic
//! time; servers use [`RequestParser`], which remembers how far it got in an
//! incomplete array, or how far it looked for an incomplete inline
//! request's end of line, and resumes there.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::{RespError, RespLimits};

/// One command's arguments, sharing the read buffer's memory.
pub type Args = SmallVec<[Bytes; 4]>;

/// A complete request found at the front of a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedFrame {
    /// Where each argument lies in the buffer. Empty for a request that
    /// carries no command (a blank inline line, `*0`, `*-1`), which a server
    /// skips silently as Redis does.
    pub args: SmallVec<[Range<usize>; 4]>,
    /// Bytes the request occupies at the front of the buffer.
    pub consumed: usize,
}

/// A count or length line is at most this long (sign, 19 digits, CRLF and
/// some slack), as in Redis.
const COUNT_LINE_BYTES_MAX: usize = 32;

/// Parses the request at the front of `buf`. See the module doc.
pub fn parse_frame(buf: &[u8], limits: &RespLimits) -> Result<Option<ParsedFrame>, RespError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits, &mut None),
        Some(_) => parse_inline(buf, limits, &mut 0),
    }
}

/// How far an incomplete array request was parsed.
#[derive(Debug)]
struct Partial {
    /// Arguments the request announced.
    count: usize,
    /// Where the next argument starts.
    pos: usize,
    /// The arguments complete so far.
    args: SmallVec<[Range<usize>; 4]>,
}

/// A parser for one connection's requests that resumes an incomplete array
/// request where it stopped, so a request arriving in many pieces costs
/// O(its size) overall (see the module doc).
///
/// Invariant: between a call that returned `Ok(None)` and the next, the
/// caller only appends to the buffer (never consumes from or rewrites its
/// front); after an error the connection is closed, not parsed further.
#[derive(Debug, Default)]
pub struct RequestParser {
    partial: Option<Partial>,
    /// Bytes of an incomplete inline request already searched for `\n`.
    inline_scanned: usize,
}

impl RequestParser {
    /// A parser with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`split_command`], resuming an incomplete array request.
    pub fn split(
        &mut self,
        buf: &mut BytesMut,
        limits: &RespLimits,
    ) -> Result<Option<Args>, RespError> {
        loop {
            let frame = match (&self.partial, buf.first()) {
                (Some(_), _) | (None, Some(b'*')) => {
                    parse_multibulk(buf, limits, &mut self.partial)?
                }
                (None, None) => None,
                (None, Some(_)) => parse_inline(buf, limits, &mut self.inline_scanned)?,
            };
            let Some(frame) = frame else { return Ok(None) };
            self.inline_scanned = 0;
            let bytes = buf.split_to(frame.consumed).freeze();
            if !frame.args.is_empty() {
                return Ok(Some(frame.args.into_iter().map(|r| bytes.slice(r)).collect()));
            }
        }
    }
}

/// Takes the next command's arguments off the front of `buf`, skipping empty
/// requests; the arguments share `buf`'s memory (no copy). `Ok(None)` leaves
/// an incomplete request in `buf` for more bytes to complete.
pub fn split_command(buf: &mut BytesMut, limits: &RespLimits) -> Result<Option<Args>, RespError> {
    loop {
        let Some(frame) = parse_frame(buf, limits)? else { return Ok(None) };
        let bytes = buf.split_to(frame.consumed).freeze();
        if !frame.args.is_empty() {
            return Ok(Some(frame.args.into_iter().map(|r| bytes.slice(r)).collect()));
        }
    }
}

/// Appends `args` as a request: an array of bulk strings (what clients send).
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut impl BufMut) {
    put_prefixed(out, b'*', args.len() as i64);
    for arg in args {
        let arg = arg.as_ref();
        put_prefixed(out, b'$', arg.len() as i64);
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

/// Writes `<tag><n>\r\n`.
pub(super) fn put_prefixed(out: &mut impl BufMut, tag: u8, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.put_u8(tag);
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&digits[at..]);
    out.put_slice(b"\r\n");
}

/// Finds the CRLF-terminated line starting at `from`, looking at most
/// `max` bytes ahead: `Ok(Some((line, next)))`, `Ok(None)` if the buffer ends
/// first, `Err(())` if no CRLF is within `max` bytes.
pub(super) fn line(buf: &[u8], from: usize, max: usize) -> Result<Option<(&[u8], usize)>, ()> {
    let window = &buf[from..buf.len().min(from.saturating_add(max))];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(at) => Ok(Some((&window[..at], from + at + 2))),
        None if buf.len() - from >= max => Err(()),
        None => Ok(None),
    }
}

/// Parses a decimal integer the way Redis's `string2ll` does: optional `-`,
/// no `+`, no leading zeros, no spaces, within i64.
pub(super) fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        // Accumulate towards the sign so i64::MIN parses too.
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if neg { v.checked_sub(d)? } else { v.checked_add(d)? };
    }
    Some(v)
}

/// An array request, resumed from `*partial` if set; leaves its progress in
/// `*partial` when the buffer ends inside it.
fn parse_multibulk(
    buf: &[u8],
    limits: &RespLimits,
    partial: &mut Option<Partial>,
) -> Result<Option<ParsedFrame>, RespError> {
    let mut p = match partial.take() {
        Some(p) => p,
        None => {
            let Some((count, pos)) =
                line(buf, 1, COUNT_LINE_BYTES_MAX).map_err(|()| RespError::TooBigCountString)?
            else {
                return Ok(None);
            };
            let count = parse_int(count).ok_or(RespError::InvalidMultibulkLength)?;
            if count <= 0 {
                return Ok(Some(ParsedFrame { args: SmallVec::new(), consumed: pos }));
            }
            if count as u64 > limits.array_len_max as u64 {
                return Err(RespError::InvalidMultibulkLength);
            }
            Partial { count: count as usize, pos, args: SmallVec::new() }
        }
    };
    while p.args.len() < p.count {
        let pos = p.pos;
        let Some(&tag) = buf.get(pos) else {
            *partial = Some(p);
            return Ok(None);
        };
        if tag != b'$' {
            return Err(RespError::ExpectedBulk(char::from(tag)));
        }
        let Some((len, start)) =
            line(buf, pos + 1, COUNT_LINE_BYTES_MAX).map_err(|()| RespError::TooBigCountString)?
        else {
            *partial = Some(p);
            return Ok(None);
        };
        let len = parse_int(len)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= limits.bulk_bytes_max)
            .ok_or(RespError::InvalidBulkLength)?;
        let end = start + len + 2;
        if end > limits.frame_bytes_max {
            return Err(RespError::FrameTooLarge { len: end, max: limits.frame_bytes_max });
        }
        if buf.len() < end {
            *partial = Some(p);
            return Ok(None);
        }
        if &buf[end - 2..end] != b"\r\n" {
            return Err(RespError::MissingCrlf);
        }
        p.args.push(start..start + len);
        p.pos = end;
    }
    Ok(Some(ParsedFrame { args: p.args, consumed: p.pos }))
}

/// An inline command: one line, arguments separated by spaces or tabs.
/// Unlike Redis, quotes and escapes are not interpreted (inline commands are
/// for typing at a terminal; every client library sends arrays).
///
/// `scanned` bytes at the front are known to hold no `\n` (from an earlier
/// call on the same incomplete request); the search resumes after them and
/// updates it when the line is still incomplete.
fn parse_inline(
    buf: &[u8],
    limits: &RespLimits,
    scanned: &mut usize,
) -> Result<Option<ParsedFrame>, RespError> {
    let window = &buf[..buf.len().min(limits.inline_bytes_max)];
    let from = (*scanned).min(window.len());
    let Some(nl) = window[from..].iter().position(|&b| b == b'\n').map(|i| from + i) else {
        *scanned = window.len();
        return if buf.len() >= limits.inline_bytes_max {
            Err(RespError::TooBigInline)
        } else {
            Ok(None)
        };
    };
    let end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    let mut args = SmallVec::new();
    let mut i = 0;
    while i < end {
        if buf[i] == b' ' || buf[i] == b'\t' {
            i += 1;
            continue;
        }
        let start = i;
        while i < end && buf[i] != b' ' && buf[i] != b'\t' {
            i += 1;
        }
        args.push(start..i);
    }
    Ok(Some(ParsedFrame { args, consumed: nl + 1 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed<'a> = Option<(Vec<&'a [u8]>, usize)>;

    fn parse(buf: &[u8]) -> Result<Parsed<'_>, RespError> {
        Ok(parse_frame(buf, &RespLimits::default())?
            .map(|f| (f.args.iter().map(|r| &buf[r.clone()]).collect(), f.consumed)))
    }

    #[test]
    fn multibulk_and_inline() {
        let req = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n";
        assert_eq!(parse(req), Ok(Some((vec![&b"SET"[..], b"k", b""], req.len()))));
        assert_eq!(parse(b"GET  k\r\nrest"), Ok(Some((vec![&b"GET"[..], b"k"], 8))));
        assert_eq!(parse(b"PING\n"), Ok(Some((vec![&b"PING"[..]], 5))));
        assert_eq!(parse(b"\r\n"), Ok(Some((vec![], 2))));
        assert_eq!(parse(b"*0\r\n"), Ok(Some((vec![], 4))));
        assert_eq!(parse(b"*-1\r\n"), Ok(Some((vec![], 5))));
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let req = b"*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n";
        for n in 0..req.len() {
            assert_eq!(parse(&req[..n]), Ok(None), "prefix of {n} bytes");
        }
        assert!(matches!(parse(req), Ok(Some(_))));
        assert_eq!(parse(b"GET k"), Ok(None));
    }

    #[test]
    fn malformed_requests() {
        let e = |b: &[u8]| parse(b).expect_err("malformed");
        assert_eq!(e(b"*x\r\n"), RespError::InvalidMultibulkLength);
        assert_eq!(e(b"*01\r\n"), RespError::InvalidMultibulkLength);
        assert_eq!(e(b"*2000000\r\n"), RespError::InvalidMultibulkLength);
        assert_eq!(e(b"*99999999999999999999\r\n"), RespError::InvalidMultibulkLength);
        assert_eq!(e(b"*1\r\n:1\r\n"), RespError::ExpectedBulk(':'));
        assert_eq!(e(b"*1\r\n$-1\r\n"), RespError::InvalidBulkLength);
        assert_eq!(e(b"*1\r\n$999999999\r\n"), RespError::InvalidBulkLength);
        assert_eq!(e(b"*1\r\n$1\r\nabc"), RespError::MissingCrlf);
        assert_eq!(e(&[b'*'; 40]), RespError::TooBigCountString);
        assert_eq!(e(&vec![b'a'; 70_000]), RespError::TooBigInline);
        let big = RespLimits { frame_bytes_max: 100, ..RespLimits::default() };
        assert_eq!(
            parse_frame(b"*1\r\n$200\r\n", &big),
            Err(RespError::FrameTooLarge { len: 212, max: 100 })
        );
    }

    #[test]
    fn pipelined_split_shares_the_buffer() {
        let mut buf = BytesMut::new();
        encode_command(&["SET", "a", "1"], &mut buf);
        buf.extend_from_slice(b"\r\nGET a\r\n*1\r\n$4\r\nPI");
        let limits = RespLimits::default();
        let first = split_command(&mut buf, &limits).expect("ok").expect("complete");
        assert_eq!(first.as_slice(), ["SET", "a", "1"].map(Bytes::from));
        let second = split_command(&mut buf, &limits).expect("ok").expect("complete");
        assert_eq!(second.as_slice(), ["GET", "a"].map(Bytes::from));
        assert_eq!(split_command(&mut buf, &limits), Ok(None));
        buf.extend_from_slice(b"NG\r\n");
        let third = split_command(&mut buf, &limits).expect("ok").expect("complete");
        assert_eq!(third.as_slice(), [Bytes::from_static(b"PING")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn request_parser_resumes_and_matches_the_stateless_split() {
        let limits = RespLimits::default();
        let mut wire = BytesMut::new();
        encode_command(&["SET", "k", "v"], &mut wire);
        wire.extend_from_slice(b"PING\r\n*0\r\n");
        let many: Vec<String> = (0..300).map(|i| format!("key{i}")).collect();
        encode_command(&many, &mut wire);
        encode_command(&["GET", ""], &mut wire);
        let mut whole = wire.clone();
        let mut expected = Vec::new();
        while let Some(args) = split_command(&mut whole, &limits).expect("valid") {
            expected.push(args);
        }
        assert_eq!(expected.len(), 4);
        for chunk in [1, 2, 3, 7, 64, 1000] {
            let (mut parser, mut buf, mut got) =
                (RequestParser::new(), BytesMut::new(), Vec::new());
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(args) = parser.split(&mut buf, &limits).expect("valid") {
                    got.push(args);
                }
            }
            assert_eq!(got, expected, "chunk {chunk}");
            assert!(buf.is_empty() && parser.partial.is_none() && parser.inline_scanned == 0);
        }
    }

    #[test]
    fn request_parser_keeps_the_arguments_already_parsed() {
        let limits = RespLimits::default();
        let mut wire = BytesMut::new();
        encode_command(&["MGET", "a", "b", "c"], &mut wire);
        let mut parser = RequestParser::new();
        // Up to the middle of the last argument's length line.
        let mut buf = BytesMut::from(&wire[..wire.len() - 5]);
        assert_eq!(parser.split(&mut buf, &limits), Ok(None));
        assert_eq!(parser.partial.as_ref().map(|p| p.args.len()), Some(3));
        // Bytes already parsed are not looked at again: resuming finds the
        // arguments where the first pass left them.
        buf.extend_from_slice(&wire[wire.len() - 5..]);
        let args = parser.split(&mut buf, &limits).expect("ok").expect("complete");
        assert_eq!(args.as_slice(), ["MGET", "a", "b", "c"].map(Bytes::from));
        assert!(parser.partial.is_none());
    }

    /// An inline request trickled in one byte at a time is searched for its
    /// end of line once overall, not once per byte from its start.
    #[test]
    fn request_parser_resumes_an_incomplete_inline_line() {
        let limits = RespLimits::default();
        let line = format!("SET k {}\r\n", "v".repeat(1000));
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::new();
        for (i, b) in line.as_bytes().iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let r = parser.split(&mut buf, &limits).expect("valid");
            if i + 1 < line.len() {
                assert_eq!(r, None);
                assert_eq!(parser.inline_scanned, i + 1, "only the new byte is searched");
            } else {
                let args = r.expect("complete");
                assert_eq!(args.len(), 3);
                assert_eq!(args[2].len(), 1000);
            }
        }
        assert_eq!(parser.inline_scanned, 0);
        assert!(buf.is_empty());
        // Over the inline bound, still an error.
        let mut buf = BytesMut::from(&vec![b'a'; limits.inline_bytes_max][..]);
        assert_eq!(RequestParser::new().split(&mut buf, &limits), Err(RespError::TooBigInline));
    }

    #[test]
    fn int_parsing_matches_string2ll() {
        for (s, v) in [("0", Some(0)), ("-5", Some(-5)), ("007", None), ("-0", None), ("+1", None)]
        {
            assert_eq!(parse_int(s.as_bytes()), v, "{s}");
        }
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"9223372036854775808"), None);
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int(b"-9223372036854775809"), None);
        assert_eq!(parse_int(b""), None);
    }
}
