//! Bad peers: real iroh endpoints (loopback) that speak hypercore's replication protocol
//! badly, on purpose. For each kind of misbehaviour: the victim closes the connection with a
//! reason (and refuses the peer for a while), stores nothing the bad peer sent, and a good
//! peer replicating the same core at the same time finishes with a byte-identical copy.

mod common;
#[path = "common/raw_peer.rs"]
mod raw_peer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dat_mirror::model::keys::Key;
use dat_mirror::net::endpoint::{PeerAddr, ALPN};
use dat_mirror::net::engine::MAX_CHANNELS;
use dat_mirror::net::node::{close_code, Node, Policy, ReplicationEvent};
use dat_mirror::store::{Core, CoreStore};
use hypercore_peer::{EngineCore, FrameIo};
use hypercore_wire::messages::{Message, Request, RequestBlock};
use hypercore_wire::mux;
use hypercore_wire::session::{CoreOptions, Limits, Session, SessionConfig};
use hypercore_wire::store::{Applied, CoreInfo, CoreStore as WireStore, StoreError};
use hypercore_wire::Data;

use common::{init_tracing, pseudo_random, wait_for_event, TIMEOUT};
use raw_peer::{closed_by_peer, raw_peer, Answer, RawPeer};

struct AllowAll;
impl Policy for AllowAll {
    fn may_serve(&self, _: &Key, _: &Key) -> bool {
        true
    }
}

/// A node with its own store on loopback.
struct Peer {
    _tmp: tempfile::TempDir,
    node: Arc<Node>,
    store: Arc<CoreStore>,
    addr: PeerAddr,
}

async fn peer() -> Peer {
    let tmp = tempfile::tempdir().unwrap();
    let (id, ep) = common::loopback_endpoint(&tmp.path().join("id")).await;
    let addr = PeerAddr {
        id: id.key(),
        addr: Some(ep.bound_sockets()[0]),
    };
    let store = Arc::new(CoreStore::new(&tmp.path().join("data")).unwrap());
    let node = Node::start(ep, store.clone(), Arc::new(AllowAll));
    Peer {
        _tmp: tmp,
        node,
        store,
        addr,
    }
}

/// A writable core of `n` 64 KiB blocks in `p`'s store.
async fn source_core(p: &Peer, n: usize, seed: u64) -> Arc<Core> {
    let core = p
        .store
        .open_or_create_writable(&hypercore_engine::KeyPair::generate().unwrap())
        .await
        .unwrap();
    let blocks: Vec<Vec<u8>> = (0..n)
        .map(|i| pseudo_random(65536, seed + i as u64))
        .collect();
    core.append_batch(&blocks).await.unwrap();
    core
}

async fn wait_complete(core: &Core, length: u64) {
    let mut rx = core.subscribe();
    tokio::time::timeout(TIMEOUT, rx.wait_for(|i| i.length == length && i.complete()))
        .await
        .expect("the good peer's replication did not finish")
        .unwrap();
}

async fn assert_identical(copy: &Core, original: &Core) {
    let n = original.info().length;
    assert_eq!(copy.info().length, n);
    for i in 0..n {
        assert_eq!(copy.get(i).await.unwrap(), original.get(i).await.unwrap());
    }
}

/// How the bad peer answers the victim's requests.
#[derive(Clone, Copy, Debug)]
enum Serving {
    /// Genuine proofs with one byte of every block flipped.
    TamperedBlocks,
    /// Proofs of another core (signed with another key) sent as this core's.
    WrongKey,
    /// A frame larger than the victim accepts.
    OversizedFrame,
    /// A data message whose block claims 2^63 bytes.
    HugeCount,
}

/// A core that answers requests with one byte of each block flipped, counting its answers.
struct Forger(EngineCore, Arc<AtomicUsize>);

impl WireStore for Forger {
    fn info(&self) -> CoreInfo {
        self.0.info()
    }
    fn has(&self, index: u64) -> bool {
        self.0.has(index)
    }
    fn proof_for(&mut self, request: &Request) -> Result<Option<Data>, StoreError> {
        let mut d = self.0.proof_for(request)?;
        if let Some(b) = d.as_mut().and_then(|d| d.block.as_mut()) {
            if let Some(x) = b.value.first_mut() {
                *x ^= 1;
                self.1.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(d)
    }
    fn apply(&mut self, data: &Data) -> Result<Applied, StoreError> {
        self.0.apply(data)
    }
}

/// Serves core `key` to the victim over `bad`'s stream, badly (until the stream ends).
/// `answers` counts the bad answers sent.
async fn serve_badly(
    bad: Arc<RawPeer>,
    how: Serving,
    key: Key,
    genuine: Arc<Core>,
    impostor: Arc<Core>,
    answers: Arc<AtomicUsize>,
) {
    let io = &bad.io;
    match how {
        Serving::OversizedFrame | Serving::HugeCount => {
            // Open the channel properly, wait for the victim to open its side, then send.
            io.send(RawPeer::open_frame(1, &key, bad.capability(&key)))
                .await
                .unwrap();
            assert_eq!(bad.answer(1, &key).await, Some(Answer::Opened));
            let frame = match how {
                Serving::OversizedFrame => vec![1u8; 9 << 20],
                _ => {
                    // data: flags = block, request 1, fork 0, index 0, then a buffer length of
                    // 2^63 (compact encoding: 0xff + 8 bytes)
                    let mut payload = vec![1, 1, 0, 0, 0xff];
                    payload.extend_from_slice(&(1u64 << 63).to_le_bytes());
                    mux::encode_message(1, 3, &payload)
                }
            };
            answers.fetch_add(1, Ordering::SeqCst);
            let _ = io.send(frame).await;
            let _ = bad.conn.closed().await;
        }
        Serving::TamperedBlocks | Serving::WrongKey => {
            let source = match how {
                Serving::TamperedBlocks => genuine,
                _ => impostor,
            };
            let store: Box<dyn WireStore + Send> = match how {
                Serving::TamperedBlocks => Box::new(Forger(
                    EngineCore::new(source.engine().clone(), source.key().0),
                    answers,
                )),
                _ => Box::new(Forger2(
                    EngineCore::new(source.engine().clone(), source.key().0),
                    answers,
                )),
            };
            let mut s = Session::new(SessionConfig {
                push: false,
                is_initiator: true,
                handshake_hash: bad.secret.to_vec(),
                limits: Limits::default(),
            })
            .unwrap();
            s.add_core(key.0, store, CoreOptions { download: false })
                .unwrap();
            loop {
                while let Some(f) = s.poll_transmit() {
                    if io.send(f).await.is_err() {
                        return;
                    }
                }
                match io.recv().await {
                    Ok(f) => {
                        if s.handle_frame(&f).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }
    }
}

/// Another core's genuine proofs (signed with its key), counted.
struct Forger2(EngineCore, Arc<AtomicUsize>);

impl WireStore for Forger2 {
    fn info(&self) -> CoreInfo {
        self.0.info()
    }
    fn has(&self, index: u64) -> bool {
        self.0.has(index)
    }
    fn proof_for(&mut self, request: &Request) -> Result<Option<Data>, StoreError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.proof_for(request)
    }
    fn apply(&mut self, data: &Data) -> Result<Applied, StoreError> {
        self.0.apply(data)
    }
}

/// Blocks of the core the victim fetches: enough that the good peer is still sending when the
/// bad peer is asked for blocks too.
const BLOCKS: u64 = 200;

/// One misbehaviour of a peer the victim fetches from.
async fn bad_server_case(how: Serving, expect_code: u32) {
    init_tracing();
    let victim = peer().await;
    let good = peer().await;
    let genuine = source_core(&good, BLOCKS as usize, 1).await;
    let impostor_store = peer().await;
    let impostor = source_core(&impostor_store, BLOCKS as usize, 1000).await;
    let key = genuine.key();
    let replica = victim.store.open_or_create_replica(&key).await.unwrap();
    if let Serving::TamperedBlocks = how {
        // The victim already knows the length (the signed tree) but holds no block: only
        // the tampered blocks could change it.
        let upgrade = hypercore_engine::Request {
            upgrade: Some(hypercore_engine::RequestUpgrade {
                start: 0,
                length: BLOCKS,
            }),
            ..Default::default()
        };
        let proof = genuine.create_proof_blocking(&upgrade).unwrap();
        assert!(replica.apply_proof(proof).await.unwrap());
    }
    let before = replica.info();
    victim.node.want(replica.clone());

    // Alone: the bad peer is disconnected with a reason and nothing it sent is stored.
    let bad = Arc::new(raw_peer(&victim.addr).await);
    let (conn, bad_id, ep) = (bad.conn.clone(), bad.id, bad.endpoint.clone());
    let answers = Arc::new(AtomicUsize::new(0));
    let serving = tokio::spawn(serve_badly(
        bad.clone(),
        how,
        key,
        genuine.clone(),
        impostor.clone(),
        answers.clone(),
    ));
    let (code, reason) = closed_by_peer(&conn).await;
    assert_eq!(code, expect_code as u64, "{how:?}: {reason}");
    assert!(!reason.is_empty());
    assert!(
        answers.load(Ordering::SeqCst) > 0,
        "{how:?}: closed before any bad answer"
    );
    serving.abort();
    let after = replica.info();
    assert_eq!(
        (after.length, after.held_blocks, after.contiguous_length),
        (before.length, before.held_blocks, before.contiguous_length),
        "{how:?}: the bad peer's data changed the core"
    );
    for i in 0..BLOCKS {
        assert_eq!(replica.get(i).await.unwrap(), None, "block {i} was stored");
    }
    assert!(victim.node.banned_for(&bad_id).is_some());

    // Redialling at once is refused (it is not served again for a while).
    let again = ep
        .connect(victim.addr.endpoint_addr().unwrap(), ALPN)
        .await
        .unwrap();
    let (code, _) = closed_by_peer(&again).await;
    assert_eq!(code, close_code::BANNED as u64);

    // A fresh bad peer and a good peer at the same time: the good one finishes, the bad one
    // is dropped, and the copy is byte-identical to the original. The good peer joins once
    // the bad one has answered badly (else it may deliver everything first).
    let bad3 = Arc::new(raw_peer(&victim.addr).await);
    let conn3 = bad3.conn.clone();
    let answers = Arc::new(AtomicUsize::new(0));
    let serving = tokio::spawn(serve_badly(
        bad3.clone(),
        how,
        key,
        genuine.clone(),
        impostor.clone(),
        answers.clone(),
    ));
    let asked = std::time::Instant::now();
    while answers.load(Ordering::SeqCst) == 0 && conn3.close_reason().is_none() {
        assert!(
            asked.elapsed() < TIMEOUT,
            "the victim never asked the bad peer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    good.node.connect(&victim.addr).await.unwrap();
    let (code, _) = closed_by_peer(&conn3).await;
    assert_eq!(code, expect_code as u64);
    serving.abort();
    wait_complete(&replica, BLOCKS).await;
    assert_identical(&replica, &genuine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_that_do_not_verify_disconnect_and_store_nothing() {
    bad_server_case(Serving::TamperedBlocks, close_code::BAD_DATA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_signed_with_another_key_disconnects_and_stores_nothing() {
    bad_server_case(Serving::WrongKey, close_code::BAD_DATA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_disconnect() {
    bad_server_case(Serving::OversizedFrame, close_code::PROTOCOL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_counts_inside_messages_disconnect() {
    bad_server_case(Serving::HugeCount, close_code::PROTOCOL).await;
}

/// The victim serves a core; a good reader fetches it while a bad client does `attack`.
async fn bad_client_case<F, Fut>(expect_code: u32, attack: F)
where
    F: FnOnce(Arc<RawPeer>, Arc<Core>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    init_tracing();
    let victim = peer().await;
    let served = source_core(&victim, 64, 7).await;
    let reader = peer().await;
    let copy = reader
        .store
        .open_or_create_replica(&served.key())
        .await
        .unwrap();

    let bad = Arc::new(raw_peer(&victim.addr).await);
    let (conn, bad_id) = (bad.conn.clone(), bad.id);
    let attacking = tokio::spawn(attack(bad.clone(), served.clone()));
    reader.node.want(copy.clone());
    reader.node.connect(&victim.addr).await.unwrap();

    let (code, reason) = closed_by_peer(&conn).await;
    assert_eq!(code, expect_code as u64, "{reason}");
    attacking.abort();
    assert!(victim.node.banned_for(&bad_id).is_some());
    wait_complete(&copy, 64).await;
    assert_identical(&copy, &served).await;
    assert!(victim.node.is_connected(&reader.addr.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_frames_disconnect() {
    bad_client_case(close_code::PROTOCOL, |bad, _| async move {
        let _ = bad.io.send(vec![0u8; 9 << 20]).await;
        bad.conn.closed().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_flood_disconnects() {
    bad_client_case(close_code::FLOOD, |bad, _| async move {
        // Opens of random cores, more than a connection may hold, in one batch frame (the
        // ids grow by one each, as protomux requires).
        let mut batch = mux::BatchBuilder::new();
        for id in 1..=(MAX_CHANNELS as u64 + 10) {
            let key = Key(rand::random());
            let mut hs = Vec::new();
            hypercore_wire::messages::Handshake {
                seeks: true,
                capability: rand::random(),
            }
            .encode(&mut hs);
            let dk = key.discovery_key();
            batch.open(id, hypercore_wire::PROTOCOL, Some(&dk), &hs);
        }
        let _ = bad.send(batch.finish()).await;
        bad.conn.closed().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_disconnects() {
    bad_client_case(close_code::FLOOD, |bad, served| async move {
        let key = served.key();
        bad.send(RawPeer::open_frame(1, &key, bad.capability(&key)))
            .await;
        assert_eq!(bad.answer(1, &key).await, Some(Answer::Opened));
        // Thousands of block requests, never reading an answer.
        for id in 1..=20_000u64 {
            let req = Message::Request(Request {
                id,
                block: Some(RequestBlock {
                    index: id % 64,
                    nodes: 0,
                }),
                ..Request::default()
            });
            if !bad.send(mux::encode_message(1, 1, &req.to_bytes())).await {
                break;
            }
        }
        bad.conn.closed().await;
    })
    .await;
}

/// What the victim answers a raw open: a refusal for an absent core, for a core the policy
/// refuses this peer, and for the victim's own logs alike (the same protomux reject of the
/// same channel, nothing else), `Opened` for a served core with the right capability, and a
/// capability made for another connection closes the connection as hostile — hypercore's
/// rule, Node's too: only a peer that may read the core gets that far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_core_and_refusal_look_the_same_and_a_wrong_capability_is_hostile() {
    init_tracing();
    struct Refuse(Key);
    impl Policy for Refuse {
        fn may_serve(&self, _: &Key, core: &Key) -> bool {
            *core != self.0
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let (id, ep) = common::loopback_endpoint(&tmp.path().join("id")).await;
    let addr = PeerAddr {
        id: id.key(),
        addr: Some(ep.bound_sockets()[0]),
    };
    let store = Arc::new(CoreStore::new(&tmp.path().join("data")).unwrap());
    let signing = hypercore_engine::KeyPair::generate().unwrap();
    let refused = store.open_or_create_writable(&signing).await.unwrap();
    refused.append(b"secret").await.unwrap();
    let served = store
        .open_or_create_writable(&hypercore_engine::KeyPair::generate().unwrap())
        .await
        .unwrap();
    served.append(b"public").await.unwrap();
    let node = Node::start(ep, store.clone(), Arc::new(Refuse(refused.key())));
    let mut events = node.replication_events();

    // Each question on its own connection, as channel 1: the answers compare exactly.
    let random = Key(rand::random());
    let mut answers = Vec::new();
    for (what, core) in [("absent core", random), ("policy refusal", refused.key())] {
        let bad = raw_peer(&addr).await;
        bad.send(RawPeer::open_frame(1, &core, bad.capability(&core)))
            .await;
        answers.push((what, bad.answer(1, &core).await));
        wait_for_event(&mut events, "the refusal", |e| {
            *e == ReplicationEvent::ServedNotFound {
                peer: bad.id,
                discovery_key: core.discovery_key(),
            }
        })
        .await;
        // Asking for a refused core is not held against anyone.
        assert!(bad.conn.close_reason().is_none(), "{what}: closed");
    }
    for (what, answer) in &answers {
        assert_eq!(*answer, Some(Answer::Rejected), "{what}");
    }

    // The right capability opens the served core.
    let good = raw_peer(&addr).await;
    good.send(RawPeer::open_frame(
        1,
        &served.key(),
        good.capability(&served.key()),
    ))
    .await;
    assert_eq!(good.answer(1, &served.key()).await, Some(Answer::Opened));
    assert!(good.conn.close_reason().is_none());

    // A capability of another connection for the served core: hostile.
    let stale = good.capability(&served.key());
    let bad = raw_peer(&addr).await;
    bad.send(RawPeer::open_frame(1, &served.key(), stale)).await;
    let (code, reason) = closed_by_peer(&bad.conn).await;
    assert_eq!(code, close_code::PROTOCOL as u64, "{reason}");
    assert!(reason.contains("capability"), "{reason}");
    assert!(node.banned_for(&bad.id).is_some());
}

/// A bare endpoint speaking dat-mirror's ALPN that accepts every connection and closes it at
/// once with `code`. Returns its address and the number of connections it has accepted.
async fn closing_peer(
    code: u32,
) -> (
    tempfile::TempDir,
    PeerAddr,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let (id, ep) = common::loopback_endpoint(tmp.path()).await;
    ep.set_alpns(vec![ALPN.to_vec()]);
    let addr = PeerAddr {
        id: id.key(),
        addr: Some(ep.bound_sockets()[0]),
    };
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            let Ok(accepting) = incoming.accept() else {
                continue;
            };
            let Ok(conn) = accepting.await else { continue };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            conn.close(code.into(), b"go away");
        }
    });
    (tmp, addr, accepted)
}

/// Counts the dials `keep_connected` makes over `span` to a peer that accepts and closes at
/// once with `code`. The peer runs on a runtime of its own and the count is read from this
/// plain thread, so a dialler that spins (starving its runtime) fails the test instead of
/// hanging it.
fn dials_in(code: u32, span: std::time::Duration) -> usize {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let (peer_rt, dialer_rt) = (runtime(), runtime());
    let (tmp, addr, accepted) = peer_rt.block_on(closing_peer(code));
    let dialer = dialer_rt.block_on(peer());
    let task = {
        let _runtime = dialer_rt.enter();
        dialer.node.keep_connected(addr)
    };
    std::thread::sleep(span);
    let dials = accepted.load(std::sync::atomic::Ordering::SeqCst);
    dialer_rt.block_on(async move {
        task.abort();
        drop(dialer);
    });
    dialer_rt.shutdown_background();
    peer_rt.shutdown_background();
    drop(tmp);
    dials
}

/// Issue 14, item 11: a peer that accepts and closes at once (another process with our
/// identity, a peer that replaced us) must not be redialled in a loop: dials back off after
/// every close.
#[test]
fn a_peer_that_closes_at_once_is_not_redialled_in_a_storm() {
    init_tracing();
    let dials = dials_in(close_code::REPLACED, std::time::Duration::from_secs(8));
    // With back-off (250 ms doubling, jittered) 8 s hold at most 6 dials; without, hundreds.
    assert!(dials >= 1, "the peer was never dialled");
    assert!(dials <= 8, "{dials} dials in 8 s: a redial storm");
}

/// A peer that refuses us because we misbehaved is not redialled before its ban is over.
#[test]
fn a_peer_that_banned_us_is_not_redialled_before_the_ban_ends() {
    init_tracing();
    let dials = dials_in(close_code::BANNED, std::time::Duration::from_secs(5));
    assert_eq!(dials, 1, "redialled a peer that banned us");
}

/// The peer's close reason survives our own close of the same connection (the replication
/// task closes every connection it ends): `keep_connected` reads it to honour a ban.
#[tokio::test]
async fn a_local_close_after_the_peers_close_keeps_the_peers_reason() {
    use dat_mirror::net::link::Link;
    init_tracing();
    let (tmp, addr, accepted) = closing_peer(close_code::BANNED).await;
    let dialer_dir = tempfile::tempdir().unwrap();
    let (_, ep) = common::loopback_endpoint(dialer_dir.path()).await;
    let conn = ep
        .connect(addr.endpoint_addr().unwrap(), ALPN)
        .await
        .unwrap();
    let reason = tokio::time::timeout(TIMEOUT, conn.closed()).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    Link::close(&conn, close_code::REPLACED, "replication ended");
    let after = conn.close_reason().expect("closed");
    assert_eq!(
        after.to_string(),
        reason.to_string(),
        "our close replaced the peer's reason"
    );
    drop(tmp);
}
