//! The KV store's replicated commands and their typed responses.
//!
//! Owns the log payload format: a [`KvRequest`] (an optional client session
//! tag plus one [`KvCommand`]) encoded with postcard, and the [`KvResponse`]
//! that applying it returns. Invariants: encoding is deterministic (postcard of
//! plain data, no maps); decoding never panics and never trusts a length
//! beyond the bytes it was given (postcard preallocates cautiously, and every
//! element it builds is backed by input bytes), so a hostile or corrupt entry
//! costs at most its own size.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One operation on the store.
///
/// Writes (`Set`, `Delete`) change state and notify watchers. Reads (`Get`,
/// `Exists`, `MGet`) may also be sent through the log to get a linearizable
/// answer without ReadIndex; the usual read path is ReadIndex followed by the
/// store's direct read methods ([`crate::KvStore::get`] and friends).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// Sets `key` to `value`. Responds [`KvResponse::Ok`].
    Set {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Deletes each key that exists. Responds [`KvResponse::Count`] with the
    /// number of keys deleted (a key named twice counts once).
    Delete {
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// Reads one key. Responds [`KvResponse::Value`].
    Get {
        /// The key.
        key: Bytes,
    },
    /// Counts how many of `keys` exist, a key named twice counting twice (as
    /// Redis `EXISTS` does). Responds [`KvResponse::Count`].
    Exists {
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// Reads several keys. Responds [`KvResponse::Values`], one per key, in order.
    MGet {
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// Opens a client session for at-most-once writes. Responds
    /// [`KvResponse::SessionOpened`] with the new session's id (the log index
    /// of this command, so unique and the same on every replica).
    OpenSession,
}

impl KvCommand {
    /// Whether the command changes state (and so is deduplicated by sessions).
    pub fn is_write(&self) -> bool {
        matches!(self, KvCommand::Set { .. } | KvCommand::Delete { .. })
    }
}

/// Identifies a write for at-most-once execution (Raft dissertation §6.3).
///
/// A client opens a session ([`KvCommand::OpenSession`]), then numbers its
/// writes 1, 2, 3, … and keeps at most one write outstanding per session,
/// retrying it with the same number until it has an answer. The store applies
/// each number once: a retry of the last applied write gets the remembered
/// response instead of being executed again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTag {
    /// The session id returned by [`KvCommand::OpenSession`].
    pub client: u64,
    /// The write's sequence number within the session, starting at 1.
    pub seq: u64,
}

/// A log payload: a command and, optionally, the session tag that makes a
/// write at-most-once. Reads ignore the tag (re-executing a read is harmless).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRequest {
    /// The session tag, if the client uses sessions.
    pub session: Option<SessionTag>,
    /// The operation.
    pub command: KvCommand,
}

impl KvRequest {
    /// A request without a session tag.
    pub fn new(command: KvCommand) -> Self {
        KvRequest { session: None, command }
    }

    /// A request tagged with `session`.
    pub fn with_session(command: KvCommand, session: SessionTag) -> Self {
        KvRequest { session: Some(session), command }
    }

    /// The postcard encoding, as proposed to the log.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        Bytes::from(out)
    }

    /// Appends the postcard encoding to `out` (written directly, byte for
    /// byte what `postcard::to_extend` writes; the tests compare both).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        fn varint(out: &mut Vec<u8>, mut v: u64) {
            while v >= 0x80 {
                out.push(v as u8 | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        fn bytes(out: &mut Vec<u8>, b: &[u8]) {
            varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        fn keys(out: &mut Vec<u8>, keys: &[Bytes]) {
            varint(out, keys.len() as u64);
            keys.iter().for_each(|k| bytes(out, k));
        }
        match self.session {
            None => out.push(0),
            Some(SessionTag { client, seq }) => {
                out.push(1);
                varint(out, client);
                varint(out, seq);
            }
        }
        match &self.command {
            KvCommand::Set { key, value } => {
                out.push(0);
                bytes(out, key);
                bytes(out, value);
            }
            KvCommand::Delete { keys: k } => {
                out.push(1);
                keys(out, k);
            }
            KvCommand::Get { key } => {
                out.push(2);
                bytes(out, key);
            }
            KvCommand::Exists { keys: k } => {
                out.push(3);
                keys(out, k);
            }
            KvCommand::MGet { keys: k } => {
                out.push(4);
                keys(out, k);
            }
            KvCommand::OpenSession => out.push(5),
        }
    }

    /// Decodes a log payload. Trailing bytes are an error: a payload is exactly
    /// one request.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let (req, rest) = postcard::take_from_bytes::<KvRequest>(data)?;
        if !rest.is_empty() {
            return Err(DecodeError::Trailing(rest.len()));
        }
        Ok(req)
    }

    /// Decodes a log payload like [`KvRequest::decode`], with the same result
    /// for every input, but without copying: keys and values are slices of
    /// `data` (sharing its buffer). Meant for a payload in its own buffer (a
    /// log entry's): what the store keeps then keeps that buffer alive.
    pub fn decode_shared(data: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader { data, pos: 0 };
        let req = r.request()?;
        match data.len() - r.pos {
            0 => Ok(req),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    fn encoded_len_hint(&self) -> usize {
        let keys = |keys: &[Bytes]| keys.iter().map(|k| k.len() + 5).sum::<usize>();
        24 + match &self.command {
            KvCommand::Set { key, value } => key.len() + value.len() + 10,
            KvCommand::Get { key } => key.len() + 5,
            KvCommand::Delete { keys: k }
            | KvCommand::Exists { keys: k }
            | KvCommand::MGet { keys: k } => keys(k),
            KvCommand::OpenSession => 0,
        }
    }
}

/// A postcard reader for [`KvRequest`] that slices byte strings out of the
/// payload. Mirrors postcard 1's format and errors exactly (the tests compare
/// both on arbitrary inputs): varints are LEB128 of at most 10 bytes for u64
/// and usize, 5 for u32 (enum variants), with the unused high bits of the
/// last byte zero; an `Option` tag is 0 or 1.
struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
}

type PResult<T> = Result<T, postcard::Error>;

impl Reader<'_> {
    fn byte(&mut self) -> PResult<u8> {
        let b = *self.data.get(self.pos).ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        self.pos += 1;
        Ok(b)
    }

    /// A varint of at most `max_len` bytes whose last byte is at most `last_max`.
    fn varint(&mut self, max_len: u32, last_max: u8) -> PResult<u64> {
        let mut out = 0u64;
        for i in 0..max_len {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == max_len - 1 && b > last_max {
                    return Err(postcard::Error::DeserializeBadVarint);
                }
                return Ok(out);
            }
        }
        Err(postcard::Error::DeserializeBadVarint)
    }

    fn u64(&mut self) -> PResult<u64> {
        self.varint(10, 0x01)
    }

    fn bytes(&mut self) -> PResult<Bytes> {
        let len = self.u64()?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .filter(|&end| end <= self.data.len())
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        let b = self.data.slice(self.pos..end);
        self.pos = end;
        Ok(b)
    }

    fn keys(&mut self) -> PResult<Vec<Bytes>> {
        let n = self.u64()?;
        // Each key takes at least one byte: never trust `n` beyond the input.
        let room = self.data.len() - self.pos;
        let mut keys = Vec::with_capacity(usize::try_from(n).map_or(room, |n| n.min(room)));
        for _ in 0..n {
            keys.push(self.bytes()?);
        }
        Ok(keys)
    }

    fn request(&mut self) -> Result<KvRequest, DecodeError> {
        let session = match self.byte()? {
            0 => None,
            1 => Some(SessionTag { client: self.u64()?, seq: self.u64()? }),
            _ => return Err(postcard::Error::DeserializeBadOption.into()),
        };
        let command = match self.varint(5, 0x0f)? {
            0 => KvCommand::Set { key: self.bytes()?, value: self.bytes()? },
            1 => KvCommand::Delete { keys: self.keys()? },
            2 => KvCommand::Get { key: self.bytes()? },
            3 => KvCommand::Exists { keys: self.keys()? },
            4 => KvCommand::MGet { keys: self.keys()? },
            5 => KvCommand::OpenSession,
            // What serde's derived variant visitor reports through postcard.
            _ => return Err(postcard::Error::SerdeDeCustom.into()),
        };
        Ok(KvRequest { session, command })
    }
}

/// Why a log payload is not a [`KvRequest`].
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a postcard-encoded request.
    #[error("malformed KV request: {0}")]
    Malformed(#[from] postcard::Error),
    /// A request decoded but bytes were left over.
    #[error("{0} trailing bytes after the KV request")]
    Trailing(usize),
}

/// What applying a [`KvRequest`] returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// A write succeeded.
    Ok,
    /// The value of one key, `None` if absent.
    Value(Option<Bytes>),
    /// The values of several keys, in the order asked.
    Values(Vec<Option<Bytes>>),
    /// A count (keys deleted, keys existing).
    Count(u64),
    /// A session was opened with this id.
    SessionOpened {
        /// The new session's id.
        client: u64,
    },
    /// The command was not executed.
    Error(KvError),
}

/// Why a command was not executed. Part of the replicated outcome: every
/// replica returns the same error for the same entry.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KvError {
    /// The log payload did not decode as a request.
    #[error("malformed command")]
    Malformed,
    /// The session is unknown: never opened, or evicted to respect the
    /// session bound. The client must open a new session; whether its
    /// outstanding write was applied is unknown.
    #[error("session {client} expired or unknown")]
    SessionExpired {
        /// The session id the request named.
        client: u64,
    },
    /// The sequence number is older than the session's last applied write,
    /// whose response is no longer kept.
    #[error("stale sequence number {seq}; session {client} is at {last}")]
    StaleSequence {
        /// The session id.
        client: u64,
        /// The sequence number the request carried.
        seq: u64,
        /// The session's last applied sequence number.
        last: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_is_compact() {
        let req = KvRequest::new(KvCommand::Set {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        });
        let enc = req.encode();
        // option tag + variant + 2 × (length + byte)
        assert_eq!(enc.len(), 6);
        assert_eq!(KvRequest::decode(&enc), Ok(req));
    }

    #[test]
    fn trailing_and_garbage_are_errors() {
        let mut enc = KvRequest::new(KvCommand::OpenSession).encode().to_vec();
        enc.push(0);
        assert_eq!(KvRequest::decode(&enc), Err(DecodeError::Trailing(1)));
        assert!(KvRequest::decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(KvRequest::decode(&[]).is_err());
    }

    #[test]
    fn huge_announced_vec_does_not_allocate_or_panic() {
        // None, variant Delete (1), then a varint length of ~2^63 keys.
        let data = [0u8, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(KvRequest::decode(&data).is_err());
        assert!(KvRequest::decode_shared(&Bytes::copy_from_slice(&data)).is_err());
    }

    #[test]
    fn shared_decode_slices_the_payload() {
        let enc = KvRequest::with_session(
            KvCommand::Set { key: Bytes::from_static(b"key"), value: Bytes::from_static(b"v") },
            SessionTag { client: 300, seq: u64::MAX },
        )
        .encode();
        let req = KvRequest::decode_shared(&enc).expect("valid");
        assert_eq!(Ok(&req), KvRequest::decode(&enc).as_ref());
        let KvCommand::Set { key, .. } = req.command else { panic!("a SET") };
        let inside = enc.as_ptr_range();
        assert!(inside.contains(&key.as_ptr()), "the key is a slice of the payload");
    }
}
