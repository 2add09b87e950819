//! Authorization: a third identity, paired with nobody, asks a laptop and a mirror for their
//! logs (the laptop's command log, the mirror's status log) — knowing their keys, with the
//! right capability — and gets the same refusal a random key gets (protomux's reject of its
//! channel, nothing else); it cannot write to them (no message of the protocol writes, and
//! what it serves is verified against the owner's key); and it can fetch a mirrored site
//! whose key it knows.

mod common;
#[path = "common/raw_peer.rs"]
mod raw_peer;

use std::sync::Arc;

use common::*;
use dat_mirror::model::keys::Key;
use dat_mirror::net::endpoint::PeerAddr;
use dat_mirror::net::node::{Node, Policy, ReplicationEvent};
use dat_mirror::store::CoreStore;
use raw_peer::{raw_peer, Answer, RawPeer};

struct Nothing;
impl Policy for Nothing {
    fn may_serve(&self, _: &Key, _: &Key) -> bool {
        false
    }
}

/// The answer to an open of `core`'s channel with the right capability — the stranger
/// *knows* the key — on a fresh connection to `to`, as channel 1.
async fn ask(to: &PeerAddr, core: &Key) -> Option<Answer> {
    let raw = raw_peer(to).await;
    raw.send(RawPeer::open_frame(1, core, raw.capability(core)))
        .await;
    let answer = raw.answer(1, core).await;
    assert!(
        raw.conn.close_reason().is_none(),
        "the stranger was dropped"
    );
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_learn_nothing_about_logs_and_fetch_sites_they_know() {
    let Pair {
        tmp,
        mirror,
        laptop,
        site_dir,
        ..
    } = Pair::start().await;
    make_site(&site_dir, 200_000);
    let site = publish_and_mirror(&laptop, &site_dir).await;
    // The mirror holds the site and both logs exist and are replicated.
    wait_until("the site on the mirror", || async {
        mirror
            .inner
            .site_snapshot(&site.key)
            .and_then(|s| s.blobs)
            .filter(|b| b.info().complete() && b.info().length > 0)
    })
    .await;

    // A stranger: its own identity, paired with nobody, serving nothing.
    let stranger_dir = tmp.path().join("stranger");
    let (_, ep) = common::loopback_endpoint(&stranger_dir).await;
    let store = Arc::new(CoreStore::new(&stranger_dir).unwrap());
    let stranger = Node::start(ep, store.clone(), Arc::new(Nothing));

    let laptop_addr = PeerAddr {
        id: laptop.inner.identity.key(),
        addr: Some(laptop.inner.node.endpoint().bound_sockets()[0]),
    };
    let command_log = laptop.inner.identity.key();
    let status_log = mirror.key();
    let random = Key(rand::random());
    for (who, addr) in [("laptop", laptop_addr), ("mirror", mirror_addr(&mirror))] {
        // (the stranger's node stays connected: its pulls below go over these)
        stranger.connect(&addr).await.unwrap();
        for (what, core) in [
            ("the command log", command_log),
            ("the status log", status_log),
            ("a random key", random),
        ] {
            let answer = ask(&addr, &core).await;
            assert_eq!(
                answer,
                Some(Answer::Rejected),
                "{who} answered {what} differently"
            );
        }
    }

    // It cannot append: its copy of either log stays empty, and the owners' logs only grow
    // with their own signed entries (the stranger has no way to send an entry at all).
    // Each pull was really tried: wait for both owners' `NotFound` before asserting.
    let owners = [laptop.inner.identity.key(), mirror.key()];
    for log in [command_log, status_log] {
        let mut events = stranger.replication_events();
        let replica = store.open_or_create_replica(&log).await.unwrap();
        stranger.want(replica.clone());
        for owner in owners {
            wait_for_event(&mut events, "the pull to be refused", |e| {
                *e == ReplicationEvent::PullNotFound {
                    peer: owner,
                    core: log,
                }
            })
            .await;
        }
        assert_eq!(replica.info().length, 0, "the stranger read {log}");
        assert_eq!(
            replica.info().remote_length,
            None,
            "it learnt {log}'s length"
        );
    }

    // But a mirrored site whose key it knows, it can fetch, completely and verified.
    stranger.connect(&mirror_addr(&mirror)).await.unwrap();
    let db = store.open_or_create_replica(&site.key).await.unwrap();
    stranger.want(db.clone());
    let mut rx = db.subscribe();
    tokio::time::timeout(TIMEOUT, rx.wait_for(|i| i.length > 0 && i.complete()))
        .await
        .expect("the site's db from the mirror")
        .unwrap();
    // (and the answer to a correct capability for it is `Opened`, not a refusal)
    assert_eq!(
        ask(&mirror_addr(&mirror), &site.key).await,
        Some(Answer::Opened)
    );
    let original = laptop
        .inner
        .store
        .open_existing(&site.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(db.info().length, original.info().length);
    for i in 0..original.info().length {
        assert_eq!(db.get(i).await.unwrap(), original.get(i).await.unwrap());
    }
}
