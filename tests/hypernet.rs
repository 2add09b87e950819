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
//!    stops a fresh Node hyperdrive 13 reader reads it from the mirror alone; a hyperdrive 11
//!    reader gets nothing from the mirror, as from the publisher itself (hypercore 10 refuses
//!    manifest-keyed cores: `crates/hypercore-peer/tests/node_drive.rs` shows it with Node
//!    alone);
//! 4. a site the laptop publishes (over iroh) and the mirror mirrors: a Node hyperdrive 13
//!    reader connected to the mirror alone sees the laptop's next version live, on the same
//!    connection; then, laptop stopped, fresh Node readers — hyperdrive 13 on corestore 7 and
//!    hyperdrive 11 on corestore 6 — read every file of it byte-identical from the mirror alone;
//! 5. a compat drive published by Node hyperdrive 11 over hyperswarm: `touch KEY` in the
//!    laptop's control folder (FUSE) → the entry says `mirrored`, HTTP serves every file
//!    byte-identical; the publisher stops → fresh Node readers (13 and 11) still get every file
//!    from the mirror alone;
//! 6. a mirror whose HyperDHT is unreachable serves every site it holds at start all the same.
//!
//! The Node side (testnet, writer, reader scripts, pinned packages) is the one
//! `crates/hypercore-peer` tests use; its harness is included here rather than copied.

mod common;
#[path = "../crates/hypercore-peer/tests/common/mod.rs"]
mod peer_common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dat_mirror::laptop::Laptop;
use dat_mirror::mirror::{self, MirrorConfig};
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;
use dat_mirror::model::status::{StatusEntry, StatusEvent};
use dat_mirror::net::endpoint::NetworkConfig;
use dat_mirror::net::hypernet::{HyperNet, PlaneUpdate};
use peer_common::{assert_same_files, init_tracing, node_ready, random32, Testnet};
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
    let mdir = tempfile::tempdir().unwrap();
    let mut writer = net
        .writer("v13", json!({"set": "small", "join": "server"}))
        .await;
    let ready = writer.ready.clone();
    let (db, blobs) = (writer.key(), writer.blobs_key());

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
    let reader = net.reader("v13", ready["key"].as_str().unwrap()).await;
    assert_same_files(
        &ready["files"],
        &reader.files["files"],
        "v13 reader of the mirror",
    );
    assert_eq!(
        reader.files["peers"], 1,
        "read from the mirror's plane alone"
    );
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

/// A mirror daemon on loopback that allows the laptop of `lap_dir`, on the hypercore network
/// with `bootstrap` as its HyperDHT (the plane must run: it needs Node).
async fn start_hyper_mirror(
    pi_dir: PathBuf,
    lap_dir: &std::path::Path,
    bootstrap: Vec<String>,
) -> mirror::Mirror {
    let mut network = NetworkConfig::offline();
    network.hyperswarm = true;
    network.hyperswarm_bootstrap = bootstrap;
    let mirror = mirror::start(MirrorConfig {
        data: pi_dir,
        listen: "127.0.0.1:0".parse().unwrap(),
        http: Some("127.0.0.1:0".parse().unwrap()),
        allow: vec![common::node_id(lap_dir)],
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
    mirror
}

/// A mirror daemon on the testnet's HyperDHT (and iroh on loopback) with a paired laptop
/// (iroh only: the laptop is not on the hypercore network, so a Node reader can only reach a
/// site through the mirror).
struct Daemon {
    tmp: tempfile::TempDir,
    mirror: mirror::Mirror,
    laptop: Option<Laptop>,
    site_dir: PathBuf,
}

impl Daemon {
    async fn start(net: &Testnet) -> Daemon {
        common::init_tracing();
        let tmp = tempfile::tempdir().unwrap();
        let (pi_dir, lap_dir, site_dir) = (
            tmp.path().join("pi"),
            tmp.path().join("laptop"),
            tmp.path().join("site"),
        );
        let mirror = start_hyper_mirror(pi_dir, &lap_dir, net.bootstrap.clone()).await;
        let laptop = common::start_laptop(&lap_dir, vec![common::mirror_addr(&mirror)]).await;
        Daemon {
            tmp,
            mirror,
            laptop: Some(laptop),
            site_dir,
        }
    }

    fn laptop(&self) -> &Laptop {
        self.laptop.as_ref().expect("the laptop is running")
    }

    /// The laptop asks the mirror to mirror `key` (as `touch KEY` does) and waits for it.
    async fn mirror_site(&self, key: Key, what: &str) -> Duration {
        let started = Instant::now();
        self.laptop()
            .inner
            .append(Command::Mirror { key, alias: None })
            .await
            .unwrap();
        wait_mirrored(&self.mirror, key, what).await;
        started.elapsed()
    }

    /// Every file of `wrote` ({path: {len, sha256}}) over the mirror's HTTP, byte-identical.
    async fn assert_http_serves(&self, key: Key, wrote: &serde_json::Value) {
        let base = format!("{}/{}", common::http_base(&self.mirror), key.to_hex());
        for (path, f) in wrote.as_object().expect("files") {
            let (status, _, body) = common::http_get(&format!("{base}{path}")).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(body.len() as u64, f["len"].as_u64().unwrap(), "{path}");
            assert_eq!(
                hex::encode(sha2::Sha256::digest(&body)),
                f["sha256"].as_str().unwrap(),
                "{path} served byte-identical"
            );
        }
    }

    async fn stop_laptop(&mut self) {
        if let Some(l) = self.laptop.take() {
            l.shutdown().await;
        }
    }

    async fn shutdown(mut self) {
        self.stop_laptop().await;
        self.mirror.shutdown().await;
        drop(self.tmp);
    }
}

/// A fresh Node reader (`stack`) of `key` reads every file of `wrote` from the mirror alone.
async fn read_from_mirror(net: &Testnet, stack: &str, key: Key, wrote: &serde_json::Value) {
    let reader = net.reader(stack, &key.to_hex()).await;
    assert_same_files(
        wrote,
        &reader.files["files"],
        &format!("{stack} reader of the mirror"),
    );
    assert_eq!(reader.files["peers"], 1, "{stack}: from the mirror alone");
    eprintln!(
        "{stack} reader: {} bytes from the mirror in {:.0} ms",
        reader.files["bytes"],
        reader.files["ms"].as_f64().unwrap_or(0.0)
    );
    reader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mirror_daemon_mirrors_a_node_hyperdrive_13_site_by_key_and_serves_it_after_its_publisher_left(
) {
    if !node_ready("the_mirror_daemon_mirrors_a_node_hyperdrive_13_site_by_key_and_serves_it_after_its_publisher_left")
    {
        return;
    }
    let net = Testnet::start().await;
    let d = Daemon::start(&net).await;

    // A drive only a Node publisher serves: mirrored by key from the HyperDHT.
    let mut writer = net
        .writer("v13", json!({"set": "small", "join": "server"}))
        .await;
    let node_site = Key(writer.key());
    let took = d.mirror_site(node_site, "the Node site mirrored").await;
    eprintln!(
        "a Node hyperdrive 13 site mirrored by key in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    d.assert_http_serves(node_site, writer.files()).await;
    writer.stop().await;
    read_from_mirror(&net, "v13", node_site, writer.files()).await;

    // #12: hyperdrive 11 (hypercore 10) cannot verify a manifest-keyed core from anyone —
    // from the mirror as from the publisher (node_drive.rs shows the publisher's case): it
    // reaches the mirror and verifies nothing.
    let old = net.reader("v11", &node_site.to_hex()).await;
    eprintln!(
        "hyperdrive 11 reading the manifest-keyed site from the mirror: {}",
        old.files
    );
    assert_eq!(old.files["peers"], 1, "it reached the mirror");
    assert_eq!(
        old.files["dbLength"], 0,
        "no block verified by hypercore 10"
    );
    assert_eq!(old.files["files"], json!({}));
    old.stop().await;

    d.shutdown().await;
    drop(net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_laptop_site_reaches_a_connected_node_reader_live_and_node_13_and_11_read_it_from_the_mirror_alone(
) {
    if !node_ready("a_laptop_site_reaches_a_connected_node_reader_live_and_node_13_and_11_read_it_from_the_mirror_alone")
    {
        return;
    }
    let net = Testnet::start().await;
    let mut d = Daemon::start(&net).await;
    let made = common::make_site(&d.site_dir, 200_000);
    let ours = common::publish(d.laptop(), &d.site_dir, None).await.key;
    d.mirror_site(ours, "our site mirrored").await;

    // A Node hyperdrive 13 reader connected to the mirror alone (the laptop is not on the
    // hypercore network) ...
    let mut reader = net.reader("v13", &ours.to_hex()).await;
    assert_same_files(&described(&made), &reader.files["files"], "v13 reader");
    assert_eq!(reader.files["peers"], 1, "from the mirror alone");
    reader
        .proc
        .send(json!({"cmd": "wait", "path": "/live.html"}))
        .await;
    // ... sees the laptop's next version without reconnecting.
    let live = common::pseudo_random(150_000, 77);
    std::fs::write(d.site_dir.join("live.html"), &live).unwrap();
    let started = Instant::now();
    let version = common::publish(d.laptop(), &d.site_dir, Some(ours)).await;
    assert_eq!(version.key, ours);
    let got = reader.proc.event("got", 60).await;
    eprintln!(
        "the laptop's new version reached the connected Node reader {:.0} ms after publish",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(
        got["sha256"].as_str().unwrap(),
        hex::encode(sha2::Sha256::digest(&live)),
        "the live file, byte-identical"
    );
    assert_eq!(got["peers"], 1, "on its one connection, to the mirror");
    reader.stop().await;

    // Laptop stopped: fresh readers on both Node stacks read the new version from the mirror
    // (it holds it: the reader above got it from the mirror alone).
    d.stop_laptop().await;
    let mut now = made.clone();
    now.push(("live.html".into(), live));
    let wrote = described(&now);
    read_from_mirror(&net, "v13", ours, &wrote).await;
    read_from_mirror(&net, "v11", ours, &wrote).await;

    d.shutdown().await;
    drop(net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_hyperdrive_11_site_touched_in_the_control_folder_is_mirrored_served_and_outlives_its_publisher(
) {
    const TEST: &str = "a_node_hyperdrive_11_site_touched_in_the_control_folder_is_mirrored_served_and_outlives_its_publisher";
    if !node_ready(TEST) {
        return;
    }
    let net = Testnet::start().await;
    let d = Daemon::start(&net).await;
    let mnt = d.tmp.path().join("mnt");
    let Some(mounted) = common::mount(d.laptop(), &mnt, TEST).await else {
        return;
    };

    let mut writer = net
        .writer("v11", json!({"set": "small", "join": "server"}))
        .await;
    let key = Key(writer.key());
    let started = Instant::now();
    let p = mnt.join(key.to_hex());
    common::blocking(move || std::fs::File::create(p).map(drop))
        .await
        .expect("touch KEY");
    let state = common::wait_for_state(&mnt, &key.to_hex(), "mirrored").await;
    eprintln!(
        "touch -> {state} in {:.0} ms (a Node hyperdrive 11 site)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let info = d
        .mirror
        .inner
        .store
        .engine()
        .info(&key.0)
        .expect("the db core is stored");
    assert!(info.compat, "a hyperdrive 11 drive is compat-keyed");
    d.assert_http_serves(key, writer.files()).await;

    writer.stop().await;
    read_from_mirror(&net, "v13", key, writer.files()).await;
    read_from_mirror(&net, "v11", key, writer.files()).await;

    drop(mounted);
    d.shutdown().await;
    drop(net);
}

/// 6. A mirror whose HyperDHT cannot be reached (its only bootstrap is a closed port on
/// loopback; nothing leaves the machine) still starts every site it holds and serves it over
/// HTTP at once: announcing a site waits on the DHT, starting it must not. Before the join
/// ran in each site's own tasks, a site's start waited for its announce to give up (several
/// seconds per site: 12 sites took far longer than the bound below).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mirror_serves_every_site_at_start_while_the_hyperdht_is_unreachable() {
    const TEST: &str = "a_mirror_serves_every_site_at_start_while_the_hyperdht_is_unreachable";
    const SITES: usize = 12;
    if !node_ready(TEST) {
        return;
    }
    let pair = common::Pair::start().await;
    let mut keys = Vec::new();
    for i in 0..SITES {
        let dir = pair.tmp.path().join(format!("site{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("site {i}")).unwrap();
        let key = common::publish(&pair.laptop, &dir, None).await.key;
        pair.laptop
            .inner
            .append(Command::Mirror { key, alias: None })
            .await
            .unwrap();
        keys.push(key);
    }
    for key in &keys {
        wait_mirrored(&pair.mirror, *key, "each site mirrored").await;
    }
    let common::Pair {
        tmp,
        pi_dir,
        lap_dir,
        mirror,
        laptop,
        ..
    } = pair;
    laptop.shutdown().await;
    mirror.shutdown().await;

    let started = Instant::now();
    let closed = vec![format!("127.0.0.1:{}", common::free_udp_port())];
    let mirror = start_hyper_mirror(pi_dir, &lap_dir, closed).await;
    let base = common::http_base(&mirror);
    for (i, key) in keys.iter().enumerate() {
        let url = format!("{base}/{}/index.html", key.to_hex());
        let body = common::wait_until("each site served over HTTP", || {
            let url = url.clone();
            async move {
                let (status, _, body) = common::http_get(&url).await;
                (status == 200).then_some(body)
            }
        })
        .await;
        assert_eq!(body, format!("site {i}").as_bytes());
    }
    let took = started.elapsed();
    eprintln!("{SITES} sites served {took:?} after the start, the HyperDHT unreachable");
    assert!(
        took < Duration::from_secs(15),
        "serving {SITES} sites took {took:?}: the start waited on the HyperDHT"
    );
    mirror.shutdown().await;
    drop(tmp);
}
