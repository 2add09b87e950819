//! The walking skeleton end to end, with every layer real: hypercores on disk, iroh on
//! loopback, the FUSE control folder, the HTTP gateway.

mod common;

use std::time::Duration;

use common::*;
use dat_mirror::model::keys::Key;
use dat_mirror::model::status::{StatusEntry, StatusEvent};
use dat_mirror::net::node::{PeerEvent, ReplicationEvent};

async fn status_events(m: &dat_mirror::mirror::Mirror) -> Vec<StatusEvent> {
    let core = m.inner.status.core().clone();
    let mut out = vec![];
    for i in 0..core.info().length {
        out.push(
            StatusEntry::decode(&core.get(i).await.unwrap().unwrap())
                .unwrap()
                .event,
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn touch_mirrors_serves_and_rm_removes() {
    let Pair {
        tmp,
        site_dir,
        mirror,
        laptop,
        ..
    } = Pair::start().await;
    let Some(mnt) = mount(
        &laptop,
        &tmp.path().join("mnt"),
        "touch_mirrors_serves_and_rm_removes",
    )
    .await
    else {
        return;
    };
    let files = make_site(&site_dir, 300_000);
    let site = publish(&laptop, &site_dir, None).await;
    let key = site.key.to_hex();

    let m = mnt.path.clone();
    let k = key.clone();
    blocking(move || std::fs::File::create(m.join(&k)).unwrap()).await;
    // Entry shows at once, and the command is a signed entry of the laptop's hypercore.
    let commands = laptop
        .inner
        .store
        .open_existing(&laptop.inner.key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(commands.info().length, 1);
    assert!(commands.info().writable);
    wait_for_state(&mnt.path, &key, "mirrored v").await;

    // Served byte-identical, with index.html for folders and content types.
    let base = format!("{}/{}", http_base(&mirror), key);
    for (path, bytes) in &files {
        let (status, _, body) = http_get(&format!("{base}/{path}")).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(&body, bytes, "{path}");
    }
    let (status, ct, body) = http_get(&format!("{base}/")).await;
    assert_eq!((status, body.as_slice()), (200, files[0].1.as_slice()));
    assert_eq!(ct.as_deref(), Some("text/html; charset=utf-8"));
    let (status, _, body) = http_get(&format!("{base}/about/")).await;
    assert_eq!((status, body), (200, b"<h1>about</h1>".to_vec()));
    let (_, ct, _) = http_get(&format!("{base}/css/site.css")).await;
    assert_eq!(ct.as_deref(), Some("text/css; charset=utf-8"));
    let (status, _, _) = http_get(&format!("{base}/nope.html")).await;
    assert_eq!(status, 404);
    // z-base32 spelling works too.
    let (status, _, _) = http_get(&format!(
        "{}/{}/index.html",
        http_base(&mirror),
        site.key.to_z32()
    ))
    .await;
    assert_eq!(status, 200);

    // ls -l: size = bytes the mirror holds.
    let (m, k) = (mnt.path.clone(), key.clone());
    let size = blocking(move || std::fs::metadata(m.join(k)).unwrap().len()).await;
    let (db, blobs) = mirror.inner.site(&site.key).unwrap();
    assert_eq!(
        size,
        db.info().byte_length + blobs.unwrap().info().byte_length
    );
    assert!(size as usize > files.iter().map(|f| f.1.len()).sum::<usize>());

    // rm → Unmirror → the mirror stops serving and reports the site removed.
    let (m, k) = (mnt.path.clone(), key.clone());
    blocking(move || std::fs::remove_file(m.join(k)).unwrap()).await;
    wait_until("the site to be gone from HTTP", || {
        let url = format!("{base}/index.html");
        async move { (http_get(&url).await.0 == 404).then_some(()) }
    })
    .await;
    wait_until("the mirror to report removed", || async {
        status_events(&mirror)
            .await
            .contains(&StatusEvent::Removed { key: site.key })
            .then_some(())
    })
    .await;
    let (m, k) = (mnt.path.clone(), key.clone());
    wait_until("the entry to leave the folder", || {
        let (m, k) = (m.clone(), k.clone());
        async move { blocking(move || (!m.join(&k).exists()).then_some(())).await }
    })
    .await;
    assert!(
        !mirror.inner.store.exists(&site.key),
        "the site's data is deleted"
    );
    drop(mnt);
    laptop.shutdown().await;
    mirror.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_goes_queued_delivered_syncing_mirrored() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let (pi_dir, lap_dir, site_dir) = (
        tmp.path().join("pi"),
        tmp.path().join("lap"),
        tmp.path().join("site"),
    );
    let port = free_udp_port();
    let mirror_id = node_id(&pi_dir);
    let mirror_addr = dat_mirror::net::endpoint::PeerAddr {
        id: mirror_id,
        addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
    };
    let laptop = start_laptop(&lap_dir, vec![mirror_addr.clone()]).await;
    let Some(mnt) = mount(
        &laptop,
        &tmp.path().join("mnt"),
        "status_goes_queued_delivered_syncing_mirrored",
    )
    .await
    else {
        return;
    };
    make_site(&site_dir, 40 << 20);
    let site = publish(&laptop, &site_dir, None).await;
    let nobody = Key(hypercore_engine::KeyPair::generate().unwrap().public_key); // a site no peer has

    // Mirror down: queued, and still queued once the laptop has tried to reach the mirror
    // after the command was appended (a dial failing after it is the proof it tried).
    let (m, k, n) = (mnt.path.clone(), site.key.to_hex(), nobody.to_hex());
    blocking(move || {
        std::fs::File::create(m.join(&k)).unwrap();
        std::fs::create_dir(m.join(&n)).unwrap();
    })
    .await;
    assert_eq!(
        state_of(&mnt.path, &site.key.to_hex()).as_deref(),
        Some("queued")
    );
    let mut peer_events = laptop.inner.node.subscribe();
    wait_for_event(&mut peer_events, "the laptop to try the mirror", |e| {
        *e == PeerEvent::DialFailed(mirror_id)
    })
    .await;
    assert_eq!(
        state_of(&mnt.path, &site.key.to_hex()).as_deref(),
        Some("queued")
    );

    // Mirror up: record every state the entry shows until mirrored.
    let mirror = start_mirror(&pi_dir, mirror_addr.addr.unwrap(), vec![laptop.inner.key()]).await;
    let (m, k) = (mnt.path.clone(), site.key.to_hex());
    let seen = blocking(move || {
        let deadline = std::time::Instant::now() + TIMEOUT;
        let mut seen: Vec<String> = vec!["queued".into()];
        loop {
            let s = state_of(&m, &k).unwrap();
            let class = s.split(' ').next().unwrap().to_string();
            if seen.last() != Some(&class) {
                seen.push(class.clone());
            }
            if class == "mirrored" || std::time::Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await;
    let order = ["queued", "delivered", "syncing", "mirrored"];
    let ranks: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap_or(99))
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] < w[1]),
        "states out of order: {seen:?}"
    );
    assert!(
        seen.contains(&"syncing".to_string()) && seen.last().unwrap() == "mirrored",
        "{seen:?}"
    );
    // A site nobody seeds is delivered (acknowledged) and stays there.
    assert_eq!(
        wait_for_state(&mnt.path, &nobody.to_hex(), "delivered").await,
        "delivered"
    );
    let text = std::fs::read_to_string(mnt.path.join(site.key.to_hex())).unwrap();
    assert!(text.contains("mirrored v"), "{text}");
    drop(mnt);
    laptop.shutdown().await;
    mirror.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_version_reaches_the_mirror_without_reconnecting() {
    let Pair {
        site_dir,
        mirror,
        laptop,
        tmp: _tmp,
        ..
    } = Pair::start().await;
    make_site(&site_dir, 0);
    let site = publish_and_mirror(&laptop, &site_dir).await;
    let url = format!("{}/{}/index.html", http_base(&mirror), site.key);
    wait_until("v1 to be served", || {
        let url = url.clone();
        async move { (http_get(&url).await.0 == 200).then_some(()) }
    })
    .await;
    let mut events = mirror.inner.node.subscribe();

    std::fs::write(site_dir.join("index.html"), b"<h1>version two</h1>").unwrap();
    std::fs::write(site_dir.join("new.txt"), b"added").unwrap();
    std::fs::remove_file(site_dir.join("css/site.css")).unwrap();
    let v2 = publish(&laptop, &site_dir, Some(site.key)).await;
    assert!(v2.version > site.version);
    wait_until("v2 to be served", || {
        let url = url.clone();
        async move { (http_get(&url).await.2 == b"<h1>version two</h1>").then_some(()) }
    })
    .await;
    let base = format!("{}/{}", http_base(&mirror), site.key);
    assert_eq!(http_get(&format!("{base}/new.txt")).await.2, b"added");
    assert_eq!(http_get(&format!("{base}/css/site.css")).await.0, 404);
    assert!(
        events.try_recv().is_err(),
        "no connection was made or lost while updating"
    );
    laptop.shutdown().await;
    mirror.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unallowed_laptop_is_not_followed_and_reads_nothing() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let (pi_dir, good_dir, bad_dir) = (
        tmp.path().join("pi"),
        tmp.path().join("good"),
        tmp.path().join("bad"),
    );
    let mirror = start_mirror(
        &pi_dir,
        "127.0.0.1:0".parse().unwrap(),
        vec![node_id(&good_dir)],
    )
    .await;
    let mut mirror_events = mirror.inner.node.replication_events();
    let good = start_laptop(&good_dir, vec![mirror_addr(&mirror)]).await;
    let bad = start_laptop(&bad_dir, vec![mirror_addr(&mirror)]).await;
    let site_dir = tmp.path().join("site");
    make_site(&site_dir, 0);
    let bad_site = publish(&bad, &site_dir, None).await;
    bad.inner
        .append(dat_mirror::model::command::Command::Mirror {
            key: bad_site.key,
            alias: None,
        })
        .await
        .unwrap();
    wait_until("the unallowed laptop to connect", || async {
        mirror
            .inner
            .node
            .is_connected(&bad.inner.key())
            .then_some(())
    })
    .await;

    // The allowed laptop's command is a barrier: once it is acknowledged, the mirror has
    // had every chance to act on the other laptop's command too.
    let barrier = Key(hypercore_engine::KeyPair::generate().unwrap().public_key);
    good.inner
        .append(dat_mirror::model::command::Command::Mirror {
            key: barrier,
            alias: None,
        })
        .await
        .unwrap();
    wait_until("the allowed command to be acknowledged", || async {
        status_events(&mirror)
            .await
            .iter()
            .any(|e| matches!(e, StatusEvent::Ack { log, .. } if *log == good.inner.key()))
            .then_some(())
    })
    .await;
    // And the unallowed laptop really asked the mirror (for its status log) and was
    // refused: proof that its traffic reached the mirror before asserting what it got.
    let (bad_id, status_dk) = (bad.inner.key(), mirror.key().discovery_key());
    wait_for_event(
        &mut mirror_events,
        "the mirror to refuse the unallowed laptop",
        |e| {
            *e == ReplicationEvent::ServedNotFound {
                peer: bad_id,
                discovery_key: status_dk,
            }
        },
    )
    .await;
    let events = status_events(&mirror).await;
    assert!(!events.iter().any(|e| matches!(e, StatusEvent::Ack { log, .. } | StatusEvent::Rejected { log, .. } if *log == bad.inner.key())));
    assert!(
        mirror.inner.site(&bad_site.key).is_none(),
        "the site is not mirrored"
    );
    assert!(
        !mirror.inner.store.exists(&bad.inner.key()),
        "the command log is not even stored"
    );
    // And the unallowed laptop cannot read the mirror's status log.
    let replica = bad
        .inner
        .store
        .open_or_create_replica(&mirror.key())
        .await
        .unwrap();
    assert_eq!(replica.info().length, 0);
    assert_eq!(
        bad.inner
            .view()
            .site(&bad_site.key)
            .unwrap()
            .state
            .to_string(),
        "queued"
    );
    // While the allowed laptop reads it.
    let good_replica = good
        .inner
        .store
        .open_existing(&mirror.key())
        .await
        .unwrap()
        .unwrap();
    assert!(good_replica.info().length > 0);
    good.shutdown().await;
    bad.shutdown().await;
    mirror.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leftover_site_data_is_removed_on_start_and_kept_sites_survive() {
    let Pair {
        pi_dir,
        site_dir,
        mirror,
        laptop,
        tmp: _tmp,
        ..
    } = Pair::start().await;
    make_site(&site_dir, 0);
    let site = publish_and_mirror(&laptop, &site_dir).await;
    let url = format!("{}/{}/index.html", http_base(&mirror), site.key);
    wait_until("the site to be served", || {
        let url = url.clone();
        async move { (http_get(&url).await.0 == 200).then_some(()) }
    })
    .await;
    let stray = Key(hypercore_engine::KeyPair::generate().unwrap().public_key);
    mirror
        .inner
        .store
        .open_or_create_replica(&stray)
        .await
        .unwrap();
    let listen = mirror.listen;
    mirror.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mirror = start_mirror(&pi_dir, listen, vec![]).await;
    assert!(!mirror.inner.store.exists(&stray), "leftover core removed");
    let (db, blobs) = mirror.inner.site(&site.key).unwrap();
    assert!(mirror.inner.store.exists(&db.key()));
    let url = format!("{}/{}/index.html", http_base(&mirror), site.key);
    wait_until("the site to be served again", || {
        let url = url.clone();
        async move { (http_get(&url).await.0 == 200).then_some(()) }
    })
    .await;
    let blobs = mirror.inner.site(&site.key).unwrap().1.or(blobs).unwrap();
    assert!(
        mirror.inner.store.exists(&blobs.key()),
        "the site's blobs core is kept"
    );
    assert!(
        mirror.inner.store.exists(&laptop.inner.key()),
        "the command log is kept"
    );
    laptop.shutdown().await;
    mirror.shutdown().await;
}

/// A mirror restarted while its laptop is away (a Pi rebooting while the laptop is closed)
/// serves its complete sites at once and does not say again what its status log already
/// says: before, every start appended an entry per site (1,000 durable appends for 1,000
/// sites, which the sites started last waited behind to be served; and the log grew by a
/// thousand entries per reboot).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_mirror_does_not_report_its_complete_sites_again() {
    let Pair {
        pi_dir,
        lap_dir,
        site_dir,
        mirror,
        laptop,
        tmp: _tmp,
    } = Pair::start().await;
    let mut sites = Vec::new();
    for n in 0..3 {
        let dir = site_dir.join(format!("s{n}"));
        make_site(&dir, 0);
        sites.push(publish_and_mirror(&laptop, &dir).await.key);
    }
    wait_until("every site to be recorded as mirrored", || {
        let sites = sites.clone();
        let mirror = &mirror;
        async move {
            let events = status_events(mirror).await;
            sites
                .iter()
                .all(|k| {
                    events
                        .iter()
                        .any(|e| matches!(e, StatusEvent::Mirrored { key, .. } if key == k))
                })
                .then_some(())
        }
    })
    .await;
    let listen = mirror.listen;
    laptop.shutdown().await;
    mirror.shutdown().await;

    let mirror = start_mirror(&pi_dir, listen, vec![node_id(&lap_dir)]).await;
    let before = status_events(&mirror).await.len();
    for key in &sites {
        let url = format!("{}/{}/index.html", http_base(&mirror), key);
        wait_until("the site to be served after the restart", || {
            let url = url.clone();
            async move { (http_get(&url).await.0 == 200).then_some(()) }
        })
        .await;
    }
    // Served means the site task sent its drive (SiteEvent::Blobs) and went on to its first
    // look at the cores, which is what appended the entries; give those a generous moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = status_events(&mirror).await;
    let new: Vec<&StatusEvent> = after.iter().skip(before).collect();
    assert!(
        new.iter().all(|e| e.site().is_none()),
        "the restart reported its sites again: {new:?}"
    );
    // And its status page says so: mirrored, not "syncing" until a peer comes online (no
    // peer is: nothing has announced a length to compare with).
    let url = format!("{}/.well-known/dat-mirror", http_base(&mirror));
    wait_until("the status JSON to show every site mirrored", || {
        let url = url.clone();
        let sites = sites.clone();
        async move {
            let (status, _, body) = http_get(&url).await;
            let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
            let shown = json["sites"].as_array()?;
            let mirrored = |k: &Key| {
                shown.iter().any(|s| {
                    s["key"] == k.to_hex().as_str()
                        && s["state"] == "mirrored"
                        && s["complete"] == true
                })
            };
            (status == 200 && sites.iter().all(mirrored)).then_some(())
        }
    })
    .await;
    mirror.shutdown().await;
}
