//! A reply far larger than memory should hold at once: the client port
//! streams it out in bounded pieces. Alone in its test binary, so the
//! process's peak memory is this test's.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xraft_kv::resp::encode_command;

/// Peak resident memory of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_512_mib_mget_reply_is_streamed_in_bounded_memory() {
    const VALUE: usize = 256 << 10;
    const KEYS: usize = 2048;
    let c = Cluster::start(1).await;
    c.leader().await;
    c.node(1).set("big", Bytes::from(vec![b'v'; VALUE])).await.unwrap();
    let before = peak_rss();

    let mut s = TcpStream::connect(&c.slots[0].client).await.unwrap();
    let mut args = vec!["MGET"];
    args.extend(std::iter::repeat_n("big", KEYS));
    let mut req = bytes::BytesMut::new();
    encode_command(&args, &mut req);
    s.write_all(&req).await.unwrap();

    let head = format!("*{KEYS}\r\n");
    let item = format!("${VALUE}\r\n");
    let want = head.len() + KEYS * (item.len() + VALUE + 2);
    let (mut got, mut start) = (0usize, Vec::new());
    let mut buf = vec![0u8; 64 << 10];
    let read_all = async {
        while got < want {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {got} of {want} bytes");
            if start.len() < 64 {
                start.extend_from_slice(&buf[..n.min(64 - start.len())]);
            }
            got += n;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all).await.expect("reply within 60 s");
    assert_eq!(got, want);
    assert!(start.starts_with(format!("{head}{item}vvvv").as_bytes()));

    // The node still serves, and never held the reply whole: the peak grew
    // by far less than the 512 MiB sent.
    still_serves(&c).await;
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 128 << 20, "peak memory grew by {} MiB", grown >> 20);
    c.shutdown().await;
}

async fn still_serves(c: &Cluster) {
    c.node(1).set("after", "yes").await.unwrap();
    assert_eq!(c.node(1).get_linear("after").await.unwrap(), Some(Bytes::from("yes")));
}
