//! The command table: request arguments to a typed [`Command`], and back.
//!
//! Names are matched case-insensitively; arity and unknown-command errors use
//! Redis's wording so clients and tools recognise them. Invariant (checked by
//! the fuzz target): for every command `c` that parses,
//! `Command::parse(&c.to_args()) == Ok(c)`.

use bytes::Bytes;
use thiserror::Error;
use xraft::NodeId;

use super::Reply;
use crate::command::KvCommand;

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `PING [message]`: `+PONG`, or the message as a bulk string.
    Ping(Option<Bytes>),
    /// `ECHO message`.
    Echo(Bytes),
    /// `GET key`.
    Get(Bytes),
    /// `SET key value` (no options).
    Set {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// `DEL key [key ...]`.
    Del(Vec<Bytes>),
    /// `EXISTS key [key ...]`.
    Exists(Vec<Bytes>),
    /// `MGET key [key ...]`.
    MGet(Vec<Bytes>),
    /// `INFO [section ...]`: answered by the runtime with node state.
    Info(Vec<Bytes>),
    /// `CONFIG GET parameter [parameter ...]`: a compatibility stub (see
    /// [`Command::config_get_reply`]).
    ConfigGet(Vec<Bytes>),
    /// `COMMAND [subcommand ...]`: a minimal answer (see
    /// [`Command::command_reply`]).
    Command(Vec<Bytes>),
    /// `QUIT`: answer `+OK` and close the connection.
    Quit,
    /// A `RAFT.*` admin command, executed by the runtime.
    Raft(RaftCommand),
}

/// The `RAFT.*` admin commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaftCommand {
    /// `RAFT.ADDNODE id addr`: add a voter.
    AddNode {
        /// The new node's id.
        id: NodeId,
        /// Its peer address (`host:port`).
        addr: Bytes,
    },
    /// `RAFT.ADDLEARNER id addr`: add a non-voting member.
    AddLearner {
        /// The new node's id.
        id: NodeId,
        /// Its peer address (`host:port`).
        addr: Bytes,
    },
    /// `RAFT.PROMOTE id`: make a learner a voter.
    Promote(NodeId),
    /// `RAFT.REMOVENODE id`: remove a member.
    RemoveNode(NodeId),
    /// `RAFT.TRANSFER id`: transfer leadership to `id`.
    Transfer(NodeId),
    /// `RAFT.INFO`: this node's health status.
    Info,
    /// `RAFT.NODES`: the cluster's members.
    Nodes,
}

/// Why arguments are not a command. The connection stays usable: answer
/// with [`CommandError::to_reply`]. `Display` is the full error line.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// No arguments at all.
    #[error("ERR empty command")]
    Empty,
    /// The name is not in the table.
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    Unknown {
        /// The name as sent (truncated, made printable).
        name: String,
        /// The first arguments, each quoted and followed by a space.
        args: String,
    },
    /// Too few or too many arguments.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    /// A subcommand the command does not have.
    #[error("ERR unknown subcommand '{sub}'. Try {command} HELP.")]
    UnknownSubcommand {
        /// The subcommand as sent (truncated, made printable).
        sub: String,
        /// The command, upper case.
        command: &'static str,
    },
    /// A form of a command xraft does not implement.
    #[error("ERR {0}")]
    Unsupported(&'static str),
    /// A node id is not an integer in `1..=u64::MAX`.
    #[error("ERR invalid node id '{0}'")]
    InvalidNodeId(String),
}

impl CommandError {
    /// The error reply.
    pub fn to_reply(&self) -> Reply {
        Reply::Error(self.to_string())
    }
}

impl Command {
    /// Parses a request's arguments (name first).
    pub fn parse(args: &[Bytes]) -> Result<Command, CommandError> {
        let (name, rest) = args.split_first().ok_or(CommandError::Empty)?;
        let mut buf = [0u8; 16];
        let upper = upper(name, &mut buf).unwrap_or(b"");
        let arity = |lower: &'static str, min: usize, max: usize| {
            if (min..=max).contains(&rest.len()) {
                Ok(())
            } else {
                Err(CommandError::WrongArity(lower))
            }
        };
        const ANY: usize = usize::MAX;
        let cmd = match upper {
            b"PING" => {
                arity("ping", 0, 1)?;
                Command::Ping(rest.first().cloned())
            }
            b"ECHO" => {
                arity("echo", 1, 1)?;
                Command::Echo(rest[0].clone())
            }
            b"GET" => {
                arity("get", 1, 1)?;
                Command::Get(rest[0].clone())
            }
            b"SET" => {
                arity("set", 2, ANY)?;
                if rest.len() > 2 {
                    return Err(CommandError::Unsupported(
                        "SET options (EX, PX, NX, XX, GET, KEEPTTL, ...) are not supported",
                    ));
                }
                Command::Set { key: rest[0].clone(), value: rest[1].clone() }
            }
            b"DEL" => {
                arity("del", 1, ANY)?;
                Command::Del(rest.to_vec())
            }
            b"EXISTS" => {
                arity("exists", 1, ANY)?;
                Command::Exists(rest.to_vec())
            }
            b"MGET" => {
                arity("mget", 1, ANY)?;
                Command::MGet(rest.to_vec())
            }
            b"INFO" => Command::Info(rest.to_vec()),
            b"CONFIG" => {
                arity("config", 1, ANY)?;
                if !rest[0].eq_ignore_ascii_case(b"GET") {
                    return Err(CommandError::UnknownSubcommand {
                        sub: printable(&rest[0], 128),
                        command: "CONFIG",
                    });
                }
                if rest.len() < 2 {
                    return Err(CommandError::WrongArity("config|get"));
                }
                Command::ConfigGet(rest[1..].to_vec())
            }
            b"COMMAND" => Command::Command(rest.to_vec()),
            b"QUIT" => Command::Quit,
            b"RAFT.ADDNODE" => {
                arity("raft.addnode", 2, 2)?;
                Command::Raft(RaftCommand::AddNode {
                    id: node_id(&rest[0])?,
                    addr: rest[1].clone(),
                })
            }
            b"RAFT.ADDLEARNER" => {
                arity("raft.addlearner", 2, 2)?;
                let id = node_id(&rest[0])?;
                Command::Raft(RaftCommand::AddLearner { id, addr: rest[1].clone() })
            }
            b"RAFT.PROMOTE" => {
                arity("raft.promote", 1, 1)?;
                Command::Raft(RaftCommand::Promote(node_id(&rest[0])?))
            }
            b"RAFT.REMOVENODE" => {
                arity("raft.removenode", 1, 1)?;
                Command::Raft(RaftCommand::RemoveNode(node_id(&rest[0])?))
            }
            b"RAFT.TRANSFER" => {
                arity("raft.transfer", 1, 1)?;
                Command::Raft(RaftCommand::Transfer(node_id(&rest[0])?))
            }
            b"RAFT.INFO" => {
                arity("raft.info", 0, 0)?;
                Command::Raft(RaftCommand::Info)
            }
            b"RAFT.NODES" => {
                arity("raft.nodes", 0, 0)?;
                Command::Raft(RaftCommand::Nodes)
            }
            _ => return Err(unknown(name, rest)),
        };
        Ok(cmd)
    }

    /// The arguments that parse back to this command (names upper case).
    pub fn to_args(&self) -> Vec<Bytes> {
        let name = |n: &'static str| Bytes::from_static(n.as_bytes());
        let with = |n: &'static str, rest: &[Bytes]| {
            let mut v = Vec::with_capacity(rest.len() + 1);
            v.push(name(n));
            v.extend(rest.iter().cloned());
            v
        };
        let id = |id: &NodeId| Bytes::from(id.0.to_string());
        match self {
            Command::Ping(m) => with("PING", m.as_slice()),
            Command::Echo(m) => with("ECHO", std::slice::from_ref(m)),
            Command::Get(k) => with("GET", std::slice::from_ref(k)),
            Command::Set { key, value } => vec![name("SET"), key.clone(), value.clone()],
            Command::Del(keys) => with("DEL", keys),
            Command::Exists(keys) => with("EXISTS", keys),
            Command::MGet(keys) => with("MGET", keys),
            Command::Info(sections) => with("INFO", sections),
            Command::ConfigGet(params) => {
                let mut v = vec![name("CONFIG"), name("GET")];
                v.extend(params.iter().cloned());
                v
            }
            Command::Command(args) => with("COMMAND", args),
            Command::Quit => vec![name("QUIT")],
            Command::Raft(raft) => match raft {
                RaftCommand::AddNode { id: n, addr } => {
                    vec![name("RAFT.ADDNODE"), id(n), addr.clone()]
                }
                RaftCommand::AddLearner { id: n, addr } => {
                    vec![name("RAFT.ADDLEARNER"), id(n), addr.clone()]
                }
                RaftCommand::Promote(n) => vec![name("RAFT.PROMOTE"), id(n)],
                RaftCommand::RemoveNode(n) => vec![name("RAFT.REMOVENODE"), id(n)],
                RaftCommand::Transfer(n) => vec![name("RAFT.TRANSFER"), id(n)],
                RaftCommand::Info => vec![name("RAFT.INFO")],
                RaftCommand::Nodes => vec![name("RAFT.NODES")],
            },
        }
    }

    /// The store command this maps to, for the data commands: `SET` and
    /// `DEL` go through the log; `GET`, `EXISTS` and `MGET` may (or be
    /// served by ReadIndex and a local read).
    pub fn to_kv(&self) -> Option<KvCommand> {
        Some(match self {
            Command::Set { key, value } => {
                KvCommand::Set { key: key.clone(), value: value.clone() }
            }
            Command::Del(keys) => KvCommand::Delete { keys: keys.clone() },
            Command::Get(key) => KvCommand::Get { key: key.clone() },
            Command::Exists(keys) => KvCommand::Exists { keys: keys.clone() },
            Command::MGet(keys) => KvCommand::MGet { keys: keys.clone() },
            _ => return None,
        })
    }

    /// The reply for commands a server answers without the node (`PING`,
    /// `ECHO`, `CONFIG GET`, `COMMAND`, `QUIT`); `None` for the others.
    pub fn local_reply(&self) -> Option<Reply> {
        match self {
            Command::Ping(None) => Some(Reply::Simple("PONG".to_owned())),
            Command::Ping(Some(m)) | Command::Echo(m) => Some(Reply::Bulk(m.clone())),
            Command::ConfigGet(params) => Some(Command::config_get_reply(params)),
            Command::Command(args) => Some(Command::command_reply(args)),
            Command::Quit => Some(Reply::ok()),
            _ => None,
        }
    }

    /// `CONFIG GET` for client compatibility (`redis-benchmark` asks for
    /// `save` and `appendonly`): a flat array of name/value pairs for the
    /// few parameters xraft reports (`save` "", `appendonly` "no",
    /// `databases` "1"), matched by exact name, case-insensitively, or `*`.
    pub fn config_get_reply(params: &[Bytes]) -> Reply {
        const KNOWN: [(&str, &str); 3] = [("save", ""), ("appendonly", "no"), ("databases", "1")];
        let mut items = Vec::new();
        for (name, value) in KNOWN {
            if params.iter().any(|p| p.as_ref() == b"*" || p.eq_ignore_ascii_case(name.as_bytes()))
            {
                items.push(Reply::bulk(name));
                items.push(Reply::bulk(value));
            }
        }
        Reply::Array(items)
    }

    /// `COMMAND` for client compatibility: `COMMAND COUNT` is the number of
    /// commands in the table; everything else (`COMMAND`, `COMMAND DOCS`, …)
    /// is an empty array, which clients accept as "no metadata".
    pub fn command_reply(args: &[Bytes]) -> Reply {
        match args.first() {
            Some(sub) if sub.eq_ignore_ascii_case(b"COUNT") => Reply::Integer(COMMAND_COUNT),
            _ => Reply::Array(Vec::new()),
        }
    }
}

/// Commands in the table (PING … QUIT and the seven `RAFT.*`).
const COMMAND_COUNT: i64 = 18;

/// `name` in upper case if it fits in `buf` (every command name does).
fn upper<'a>(name: &[u8], buf: &'a mut [u8; 16]) -> Option<&'a [u8]> {
    let out = buf.get_mut(..name.len())?;
    for (o, &c) in out.iter_mut().zip(name) {
        *o = c.to_ascii_uppercase();
    }
    Some(out)
}

fn node_id(arg: &[u8]) -> Result<NodeId, CommandError> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&n| n != 0)
        .map(NodeId)
        .ok_or_else(|| CommandError::InvalidNodeId(printable(arg, 64)))
}

fn unknown(name: &[u8], rest: &[Bytes]) -> CommandError {
    let mut args = String::new();
    for arg in rest {
        if args.len() >= 128 {
            break;
        }
        args.push('\'');
        args.push_str(&printable(arg, 128 - args.len()));
        args.push_str("' ");
    }
    CommandError::Unknown { name: printable(name, 128), args }
}

/// At most `max` bytes of `b`, with anything but printable ASCII as `?`.
fn printable(b: &[u8], max: usize) -> String {
    b.iter()
        .take(max)
        .map(|&c| if c.is_ascii_graphic() || c == b' ' { c as char } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<Bytes> {
        s.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    fn parse(s: &[&str]) -> Result<Command, CommandError> {
        Command::parse(&args(s))
    }

    #[test]
    fn table_parses_case_insensitively_and_round_trips() {
        let cases = [
            vec!["ping"],
            vec!["PING", "hi"],
            vec!["echo", "x"],
            vec!["get", "k"],
            vec!["Set", "k", "v"],
            vec!["del", "a", "b"],
            vec!["exists", "a", "a"],
            vec!["mget", "a", "b", "c"],
            vec!["info"],
            vec!["info", "server", "clients"],
            vec!["config", "get", "save"],
            vec!["command", "docs"],
            vec!["quit"],
            vec!["raft.addnode", "4", "127.0.0.1:7004"],
            vec!["RAFT.ADDLEARNER", "5", "h:1"],
            vec!["raft.promote", "5"],
            vec!["raft.removenode", "2"],
            vec!["raft.transfer", "3"],
            vec!["raft.info"],
            vec!["raft.nodes"],
        ];
        for case in cases {
            let cmd = parse(&case).unwrap_or_else(|e| panic!("{case:?}: {e}"));
            assert_eq!(Command::parse(&cmd.to_args()), Ok(cmd), "{case:?}");
        }
        assert_eq!(
            parse(&["raft.addnode", "4", "h:1"]),
            Ok(Command::Raft(RaftCommand::AddNode { id: NodeId(4), addr: Bytes::from("h:1") }))
        );
    }

    #[test]
    fn errors_use_redis_wording() {
        let e = |s: &[&str]| parse(s).expect_err("error").to_string();
        assert_eq!(e(&["get"]), "ERR wrong number of arguments for 'get' command");
        assert_eq!(e(&["GET", "a", "b"]), "ERR wrong number of arguments for 'get' command");
        assert_eq!(e(&["ping", "a", "b"]), "ERR wrong number of arguments for 'ping' command");
        assert_eq!(e(&["config", "get"]), "ERR wrong number of arguments for 'config|get' command");
        assert_eq!(e(&["config", "set", "a"]), "ERR unknown subcommand 'set'. Try CONFIG HELP.");
        assert_eq!(
            e(&["foo", "a", "b\r\n"]),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b??' "
        );
        assert_eq!(e(&["raft.promote", "0"]), "ERR invalid node id '0'");
        assert_eq!(e(&["raft.promote", "-1"]), "ERR invalid node id '-1'");
        assert!(e(&["set", "k", "v", "EX", "10"]).starts_with("ERR SET options"));
        assert_eq!(Command::parse(&[]), Err(CommandError::Empty));
    }

    #[test]
    fn local_replies() {
        let reply = |s: &[&str]| parse(s).expect("ok").local_reply();
        assert_eq!(reply(&["ping"]), Some(Reply::Simple("PONG".into())));
        assert_eq!(reply(&["echo", "x"]), Some(Reply::bulk("x")));
        assert_eq!(
            reply(&["config", "get", "APPENDONLY"]),
            Some(Reply::Array(vec![Reply::bulk("appendonly"), Reply::bulk("no")]))
        );
        assert_eq!(reply(&["command", "count"]), Some(Reply::Integer(COMMAND_COUNT)));
        assert_eq!(reply(&["get", "k"]), None);
    }
}
