//! The client protocol: RESP2, sans-IO.
//!
//! - [`parse_frame`] / [`split_command`] / [`RequestParser`]: a request (an array of bulk strings,
//!   or an inline command line) from the front of a buffer. Check-then-parse:
//!   an incomplete request is `Ok(None)`, never an error; every announced
//!   length is checked against [`RespLimits`] before anything is buffered or
//!   allocated; a malformed request is a [`RespError`] whose text is the line
//!   a server sends back (`-ERR Protocol error: …`) before closing.
//! - [`Reply`]: what a server answers; [`Reply::encode`] writes it,
//!   [`parse_reply`] reads it back (clients, tests, benchmarks).
//! - [`Command`]: the typed command table (PING, ECHO, GET, SET, DEL, EXISTS,
//!   MGET, INFO, CONFIG GET, COMMAND, QUIT, `RAFT.*`), with Redis's wording
//!   for arity and unknown-command errors.
//!
//! A server loop: append socket bytes to a `BytesMut`; while
//! [`split_command`] yields arguments, [`Command::parse`] them and answer
//! (a [`CommandError`] is an error reply, the connection stays open); on a
//! [`RespError`], send it as an error reply and close the connection.

mod command;
mod parse;
mod reply;

use thiserror::Error;

pub use command::{Command, CommandError, RaftCommand};
pub use parse::{encode_command, parse_frame, split_command, Args, ParsedFrame, RequestParser};
pub use reply::{parse_reply, Reply};

/// Bounds on what the parsers accept. A server keeps the defaults unless it
/// has a reason; they bound the memory one connection can make it hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RespLimits {
    /// Elements in one request array, or one reply array (default 1,048,576,
    /// as Redis).
    pub array_len_max: usize,
    /// Bytes in one bulk string (default 8 MiB: a value must fit, with room
    /// to spare, in a 16 MiB peer frame once it is a log entry).
    pub bulk_bytes_max: usize,
    /// Bytes in one request frame, all arguments included (default 16 MiB).
    pub frame_bytes_max: usize,
    /// Bytes in one inline command line or simple-string line (default
    /// 64 KiB, as Redis).
    pub inline_bytes_max: usize,
    /// Nesting of arrays in a reply (default 8).
    pub reply_depth_max: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            array_len_max: 1 << 20,
            bulk_bytes_max: 8 << 20,
            frame_bytes_max: 16 << 20,
            inline_bytes_max: 64 << 10,
            reply_depth_max: 8,
        }
    }
}

/// A malformed request or reply. The stream cannot be resynchronised: a
/// server answers with [`RespError::to_reply`] and closes the connection.
/// The texts follow Redis's.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RespError {
    /// The `*` count of a request is not an integer or is over the bound.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A length line has no CRLF within its bound.
    #[error("Protocol error: too big count string")]
    TooBigCountString,
    /// A request element is not a bulk string.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// A bulk length is negative, not an integer or over the bound.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A bulk string is not followed by CRLF.
    #[error("Protocol error: expected CRLF after bulk string")]
    MissingCrlf,
    /// The request as a whole is over `frame_bytes_max`.
    #[error("Protocol error: request of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Bytes the request needs at least.
        len: usize,
        /// The bound in force.
        max: usize,
    },
    /// An inline line (or simple-string reply line) is over the bound.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// A status or error reply line holds a lone CR or LF.
    #[error("Protocol error: CR or LF inside a status line")]
    BadStatusLine,
    /// A reply starts with an unknown type byte.
    #[error("Protocol error: unknown reply type '{0}'")]
    UnknownReplyType(char),
    /// An integer reply is not an integer.
    #[error("Protocol error: invalid integer")]
    InvalidInteger,
    /// A reply nests arrays deeper than the bound.
    #[error("Protocol error: reply nested deeper than {0} arrays")]
    TooDeep(usize),
}

impl RespError {
    /// The error reply a server sends before closing the connection.
    pub fn to_reply(&self) -> Reply {
        Reply::Error(format!("ERR {self}"))
    }
}

/// The body of the `resp_parse` fuzz target, also replayed over the
/// committed corpus by a stable test. On arbitrary bytes it never panics,
/// and:
/// - every request parsed consumes a non-empty prefix within bounds, and
///   re-encoded as an array of bulk strings parses back to the same
///   arguments, consuming exactly the re-encoding;
/// - every request that is a valid [`Command`] re-encodes
///   ([`Command::to_args`]) to arguments that parse to the same command;
/// - a reply parsed from the bytes re-encodes to a reply that parses back
///   equal.
pub fn fuzz_check(data: &[u8]) {
    let limits = RespLimits {
        array_len_max: 1024,
        bulk_bytes_max: 1 << 16,
        frame_bytes_max: 1 << 20,
        inline_bytes_max: 1 << 12,
        reply_depth_max: 8,
    };
    let mut rest = data;
    while let Ok(Some(frame)) = parse_frame(rest, &limits) {
        assert!(frame.consumed > 0 && frame.consumed <= rest.len(), "bad consumed count");
        let args: Vec<bytes::Bytes> =
            frame.args.iter().map(|r| bytes::Bytes::copy_from_slice(&rest[r.clone()])).collect();
        let mut again = Vec::new();
        encode_command(&args, &mut again);
        let back = parse_frame(&again, &limits).expect("re-encoding parses").expect("complete");
        assert_eq!(back.consumed, again.len(), "re-encoding not consumed exactly");
        let back_args: Vec<&[u8]> = back.args.iter().map(|r| &again[r.clone()]).collect();
        let arg_slices: Vec<&[u8]> = args.iter().map(|a| a.as_ref()).collect();
        assert_eq!(back_args, arg_slices, "arguments changed in a round trip");
        if let Ok(cmd) = Command::parse(&args) {
            assert_eq!(Command::parse(&cmd.to_args()), Ok(cmd), "command round trip differs");
        }
        rest = &rest[frame.consumed..];
    }
    // The resumable parser, fed in pieces (sized by the first byte), finds
    // the same commands and ends the same way (incomplete, or the same
    // error) as one stateless pass over the whole input.
    let whole = {
        let (mut buf, mut got) = (bytes::BytesMut::from(data), Vec::new());
        loop {
            match split_command(&mut buf, &limits) {
                Ok(Some(args)) => got.push(args),
                end => break (got, end.map(|_| ())),
            }
        }
    };
    let chunk = 1 + usize::from(data.first().copied().unwrap_or(0) % 23);
    let pieces = {
        let (mut parser, mut buf, mut got) =
            (RequestParser::new(), bytes::BytesMut::new(), Vec::new());
        let mut end = Ok(());
        'feed: for piece in data.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match parser.split(&mut buf, &limits) {
                    Ok(Some(args)) => got.push(args),
                    Ok(None) => break,
                    Err(e) => {
                        end = Err(e);
                        break 'feed;
                    }
                }
            }
        }
        (got, end)
    };
    assert_eq!(pieces, whole, "the resumable parser differs from one pass");
    if let Ok(Some((reply, used))) = parse_reply(data, &limits) {
        assert!(used > 0 && used <= data.len(), "bad consumed count");
        let mut again = Vec::new();
        reply.encode(&mut again);
        assert_eq!(parse_reply(&again, &limits), Ok(Some((reply, again.len()))));
    }
}
