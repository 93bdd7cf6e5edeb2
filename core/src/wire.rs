//! Peer wire framing: a postcard-encoded [`Message`] in a checked frame.
//!
//! Frame layout (little endian): `len: u32 | crc32(payload): u32 | payload`.
//! Invariants: `len` is checked against the caller's bound before anything is
//! buffered or allocated; the checksum is verified before decoding; decoding
//! never panics on any input. A frame that is not yet complete is not an
//! error (`Ok(None)`): the caller reads more bytes.

use thiserror::Error;

use crate::message::Message;

/// Bytes of frame header before the payload.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Why a frame could not be decoded. Any of these means the stream is
/// unusable and the connection should be closed with the reason logged.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The announced payload length exceeds the configured bound.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: usize,
        /// The bound in force.
        max: usize,
    },
    /// The payload does not match its checksum.
    #[error("frame checksum mismatch: header {expected:#010x}, payload {actual:#010x}")]
    Checksum {
        /// Checksum in the header.
        expected: u32,
        /// Checksum of the payload received.
        actual: u32,
    },
    /// The payload is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(postcard::Error),
    /// The payload decoded but left trailing bytes.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

/// Appends the frame for `msg` to `out`.
pub fn encode_frame(msg: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    // Serializing into a growable Vec cannot fail for our types.
    let mut out_vec = std::mem::take(out);
    out_vec = postcard::to_extend(msg, out_vec).expect("message encodes into a Vec");
    *out = out_vec;
    let payload_len = out.len() - start - FRAME_HEADER_BYTES;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes `msg` as one frame in a fresh buffer.
pub fn frame_to_vec(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_frame(msg, &mut out);
    out
}

/// Checks whether `buf` starts with a whole frame and returns the length of
/// that frame (header included), `Ok(None)` if more bytes are needed, or an
/// error if the header announces more than `max_payload_bytes`.
pub fn check_frame(buf: &[u8], max_payload_bytes: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max_payload_bytes {
        return Err(FrameError::TooLarge { len, max: max_payload_bytes });
    }
    let total = FRAME_HEADER_BYTES + len;
    Ok((buf.len() >= total).then_some(total))
}

/// Decodes the frame at the start of `buf`: `Ok(Some((message, consumed)))`,
/// `Ok(None)` if incomplete, or an error if the frame is bad.
pub fn decode_frame(
    buf: &[u8],
    max_payload_bytes: usize,
) -> Result<Option<(Message, usize)>, FrameError> {
    let Some(total) = check_frame(buf, max_payload_bytes)? else {
        return Ok(None);
    };
    let expected = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let payload = &buf[FRAME_HEADER_BYTES..total];
    let actual = crc32fast::hash(payload);
    if expected != actual {
        return Err(FrameError::Checksum { expected, actual });
    }
    let (msg, rest) =
        postcard::take_from_bytes::<Message>(payload).map_err(FrameError::Malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::Trailing(rest.len()));
    }
    Ok(Some((msg, total)))
}

/// The body of the `frame_decode` fuzz target, also replayed over the
/// committed corpus by a stable test: decoding arbitrary bytes never panics,
/// and any message that decodes re-encodes to a frame that decodes to the same
/// message, consuming the whole re-encoded frame.
pub fn fuzz_check(data: &[u8]) {
    const MAX: usize = 1 << 20;
    let mut rest = data;
    while let Ok(Some((msg, used))) = decode_frame(rest, MAX) {
        let again = frame_to_vec(&msg);
        let back = decode_frame(&again, MAX);
        assert_eq!(back, Ok(Some((msg, again.len()))), "encode/decode round trip differs");
        rest = &rest[used..];
    }
}
