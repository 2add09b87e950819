//! Integration tests of the hyperswarm bridge against real Node hyperswarm peers on a local
//! HyperDHT testnet (3 nodes, everything bound to 127.0.0.1; nothing leaves the machine):
//! Rust client → Node server, Node client → Rust server (the direction peeroxide failed), the
//! supervisor restarting a `kill -9`ed bridge, and the errors that name the fixing command.
//! Skips loudly without node/npm; with CI=true it fails instead.

mod common;

use bytes::Bytes;
use common::{node_ready, random32, NodeProc, Testnet};
use hyperswarm_bridge::{
    BridgeError, BridgeEvent, BridgeOptions, BridgeStatus, Connection, ConnectionError,
    HyperswarmBridge, JoinMode, Transport,
};
use std::time::Duration;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

async fn accept(bridge: &HyperswarmBridge) -> Box<dyn Connection> {
    timeout(Duration::from_secs(60), bridge.accept())
        .await
        .expect("a connection within 60 s")
        .expect("bridge running")
}

/// Accepts until the connection from `key` (others are dropped).
async fn accept_from(bridge: &HyperswarmBridge, key: &str) -> Box<dyn Connection> {
    loop {
        let c = accept(bridge).await;
        if hex::encode(c.info().remote_public_key) == key {
            return c;
        }
    }
}

/// The facts both sides report agree.
fn check_facts(
    conn: &dyn Connection,
    node_facts: &serde_json::Value,
    node_key: &str,
    bridge: &HyperswarmBridge,
    rust_initiates: bool,
) {
    let info = conn.info();
    assert_eq!(hex::encode(info.remote_public_key), node_key, "remote key");
    assert_eq!(
        node_facts["remotePublicKey"],
        hex::encode(bridge.public_key()),
        "Node sees the bridge's key"
    );
    assert_eq!(
        node_facts["handshakeHash"],
        hex::encode(info.handshake_hash),
        "same handshake hash"
    );
    assert_eq!(info.is_initiator, rust_initiates, "initiator (Rust side)");
    assert_eq!(
        node_facts["isInitiator"], !rust_initiates,
        "initiator (Node side)"
    );
}

/// Node greets first; then every message we send comes back (1 byte .. 6 MiB, over the
/// 4 MiB flow-control window).
async fn echo(conn: &dyn Connection) {
    let hello = timeout(Duration::from_secs(30), conn.recv())
        .await
        .expect("greeting in time")
        .expect("greeting");
    assert_eq!(&hello[..], b"hello from node");
    for (i, len) in [1usize, 100, 4096, 65536, 65537, 1 << 20, 6 << 20]
        .into_iter()
        .enumerate()
    {
        let msg: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
        conn.send(Bytes::from(msg.clone())).await.expect("send");
        let mut back = Vec::new();
        // secret-stream keeps message boundaries; collect to be robust anyway.
        while back.len() < len {
            let m = timeout(Duration::from_secs(30), conn.recv())
                .await
                .expect("echo in time")
                .expect("echo");
            back.extend_from_slice(&m);
        }
        assert_eq!(back, msg, "echo of {len} bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_exchanges_messages_with_node_server() {
    if !node_ready("rust_client_exchanges_messages_with_node_server") {
        return;
    }
    common::init_tracing();
    let net = Testnet::start().await;
    let topic = random32();
    let (mut node, node_key) = net.peer("echo-server", &topic, 0).await;
    let cancel = CancellationToken::new();
    let bridge = HyperswarmBridge::start(net.bridge_options(), cancel.clone())
        .await
        .expect("bridge starts");
    let t0 = std::time::Instant::now();
    bridge.join(topic, JoinMode::CLIENT).await.expect("join");
    let conn = accept_from(&bridge, &node_key).await;
    eprintln!("rust client → node server: connected in {:?}", t0.elapsed());
    let facts = node.event("connection", 30).await;
    check_facts(&*conn, &facts, &node_key, &bridge, true);
    echo(&*conn).await;
    conn.close("test done").await;
    node.event("closed", 30).await;
    bridge.shutdown().await;
    assert_eq!(bridge.status(), BridgeStatus::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_reaches_rust_server() {
    if !node_ready("node_client_reaches_rust_server") {
        return;
    }
    common::init_tracing();
    let net = Testnet::start().await;
    let topic = random32();
    let cancel = CancellationToken::new();
    let bridge = HyperswarmBridge::start(net.bridge_options(), cancel.clone())
        .await
        .expect("bridge starts");
    bridge
        .join(topic, JoinMode::SERVER)
        .await
        .expect("announce");
    let t0 = std::time::Instant::now();
    let (mut node, node_key) = net.peer("echo-client", &topic, 0).await;
    let conn = accept_from(&bridge, &node_key).await;
    eprintln!("node client → rust server: connected in {:?}", t0.elapsed());
    let facts = node.event("connection", 30).await;
    check_facts(&*conn, &facts, &node_key, &bridge, false);
    echo(&*conn).await;
    // The peer goes away: the connection ends with a reason.
    drop(node);
    let killed = std::time::Instant::now();
    let end = timeout(Duration::from_secs(30), async {
        loop {
            if let Err(e) = conn.recv().await {
                return e;
            }
        }
    })
    .await
    .expect("a dead Node peer is noticed");
    eprintln!(
        "the killed Node peer was noticed after {:?}: {end}",
        killed.elapsed()
    );
    cancel.cancel();
    assert!(bridge.accept().await.is_none(), "accept ends on shutdown");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bridge_is_restarted_and_rejoins() {
    if !node_ready("a_killed_bridge_is_restarted_and_rejoins") {
        return;
    }
    common::init_tracing();
    let net = Testnet::start().await;
    let topic = random32();
    let cancel = CancellationToken::new();
    let bridge = HyperswarmBridge::start(net.bridge_options(), cancel.clone())
        .await
        .expect("bridge starts");
    let mut events = bridge.events();
    bridge
        .join(topic, JoinMode::SERVER)
        .await
        .expect("announce");
    let (node, node_key) = net.peer("echo-client", &topic, 0).await;
    let conn = accept_from(&bridge, &node_key).await;
    echo(&*conn).await;

    let pid = bridge.child_pid().expect("running");
    // SAFETY: kill(2) on the child we started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let err = timeout(Duration::from_secs(10), conn.recv())
        .await
        .expect("the open connection ends")
        .expect_err("closed");
    assert!(
        matches!(&err, ConnectionError::Closed(r) if r.contains("bridge stopped")),
        "{err}"
    );
    drop(conn);
    drop(node);

    let restarted = timeout(Duration::from_secs(30), async {
        let mut died = false;
        loop {
            match events.recv().await.expect("events") {
                BridgeEvent::Died { reason } => {
                    eprintln!("supervisor: bridge died: {reason}");
                    died = true;
                }
                BridgeEvent::Restarted { pid, attempt } => {
                    eprintln!("supervisor: restarted as {pid:?} (attempt {attempt})");
                    assert!(died, "Died is reported before Restarted");
                    return pid;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("restarted within 30 s");
    assert_ne!(restarted, Some(pid));
    assert!(matches!(
        bridge.status(),
        BridgeStatus::Running { restarts: 1, .. }
    ));
    assert_eq!(bridge.topics(), vec![(topic, JoinMode::SERVER)]);

    // The topic was joined again: a new Node peer connects and the connection works.
    let (_node2, key2) = net.peer("echo-client", &topic, 0).await;
    let conn2 = accept_from(&bridge, &key2).await;
    echo(&*conn2).await;
    bridge.shutdown().await;
}

#[tokio::test]
async fn missing_node_or_packages_name_the_fixing_command() {
    let mut opts = BridgeOptions::new([1; 32]);
    opts.node = "/nonexistent/node".into();
    let err = HyperswarmBridge::start(opts, CancellationToken::new())
        .await
        .err()
        .expect("no node, no bridge");
    assert!(matches!(err, BridgeError::NodeMissing { .. }), "{err}");
    assert!(
        err.fix().expect("a fix").contains("npm ci --prefix"),
        "{err}"
    );

    if !node_ready("missing_node_or_packages_name_the_fixing_command (packages part)") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("hsb-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("bridge.js"), "").expect("bridge.js");
    let mut opts = BridgeOptions::new([1; 32]);
    opts.js_dir = dir.clone();
    let err = HyperswarmBridge::start(opts, CancellationToken::new())
        .await
        .err()
        .expect("no packages, no bridge");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(err, BridgeError::NotInstalled { .. }), "{err}");
    assert_eq!(
        err.fix(),
        Some(format!("npm ci --prefix {}", dir.display()).as_str())
    );
    let mut opts = BridgeOptions::new([1; 32]);
    opts.bootstrap = vec!["nohost".into()];
    let err = HyperswarmBridge::start(opts, CancellationToken::new())
        .await
        .err()
        .expect("bad bootstrap");
    assert!(matches!(err, BridgeError::BadOption(_)), "{err}");
}

#[tokio::test]
async fn a_bridge_that_dies_before_ready_is_reported_with_its_stderr() {
    if !node_ready("a_bridge_that_dies_before_ready_is_reported_with_its_stderr") {
        return;
    }
    // A js dir whose bridge.js throws at once (packages linked from the real one).
    let dir = std::env::temp_dir().join(format!("hsb-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("bridge.js"),
        "throw new Error('broken on purpose')\n",
    )
    .unwrap();
    let _ = std::os::unix::fs::symlink(
        common::js_dir().join("node_modules"),
        dir.join("node_modules"),
    );
    let mut opts = BridgeOptions::new([1; 32]);
    opts.js_dir = dir.clone();
    let err = HyperswarmBridge::start(opts, CancellationToken::new())
        .await
        .err()
        .expect("broken bridge");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(err, BridgeError::StartFailed(_)), "{err}");
    assert!(err.to_string().contains("broken on purpose"), "{err}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// RSS (KiB) of `pid` before and after `source` sent everything (and 2 s more to land).
async fn rss_growth(pid: u32, source: &mut NodeProc) -> (u64, u64) {
    let before = rss_kib(pid);
    source.event("sent", 120).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    (before, rss_kib(pid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_daemon_makes_the_bridge_buffer_no_more_than_a_paused_node_reader() {
    if !node_ready("a_slow_daemon_makes_the_bridge_buffer_no_more_than_a_paused_node_reader") {
        return;
    }
    common::init_tracing();
    let net = Testnet::start().await;
    let total: u64 = 128 << 20;

    // Reference: a Node reader that pauses its stream. UDX has no receive window, so Node
    // itself buffers what the sender keeps sending; the bridge must not add to that.
    let t1 = random32();
    let (mut stall, _, stall_pid) = net.peer_with_pid("stall-server", &t1, 0).await;
    let (mut source, _) = net.peer("source-client", &t1, total).await;
    stall.event("stalled", 60).await;
    let (nb, na) = rss_growth(stall_pid, &mut source).await;
    drop(source);
    drop(stall);

    let topic = random32();
    let bridge = HyperswarmBridge::start(net.bridge_options(), CancellationToken::new())
        .await
        .expect("bridge starts");
    bridge
        .join(topic, JoinMode::SERVER)
        .await
        .expect("announce");
    let (mut source, key) = net.peer("source-client", &topic, total).await;
    let conn = accept_from(&bridge, &key).await;
    let pid = bridge.child_pid().expect("running");
    // Take the first message, then stop reading until everything was sent.
    let mut got = conn.recv().await.expect("first message").len() as u64;
    let (before, after) = rss_growth(pid, &mut source).await;
    let (node_mib, bridge_mib) = (
        na.saturating_sub(nb) / 1024,
        after.saturating_sub(before) / 1024,
    );
    eprintln!(
        "RSS growth while nobody reads {} MiB: paused Node reader +{node_mib} MiB, bridge +{bridge_mib} MiB",
        total >> 20
    );
    assert!(
        bridge_mib <= node_mib + 48,
        "the bridge buffered more than a paused Node reader"
    );
    // Nothing was lost: the rest arrives once the daemon reads again.
    while got < total {
        let m = timeout(Duration::from_secs(60), conn.recv())
            .await
            .expect("data resumes")
            .expect("recv");
        got += m.len() as u64;
    }
    assert_eq!(got, total);
    bridge.leave(topic).await.expect("leave");
    assert!(bridge.topics().is_empty());
    bridge.shutdown().await;
}

/// Not a test on its own: run by `the_bridge_dies_with_its_parent` in a child process
/// (HSB_HOLDER set), where it starts a bridge, prints its pid and waits to be killed.
#[tokio::test]
async fn holder_of_a_bridge() {
    let Ok(bootstrap) = std::env::var("HSB_HOLDER") else {
        return;
    };
    let mut opts = BridgeOptions::new(random32());
    opts.bootstrap = vec![bootstrap];
    opts.host = Some("127.0.0.1".into());
    opts.firewalled = false;
    opts.js_dir = common::js_dir();
    let bridge = HyperswarmBridge::start(opts, CancellationToken::new())
        .await
        .expect("bridge starts");
    println!("BRIDGE_PID={}", bridge.child_pid().expect("pid"));
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn the_bridge_dies_with_its_parent() {
    if !node_ready("the_bridge_dies_with_its_parent") {
        return;
    }
    let net = Testnet::start().await;
    let mut holder = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "holder_of_a_bridge", "--nocapture"])
        .env("HSB_HOLDER", &net.bootstrap[0])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn holder");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        holder.stdout.take().expect("stdout"),
    ));
    let pid: i32 = timeout(Duration::from_secs(60), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(p) = l.strip_prefix("BRIDGE_PID=") {
                return p.trim().parse().expect("pid");
            }
        }
        panic!("holder ended without a bridge");
    })
    .await
    .expect("holder started a bridge");
    // SAFETY: kill(2) on processes this test started.
    unsafe {
        assert_eq!(libc::kill(pid, 0), 0, "bridge runs");
        libc::kill(holder.id().expect("holder pid") as i32, libc::SIGKILL);
    }
    let _ = holder.wait().await;
    let gone = timeout(Duration::from_secs(10), async {
        // SAFETY: probing a pid with signal 0.
        while unsafe { libc::kill(pid, 0) } == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the bridge (pid {pid}) outlived its parent");
}

/// Keeps `NodeProc` used in every build of this file.
#[allow(dead_code)]
fn _uses(_: &NodeProc) {}
