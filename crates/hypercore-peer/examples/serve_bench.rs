//! Measures the Rust peer as a seeder against Node: a Node hyperdrive 13 reader fetches the
//! ~100 MiB mixed site (1,400 small, 48 medium, 4 large files) from a Node hyperdrive 13
//! seeder, then — in the same run, on the same local HyperDHT testnet — a fresh reader fetches
//! it from the Rust peer alone (after the Rust peer mirrored it and the Node seeder stopped).
//! Prints both times and the ratio. `cargo run --release -p hypercore-peer --example
//! serve_bench [mix|small]` (needs node and the packages of tests/node/v13 and the bridge's
//! js/). `HYPERCORE_PEER_STORE_DIR=/dev/shm` puts the Rust peer's store there (to tell fsync
//! cost from the rest).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use hyperswarm_bridge::JoinMode;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !node_ready("serve_bench") {
        return;
    }
    let set = std::env::args().nth(1).unwrap_or_else(|| "mix".into());
    let net = Testnet::start().await;
    let wdir = tempfile::tempdir().unwrap();
    let rdir = match std::env::var_os("HYPERCORE_PEER_STORE_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let t = Instant::now();
    let mut writer = net.drive(
        "v13",
        "write",
        wdir.path(),
        "",
        json!({"set": set, "join": "server"}),
    );
    let ready = writer.event("ready", 600).await;
    let key = ready["key"].as_str().unwrap().to_string();
    println!(
        "node writer made the site in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let a_dir = tempfile::tempdir().unwrap();
    let mut a = net.drive("v13", "read", a_dir.path(), &key, json!({}));
    let from_node = a.event("files", 600).await;
    assert_same_files(
        &ready["files"],
        &from_node["files"],
        "reader of the Node seeder",
    );
    a.stop().await;

    let rust = net.rust_peer(rdir.path()).await;
    let db = hex32(&ready["key"]);
    let blobs = hex32(&ready["blobsKey"]);
    let t = Instant::now();
    for k in [db, blobs] {
        rust.peer.add_core(k, true).unwrap();
    }
    rust.peer
        .join(&*rust.bridge, &db, JoinMode::BOTH)
        .await
        .unwrap();
    let wait = Duration::from_secs(600);
    rust.peer
        .wait_complete(&db, ready["dbLength"].as_u64().unwrap(), wait)
        .await
        .unwrap();
    rust.peer
        .wait_complete(&blobs, ready["blobsLength"].as_u64().unwrap(), wait)
        .await
        .unwrap();
    let rust_fetch = t.elapsed();
    writer.stop().await;

    let b_dir = tempfile::tempdir().unwrap();
    let mut b = net.drive("v13", "read", b_dir.path(), &key, json!({}));
    let from_rust = b.event("files", 600).await;
    assert_same_files(
        &ready["files"],
        &from_rust["files"],
        "reader of the Rust peer",
    );
    assert_eq!(from_rust["peers"], 1);
    b.stop().await;
    rust.stop().await;

    let bytes = from_node["bytes"].as_f64().unwrap_or(0.0);
    let mib = bytes / 1048576.0;
    let node_ms = from_node["ms"].as_f64().unwrap_or(f64::NAN);
    let rust_ms = from_rust["ms"].as_f64().unwrap_or(f64::NAN);
    println!(
        "site: {} files, {mib:.1} MiB",
        ready["files"].as_object().map_or(0, |f| f.len())
    );
    println!(
        "node hyperdrive 13 reader <- node seeder: {:.0} ms ({:.1} MiB/s)",
        node_ms,
        mib / (node_ms / 1000.0)
    );
    println!(
        "node hyperdrive 13 reader <- rust peer:   {:.0} ms ({:.1} MiB/s)",
        rust_ms,
        mib / (rust_ms / 1000.0)
    );
    println!(
        "ratio (node seeder time / rust peer time): {:.2}x",
        node_ms / rust_ms
    );
    println!(
        "rust peer fetching it from the node seeder: {:.0} ms ({:.1} MiB/s)",
        rust_fetch.as_millis(),
        mib / rust_fetch.as_secs_f64()
    );
}
