//! The daemon's hypercore network plane (`net::hypernet`) against real Node peers on a local
//! HyperDHT testnet (127.0.0.1 only; nothing reaches the internet):
//! 1. a drive published by Node's hyperdrive 13 (manifest-keyed, corestore 7 — Agregore's and
//!    Pear's stack) is named by its key alone: the plane finds it on the HyperDHT, fetches the
//!    db core, adds the blobs core its header names by itself, counts the peer, reports what
//!    it stored; the writer goes away and a fresh Node reader reads every file byte-identical
//!    from the plane alone;
//! 2. a machine without Node: starting the plane fails with the command that fixes it.
//!
//! The Node side (testnet, writer, reader scripts, pinned packages) is the one
//! `crates/hypercore-peer` tests use; its harness is included here rather than copied.

#[path = "../crates/hypercore-peer/tests/common/mod.rs"]
mod peer_common;

use std::time::{Duration, Instant};

use dat_mirror::model::keys::Key;
use dat_mirror::net::hypernet::HyperNet;
use peer_common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_hyperdrive_13_site_is_mirrored_by_key_from_the_hyperdht_and_read_back_from_us_alone(
) {
    if !node_ready("a_node_hyperdrive_13_site_is_mirrored_by_key_from_the_hyperdht_and_read_back_from_us_alone") {
        return;
    }
    init_tracing();
    let net = Testnet::start().await;
    let (wdir, mdir, rdir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut writer = net.drive(
        "v13",
        "write",
        wdir.path(),
        "",
        json!({"set": "small", "join": "server"}),
    );
    let ready = writer.event("ready", 60).await;
    let db = hex32(&ready["key"]);
    let blobs = hex32(&ready["blobsKey"]);

    let store = hypercore_engine::Store::open(mdir.path()).unwrap();
    let plane = HyperNet::start(store.clone(), net.bridge_options())
        .await
        .unwrap();
    let mut stored = plane.stored();
    let started = Instant::now();
    plane.add_site(Key(db), true).await.unwrap();

    wait_for("the writer counted as a peer of the site", || {
        plane.peers(&Key(db)) >= 1
    })
    .await;
    let complete = |key: &[u8; 32], length: u64| {
        store
            .info(key)
            .is_ok_and(|i| i.length >= length && i.contiguous_length >= i.length)
    };
    let db_len = ready["dbLength"].as_u64().unwrap();
    let blobs_len = ready["blobsLength"].as_u64().unwrap();
    wait_for("the db core", || complete(&db, db_len)).await;
    wait_for("the blobs core, added from the db header", || {
        complete(&blobs, blobs_len)
    })
    .await;
    eprintln!(
        "mirrored a hyperdrive 13 site ({} + {} blocks) by key in {:.0} ms",
        db_len,
        blobs_len,
        started.elapsed().as_secs_f64() * 1000.0
    );
    let mut reported = std::collections::HashSet::new();
    while let Ok(k) = stored.try_recv() {
        reported.insert(k);
    }
    assert!(
        reported.contains(&db) && reported.contains(&blobs),
        "stored() reports both cores"
    );
    for k in [db, blobs] {
        let i = store.info(&k).unwrap();
        assert!(!i.compat && i.manifest.is_some(), "manifest-keyed: {i:?}");
    }

    writer.stop().await;
    let mut reader = net.drive(
        "v13",
        "read",
        rdir.path(),
        ready["key"].as_str().unwrap(),
        json!({}),
    );
    let files = reader.event("files", 120).await;
    assert_same_files(&ready["files"], &files["files"], "v13 reader of the mirror");
    assert_eq!(files["peers"], 1, "read from the mirror's plane alone");
    reader.stop().await;

    plane.remove_site(Key(db)).await;
    assert!(
        plane.peer().cores().is_empty(),
        "both cores left the replication"
    );
    plane.shutdown().await;
    drop(net); // kills the testnet process (kill_on_drop)
}

#[tokio::test]
async fn without_node_the_plane_does_not_start_and_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = hypercore_engine::Store::open(dir.path()).unwrap();
    let mut options = hyperswarm_bridge::BridgeOptions::new(random32());
    options.node = "/nonexistent/node".into();
    options.bootstrap = vec!["127.0.0.1:9".into()];
    let err = match HyperNet::start(store, options).await {
        Ok(_) => panic!("started without node"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("cannot join the hypercore network"), "{err}");
    assert!(err.contains("fix"), "names the fix: {err}");
}
