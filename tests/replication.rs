//! Core replication between two nodes over real iroh (QUIC on loopback): blocks of 64 KiB
//! and 1 MiB, many requests in flight, live appends on the same connection, and the access
//! policy deciding who may read what.

mod common;

use std::sync::Arc;

use common::*;
use dat_mirror::model::keys::Key;
use dat_mirror::net::endpoint::{Identity, PeerAddr};
use dat_mirror::net::node::{Node, Policy, ReplicationEvent};
use dat_mirror::store::CoreStore;

struct Only(Option<Key>);

impl Policy for Only {
    fn may_serve(&self, peer: &Key, _core: &Key) -> bool {
        self.0.is_none_or(|k| k == *peer)
    }
}

async fn node(dir: &std::path::Path, policy: Only) -> (Arc<Node>, Arc<CoreStore>) {
    let (_, ep) = common::loopback_endpoint(dir).await;
    let store = Arc::new(CoreStore::new(dir).unwrap());
    (Node::start(ep, store.clone(), Arc::new(policy)), store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn big_and_small_blocks_over_iroh_with_live_appends() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let (a, a_store) = node(&tmp.path().join("a"), Only(None)).await;
    let (b, b_store) = node(&tmp.path().join("b"), Only(None)).await;
    let writer = a_store
        .open_or_create_writable(&hypercore_engine::KeyPair::generate().unwrap())
        .await
        .unwrap();
    let blocks: Vec<Vec<u8>> = (0..96)
        .map(|i| pseudo_random(if i % 3 == 0 { 1 << 20 } else { 64 << 10 }, i as u64))
        .collect();
    writer.append_batch(&blocks).await.unwrap();

    let reader = b_store.open_or_create_replica(&writer.key()).await.unwrap();
    b.want(reader.clone());
    let addr = PeerAddr {
        id: a.id(),
        addr: Some(a.endpoint().bound_sockets()[0]),
    };
    b.connect(&addr).await.unwrap();
    wait_until("all blocks", || async {
        reader.info().synced().then_some(())
    })
    .await;
    assert_eq!(reader.info().length, 96);
    for (i, block) in blocks.iter().enumerate() {
        assert!(
            reader.get(i as u64).await.unwrap().unwrap() == *block,
            "block {i}"
        );
    }
    assert_eq!(b.peers_for(&writer.key()), 1);

    // Live: appends flow over the same connection.
    let mut events = b.subscribe();
    writer.append(&pseudo_random(1 << 20, 999)).await.unwrap();
    wait_until("the live append", || async {
        (reader.info().length == 97 && reader.info().synced()).then_some(())
    })
    .await;
    assert!(events.try_recv().is_err(), "no reconnect happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_refuses_unknown_readers_without_revealing_the_core() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let friend_dir = tmp.path().join("friend");
    let friend_id = Identity::load_or_create(&friend_dir).unwrap().key();
    let (a, a_store) = node(&tmp.path().join("a"), Only(Some(friend_id))).await;
    let (friend, friend_store) = node(&friend_dir, Only(None)).await;
    let (stranger, stranger_store) = node(&tmp.path().join("stranger"), Only(None)).await;
    let writer = a_store
        .open_or_create_writable(&hypercore_engine::KeyPair::generate().unwrap())
        .await
        .unwrap();
    writer.append(b"secret").await.unwrap();
    let addr = PeerAddr {
        id: a.id(),
        addr: Some(a.endpoint().bound_sockets()[0]),
    };

    let s_reader = stranger_store
        .open_or_create_replica(&writer.key())
        .await
        .unwrap();
    let mut stranger_events = stranger.replication_events();
    let mut a_events = a.replication_events();
    stranger.want(s_reader.clone());
    stranger.connect(&addr).await.unwrap();
    let f_reader = friend_store
        .open_or_create_replica(&writer.key())
        .await
        .unwrap();
    friend.want(f_reader.clone());
    friend.connect(&addr).await.unwrap();
    wait_until("the friend to replicate", || async {
        f_reader.info().synced().then_some(())
    })
    .await;
    // The stranger really asked, and was refused: wait for both ends to say so.
    let (stranger_id, core) = (stranger.id(), writer.key());
    wait_for_event(&mut a_events, "a to refuse the stranger", |e| {
        *e == ReplicationEvent::ServedNotFound {
            peer: stranger_id,
            discovery_key: core.discovery_key(),
        }
    })
    .await;
    wait_for_event(&mut stranger_events, "the stranger's pull to end", |e| {
        *e == ReplicationEvent::PullNotFound { peer: a.id(), core }
    })
    .await;
    assert_eq!(s_reader.info().length, 0);
    assert_eq!(
        s_reader.info().remote_length,
        None,
        "the stranger learns nothing, not even the length"
    );
}
