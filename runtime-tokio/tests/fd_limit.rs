//! With a low open-file limit, clients cannot starve the storage of file
//! descriptors: the client port caps its connections below the limit, so
//! the node keeps rolling log segments and serving. Its own test binary:
//! it lowers the limit of the whole process.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_the_fd_budget_are_refused_and_the_node_keeps_writing() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    // 256 kept back for storage, peers and listeners: 64 for clients.
    l.current = Some(320);
    setrlimit(Resource::Nofile, l).unwrap();
    let c = Cluster::start_with(1, |cfg| cfg.segment_bytes_max = 4096).await;
    c.leader().await;
    let addr = c.slots[0].client.clone();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"PING\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf)).await.unwrap().unwrap();
        match &buf[..n] {
            b"+PONG\r\n" => held.push(s),
            other if other.starts_with(b"-ERR max number of clients") => refused += 1,
            other => panic!("unexpected {:?}", String::from_utf8_lossy(other)),
        }
    }
    assert!(held.len() <= 64, "{} clients admitted", held.len());
    assert!(refused >= 36, "{refused} refused");
    // Writes that roll many 4 KiB segments (new files) still succeed.
    let n = c.node(1);
    for i in 0..400u32 {
        n.set(format!("k{i}"), "x".repeat(100)).await.unwrap();
    }
    assert!(!n.is_stopped());
    drop(held);
}
