//! Hostile and broken input on the peer port and the client port: each gets
//! an error or a closed connection, and the node keeps serving. Also the
//! observability endpoints and a `redis-cli` smoke test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xraft_tokio::{PEER_MAGIC, PEER_PROTOCOL_VERSION};

/// Reads until the server closes the connection (or 10 s pass).
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "the server did not close the connection");
    out
}

/// Bytes of the listener's handshake answer before the refusal reason.
const ANSWER_FIXED: usize = 45;

fn hello(cluster: u64, version: u16, from: u64, to: u64) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&PEER_MAGIC);
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&cluster.to_le_bytes());
    h.extend_from_slice(&from.to_le_bytes());
    h.extend_from_slice(&to.to_le_bytes());
    h.extend_from_slice(&0u128.to_le_bytes()); // disk id
    h.extend_from_slice(&0u16.to_le_bytes());
    h
}

async fn still_serves(c: &Cluster, round: u32) {
    let key = format!("alive{round}");
    c.node(1).set(key.clone(), "yes").await.unwrap();
    for n in c.running() {
        assert_eq!(n.get_linear(key.clone()).await.unwrap(), Some(Bytes::from("yes")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_port_refuses_garbage_wrong_cluster_wrong_version_and_bad_frames() {
    let c = Cluster::start(3).await;
    c.leader().await;
    let peer = c.slots[0].peer.clone();

    // Not an xraft peer at all.
    let mut s = TcpStream::connect(&peer).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut s).await;
    assert!(String::from_utf8_lossy(&answer).contains("bad magic"), "{answer:?}");
    still_serves(&c, 1).await;

    // A peer of another cluster, and one speaking another version.
    for (cluster, version, what) in
        [(999, PEER_PROTOCOL_VERSION, "cluster"), (1, PEER_PROTOCOL_VERSION + 7, "version")]
    {
        let mut s = TcpStream::connect(&peer).await.unwrap();
        s.write_all(&hello(cluster, version, 9, 1)).await.unwrap();
        let answer = read_to_close(&mut s).await;
        assert_eq!(answer[26], 1, "refused");
        assert!(String::from_utf8_lossy(&answer[ANSWER_FIXED..]).contains(what), "{answer:?}");
    }
    // A peer that dialed the wrong node.
    let mut s = TcpStream::connect(&peer).await.unwrap();
    s.write_all(&hello(1, PEER_PROTOCOL_VERSION, 9, 2)).await.unwrap();
    let answer = read_to_close(&mut s).await;
    assert!(
        String::from_utf8_lossy(&answer[ANSWER_FIXED..]).contains("dialed node 2"),
        "{answer:?}"
    );
    still_serves(&c, 2).await;

    // After a good handshake: an oversized frame, a bad checksum, garbage.
    let frames: [Vec<u8>; 3] = [
        [(1u32 << 30).to_le_bytes(), 0u32.to_le_bytes()].concat(),
        [4u32.to_le_bytes(), 0xdead_beefu32.to_le_bytes(), 7u32.to_le_bytes()].concat(),
        {
            let payload = [0xffu8; 32];
            let crc = crc32(&payload);
            [&32u32.to_le_bytes()[..], &crc.to_le_bytes()[..], &payload[..]].concat()
        },
    ];
    for frame in frames {
        let mut s = TcpStream::connect(&peer).await.unwrap();
        s.write_all(&hello(1, PEER_PROTOCOL_VERSION, 9, 1)).await.unwrap();
        let mut answer = [0u8; ANSWER_FIXED];
        s.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer[26], 0, "handshake accepted");
        s.write_all(&frame).await.unwrap();
        read_to_close(&mut s).await;
    }
    still_serves(&c, 3).await;
    c.shutdown().await;
}

/// CRC-32 (IEEE), as the wire format uses, computed bitwise for the test.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_port_answers_errors_and_closes_on_protocol_errors() {
    let c = Cluster::start(3).await;
    c.leader().await;
    let client = c.slots[1].client.clone();

    // Bad commands: error replies, the connection stays usable.
    let mut s = TcpStream::connect(&client).await.unwrap();
    s.write_all(b"*1\r\n$4\r\nNOPE\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\nSET a\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let want = "-ERR unknown command 'NOPE', with args beginning with: \r\n$-1\r\n+PONG\r\n\
                -ERR wrong number of arguments for 'set' command\r\n";
    while got.len() < want.len() {
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&got), want);

    // Protocol errors: an error reply, then the connection is closed.
    for bad in [&b"*abc\r\n"[..], b"*1\r\n$99999999999\r\n", b"*1\r\n:5\r\n"] {
        let mut s = TcpStream::connect(&client).await.unwrap();
        s.write_all(bad).await.unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(
            answer.starts_with(b"-ERR Protocol error"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    // Random bytes.
    let mut s = TcpStream::connect(&client).await.unwrap();
    let junk: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let _ = s.write_all(&junk).await;
    drop(s);
    still_serves(&c, 4).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_metrics_and_health() {
    let c = Cluster::start_with(1, |cfg| cfg.http_addr = Some("127.0.0.1:0".into())).await;
    c.leader().await;
    c.node(1).set("k", "v").await.unwrap();
    let addr = c.node(1).http_addr().unwrap();
    let get = |path: &'static str| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        String::from_utf8(read_to_close(&mut s).await).unwrap()
    };
    let metrics = get("/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("# TYPE xraft_term gauge"), "{metrics}");
    assert!(metrics.contains("xraft_is_leader{node=\"1\"} 1"), "{metrics}");
    assert!(metrics.contains("xraft_proposals_total{node=\"1\"}"), "{metrics}");
    // The sync-latency histogram: cumulative buckets ending at +Inf with the
    // count, and at least one sync (the SET was made durable).
    assert!(metrics.contains("# TYPE xraft_disk_sync_seconds histogram"), "{metrics}");
    let count_line = metrics
        .lines()
        .find(|l| l.starts_with("xraft_disk_sync_seconds_count"))
        .expect("a sync count");
    let count: u64 = count_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1, "{count_line}");
    let inf = format!("xraft_disk_sync_seconds_bucket{{node=\"1\",le=\"+Inf\"}} {count}");
    assert!(metrics.contains(&inf), "{metrics}");
    let health = get("/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.contains("\"role\":\"leader\"") && health.contains("\"healthy\":true"),
        "{health}"
    );
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    c.shutdown().await;
}

fn redis_cli(port: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", port])
        .args(args)
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_works_against_any_node() {
    let c = Cluster::start(3).await;
    let leader = c.leader().await;
    let ports: Vec<String> =
        c.slots.iter().map(|s| s.client.rsplit(':').next().unwrap().to_owned()).collect();
    let writer = ports.clone();
    tokio::task::spawn_blocking(move || {
        for (i, p) in writer.iter().enumerate() {
            assert_eq!(redis_cli(p, &["SET", &format!("k{i}"), "v"]), "OK");
        }
        for p in &writer {
            assert_eq!(redis_cli(p, &["MGET", "k0", "k1", "k2"]), "v\nv\nv");
            assert_eq!(redis_cli(p, &["EXISTS", "k0", "nope"]), "1");
            assert_eq!(redis_cli(p, &["PING"]), "PONG");
        }
        assert_eq!(redis_cli(&writer[0], &["DEL", "k0", "k1"]), "2");
        let info = redis_cli(&writer[1], &["INFO"]);
        assert!(info.contains("role:"), "{info}");
        assert!(info.contains("disk_sync_avg_us:"), "{info}");
        assert!(info.contains("disk_sync_p99_le_us:"), "{info}");
        assert!(redis_cli(&writer[2], &["RAFT.NODES"]).contains("voter"));
    })
    .await
    .unwrap();
    assert_eq!(c.node(leader).get_linear("k2").await.unwrap(), Some(Bytes::from("v")));
    assert_eq!(c.node(leader).get_linear("k0").await.unwrap(), None);
    c.shutdown().await;
}

/// Peer connections beyond `peer_connections_max` are closed at once, and a
/// peer byte budget far smaller than one message (each message then takes
/// the whole budget) slows replication but never blocks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_connections_and_inbound_bytes_are_bounded() {
    let c = Cluster::start_with(3, |cfg| {
        cfg.limits.peer_connections_max = 2;
        cfg.limits.peer_inbound_bytes_max = 4 << 10;
    })
    .await;
    let leader = c.leader().await;
    still_serves(&c, 1).await;
    // Both slots of the leader hold its two followers (which dial it to
    // answer): a third connection is closed before any handshake.
    let mut s = TcpStream::connect(&c.slots[leader as usize - 1].peer).await.unwrap();
    let _ = s.write_all(&hello(1, PEER_PROTOCOL_VERSION, 9, leader)).await;
    let answer = read_to_close(&mut s).await;
    assert!(answer.is_empty(), "{answer:?}");
    // Values far over the 4 KiB budget still replicate to every node.
    let big = Bytes::from(vec![b'x'; 64 << 10]);
    for i in 0..20 {
        c.node(1).set(format!("big{i}"), big.clone()).await.unwrap();
    }
    for n in c.running() {
        assert_eq!(n.get_linear("big19").await.unwrap(), Some(big.clone()));
    }
    still_serves(&c, 2).await;
    c.shutdown().await;
}

/// `connected_clients` from `INFO` on an open connection.
async fn connected_clients(s: &mut TcpStream) -> usize {
    s.write_all(b"INFO\r\n").await.unwrap();
    let mut head = Vec::new();
    // `$<len>\r\n` then the text and CRLF.
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
        if head.ends_with(b"\r\n") {
            break;
        }
    }
    let len: usize = String::from_utf8_lossy(&head[1..head.len() - 2]).parse().unwrap();
    let mut body = vec![0u8; len + 2];
    s.read_exact(&mut body).await.unwrap();
    let text = String::from_utf8_lossy(&body).into_owned();
    let line = text.lines().find_map(|l| l.strip_prefix("connected_clients:")).unwrap();
    line.trim().parse().unwrap()
}

/// What a client can hold is bounded in time and bytes: a request left
/// incomplete, replies never read and an idle connection each close that
/// connection, requests over the shared input budget wait for it instead
/// of buffering, and the node keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_cannot_hold_buffers_or_slots_forever() {
    let c = Cluster::start_with(3, |cfg| {
        cfg.limits.client_request_timeout_ms = 300;
        cfg.limits.client_write_timeout_ms = 300;
        cfg.limits.client_idle_timeout_ms = 1_000;
        cfg.limits.client_input_bytes_max = 1 << 20;
        cfg.limits.resp.frame_bytes_max = 1 << 20;
    })
    .await;
    let leader = c.leader().await;
    let port = c.slots[(leader - 1) as usize].client.clone();

    // A request that never completes: closed after the request timeout.
    let mut s = TcpStream::connect(&port).await.unwrap();
    s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nonly part").await.unwrap();
    let started = std::time::Instant::now();
    assert!(read_to_close(&mut s).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));

    // An idle connection: closed after the idle timeout.
    let mut s = TcpStream::connect(&port).await.unwrap();
    s.write_all(b"PING\r\n").await.unwrap();
    assert_eq!(read_to_close(&mut s).await, b"+PONG\r\n");

    // Two large requests left incomplete, together over the input budget
    // (1 MiB past 64 KiB each): the second waits for budget rather than
    // buffering; both are closed in the end, nothing hangs.
    let big = 900usize << 10;
    let head = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${big}\r\n");
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&port).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let part = vec![b'x'; big - 1000];
        // The second one's bytes may not all be taken: do not wait for them.
        let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(&part)).await;
        holders.push(s);
    }
    for mut s in holders {
        read_to_close(&mut s).await;
    }

    // Replies never read: a pipeline of GETs of a 512 KiB value fills the
    // socket buffers; the stalled write closes the connection.
    c.node(leader).set("big", vec![b'v'; 512 << 10]).await.unwrap();
    let mut stalled = TcpStream::connect(&port).await.unwrap();
    let gets = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(200);
    let _ = tokio::time::timeout(Duration::from_secs(5), stalled.write_all(&gets)).await;
    // Never read from `stalled`; the server counts it until it gives up.
    let mut info = TcpStream::connect(&port).await.unwrap();
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    loop {
        let n = connected_clients(&mut info).await;
        seen.push(n);
        if n == 1 {
            break;
        }
        let last = &seen[seen.len().saturating_sub(3)..];
        assert!(
            started.elapsed() < DEADLINE,
            "stalled client kept ({} polls: {last:?})",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stalled);

    still_serves(&c, 1).await;
    let mut s = TcpStream::connect(&port).await.unwrap();
    s.write_all(b"PING\r\n").await.unwrap();
    let mut pong = [0u8; 7];
    s.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"+PONG\r\n");
}

/// A frame that stops arriving half-way closes its peer connection after
/// the snapshot RPC timeout (its bytes held a share of the inbound budget);
/// a connection quiet between frames is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_frame_stalled_half_way_closes_its_connection() {
    let c = Cluster::start_with(3, |cfg| cfg.snapshot_rpc_timeout_ms = 300).await;
    c.leader().await;
    let peer = c.slots[0].peer.clone();
    let handshake = || async {
        let mut s = TcpStream::connect(&peer).await.unwrap();
        s.write_all(&hello(1, PEER_PROTOCOL_VERSION, 9, 1)).await.unwrap();
        let mut answer = [0u8; ANSWER_FIXED];
        s.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer[26], 0, "handshake accepted");
        s
    };
    let mut quiet = handshake().await;
    let mut stalled = handshake().await;
    // A header announcing 100 KiB, then only part of it.
    stalled.write_all(&(100u32 << 10).to_le_bytes()).await.unwrap();
    stalled.write_all(&[0u8; 4 + 1000]).await.unwrap();
    let started = std::time::Instant::now();
    read_to_close(&mut stalled).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // The quiet one is still open: reading times out rather than ending.
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_millis(500), quiet.read(&mut b)).await;
    assert!(r.is_err(), "a quiet connection was closed: {r:?}");
    still_serves(&c, 1).await;
    c.shutdown().await;
}
