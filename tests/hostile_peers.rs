//! Bad peers: real iroh endpoints (loopback) that speak dat-mirror's wire protocol badly, on
//! purpose. For each kind of misbehaviour: the victim closes the connection with a reason
//! (and refuses the peer for a while), stores nothing the bad peer sent, and a good peer
//! replicating the same core at the same time finishes with a byte-identical copy.

mod common;

use std::sync::Arc;

use dat_mirror::model::keys::Key;
use dat_mirror::net::capability::{self, Session, EXPORTER_LABEL};
use dat_mirror::net::endpoint::NetworkConfig;
use dat_mirror::net::endpoint::{self, Identity, PeerAddr, ALPN};
use dat_mirror::net::node::{close_code, Node, Policy};
use dat_mirror::net::wire::{
    engine_request, read_message, write_message, BlockRequest, Message, UpgradeRequest, WireProof,
    MAX_FRAME, MAX_READER_FRAME,
};
use dat_mirror::store::{Core, CoreStore};
use iroh::endpoint::{Connection, ConnectionError};

use common::{init_tracing, pseudo_random, TIMEOUT};

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
    let id = Identity::load_or_create(&tmp.path().join("id")).unwrap();
    let ep = endpoint::bind_endpoint(
        &id,
        "127.0.0.1:0".parse().unwrap(),
        &NetworkConfig::offline(),
    )
    .await
    .unwrap();
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

/// A bare endpoint dialled into `to` (the bad peer's side).
async fn raw_connect(to: &PeerAddr) -> (iroh::Endpoint, Connection, Key) {
    let tmp = tempfile::tempdir().unwrap();
    let id = Identity::load_or_create(tmp.path()).unwrap();
    let ep = endpoint::bind_endpoint(
        &id,
        "127.0.0.1:0".parse().unwrap(),
        &NetworkConfig::offline(),
    )
    .await
    .unwrap();
    let conn = ep.connect(to.endpoint_addr().unwrap(), ALPN).await.unwrap();
    (ep, conn, id.key())
}

/// Waits for `conn` to be closed by the other end; returns (code, reason).
async fn closed_by_peer(conn: &Connection) -> (u64, String) {
    let e = tokio::time::timeout(TIMEOUT, conn.closed())
        .await
        .expect("the victim never closed the bad peer's connection");
    match e {
        ConnectionError::ApplicationClosed(c) => (
            u64::from(c.error_code),
            String::from_utf8_lossy(&c.reason).into_owned(),
        ),
        other => panic!("connection ended otherwise: {other}"),
    }
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

/// How the bad peer answers the victim's pulls.
#[derive(Clone, Copy, Debug)]
enum Serving {
    /// Genuine proofs with one byte of every block flipped.
    TamperedBlocks,
    /// Another key pair's core of the same shape, under the victim's discovery key.
    WrongKey,
    /// A frame announced as 4 GiB.
    OversizedFrame,
    /// A `Data` message whose proof claims a 2^62-byte buffer.
    HugeCount,
}

/// Serves every stream the victim opens on `conn`, badly.
fn serve_badly(conn: Connection, how: Serving, genuine: Arc<Core>, impostor: Arc<Core>) {
    tokio::spawn(async move {
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let (genuine, impostor) = (genuine.clone(), impostor.clone());
            let conn = conn.clone();
            tokio::spawn(async move {
                let Ok(Some(Message::Open { .. })) =
                    read_message(&mut recv, MAX_READER_FRAME).await
                else {
                    return;
                };
                let length = genuine.info().length;
                let opened = Message::Opened { length, fork: 0 };
                if write_message(&mut send, &opened).await.is_err() {
                    return;
                }
                match how {
                    Serving::OversizedFrame => {
                        let _ = send.write_all(&u32::MAX.to_be_bytes()).await;
                        let _ = send.write_all(&[0u8; 1024]).await;
                        // Keep the stream open: the victim must act on what it read.
                        conn.closed().await;
                        return;
                    }
                    Serving::HugeCount => {
                        // Data { id: 0, proof: { fork: 0, block: Some(len = 2^62 …) } }
                        let mut body = vec![4u8, 0, 0, 1];
                        body.extend_from_slice(&[
                            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f,
                        ]);
                        body.extend_from_slice(&[7; 16]);
                        let _ = send.write_all(&(body.len() as u32).to_be_bytes()).await;
                        let _ = send.write_all(&body).await;
                        conn.closed().await;
                        return;
                    }
                    _ => {}
                }
                let source = match how {
                    Serving::WrongKey => impostor,
                    _ => genuine,
                };
                while let Ok(Some(Message::Request { id, block, upgrade })) =
                    read_message(&mut recv, MAX_FRAME).await
                {
                    let proof = source.create_proof_blocking(&engine_request(block, upgrade, 64));
                    let Ok(mut proof) = proof else {
                        let _ = write_message(&mut send, &Message::NoData { id }).await;
                        continue;
                    };
                    if let (Serving::TamperedBlocks, Some(b)) = (how, proof.block.as_mut()) {
                        b.value[100] ^= 0x40;
                    }
                    let msg = Message::Data {
                        id,
                        proof: WireProof::from_proof(&proof),
                    };
                    if write_message(&mut send, &msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// Blocks of the core the victim pulls: enough that the good peer is still sending when the
/// bad peer is asked for blocks too.
const BLOCKS: u64 = 200;

/// One misbehaviour of a peer the victim pulls from.
async fn bad_server_case(how: Serving, pre_upgrade: bool, expect_code: u32) {
    init_tracing();
    let victim = peer().await;
    let good = peer().await;
    let genuine = source_core(&good, BLOCKS as usize, 1).await;
    let impostor_store = peer().await;
    let impostor = source_core(&impostor_store, BLOCKS as usize, 1000).await;
    let replica = victim
        .store
        .open_or_create_replica(&genuine.key())
        .await
        .unwrap();
    if pre_upgrade {
        // The victim already knows the length (signed tree) but holds no block.
        let proof = genuine
            .create_proof_blocking(&engine_request(
                None,
                Some(UpgradeRequest {
                    start: 0,
                    length: BLOCKS,
                }),
                0,
            ))
            .unwrap();
        assert!(replica.apply_proof(proof).await.unwrap());
    }
    let before = replica.info();
    victim.node.want(replica.clone());

    // Alone: the bad peer is disconnected with a reason and nothing it sent is stored.
    let (_ep, conn, bad_id) = raw_connect(&victim.addr).await;
    serve_badly(conn.clone(), how, genuine.clone(), impostor.clone());
    let (code, reason) = closed_by_peer(&conn).await;
    assert_eq!(code, expect_code as u64, "{how:?}: {reason}");
    assert!(!reason.is_empty());
    let after = replica.info();
    assert_eq!(
        (after.length, after.held_blocks, after.contiguous_length),
        (before.length, before.held_blocks, before.contiguous_length),
        "{how:?}: the bad peer's data changed the core"
    );
    for i in 0..after.length {
        assert_eq!(replica.get(i).await.unwrap(), None, "block {i} was stored");
    }
    assert!(victim.node.banned_for(&bad_id).is_some());

    // Redialling at once is refused (it is not served again for a while).
    let again = _ep
        .connect(victim.addr.endpoint_addr().unwrap(), ALPN)
        .await
        .unwrap();
    let (code, _) = closed_by_peer(&again).await;
    assert_eq!(code, close_code::BANNED as u64);

    // A fresh bad peer and a good peer at the same time: the good one finishes, the bad one
    // is dropped, and the copy is byte-identical to the original.
    let (_ep3, conn3, _) = raw_connect(&victim.addr).await;
    serve_badly(conn3.clone(), how, genuine.clone(), impostor.clone());
    good.node.connect(&victim.addr).await.unwrap();
    let (code, _) = closed_by_peer(&conn3).await;
    assert_eq!(code, expect_code as u64);
    wait_complete(&replica, BLOCKS).await;
    assert_identical(&replica, &genuine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_that_do_not_verify_disconnect_and_store_nothing() {
    bad_server_case(Serving::TamperedBlocks, true, close_code::BAD_DATA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_signed_with_another_key_disconnects_and_stores_nothing() {
    bad_server_case(Serving::WrongKey, false, close_code::BAD_DATA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_disconnect() {
    bad_server_case(Serving::OversizedFrame, false, close_code::PROTOCOL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_counts_inside_messages_disconnect() {
    bad_server_case(Serving::HugeCount, false, close_code::PROTOCOL).await;
}

/// The victim serves a core; a good reader fetches it while a bad client does `attack`.
async fn bad_client_case<F, Fut>(expect_code: u32, attack: F)
where
    F: FnOnce(Connection, Session, Arc<Core>) -> Fut,
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

    let (_ep, conn, bad_id) = raw_connect(&victim.addr).await;
    let mut secret = [0u8; 32];
    conn.export_keying_material(&mut secret, EXPORTER_LABEL, b"")
        .unwrap();
    let session = Session {
        server: victim.addr.id,
        reader: bad_id,
        secret,
    };
    let attacking = tokio::spawn(attack(conn.clone(), session, served.clone()));
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
    bad_client_case(close_code::PROTOCOL, |conn, _, _| async move {
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        let _ = send.write_all(&(5u32 << 20).to_be_bytes()).await;
        let _ = send.write_all(&[0u8; 4096]).await;
        conn.closed().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flood_disconnects() {
    bad_client_case(close_code::FLOOD, |conn, _, _| async move {
        // Thousands of streams, each asking for a random core: bounded in count.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20_000u32 {
            if conn.close_reason().is_some() {
                break;
            }
            let conn = conn.clone();
            tasks.spawn(async move {
                let Ok((mut send, mut recv)) = conn.open_bi().await else {
                    return;
                };
                let open = Message::Open {
                    discovery_key: rand::random(),
                    capability: rand::random(),
                };
                let _ = write_message(&mut send, &open).await;
                let _ = send.finish();
                let _ = read_message(&mut recv, MAX_FRAME).await;
            });
            if i % 64 == 63 {
                while tasks.len() > 64 {
                    tasks.join_next().await;
                }
            }
        }
        conn.closed().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_disconnects() {
    bad_client_case(close_code::FLOOD, |conn, session, served| async move {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let open = Message::Open {
            discovery_key: served.discovery_key(),
            capability: capability::capability(&served.key(), &session),
        };
        write_message(&mut send, &open).await.unwrap();
        let first = read_message(&mut recv, MAX_FRAME).await.unwrap();
        assert!(matches!(first, Some(Message::Opened { length: 64, .. })));
        // Thousands of block requests, never reading an answer.
        for id in 0..10_000u64 {
            let req = Message::Request {
                id,
                block: Some(BlockRequest {
                    index: id % 64,
                    nodes: 0,
                }),
                upgrade: None,
            };
            if write_message(&mut send, &req).await.is_err() {
                break;
            }
        }
        conn.closed().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_capability_absent_core_and_refusal_look_the_same() {
    init_tracing();
    struct Refuse(Key);
    impl Policy for Refuse {
        fn may_serve(&self, _: &Key, core: &Key) -> bool {
            *core != self.0
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let id = Identity::load_or_create(&tmp.path().join("id")).unwrap();
    let ep = endpoint::bind_endpoint(
        &id,
        "127.0.0.1:0".parse().unwrap(),
        &NetworkConfig::offline(),
    )
    .await
    .unwrap();
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
    let _node = Node::start(ep, store.clone(), Arc::new(Refuse(refused.key())));

    let (_ep, conn, me) = raw_connect(&addr).await;
    let mut secret = [0u8; 32];
    conn.export_keying_material(&mut secret, EXPORTER_LABEL, b"")
        .unwrap();
    let session = Session {
        server: addr.id,
        reader: me,
        secret,
    };
    // The raw bytes of the reply to `open`, up to the end of the stream.
    let ask = |dk: [u8; 32], cap: [u8; 32]| {
        let conn = conn.clone();
        async move {
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            let open = Message::Open {
                discovery_key: dk,
                capability: cap,
            };
            write_message(&mut send, &open).await.unwrap();
            send.finish().unwrap();
            tokio::time::timeout(TIMEOUT, recv.read_to_end(1 << 20))
                .await
                .unwrap()
                .unwrap()
        }
    };
    let random = Key(rand::random());
    let cap = |k: &Key| capability::capability(k, &session);
    let absent = ask(random.discovery_key(), cap(&random)).await;
    let wrong_cap = ask(served.discovery_key(), cap(&random)).await;
    let stale_cap = ask(
        served.discovery_key(),
        capability::capability(
            &served.key(),
            &Session {
                secret: [0; 32],
                ..session
            },
        ),
    )
    .await;
    let refused_reply = ask(refused.discovery_key(), cap(&refused.key())).await;
    let not_found = Message::NotFound.encode();
    let mut expected = (not_found.len() as u32).to_be_bytes().to_vec();
    expected.extend_from_slice(&not_found);
    for (what, reply) in [
        ("absent core", &absent),
        ("wrong capability", &wrong_cap),
        ("capability of another session", &stale_cap),
        ("policy refusal", &refused_reply),
    ] {
        assert_eq!(reply, &expected, "{what}");
    }
    // The right capability opens the served core.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let open = Message::Open {
        discovery_key: served.discovery_key(),
        capability: cap(&served.key()),
    };
    write_message(&mut send, &open).await.unwrap();
    assert_eq!(
        read_message(&mut recv, MAX_FRAME).await.unwrap(),
        Some(Message::Opened { length: 1, fork: 0 })
    );
    // Asking for a refused core was not held against us.
    assert!(conn.close_reason().is_none());
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
    let id = Identity::load_or_create(tmp.path()).unwrap();
    let ep = endpoint::bind_endpoint(
        &id,
        "127.0.0.1:0".parse().unwrap(),
        &NetworkConfig::offline(),
    )
    .await
    .unwrap();
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
