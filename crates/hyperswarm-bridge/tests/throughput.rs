//! Throughput through the bridge vs Node → Node, measured in one run on one local testnet:
//! 100 MiB (`HSB_BENCH_MIB` to change) in 64 KiB messages, timed from the receiver's first
//! byte to its last. Prints MiB/s and the ratios; asserts only that every byte arrives.
//! Its own test binary so it does not share the 2 cores with the other tests under `cargo test`.

mod common;

use bytes::Bytes;
use common::{node_ready, random32, Testnet};
use hyperswarm_bridge::{Connection, HyperswarmBridge, JoinMode, Transport};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const CHUNK: usize = 64 * 1024;

fn total_bytes() -> u64 {
    let mib: u64 = std::env::var("HSB_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    mib * 1024 * 1024
}

async fn accept_from(bridge: &HyperswarmBridge, key: &str) -> Box<dyn Connection> {
    loop {
        let c = timeout(Duration::from_secs(60), bridge.accept())
            .await
            .expect("a connection within 60 s")
            .expect("bridge running");
        if hex::encode(c.info().remote_public_key) == key {
            return c;
        }
    }
}

fn mibps(v: &serde_json::Value) -> f64 {
    v["mibps"].as_f64().expect("mibps")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_through_the_bridge_vs_node_to_node() {
    if !node_ready("hundred_mib_through_the_bridge_vs_node_to_node") {
        return;
    }
    common::init_tracing();
    let total = total_bytes();
    let net = Testnet::start().await;

    // Anchor: Node → Node over the same testnet.
    let t1 = random32();
    let (mut sink, _) = net.peer("sink-server", &t1, total).await;
    let (_source, _) = net.peer("source-client", &t1, total).await;
    let anchor = sink.event("received", 600).await;
    assert_eq!(anchor["bytes"].as_u64(), Some(total));
    drop(sink);
    let node_node = mibps(&anchor);

    let cancel = CancellationToken::new();
    let bridge = HyperswarmBridge::start(net.bridge_options(), cancel.clone())
        .await
        .expect("bridge starts");

    // Rust → Node: the bridge dials a Node sink and sends.
    let t2 = random32();
    let (mut sink, sink_key) = net.peer("sink-server", &t2, total).await;
    bridge.join(t2, JoinMode::CLIENT).await.expect("join");
    let conn = accept_from(&bridge, &sink_key).await;
    let start = Instant::now();
    let mut sent = 0u64;
    let block = Bytes::from(vec![0x5a; CHUNK]);
    while sent < total {
        let n = (total - sent).min(CHUNK as u64) as usize;
        conn.send(block.slice(..n)).await.expect("send");
        sent += n as u64;
    }
    let got = sink.event("received", 600).await;
    let wall = start.elapsed();
    assert_eq!(got["bytes"].as_u64(), Some(total));
    let rust_node = mibps(&got);
    conn.close("done").await;

    // Node → Rust: a Node source dials the bridge, which receives.
    let t3 = random32();
    bridge.join(t3, JoinMode::SERVER).await.expect("announce");
    let (_source, source_key) = net.peer("source-client", &t3, total).await;
    let conn = accept_from(&bridge, &source_key).await;
    let mut received = 0u64;
    let mut first = None;
    while received < total {
        let m = timeout(Duration::from_secs(120), conn.recv())
            .await
            .expect("data keeps coming")
            .expect("recv");
        first.get_or_insert_with(Instant::now);
        received += m.len() as u64;
    }
    let secs = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
    let node_rust = total as f64 / 1048576.0 / secs.max(1e-9);
    assert_eq!(received, total);

    let mib = total / 1048576;
    println!("throughput, {mib} MiB in 64 KiB messages over one local testnet (receiver's first to last byte):");
    println!("  Node -> Node            {node_node:8.1} MiB/s");
    println!(
        "  Rust -> bridge -> Node  {rust_node:8.1} MiB/s  ({:.2}x Node->Node; sender wall {:.2} s)",
        rust_node / node_node,
        wall.as_secs_f64()
    );
    println!(
        "  Node -> bridge -> Rust  {node_rust:8.1} MiB/s  ({:.2}x Node->Node)",
        node_rust / node_node
    );
    bridge.shutdown().await;
}
