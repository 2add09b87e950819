//! The daemon side never trusts the bridge process: a fake `bridge.js` that writes crafted
//! frames (an absurd length, a malformed OPEN, DATA past its credit) ends the session or the
//! connection with a reason, the supervisor keeps restarting it with back-off, and nothing
//! panics. Needs `node` (and the packages, which preflight checks, linked from js/).

mod common;

use common::node_ready;
use hyperswarm_bridge::frame::FromBridge;
use hyperswarm_bridge::{
    BridgeEvent, BridgeOptions, BridgeStatus, ConnectionError, HyperswarmBridge, Transport,
};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// A js dir whose bridge.js reads INIT, writes `frames` to fd 3 and idles.
fn fake_bridge(name: &str, frames: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hsb-fake-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("frames.bin"), frames).expect("frames");
    std::fs::write(
        dir.join("bridge.js"),
        "const fs = require('fs')\n\
         const net = require('net')\n\
         const ctl = new net.Socket({ fd: 3, readable: true, writable: true })\n\
         ctl.once('data', () => ctl.write(fs.readFileSync(__dirname + '/frames.bin')))\n\
         ctl.on('error', () => {})\n\
         ctl.on('close', () => process.exit(0))\n",
    )
    .expect("bridge.js");
    let _ = std::os::unix::fs::symlink(
        common::js_dir().join("node_modules"),
        dir.join("node_modules"),
    );
    dir
}

fn options(dir: PathBuf) -> BridgeOptions {
    let mut o = BridgeOptions::new([3; 32]);
    o.js_dir = dir;
    o.backoff.initial = Duration::from_millis(50);
    o.backoff.max = Duration::from_millis(200);
    o
}

fn ready() -> Vec<u8> {
    FromBridge::Ready {
        public_key: [9; 32],
    }
    .encode()
    .to_vec()
}

#[tokio::test]
async fn an_absurd_frame_length_ends_the_session_and_the_bridge_is_restarted() {
    if !node_ready("an_absurd_frame_length_ends_the_session_and_the_bridge_is_restarted") {
        return;
    }
    let mut frames = ready();
    frames.extend_from_slice(&u32::MAX.to_le_bytes());
    frames.push(0x85);
    let dir = fake_bridge("length", &frames);
    let bridge = HyperswarmBridge::start(options(dir.clone()), CancellationToken::new())
        .await
        .expect("READY arrives first");
    let mut events = bridge.events();
    let mut died = 0;
    let mut restarted = 0;
    timeout(Duration::from_secs(30), async {
        while died < 2 || restarted < 2 {
            match events.recv().await.expect("events") {
                BridgeEvent::Died { reason } => {
                    assert!(reason.contains("bad frame"), "{reason}");
                    died += 1;
                }
                BridgeEvent::Restarted { .. } => restarted += 1,
                _ => {}
            }
        }
    })
    .await
    .expect("dies and is restarted, again and again");
    bridge.shutdown().await;
    assert_eq!(bridge.status(), BridgeStatus::Stopped);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_malformed_open_ends_the_session() {
    if !node_ready("a_malformed_open_ends_the_session") {
        return;
    }
    let mut open = FromBridge::Open {
        conn: 1,
        initiator: true,
        remote_public_key: [1; 32],
        handshake_hash: [2; 64],
    }
    .encode()
    .to_vec();
    open[5 + 37] = 63; // handshake hash length byte
    let mut frames = ready();
    frames.extend_from_slice(&open);
    let dir = fake_bridge("open", &frames);
    let bridge = HyperswarmBridge::start(options(dir.clone()), CancellationToken::new())
        .await
        .expect("READY arrives first");
    let mut events = bridge.events();
    let reason = timeout(Duration::from_secs(30), async {
        loop {
            if let BridgeEvent::Died { reason } = events.recv().await.expect("events") {
                return reason;
            }
        }
    })
    .await
    .expect("the session ends");
    assert!(reason.contains("malformed"), "{reason}");
    bridge.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn data_past_the_credit_closes_the_connection() {
    if !node_ready("data_past_the_credit_closes_the_connection") {
        return;
    }
    let mut frames = ready();
    frames.extend_from_slice(
        &FromBridge::Open {
            conn: 7,
            initiator: false,
            remote_public_key: [1; 32],
            handshake_hash: [2; 64],
        }
        .encode(),
    );
    // Window 4 MiB + one 16 MiB message is the most the daemon takes unread: send 24 MiB.
    for _ in 0..3 {
        frames.extend_from_slice(
            &FromBridge::Data {
                conn: 7,
                msg: vec![0u8; 8 << 20].into(),
            }
            .encode(),
        );
    }
    let dir = fake_bridge("credit", &frames);
    let bridge = HyperswarmBridge::start(options(dir.clone()), CancellationToken::new())
        .await
        .expect("READY arrives first");
    let conn = timeout(Duration::from_secs(30), bridge.accept())
        .await
        .expect("the fake connection")
        .expect("running");
    assert_eq!(conn.info().remote_public_key, [1; 32]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = 0;
    let err = loop {
        match timeout(Duration::from_secs(10), conn.recv())
            .await
            .expect("no hang")
        {
            Ok(m) => got += m.len(),
            Err(e) => break e,
        }
    };
    assert!(got <= 16 << 20, "took {got} bytes");
    assert_eq!(
        err,
        ConnectionError::Closed("the bridge sent past its credit".into())
    );
    assert!(matches!(bridge.status(), BridgeStatus::Running { .. }));
    bridge.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
