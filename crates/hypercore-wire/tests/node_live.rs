//! Live replication with Node's hypercore 11 over TCP on 127.0.0.1: Node's real core, Protomux
//! and replicator on one side, the Rust session on the other. secret-stream is replaced by a
//! plain framed stream carrying its facts (initiator flag, handshake hash), see
//! `tests/node/live.js`. The Rust side's store trusts proofs (proof verification belongs to the
//! storage engine), so these tests check the protocol: channels, capabilities both ways, sync,
//! the v11 manifest request, upgrade, pipelined block requests, live updates.

mod common;

use common::gen::Rng;
use common::node;
use common::tcp::{block_value, drive, drive_counting, reader_thread};
use hypercore_wire::session::{
    ChannelCloseReason, CoreOptions, Event, Limits, Session, SessionConfig,
};
use hypercore_wire::store::{Applied, CoreInfo, CoreStore, StoreError};
use hypercore_wire::{Data, Manifest, Request};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A store that accepts whatever the peer proves (no Merkle verification: test only).
#[derive(Default)]
struct Trusting {
    length: u64,
    blocks: BTreeMap<u64, Vec<u8>>,
    manifest: Option<Manifest>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Trusting>>);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Trusting> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CoreStore for Shared {
    fn info(&self) -> CoreInfo {
        let s = self.lock();
        let mut contig = 0;
        while s.blocks.contains_key(&contig) {
            contig += 1;
        }
        CoreInfo {
            length: s.length,
            fork: 0,
            contiguous_length: contig,
            has_manifest: s.manifest.is_some(),
        }
    }
    fn has(&self, index: u64) -> bool {
        self.lock().blocks.contains_key(&index)
    }
    fn proof_for(&mut self, _: &Request) -> Result<Option<Data>, StoreError> {
        Ok(None)
    }
    fn apply(&mut self, data: &Data) -> Result<Applied, StoreError> {
        let mut s = self.lock();
        if let Some(m) = &data.manifest {
            s.manifest = Some(m.clone());
        }
        if let Some(u) = &data.upgrade {
            s.length = s.length.max(u.start + u.length);
        }
        let mut applied = Applied {
            length: s.length,
            ..Applied::default()
        };
        if let Some(b) = &data.block {
            if b.index >= s.length {
                return Err(StoreError::Invalid("block beyond length".into()));
            }
            s.blocks.insert(b.index, b.value.clone());
            applied.block = Some(b.index);
            applied.block_bytes = b.value.len() as u64;
        }
        Ok(applied)
    }
}

struct NodePeer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The child's TMPDIR (its hypercore's folder): removed after the child is killed,
    /// which it cannot clean up itself.
    _tmp: tempfile::TempDir,
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(
    port: u16,
    node_is_initiator: bool,
    hh: &[u8],
    blocks: u64,
    clear: Option<(u64, u64)>,
) -> (NodePeer, [u8; 32]) {
    let mut cmd = Command::new("node");
    cmd.arg("live.js")
        .arg(port.to_string())
        .arg(node_is_initiator.to_string())
        .arg(hex::encode(hh))
        .arg(blocks.to_string());
    if let Some((s, e)) = clear {
        cmd.arg(format!("{s}-{e}"));
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut child = cmd
        .current_dir(node::node_dir())
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn node live.js");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stdin = child.stdin.take();
    let first = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("node printed its key");
    let v: serde_json::Value = serde_json::from_str(&first).expect("json");
    let key: [u8; 32] = hex::decode(v["key"].as_str().expect("key"))
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    (
        NodePeer {
            child,
            stdin,
            lines,
            _tmp: tmp,
        },
        key,
    )
}

type Connected = (NodePeer, [u8; 32], TcpStream, mpsc::Receiver<Vec<u8>>);

fn connect(
    node_is_initiator: bool,
    hh: &[u8],
    blocks: u64,
    clear: Option<(u64, u64)>,
) -> Connected {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (peer, key) = start_node(port, node_is_initiator, hh, blocks, clear);
    let (sock, _) = listener.accept().expect("node connects");
    sock.set_nodelay(true).ok();
    let frames = reader_thread(sock.try_clone().expect("clone"));
    (peer, key, sock, frames)
}

fn fetch_from_node(rust_is_initiator: bool) {
    if !node::ready() {
        return;
    }
    let mut rng = Rng::new(u64::from(rust_is_initiator) + 77);
    let hh = rng.bytes(64);
    let blocks = 300;
    let (mut peer, key, mut sock, frames) = connect(!rust_is_initiator, &hh, blocks, None);
    let store = Shared::default();
    let mut session = Session::new(SessionConfig {
        push: false,
        is_initiator: rust_is_initiator,
        handshake_hash: hh.clone(),
        limits: Limits::default(),
    })
    .expect("session");
    session
        .add_core(key, Box::new(store.clone()), CoreOptions { download: true })
        .expect("add core");
    let caught_up = |n: u64| {
        move |ev: &[Event]| {
            ev.iter()
                .any(|e| matches!(e, Event::CaughtUp { length, .. } if *length == n))
        }
    };
    let (events, max_inflight) = drive_counting(
        &mut session,
        &mut sock,
        &frames,
        Duration::from_secs(60),
        caught_up(blocks),
    );
    assert!(max_inflight >= 64, "only {max_inflight} requests in flight");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ChannelOpened { .. })),
        "channel never opened: {events:?}"
    );
    {
        let s = store.lock();
        assert_eq!(
            s.length,
            blocks,
            "events: {:?}",
            &events[..events.len().min(20)]
        );
        assert_eq!(s.blocks.len() as u64, blocks);
        for (i, v) in &s.blocks {
            assert_eq!(v, &block_value(*i), "block {i}");
        }
        let m = s.manifest.as_ref().expect("Node sent its v11 manifest");
        assert_eq!((m.version, m.quorum, m.signers.len()), (1, 1, 1));
    }

    // live update: Node appends, the connected Rust side follows without reconnecting
    if let Some(stdin) = peer.stdin.as_mut() {
        writeln!(stdin, "append 40").expect("write to node");
    }
    let _ = peer.lines.recv_timeout(Duration::from_secs(10));
    let events = drive(
        &mut session,
        &mut sock,
        &frames,
        Duration::from_secs(60),
        caught_up(blocks + 40),
    );
    let s = store.lock();
    assert_eq!(s.length, blocks + 40, "events: {events:?}");
    assert_eq!(s.blocks.len() as u64, blocks + 40);
    assert!(s.blocks.iter().all(|(i, v)| v == &block_value(*i)));
}

#[test]
fn rust_initiator_fetches_a_node_hypercore_11_and_follows_live_appends() {
    fetch_from_node(true);
}

#[test]
fn rust_responder_fetches_a_node_hypercore_11_and_follows_live_appends() {
    fetch_from_node(false);
}

#[test]
fn a_capability_for_another_connection_is_refused_by_both_sides() {
    if !node::ready() {
        return;
    }
    let node_hh = vec![1u8; 64];
    let (_peer, key, mut sock, frames) = connect(false, &node_hh, 5, None);
    let store = Shared::default();
    let mut session = Session::new(SessionConfig {
        push: false,
        is_initiator: true,
        handshake_hash: vec![2u8; 64], // not the handshake hash Node uses
        limits: Limits::default(),
    })
    .expect("session");
    session
        .add_core(key, Box::new(store.clone()), CoreOptions { download: true })
        .expect("add core");
    let events = drive(
        &mut session,
        &mut sock,
        &frames,
        Duration::from_secs(20),
        |ev| ev.iter().any(|e| matches!(e, Event::ChannelClosed { .. })),
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::ChannelClosed {
                reason: ChannelCloseReason::BadCapability,
                ..
            }
        )),
        "{events:?}"
    );
    assert_eq!(store.lock().blocks.len(), 0);
    // Node refuses ours too: it destroys the stream (INVALID_CAPABILITY), closing the socket.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut disconnected = false;
    while Instant::now() < deadline {
        match frames.recv_timeout(Duration::from_millis(100)) {
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                disconnected = true;
                break;
            }
            _ => continue,
        }
    }
    assert!(
        disconnected,
        "Node kept the connection open after a bad capability"
    );
}

#[test]
fn a_sparse_node_seeder_is_asked_with_want_and_every_block_it_holds_is_fetched() {
    if !node::ready() {
        return;
    }
    let hh = vec![9u8; 64];
    let blocks = 600;
    let (_peer, key, mut sock, frames) = connect(false, &hh, blocks, Some((100, 250)));
    let store = Shared::default();
    let mut session = Session::new(SessionConfig {
        push: false,
        is_initiator: true,
        handshake_hash: hh,
        limits: Limits::default(),
    })
    .expect("session");
    session
        .add_core(key, Box::new(store.clone()), CoreOptions { download: true })
        .expect("add core");
    let want: Vec<u64> = (0..100).chain(250..blocks).collect();
    let target = want.len();
    let events = drive(
        &mut session,
        &mut sock,
        &frames,
        Duration::from_secs(30),
        |_| store.lock().blocks.len() >= target,
    );
    let s = store.lock();
    assert_eq!(s.length, blocks);
    assert_eq!(
        s.blocks.keys().copied().collect::<Vec<_>>(),
        want,
        "events: {:?}",
        &events[..events.len().min(10)]
    );
    assert!(s.blocks.iter().all(|(i, v)| v == &block_value(*i)));
}
