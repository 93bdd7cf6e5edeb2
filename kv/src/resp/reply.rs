//! Replies: encoding what a server answers, and parsing it back (for
//! clients, tests and benchmarks).
//!
//! Invariants: an encoded reply is always well formed — simple strings and
//! errors have CR and LF replaced by spaces, so no text can inject protocol;
//! the parser applies the same bounds as request parsing plus a nesting
//! bound, and never allocates in proportion to an announced length.

use bytes::{BufMut, Bytes};

use super::parse::{line, parse_int, put_prefixed};
use super::{RespError, RespLimits};
use crate::command::KvResponse;

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+text`: a status such as `OK` or `PONG`.
    Simple(String),
    /// `-text`: an error; by convention the text starts with a code such as
    /// `ERR`.
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$len` and the bytes.
    Bulk(Bytes),
    /// `$-1`: no value.
    Null,
    /// `*len` and the elements.
    Array(Vec<Reply>),
    /// `*-1`: no array.
    NullArray,
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_owned())
    }

    /// A bulk string from anything byte-like.
    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    /// Appends the encoding of this reply to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        match self {
            Reply::Simple(s) => put_line(out, b'+', s),
            Reply::Error(s) => put_line(out, b'-', s),
            Reply::Integer(n) => put_prefixed(out, b':', *n),
            Reply::Bulk(b) => {
                put_prefixed(out, b'$', b.len() as i64);
                out.put_slice(b);
                out.put_slice(b"\r\n");
            }
            Reply::Null => out.put_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                put_prefixed(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(out);
                }
            }
            Reply::NullArray => out.put_slice(b"*-1\r\n"),
        }
    }

    /// Encodes all of `self` but an array's elements, which it returns for
    /// the caller to encode one at a time: a server streams a large array
    /// (an MGET of many keys) out in bounded pieces this way.
    pub fn encode_head(&self, out: &mut impl BufMut) -> &[Reply] {
        match self {
            Reply::Array(items) => {
                put_prefixed(out, b'*', items.len() as i64);
                items
            }
            other => {
                other.encode(out);
                &[]
            }
        }
    }

    /// The encoding in a fresh buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// How a store response is answered on the wire: `+OK`, a bulk string or
/// null, an array of those, an integer, or `-ERR …`.
impl From<KvResponse> for Reply {
    fn from(response: KvResponse) -> Reply {
        match response {
            KvResponse::Ok => Reply::ok(),
            KvResponse::Value(v) => v.map_or(Reply::Null, Reply::Bulk),
            KvResponse::Values(vs) => {
                Reply::Array(vs.into_iter().map(|v| v.map_or(Reply::Null, Reply::Bulk)).collect())
            }
            KvResponse::Count(n) => Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
            KvResponse::SessionOpened { client } => {
                Reply::Integer(i64::try_from(client).unwrap_or(i64::MAX))
            }
            KvResponse::Error(e) => Reply::Error(format!("ERR {e}")),
        }
    }
}

/// Parses the reply at the front of `buf`: `Ok(Some((reply, consumed)))`,
/// `Ok(None)` if incomplete, or an error if malformed.
pub fn parse_reply(buf: &[u8], limits: &RespLimits) -> Result<Option<(Reply, usize)>, RespError> {
    parse_at(buf, 0, limits, 0)
}

fn parse_at(
    buf: &[u8],
    pos: usize,
    limits: &RespLimits,
    depth: usize,
) -> Result<Option<(Reply, usize)>, RespError> {
    let Some(&tag) = buf.get(pos) else { return Ok(None) };
    let count_line = |from| {
        line(buf, from, 32)
            .map_err(|()| RespError::TooBigCountString)
            .map(|l| l.map(|(s, n)| (parse_int(s), n)))
    };
    match tag {
        b'+' | b'-' => {
            let Some((text, next)) = line(buf, pos + 1, limits.inline_bytes_max)
                .map_err(|()| RespError::TooBigInline)?
            else {
                return Ok(None);
            };
            if text.iter().any(|&b| b == b'\r' || b == b'\n') {
                return Err(RespError::BadStatusLine);
            }
            let text = String::from_utf8_lossy(text).into_owned();
            let reply = if tag == b'+' { Reply::Simple(text) } else { Reply::Error(text) };
            Ok(Some((reply, next)))
        }
        b':' => match count_line(pos + 1)? {
            None => Ok(None),
            Some((n, next)) => {
                Ok(Some((Reply::Integer(n.ok_or(RespError::InvalidInteger)?), next)))
            }
        },
        b'$' => {
            let Some((len, start)) = count_line(pos + 1)? else { return Ok(None) };
            let len = len.ok_or(RespError::InvalidBulkLength)?;
            if len == -1 {
                return Ok(Some((Reply::Null, start)));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&n| n <= limits.bulk_bytes_max)
                .ok_or(RespError::InvalidBulkLength)?;
            let end = start + len + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(RespError::MissingCrlf);
            }
            Ok(Some((Reply::Bulk(Bytes::copy_from_slice(&buf[start..start + len])), end)))
        }
        b'*' => {
            let Some((count, mut next)) = count_line(pos + 1)? else { return Ok(None) };
            let count = count.ok_or(RespError::InvalidMultibulkLength)?;
            if count == -1 {
                return Ok(Some((Reply::NullArray, next)));
            }
            let count = usize::try_from(count)
                .ok()
                .filter(|&n| n <= limits.array_len_max)
                .ok_or(RespError::InvalidMultibulkLength)?;
            if depth >= limits.reply_depth_max {
                return Err(RespError::TooDeep(limits.reply_depth_max));
            }
            let mut items = Vec::new();
            for _ in 0..count {
                let Some((item, after)) = parse_at(buf, next, limits, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                next = after;
            }
            Ok(Some((Reply::Array(items), next)))
        }
        other => Err(RespError::UnknownReplyType(char::from(other))),
    }
}

fn put_line(out: &mut impl BufMut, tag: u8, text: &str) {
    out.put_u8(tag);
    for &b in text.as_bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(reply: Reply) {
        let enc = reply.to_vec();
        let limits = RespLimits::default();
        assert_eq!(parse_reply(&enc, &limits), Ok(Some((reply.clone(), enc.len()))));
        for n in 0..enc.len() {
            assert_eq!(parse_reply(&enc[..n], &limits), Ok(None), "{reply:?} prefix {n}");
        }
    }

    #[test]
    fn encodings_are_redis_bytes() {
        assert_eq!(Reply::ok().to_vec(), b"+OK\r\n");
        assert_eq!(Reply::Error("ERR x".into()).to_vec(), b"-ERR x\r\n");
        assert_eq!(Reply::Integer(-12).to_vec(), b":-12\r\n");
        assert_eq!(Reply::bulk("ab").to_vec(), b"$2\r\nab\r\n");
        assert_eq!(Reply::Null.to_vec(), b"$-1\r\n");
        assert_eq!(Reply::NullArray.to_vec(), b"*-1\r\n");
        assert_eq!(
            Reply::Array(vec![Reply::Integer(1), Reply::Null]).to_vec(),
            b"*2\r\n:1\r\n$-1\r\n"
        );
        assert_eq!(Reply::Error("ERR a\r\nb".into()).to_vec(), b"-ERR a  b\r\n");
    }

    #[test]
    fn replies_round_trip() {
        round_trip(Reply::ok());
        round_trip(Reply::Error("ERR wrong".into()));
        round_trip(Reply::Integer(i64::MIN));
        round_trip(Reply::bulk(Bytes::from_static(b"a\r\nb")));
        round_trip(Reply::Null);
        round_trip(Reply::NullArray);
        round_trip(Reply::Array(vec![
            Reply::Array(vec![]),
            Reply::bulk("x"),
            Reply::Array(vec![Reply::Null, Reply::Integer(3)]),
        ]));
    }

    #[test]
    fn malformed_and_deep_replies() {
        let limits = RespLimits { reply_depth_max: 2, ..RespLimits::default() };
        assert_eq!(parse_reply(b"*1\r\n*1\r\n*1\r\n:1\r\n", &limits), Err(RespError::TooDeep(2)));
        assert_eq!(parse_reply(b"?\r\n", &limits), Err(RespError::UnknownReplyType('?')));
        assert_eq!(parse_reply(b":x\r\n", &limits), Err(RespError::InvalidInteger));
        assert_eq!(parse_reply(b"$-2\r\n", &limits), Err(RespError::InvalidBulkLength));
    }

    #[test]
    fn store_responses_map_to_replies() {
        assert_eq!(Reply::from(KvResponse::Value(None)), Reply::Null);
        assert_eq!(Reply::from(KvResponse::Count(2)), Reply::Integer(2));
        assert_eq!(
            Reply::from(KvResponse::Values(vec![Some(Bytes::from_static(b"v")), None])),
            Reply::Array(vec![Reply::bulk("v"), Reply::Null])
        );
    }
}
