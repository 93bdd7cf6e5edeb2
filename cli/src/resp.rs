//! A minimal async RESP client: pipelined requests, replies parsed with the
//! KV crate's codec. Used by `xraft cluster` and `xraft bench`.

use anyhow::{bail, Context, Result};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xraft_kv::resp::{encode_command, parse_reply, Reply, RespLimits};

/// One client connection.
pub struct Client {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    limits: RespLimits,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: &str) -> Result<Client> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            rbuf: BytesMut::with_capacity(64 << 10),
            wbuf: Vec::with_capacity(64 << 10),
            limits: RespLimits::default(),
        })
    }

    /// Queues one request (sent by `flush`).
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        encode_command(args, &mut self.wbuf);
    }

    /// Sends the queued requests.
    pub async fn flush(&mut self) -> Result<()> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Reads one reply.
    pub async fn reply(&mut self) -> Result<Reply> {
        loop {
            if let Some((reply, used)) = parse_reply(&self.rbuf, &self.limits)? {
                self.rbuf.advance(used);
                return Ok(reply);
            }
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve(64 << 10);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                bail!("connection closed by the server");
            }
        }
    }

    /// Sends one request and reads its reply.
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply> {
        self.queue(args);
        self.flush().await?;
        self.reply().await
    }
}
