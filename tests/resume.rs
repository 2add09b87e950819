//! Replication resumes where it was when either side restarts mid-transfer: the mirror as a
//! real `dat-mirror serve` process killed with SIGKILL, the laptop stopped and started again.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use dat_mirror::model::keys::Key;
use dat_mirror::net::endpoint::PeerAddr;

struct ServeProcess(Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_serve(data: &std::path::Path, port: u16, http: u16, allow: Key) -> ServeProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_dat-mirror"))
        .arg("--data")
        .arg(data)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--http",
            &format!("127.0.0.1:{http}"),
        ])
        .args(["--allow", &allow.to_hex()])
        .env("DAT_MIRROR_NETWORK_MDNS", "false")
        .env("DAT_MIRROR_NETWORK_DHT", "false")
        .env("DAT_MIRROR_NETWORK_HYPERSWARM", "false")
        .env("DAT_MIRROR_NETWORK_RELAY", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dat-mirror serve");
    ServeProcess(child)
}

/// (held bytes, complete) of `key` from the mirror's JSON status, if it answers.
async fn progress(http: u16, key: &Key) -> Option<(u64, bool)> {
    let r = reqwest::get(format!("http://127.0.0.1:{http}/.well-known/dat-mirror"))
        .await
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
    let site = json["sites"]
        .as_array()?
        .iter()
        .find(|s| s["key"] == key.to_hex())?
        .clone();
    Some((site["bytes"].as_u64()?, site["complete"].as_bool()?))
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_killed_mid_transfer_resumes() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let (pi_dir, lap_dir, site_dir) = (
        tmp.path().join("pi"),
        tmp.path().join("lap"),
        tmp.path().join("site"),
    );
    let (port, http) = (free_udp_port(), free_tcp_port());
    let mirror = PeerAddr {
        id: node_id(&pi_dir),
        addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
    };
    let laptop = start_laptop(&lap_dir, vec![mirror]).await;
    let files = make_site(&site_dir, 96 << 20);
    let site = publish_and_mirror(&laptop, &site_dir).await;

    let mut kills = 0;
    let mut last_held = 0;
    let mut events = laptop.inner.node.subscribe();
    for _round in 0..3 {
        while events.try_recv().is_ok() {}
        // The mirror dials the laptops it knows at start (where each was last seen), which
        // replaces the laptop's stale connection at once; without the address it cannot
        // (every discovery route is off), so the laptop only reconnects after noticing, and
        // what the mirror holds first is what it kept on disk.
        let _ = std::fs::remove_file(pi_dir.join("laptop-addrs.json"));
        let serve = spawn_serve(&pi_dir, port, http, laptop.inner.key());
        // After a restart the mirror holds what it had before the laptop reconnects
        // (the laptop needs seconds to notice the old connection died).
        let (held, complete) = wait_until("the mirror to report what it held", || async {
            progress(http, &site.key)
                .await
                .filter(|(b, c)| *c || *b >= last_held)
        })
        .await;
        if kills > 0 {
            assert!(
                events.try_recv().is_err(),
                "the laptop reconnected first: the check proves nothing"
            );
        }
        if complete {
            break;
        }
        let target = held + (12 << 20);
        let (held, complete) = wait_until("some more progress", || async {
            progress(http, &site.key)
                .await
                .filter(|(b, c)| *c || *b >= target)
        })
        .await;
        if complete {
            break;
        }
        drop(serve); // SIGKILL
        kills += 1;
        last_held = held;
    }
    assert!(
        kills >= 1,
        "the transfer finished before the mirror could be killed once"
    );
    let _serve = spawn_serve(&pi_dir, port, http, laptop.inner.key());
    wait_until("the site to be complete", || async {
        progress(http, &site.key).await.filter(|p| p.1)
    })
    .await;
    for (path, bytes) in &files {
        let (status, _, body) =
            http_get(&format!("http://127.0.0.1:{http}/{}/{path}", site.key)).await;
        assert_eq!(status, 200, "{path}");
        assert!(body == *bytes, "{path} differs after {kills} kills");
    }
    laptop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn laptop_restarted_mid_transfer_resumes() {
    let Pair {
        lap_dir,
        site_dir,
        mirror,
        laptop,
        tmp: _tmp,
        ..
    } = Pair::start().await;
    let files = make_site(&site_dir, 64 << 20);
    let site = publish_and_mirror(&laptop, &site_dir).await;
    let blobs = wait_until("the mirror to start on the blobs", || async {
        mirror
            .inner
            .site(&site.key)
            .and_then(|(_, b)| b)
            .filter(|b| b.info().held_blocks > 20)
    })
    .await;
    laptop.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = blobs.info().held_blocks;
    assert!(
        !blobs.info().complete(),
        "finished before the laptop stopped"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        blobs.info().held_blocks,
        held,
        "nothing arrives while the laptop is away"
    );

    let laptop = start_laptop(&lap_dir, vec![]).await; // remembers its mirror
    wait_until("the site to be complete", || async {
        blobs.info().synced().then_some(())
    })
    .await;
    let base = format!("{}/{}", http_base(&mirror), site.key);
    wait_until("the mirror to serve the last file", || {
        let url = format!("{base}/data/big.bin");
        async move { (http_get(&url).await.0 == 200).then_some(()) }
    })
    .await;
    for (path, bytes) in &files {
        let (_, _, body) = http_get(&format!("{base}/{path}")).await;
        assert!(body == *bytes, "{path} differs");
    }
    laptop.shutdown().await;
    mirror.shutdown().await;
}
