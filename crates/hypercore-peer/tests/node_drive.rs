//! The Rust peer against real Node peers on a local HyperDHT testnet (127.0.0.1 only), over
//! the hyperswarm bridge:
//! 1. a compat drive written by Node hyperdrive 11 (corestore 6) is mirrored by Rust (both
//!    cores, every proof verified by the engine); the writer stops; fresh Node readers —
//!    hyperdrive 13 on corestore 7 and hyperdrive 11 on corestore 6 — read every file
//!    byte-identical from the Rust peer alone;
//! 2. live: the Node writer appends while connected; the Rust peer follows without
//!    reconnecting and a Node reader connected only to the Rust peer sees the new file;
//! 3. a manifest-keyed drive written by Node hyperdrive 13 (corestore 7) mirrored by Rust and
//!    read back by a fresh hyperdrive 13 reader from Rust alone;
//! 4. hostile: an impostor offering the drive's db core signed by another key is closed with
//!    "invalid proof", nothing of it is stored, and the Node writer on another connection
//!    still delivers the whole drive (read back by a Node reader);
//! 5. Node alone, the limit behind #12's "read by hyperdrive 11": hyperdrive 11 (hypercore 10)
//!    cannot read a manifest-keyed hyperdrive 13 drive even from its own writer (hypercore 10
//!    refuses the version-1 manifest and closes the stream), while hyperdrive 13 reads it.

mod common;

use common::*;
use hypercore_peer::{drive, EngineCore, FrameIo, FramedIo, LinkInfo, PeerEvent};
use hypercore_wire::session::{CoreOptions, Limits, Session, SessionConfig};
use hyperswarm_bridge::JoinMode;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Mirrors the drive `db` from whoever serves it: db core, then the blobs core it names.
async fn mirror(rust: &RustPeer, ready: &serde_json::Value) -> ([u8; 32], [u8; 32]) {
    let db = hex32(&ready["key"]);
    rust.peer.add_core(db, true).unwrap();
    rust.peer
        .join(&*rust.bridge, &db, JoinMode::BOTH)
        .await
        .unwrap();
    rust.peer
        .wait_complete(&db, ready["dbLength"].as_u64().unwrap_or(1), WAIT)
        .await
        .unwrap();
    let blobs = drive::blobs_key(rust.peer.store(), &db)
        .unwrap()
        .expect("blobs key");
    assert_eq!(hex::encode(blobs), ready["blobsKey"].as_str().unwrap());
    rust.peer.add_core(blobs, true).unwrap();
    rust.peer
        .wait_complete(&blobs, ready["blobsLength"].as_u64().unwrap_or(1), WAIT)
        .await
        .unwrap();
    (db, blobs)
}

async fn read_from_rust(net: &Testnet, stack: &str, key: &str, wrote: &serde_json::Value) {
    let reader = net.reader(stack, key).await;
    let files = &reader.files;
    assert_same_files(wrote, &files["files"], stack);
    assert_eq!(files["peers"], 1, "{stack}: read from the Rust peer alone");
    eprintln!(
        "{stack} reader: {} bytes in {:.0} ms from Rust",
        files["bytes"],
        files["ms"].as_f64().unwrap_or(0.0)
    );
    reader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_hyperdrive_11_drive_mirrored_then_read_by_node_13_and_11_from_rust_alone() {
    if !node_ready("node_hyperdrive_11_drive_mirrored_then_read_by_node_13_and_11_from_rust_alone")
    {
        return;
    }
    init_tracing();
    let net = Testnet::start().await;
    let rdir = tempfile::tempdir().unwrap();
    let mut writer = net
        .writer("v11", json!({"set": "small", "join": "server"}))
        .await;
    let ready = writer.ready.clone();
    let rust = net.rust_peer(rdir.path()).await;
    let (db, blobs) = mirror(&rust, &ready).await;
    writer.stop().await;
    for k in [db, blobs] {
        let i = rust.peer.store().info(&k).unwrap();
        assert_eq!(i.held_blocks, i.length);
        assert!(i.compat, "a hyperdrive 11 core is a compat core");
    }
    let key = ready["key"].as_str().unwrap();
    read_from_rust(&net, "v13", key, &ready["files"]).await;
    read_from_rust(&net, "v11", key, &ready["files"]).await;
    rust.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_append_reaches_rust_and_a_node_reader_of_rust_without_reconnecting() {
    if !node_ready("live_append_reaches_rust_and_a_node_reader_of_rust_without_reconnecting") {
        return;
    }
    init_tracing();
    let net = Testnet::start().await;
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rust = net.rust_peer(rdir.path()).await;
    // the writer only dials (client): the Node reader below can reach it through Rust alone
    let mut writer = net.drive(
        "v11",
        "write",
        wdir.path(),
        "",
        json!({"set": "small", "join": "client", "deferJoin": true}),
    );
    let made = writer.event("made", 60).await;
    let db = hex32(&made["key"]);
    let blobs = hex32(&made["blobsKey"]);
    for k in [db, blobs] {
        rust.peer.add_core(k, true).unwrap();
    }
    rust.peer
        .join(&*rust.bridge, &db, JoinMode::BOTH)
        .await
        .unwrap();
    writer.send(json!({"cmd": "join"})).await;
    let ready = writer.event("ready", 60).await;
    rust.peer
        .wait_complete(&db, ready["dbLength"].as_u64().unwrap(), WAIT)
        .await
        .unwrap();
    rust.peer
        .wait_complete(&blobs, ready["blobsLength"].as_u64().unwrap(), WAIT)
        .await
        .unwrap();

    let mut reader = net.reader("v13", made["key"].as_str().unwrap()).await;
    assert_same_files(&ready["files"], &reader.files["files"], "v13 reader");
    assert_eq!(reader.files["peers"], 1);

    let mut events = rust.peer.subscribe();
    reader
        .proc
        .send(json!({"cmd": "wait", "path": "/live.html"}))
        .await;
    writer
        .send(json!({"cmd": "put", "path": "/live.html", "size": 90000, "seed": 77}))
        .await;
    let put = writer.event("put", 30).await;
    rust.peer
        .wait_complete(&db, put["dbLength"].as_u64().unwrap(), WAIT)
        .await
        .unwrap();
    rust.peer
        .wait_complete(&blobs, put["blobsLength"].as_u64().unwrap(), WAIT)
        .await
        .unwrap();
    let got = reader.proc.event("got", 60).await;
    assert_eq!(
        got["sha256"], put["sha256"],
        "the Node reader got the live file through Rust"
    );
    assert_eq!(
        got["peers"], 1,
        "still its one connection, to the Rust peer"
    );
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, PeerEvent::Connected { .. } | PeerEvent::Closed(_)),
            "no reconnect: {e:?}"
        );
    }
    reader.stop().await;
    writer.stop().await;
    rust.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_hyperdrive_13_manifest_drive_mirrored_then_read_from_rust_alone() {
    if !node_ready("node_hyperdrive_13_manifest_drive_mirrored_then_read_from_rust_alone") {
        return;
    }
    init_tracing();
    let net = Testnet::start().await;
    let rdir = tempfile::tempdir().unwrap();
    let mut writer = net
        .writer("v13", json!({"set": "small", "join": "server"}))
        .await;
    let ready = writer.ready.clone();
    let rust = net.rust_peer(rdir.path()).await;
    let (db, blobs) = mirror(&rust, &ready).await;
    writer.stop().await;
    for k in [db, blobs] {
        let i = rust.peer.store().info(&k).unwrap();
        assert_eq!(i.held_blocks, i.length);
        assert!(!i.compat && i.manifest.is_some(), "manifest-keyed: {i:?}");
    }
    read_from_rust(&net, "v13", ready["key"].as_str().unwrap(), &ready["files"]).await;
    rust.stop().await;
}

/// Runs a bare session serving `store` under `key` over `io` until it ends (a hostile peer).
async fn impostor(io: FramedIo<tokio::io::DuplexStream>, store: EngineCore, key: [u8; 32]) {
    let mut s = Session::new(SessionConfig {
        push: false,
        is_initiator: io.info().is_initiator,
        handshake_hash: io.info().handshake_hash,
        limits: Limits::default(),
    })
    .unwrap();
    s.add_core(key, Box::new(store), CoreOptions { download: false })
        .unwrap();
    loop {
        while let Some(f) = s.poll_transmit() {
            if io.send(f).await.is_err() {
                return;
            }
        }
        match io.recv().await {
            Ok(f) if s.handle_frame(&f).is_ok() => {}
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostor_signing_with_another_key_is_closed_and_the_node_writer_still_serves() {
    if !node_ready("impostor_signing_with_another_key_is_closed_and_the_node_writer_still_serves") {
        return;
    }
    init_tracing();
    let net = Testnet::start().await;
    let (rdir, idir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut writer = net
        .writer("v11", json!({"set": "small", "join": "server"}))
        .await;
    let ready = writer.ready.clone();
    let db = writer.key();
    let rust = net.rust_peer(rdir.path()).await;
    rust.peer.add_core(db, true).unwrap();

    // an impostor: a core of its own (another key pair) offered as the Node drive's db core
    let istore = hypercore_engine::Store::open(idir.path()).unwrap();
    let own = istore
        .create_writer(
            &hypercore_engine::KeyPair::generate().unwrap(),
            hypercore_engine::CoreKind::Compat,
        )
        .unwrap();
    istore
        .append(&own, (0..30).map(|i| vec![i as u8; 100]).collect())
        .unwrap();
    let (a, b) = tokio::io::duplex(1 << 20);
    let link = |init| LinkInfo {
        is_initiator: init,
        handshake_hash: vec![9; 64],
        remote_public_key: None,
    };
    let h = tokio::spawn(impostor(
        FramedIo::new(a, link(true)),
        EngineCore::new(istore, own),
        db,
    ));
    let end = tokio::time::timeout(
        Duration::from_secs(20),
        rust.peer.run(FramedIo::new(b, link(false))),
    )
    .await
    .unwrap();
    h.abort();
    assert!(
        end.hostile && end.reason.contains("invalid proof"),
        "{end:?}"
    );
    let info = rust.peer.store().info(&db).unwrap();
    assert_eq!(
        (info.length, info.held_blocks),
        (0, 0),
        "nothing of the impostor's stored"
    );

    // the genuine Node writer on another connection: the whole drive arrives
    let (db2, blobs) = mirror(&rust, &ready).await;
    assert_eq!(db2, db);
    for k in [db, blobs] {
        let i = rust.peer.store().info(&k).unwrap();
        assert_eq!(i.held_blocks, i.length);
    }
    writer.stop().await;
    read_from_rust(&net, "v13", ready["key"].as_str().unwrap(), &ready["files"]).await;
    rust.stop().await;
}

/// Issue #12's limit, shown with Node alone: hyperdrive 11 (corestore 6, hypercore 10) cannot
/// read a manifest-keyed drive made by hyperdrive 13 (corestore 7, hypercore 11) even from its
/// own writer — hypercore 10 refuses the version-1 manifest the writer sends ("Invalid
/// version: 1") and closes the replication stream, so not one block is verified. A mirror
/// cannot do better than the publisher here; hyperdrive 13 readers are the ones served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_hyperdrive_11_cannot_read_a_manifest_keyed_hyperdrive_13_drive_even_from_its_writer()
{
    if !node_ready(
        "node_hyperdrive_11_cannot_read_a_manifest_keyed_hyperdrive_13_drive_even_from_its_writer",
    ) {
        return;
    }
    init_tracing();
    let net = Testnet::start().await;
    let mut writer = net
        .writer("v13", json!({"set": "small", "join": "server"}))
        .await;
    let old = net.reader("v11", writer.key_hex()).await;
    eprintln!(
        "hyperdrive 11 reading hyperdrive 13's writer: {}",
        old.files
    );
    assert_eq!(old.files["peers"], 1, "it reached the writer");
    assert_eq!(old.files["dbLength"], 0, "no block of the db core verified");
    assert_eq!(old.files["files"], json!({}), "no file read");
    let errors = old.files["streamErrors"].to_string();
    assert!(
        errors.contains("Invalid version: 1"),
        "hypercore 10 refuses the version-1 manifest: {errors}"
    );
    old.stop().await;
    // the same writer serves a hyperdrive 13 reader every file (the drive is fine)
    let new = net.reader("v13", writer.key_hex()).await;
    assert_same_files(
        writer.files(),
        &new.files["files"],
        "v13 reader of the writer",
    );
    new.stop().await;
    writer.stop().await;
}
