//! The daemon's hypercore network plane (`net::hypernet`) against real Node peers on a local
//! HyperDHT testnet (127.0.0.1 only; nothing reaches the internet):
//! 1. a drive published by Node's hyperdrive 13 (manifest-keyed, corestore 7 — Agregore's and
//!    Pear's stack) is named by its key alone: the plane finds it on the HyperDHT, fetches the
//!    db core, adds the blobs core its header names by itself, counts the peer, reports what
//!    it stored; the writer goes away and a fresh Node reader reads every file byte-identical
//!    from the plane alone;
//! 2. a machine without Node: starting the plane fails with the command that fixes it;
//! 3. the mirror daemon on the plane: a laptop asks it to mirror a drive that only a Node
//!    hyperdrive 13 publisher serves (no paired laptop has it) → the mirror finds it on the
//!    HyperDHT, reports it mirrored, serves it over HTTP byte-identical, and after the publisher
//!    stops a fresh Node reader reads it from the mirror alone; and a site the laptop publishes
//!    (over iroh) is read by a Node hyperdrive 13 reader from the mirror alone, laptop stopped.
//!
//! The Node side (testnet, writer, reader scripts, pinned packages) is the one
//! `crates/hypercore-peer` tests use; its harness is included here rather than copied.

mod common;
#[path = "../crates/hypercore-peer/tests/common/mod.rs"]
mod peer_common;

use std::time::{Duration, Instant};

use dat_mirror::mirror::{self, MirrorConfig};
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;
use dat_mirror::model::status::{StatusEntry, StatusEvent};
use dat_mirror::net::endpoint::NetworkConfig;
use dat_mirror::net::hypernet::{HyperNet, PlaneUpdate};
use peer_common::{assert_same_files, hex32, init_tracing, node_ready, random32, Testnet};
use serde_json::json;
use sha2::Digest;

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
    let mut updates = plane.updates();
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
    let (mut stored, mut announced) = (std::collections::HashSet::new(), None);
    while let Ok(u) = updates.try_recv() {
        match u {
            PlaneUpdate::Stored(k) => {
                stored.insert(k);
            }
            PlaneUpdate::RemoteLength(k, n) if k == db => announced = Some(n),
            PlaneUpdate::RemoteLength(..) => {}
        }
    }
    assert!(
        stored.contains(&db) && stored.contains(&blobs),
        "updates() reports both cores stored"
    );
    assert_eq!(announced, Some(db_len), "the writer's length reported");
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

/// Waits until the mirror's status log says `key` is mirrored.
async fn wait_mirrored(m: &mirror::Mirror, key: Key, what: &str) {
    let log = m.inner.status.core().clone();
    common::wait_until(what, || {
        let log = log.clone();
        async move {
            for i in 0..log.info().length {
                let Ok(Some(bytes)) = log.get(i).await else {
                    continue;
                };
                if let Ok(e) = StatusEntry::decode(&bytes) {
                    if matches!(e.event, StatusEvent::Mirrored { key: k, .. } if k == key) {
                        return Some(());
                    }
                }
            }
            None
        }
    })
    .await;
}

/// The files of a site folder as drive.js describes them: `{path: {len, sha256}}`.
fn described(files: &[(String, Vec<u8>)]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (path, bytes) in files {
        out.insert(
            format!("/{path}"),
            json!({"len": bytes.len(), "sha256": hex::encode(sha2::Sha256::digest(bytes))}),
        );
    }
    serde_json::Value::Object(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mirror_daemon_mirrors_a_node_site_by_key_and_serves_its_own_sites_to_node() {
    if !node_ready("the_mirror_daemon_mirrors_a_node_site_by_key_and_serves_its_own_sites_to_node")
    {
        return;
    }
    common::init_tracing();
    let net = Testnet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (pi_dir, lap_dir, site_dir) = (
        tmp.path().join("pi"),
        tmp.path().join("laptop"),
        tmp.path().join("site"),
    );
    let mut network = NetworkConfig::offline();
    network.hyperswarm = true;
    network.hyperswarm_bootstrap = net.bootstrap.clone();
    let mirror = mirror::start(MirrorConfig {
        data: pi_dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        http: Some("127.0.0.1:0".parse().unwrap()),
        allow: vec![common::node_id(&lap_dir)],
        network,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        mirror.inner.hyper.net().is_some(),
        "{}",
        mirror.inner.hyper.describe()
    );
    let laptop = common::start_laptop(&lap_dir, vec![common::mirror_addr(&mirror)]).await;

    // A drive only a Node publisher serves: mirrored by key from the HyperDHT.
    let wdir = tempfile::tempdir().unwrap();
    let mut writer = net.drive(
        "v13",
        "write",
        wdir.path(),
        "",
        json!({"set": "small", "join": "server"}),
    );
    let ready = writer.event("ready", 60).await;
    let node_site = Key(hex32(&ready["key"]));
    let started = Instant::now();
    laptop
        .inner
        .append(Command::Mirror {
            key: node_site,
            alias: None,
        })
        .await
        .unwrap();
    wait_mirrored(&mirror, node_site, "the Node site mirrored").await;
    eprintln!(
        "a Node hyperdrive 13 site mirrored by key in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let base = format!("{}/{}", common::http_base(&mirror), node_site.to_hex());
    let wrote = ready["files"].as_object().unwrap();
    for (path, f) in wrote {
        let (status, _, body) = common::http_get(&format!("{base}{path}")).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&body)),
            f["sha256"].as_str().unwrap(),
            "{path} served byte-identical"
        );
    }
    writer.stop().await;
    let rdir = tempfile::tempdir().unwrap();
    let mut reader = net.drive("v13", "read", rdir.path(), &node_site.to_hex(), json!({}));
    let files = reader.event("files", 120).await;
    assert_same_files(
        &ready["files"],
        &files["files"],
        "Node reader of the mirror",
    );
    assert_eq!(files["peers"], 1, "from the mirror alone");
    reader.stop().await;

    // A site the laptop publishes (replicated over iroh), read by Node from the mirror alone.
    let made = common::make_site(&site_dir, 200_000);
    let ours = common::publish(&laptop, &site_dir, None).await.key;
    laptop
        .inner
        .append(Command::Mirror {
            key: ours,
            alias: None,
        })
        .await
        .unwrap();
    wait_mirrored(&mirror, ours, "our site mirrored").await;
    laptop.shutdown().await;
    let rdir = tempfile::tempdir().unwrap();
    let mut reader = net.drive("v13", "read", rdir.path(), &ours.to_hex(), json!({}));
    let files = reader.event("files", 120).await;
    assert_same_files(
        &described(&made),
        &files["files"],
        "Node reader of our site",
    );
    assert_eq!(files["peers"], 1, "from the mirror alone");
    reader.stop().await;

    mirror.shutdown().await;
    drop(net);
}
