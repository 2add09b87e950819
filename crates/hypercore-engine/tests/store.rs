//! Storage and proofs end to end: a writer appends, a replica in another data folder fetches
//! everything through proofs, both survive reopening; Node's proofs apply to our replicas.
//! (Over 600 lines: each scenario is a whole story — write, replicate, reopen, compare.)

mod common;

use common::*;
use hypercore_engine::proof::verify_tree;
use hypercore_engine::{
    CoreKind, Error, KeyPair, Proof, Request, RequestBlock, RequestUpgrade, Store,
};

fn blocks(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("block {i} {}", "x".repeat(i * 7)).into_bytes())
        .collect()
}

fn upgrade(start: u64, length: u64) -> Option<RequestUpgrade> {
    Some(RequestUpgrade { start, length })
}

fn replicate_all(w: &Store, r: &Store, key: &[u8; 32]) {
    replicate_all_with(w, r, key, Store::apply_proof)
}

fn replicate_all_with(
    w: &Store,
    r: &Store,
    key: &[u8; 32],
    apply: fn(&Store, &[u8; 32], Proof) -> Result<hypercore_engine::Applied, Error>,
) {
    let wi = w.info(key).unwrap();
    let ri = r.info(key).unwrap();
    if ri.length < wi.length {
        let p = w
            .create_proof(
                key,
                &Request {
                    upgrade: upgrade(ri.length, wi.length - ri.length),
                    manifest: true,
                    ..Default::default()
                },
            )
            .unwrap();
        apply(r, key, p).unwrap();
    }
    for i in 0..wi.length {
        if r.has(key, i).unwrap() {
            continue;
        }
        // ask for as many nodes as the replica lacks (like Node's missingNodes)
        let mut nodes = 0;
        loop {
            let p = w
                .create_proof(
                    key,
                    &Request {
                        fork: wi.fork,
                        block: Some(RequestBlock { index: i, nodes }),
                        ..Default::default()
                    },
                )
                .unwrap();
            match apply(r, key, p) {
                Ok(a) => {
                    assert_eq!(a.block_stored, Some(i));
                    break;
                }
                Err(Error::InvalidProof(_)) if nodes < 64 => nodes += 1,
                Err(e) => panic!("block {i}: {e}"),
            }
        }
    }
}

#[test]
fn append_get_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let kp = KeyPair::from_seed(&[9; 32]);
    let key;
    {
        let s = Store::open(dir.path()).unwrap();
        key = s.create_writer(&kp, CoreKind::Default).unwrap();
        let b = blocks(20);
        s.append(&key, b[..7].to_vec()).unwrap();
        let a = s.append(&key, b[7..].to_vec()).unwrap();
        assert_eq!(a.length, 20);
        for (i, blk) in b.iter().enumerate() {
            assert_eq!(s.get(&key, i as u64).unwrap().as_deref(), Some(&blk[..]));
        }
        assert_eq!(s.get(&key, 20).unwrap(), None);
        let info = s.info(&key).unwrap();
        assert_eq!(
            (info.length, info.contiguous_length, info.held_blocks),
            (20, 20, 20)
        );
        assert!(info.writable && !info.compat);
        let bf = s.block_file(&key, 3).unwrap().unwrap();
        let all = std::fs::read(&bf.path).unwrap();
        assert_eq!(
            &all[bf.location.offset as usize..][..bf.location.len as usize],
            &b[3][..]
        );
        // small durable appends: one fsync each, of the write-ahead log
        let st = s.stats();
        assert_eq!((st.commits, st.log_syncs, st.data_syncs), (2, 2, 0));
    }
    let s = Store::open(dir.path()).unwrap();
    assert!(s.report().repairs.is_empty(), "{:?}", s.report());
    let info = s.info(&key).unwrap();
    assert_eq!((info.length, info.held_blocks), (20, 20));
    s.append(&key, vec![b"more".to_vec()]).unwrap();
    assert_eq!(s.get(&key, 20).unwrap().unwrap(), b"more");
}

#[test]
fn replicate_between_stores_all_kinds() {
    for (n, kind) in [CoreKind::Compat, CoreKind::Default]
        .into_iter()
        .enumerate()
    {
        let (wd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let w = Store::open(wd.path()).unwrap();
        let r = Store::open(rd.path()).unwrap();
        let kp = KeyPair::from_seed(&[n as u8 + 1; 32]);
        let key = w.create_writer(&kp, kind).unwrap();
        w.append(&key, blocks(13)).unwrap();
        r.open_replica(key, None).unwrap();
        replicate_all(&w, &r, &key);
        w.append(&key, blocks(30)[13..].to_vec()).unwrap();
        replicate_all(&w, &r, &key);
        let (wi, ri) = (w.info(&key).unwrap(), r.info(&key).unwrap());
        assert_eq!(ri.length, 30);
        assert_eq!(ri.contiguous_length, 30);
        assert_eq!(ri.byte_length, wi.byte_length);
        assert_eq!(
            ri.manifest.is_some(),
            n == 1,
            "manifest learned for manifest-keyed cores"
        );
        for i in 0..30 {
            assert_eq!(r.get(&key, i).unwrap(), w.get(&key, i).unwrap());
        }
        // proofs from the replica are identical to the writer's
        for req in [
            Request {
                block: Some(RequestBlock { index: 4, nodes: 2 }),
                upgrade: upgrade(0, 30),
                ..Default::default()
            },
            Request {
                upgrade: upgrade(9, 11),
                ..Default::default()
            },
            Request {
                hash: Some(RequestBlock {
                    index: 11,
                    nodes: 1,
                }),
                ..Default::default()
            },
        ] {
            assert_eq!(
                r.create_proof(&key, &req).unwrap(),
                w.create_proof(&key, &req).unwrap()
            );
        }
        drop(r);
        let r = Store::open(rd.path()).unwrap();
        assert_eq!(r.info(&key).unwrap(), ri);
    }
}

fn node_proofs_apply(name: &str, core: &serde_json::Value) {
    let kp = KeyPair::from_seed(&[u(&core["seed"]) as u8; 32]);
    let kind = if core["compat"].as_bool().unwrap() {
        CoreKind::Compat
    } else {
        CoreKind::Default
    };
    let wd = tempfile::tempdir().unwrap();
    let w = Store::open(wd.path()).unwrap();
    let key = w.create_writer(&kp, kind.clone()).unwrap();
    assert_eq!(key, hex32(&core["key"]), "{name}: same key as Node");
    let data: Vec<Vec<u8>> = core["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(hexv)
        .collect();
    w.append(&key, data.clone()).unwrap();
    let len = data.len() as u64;
    for (i, case) in core["proofs"].as_array().unwrap().iter().enumerate() {
        if case["proof"].is_null() {
            continue;
        }
        let theirs: Proof = proof(&case["proof"]);
        let rd = tempfile::tempdir().unwrap();
        let r = Store::open(rd.path()).unwrap();
        // a replica learns a manifest-keyed core's manifest from a proof (case 0) or knows it
        let known = if theirs.manifest.is_some() || matches!(kind, CoreKind::Compat) {
            None
        } else {
            manifest(&core["manifest"])
        };
        r.open_replica(key, known).unwrap();
        match &theirs.upgrade {
            Some(u) if u.start > 0 => {
                // a writer that was at length `start` (same key pair), as the replica saw it
                let pd = tempfile::tempdir().unwrap();
                let pw = Store::open(pd.path()).unwrap();
                pw.create_writer(&kp, kind.clone()).unwrap();
                pw.append(&key, data[..u.start as usize].to_vec()).unwrap();
                // and, when the block chain ends below `start`, the node it ends at
                let root = verify_tree(&theirs, &mut Vec::new())
                    .unwrap()
                    .filter(|r| r.index < 2 * u.start);
                let hash = root.map(|r| RequestBlock {
                    index: r.index,
                    nodes: 0,
                });
                let req = Request {
                    hash,
                    upgrade: upgrade(0, u.start),
                    manifest: true,
                    ..Default::default()
                };
                r.apply_proof(&key, pw.create_proof(&key, &req).unwrap())
                    .unwrap();
            }
            Some(_) => {}
            None => {
                let root = verify_tree(&theirs, &mut Vec::new()).unwrap().unwrap();
                let req = Request {
                    hash: Some(RequestBlock {
                        index: root.index,
                        nodes: 0,
                    }),
                    upgrade: upgrade(0, len),
                    manifest: true,
                    ..Default::default()
                };
                r.apply_proof(&key, w.create_proof(&key, &req).unwrap())
                    .unwrap_or_else(|e| panic!("{name} #{i}: priming with {req:?}: {e}"));
            }
        }
        let a = r
            .apply_proof(&key, theirs.clone())
            .unwrap_or_else(|e| panic!("{name} #{i}: Node's proof refused: {e}"));
        if let Some(b) = &theirs.block {
            assert_eq!(a.block_stored, Some(b.index));
            assert_eq!(
                r.get(&key, b.index).unwrap().unwrap(),
                data[b.index as usize]
            );
        }
        if let Some(u) = &theirs.upgrade {
            assert_eq!(a.length, u.upgrade_length().unwrap());
        }
        assert_eq!(
            a.manifest_learned,
            theirs.manifest.is_some() && !matches!(kind, CoreKind::Compat),
            "{name} #{i}"
        );
    }
}

#[test]
fn node_proofs_apply_to_our_replicas() {
    let Some(v) = vectors() else { return };
    node_proofs_apply("compat", &v["compatCore"]);
    node_proofs_apply("manifest", &v["manifestCore"]);
}

#[test]
fn hostile_requests_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let key = s
        .create_writer(&KeyPair::from_seed(&[3; 32]), CoreKind::Default)
        .unwrap();
    s.append(&key, blocks(10)).unwrap();
    let big = [
        0,
        1,
        9,
        10,
        11,
        1 << 40,
        u64::MAX / 2,
        u64::MAX - 1,
        u64::MAX,
    ];
    for &a in &big {
        for &b in &big {
            let reqs = [
                Request {
                    block: Some(RequestBlock { index: a, nodes: b }),
                    ..Default::default()
                },
                Request {
                    hash: Some(RequestBlock { index: a, nodes: b }),
                    ..Default::default()
                },
                Request {
                    upgrade: upgrade(a, b),
                    ..Default::default()
                },
                Request {
                    block: Some(RequestBlock {
                        index: a % 10,
                        nodes: 1,
                    }),
                    upgrade: upgrade(b, a),
                    ..Default::default()
                },
                Request {
                    hash: Some(RequestBlock { index: b, nodes: 0 }),
                    seek: Some(hypercore_engine::RequestSeek {
                        bytes: a,
                        padding: b % 3,
                    }),
                    ..Default::default()
                },
                Request {
                    seek: Some(hypercore_engine::RequestSeek {
                        bytes: a,
                        padding: 0,
                    }),
                    upgrade: upgrade(0, b),
                    ..Default::default()
                },
            ];
            for r in reqs {
                let _ = s.create_proof(&key, &r);
            }
        }
    }
}

#[test]
fn one_commit_across_cores_all_or_nothing() {
    let (ad, bd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::open(ad.path()).unwrap();
    let src = Store::open(bd.path()).unwrap();
    let mine = a
        .create_writer(&KeyPair::from_seed(&[1; 32]), CoreKind::Default)
        .unwrap();
    let theirs = src
        .create_writer(&KeyPair::from_seed(&[2; 32]), CoreKind::Compat)
        .unwrap();
    src.append(&theirs, blocks(4)).unwrap();
    a.open_replica(theirs, None).unwrap();
    let up = src
        .create_proof(
            &theirs,
            &Request {
                block: Some(RequestBlock { index: 0, nodes: 0 }),
                upgrade: upgrade(0, 4),
                ..Default::default()
            },
        )
        .unwrap();
    let before = a.stats();
    // a failing operation anywhere in the batch leaves everything as it was
    let mut bad = hypercore_engine::Batch::new();
    bad.append(mine, blocks(3));
    bad.apply(theirs, up.clone());
    let mut broken = up.clone();
    broken.fork = 7;
    bad.apply(theirs, broken);
    assert!(a.commit(bad).is_err());
    assert_eq!(a.info(&mine).unwrap().length, 0);
    assert_eq!(a.info(&theirs).unwrap().length, 0);
    assert_eq!(a.stats(), before);
    // the same batch without the bad proof: one commit, one fsync for both cores
    let mut good = hypercore_engine::Batch::new();
    good.append(mine, blocks(3));
    good.apply(theirs, up);
    good.append(mine, blocks(5)[3..].to_vec());
    let out = a.commit(good).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[2].length, 5);
    let after = a.stats();
    assert_eq!(
        (
            after.commits - before.commits,
            after.fsyncs() - before.fsyncs()
        ),
        (1, 1),
    );
    assert_eq!(a.get(&theirs, 0).unwrap().unwrap(), blocks(1)[0]);
    assert_eq!(a.get(&mine, 4).unwrap().unwrap(), blocks(5)[4]);
}

#[test]
fn seek_proofs_verify_and_apply() {
    let (wd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w = Store::open(wd.path()).unwrap();
    let key = w
        .create_writer(&KeyPair::from_seed(&[4; 32]), CoreKind::Default)
        .unwrap();
    let data = blocks(16);
    w.append(&key, data.clone()).unwrap();
    let byte_length = w.info(&key).unwrap().byte_length;
    let r = Store::open(rd.path()).unwrap();
    r.open_replica(key, None).unwrap();
    let p = w
        .create_proof(
            &key,
            &Request {
                upgrade: upgrade(0, 16),
                manifest: true,
                ..Default::default()
            },
        )
        .unwrap();
    r.apply_proof(&key, p).unwrap();
    let mut ok = 0;
    for bytes in (0..byte_length).step_by(37) {
        for (index, nodes) in [(0u64, 4u64), (5, 4), (9, 3), (15, 4)] {
            let req = Request {
                block: Some(RequestBlock { index, nodes }),
                seek: Some(hypercore_engine::RequestSeek { bytes, padding: 0 }),
                ..Default::default()
            };
            let Ok(p) = w.create_proof(&key, &req) else {
                continue;
            };
            assert!(p.seek.as_ref().is_none_or(|s| !s.nodes.is_empty()));
            r.apply_proof(&key, p)
                .unwrap_or_else(|e| panic!("seek {bytes} with block {index}: {e}"));
            ok += 1;
        }
        let req = Request {
            seek: Some(hypercore_engine::RequestSeek { bytes, padding: 0 }),
            upgrade: upgrade(0, 16),
            ..Default::default()
        };
        if let Ok(p) = w.create_proof(&key, &req) {
            // a seek with an upgrade from 0 proves against the signed roots
            let sd = tempfile::tempdir().unwrap();
            let fresh = Store::open(sd.path()).unwrap();
            fresh
                .open_replica(
                    key,
                    Some(hypercore_engine::Manifest::single_signer(
                        KeyPair::from_seed(&[4; 32]).public_key,
                    )),
                )
                .unwrap();
            fresh
                .apply_proof(&key, p)
                .unwrap_or_else(|e| panic!("seek {bytes} with upgrade: {e}"));
            ok += 1;
        }
    }
    assert!(ok > 50, "only {ok} seek proofs made");
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Store>();
}

#[test]
fn readers_run_while_a_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let key = s
        .create_writer(&KeyPair::from_seed(&[6; 32]), CoreKind::Default)
        .unwrap();
    s.append(&key, blocks(1)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let info = s.info(&key).unwrap();
                    let last = info.length - 1;
                    assert_eq!(
                        s.get(&key, last).unwrap().unwrap(),
                        blocks(last as usize + 1)[last as usize]
                    );
                    let p = s.create_proof(
                        &key,
                        &Request {
                            block: Some(RequestBlock {
                                index: last,
                                nodes: 0,
                            }),
                            upgrade: upgrade(0, info.length),
                            ..Default::default()
                        },
                    );
                    // the head may move between info() and the proof: only a stale request may fail
                    if let Err(e) = p {
                        assert!(matches!(e, Error::InvalidRequest(_)), "{e}");
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for n in 2..60 {
        s.append(&key, vec![blocks(n)[n - 1].clone()]).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0);
}

#[test]
fn blobs_core_manifest_derived_then_removed() {
    let (wd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w = Store::open(wd.path()).unwrap();
    let kp = KeyPair::from_seed(&[8; 32]);
    let db_key = w.create_writer(&kp, CoreKind::Default).unwrap();
    let db_manifest = hypercore_engine::Manifest::single_signer(kp.public_key);
    let blobs_manifest = db_manifest.content_manifest(&db_key).unwrap();
    let blobs_key = w
        .create_writer(&kp, CoreKind::Manifest(blobs_manifest.clone()))
        .unwrap();
    assert_eq!(Some(blobs_key), db_manifest.blobs_key(&db_key).unwrap());
    w.append(&blobs_key, blocks(9)).unwrap();
    let r = Store::open(rd.path()).unwrap();
    r.open_replica(blobs_key, None).unwrap();
    // learned from the db core's manifest, not from a peer
    r.open_replica(blobs_key, Some(blobs_manifest)).unwrap();
    assert!(r.info(&blobs_key).unwrap().manifest.is_some());
    let p = w
        .create_proof(
            &blobs_key,
            &Request {
                block: Some(RequestBlock { index: 2, nodes: 0 }),
                upgrade: upgrade(0, 9),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(p.manifest.is_none());
    r.apply_proof(&blobs_key, p).unwrap();
    assert_eq!(r.get(&blobs_key, 2).unwrap().unwrap(), blocks(3)[2]);
    let data_file = r.block_file(&blobs_key, 2).unwrap().unwrap().path;
    assert!(data_file.exists());
    r.remove_core(&blobs_key).unwrap();
    assert!(matches!(r.info(&blobs_key), Err(Error::UnknownCore)));
    assert!(!data_file.exists());
    drop(r);
    let r = Store::open(rd.path()).unwrap();
    assert!(r.cores().is_empty());
    // and it can come back
    r.open_replica(blobs_key, None).unwrap();
    assert_eq!(r.info(&blobs_key).unwrap().length, 0);
}

#[test]
fn lazy_applies_sync_nothing_until_one_flush_and_survive_reopening() {
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w = Store::open(wdir.path()).unwrap();
    let key = w
        .create_writer(&KeyPair::from_seed(&[8; 32]), CoreKind::Compat)
        .unwrap();
    w.append(&key, blocks(40)).unwrap();
    {
        let r = Store::open(rdir.path()).unwrap();
        r.open_replica(key, None).unwrap();
        let before = r.stats();
        replicate_all_with(&w, &r, &key, Store::apply_proof_lazy);
        let lazy = r.stats();
        assert_eq!(lazy.fsyncs(), before.fsyncs(), "lazy applies do not sync");
        assert!(lazy.commits >= before.commits + 40);
        // readers see lazy commits at once
        assert_eq!(r.get(&key, 39).unwrap().unwrap(), blocks(40)[39]);
        // the flush checkpoints: the data file, then redb
        r.flush().unwrap();
        let flushed = r.stats();
        assert_eq!(
            (
                flushed.data_syncs - lazy.data_syncs,
                flushed.db_syncs - lazy.db_syncs,
                flushed.fsyncs() - lazy.fsyncs()
            ),
            (1, 1, 2),
        );
        r.flush().unwrap();
        assert_eq!(r.stats(), flushed, "nothing left to flush");
    }
    let r = Store::open(rdir.path()).unwrap();
    assert!(r.report().repairs.is_empty(), "{:?}", r.report());
    let info = r.info(&key).unwrap();
    assert_eq!((info.length, info.contiguous_length), (40, 40));
    for (i, b) in blocks(40).iter().enumerate() {
        assert_eq!(&r.get(&key, i as u64).unwrap().unwrap(), b);
    }
}

#[test]
fn a_durable_commit_syncs_what_lazy_commits_wrote_first() {
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w = Store::open(wdir.path()).unwrap();
    let key = w
        .create_writer(&KeyPair::from_seed(&[9; 32]), CoreKind::Compat)
        .unwrap();
    // blocks too big to go in a lazy commit's log record: their data file must be synced
    // before the log record that makes them durable
    let big: Vec<Vec<u8>> = (0..10).map(|i| vec![i as u8; 20 * 1024]).collect();
    w.append(&key, big).unwrap();
    let r = Store::open(rdir.path()).unwrap();
    r.open_replica(key, None).unwrap();
    let own = r
        .create_writer(&KeyPair::from_seed(&[10; 32]), CoreKind::Compat)
        .unwrap();
    replicate_all_with(&w, &r, &key, Store::apply_proof_lazy);
    let before = r.stats();
    r.append(&own, vec![vec![7u8; 100 * 1024]]).unwrap();
    // the replica's data file (lazy), then the log; the writer's bytes are in its record
    let after = r.stats();
    assert_eq!(after.data_syncs, before.data_syncs + 1);
    assert_eq!(after.fsyncs(), before.fsyncs() + 2);
    r.flush().unwrap();
    assert_eq!(r.stats(), after, "already durable");
}

/// The same for the store's other durable commits (a core created or removed): a fetched
/// block's location never becomes durable before its bytes.
#[test]
fn creating_or_removing_a_core_syncs_what_lazy_commits_wrote_first() {
    let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w = Store::open(wdir.path()).unwrap();
    let key = w
        .create_writer(&KeyPair::from_seed(&[11; 32]), CoreKind::Compat)
        .unwrap();
    w.append(&key, blocks(4)).unwrap();
    let r = Store::open(rdir.path()).unwrap();
    r.open_replica(key, None).unwrap();
    replicate_all_with(&w, &r, &key, Store::apply_proof_lazy);
    let before = r.stats();
    r.open_replica([12; 32], None).unwrap();
    assert_eq!(
        r.stats().data_syncs,
        before.data_syncs + 1,
        "synced by the creation"
    );
    w.append(&key, blocks(2)).unwrap();
    replicate_all_with(&w, &r, &key, Store::apply_proof_lazy);
    let before = r.stats();
    r.remove_core(&[12; 32]).unwrap();
    assert_eq!(
        r.stats().data_syncs,
        before.data_syncs + 1,
        "synced by the removal"
    );
}

#[test]
fn scrub_drops_damaged_blocks_so_they_can_be_fetched_again() {
    let (wd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w = Store::open(wd.path()).unwrap();
    let r = Store::open(rd.path()).unwrap();
    let key = w
        .create_writer(&KeyPair::from_seed(&[7; 32]), CoreKind::Compat)
        .unwrap();
    let data: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8; 300 * 1024]).collect();
    w.append(&key, data.clone()).unwrap();
    r.open_replica(key, None).unwrap();
    replicate_all(&w, &r, &key);
    assert!(r.scrub(&key).unwrap().is_empty());
    // damage block 3 in the middle of the data file (far from the tail open re-checks)
    let bf = r.block_file(&key, 3).unwrap().unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&bf.path)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"rot", bf.location.offset + 10).unwrap();
    assert!(matches!(r.get(&key, 3), Err(Error::Corrupt(_))));
    assert_eq!(r.scrub(&key).unwrap(), vec![3]);
    assert_eq!(r.get(&key, 3).unwrap(), None);
    assert_eq!(r.info(&key).unwrap().contiguous_length, 3);
    replicate_all(&w, &r, &key);
    assert_eq!(r.get(&key, 3).unwrap().unwrap(), data[3]);
}

/// A hyperdrive 13 drive made by Node on corestore 7: our replica of its db core learns the
/// manifest from the first proof; the blobs core's manifest is derived from it (no peer sends
/// it); every block of both cores verifies and reads back byte-identical.
#[test]
fn node_hyperdrive_13_drive_replicates_into_our_store() {
    let Some(v) = vectors() else { return };
    let d = &v["drive"];
    let (db_key, blobs_key) = (hex32(&d["key"]), hex32(&d["blobsKey"]));
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.open_replica(db_key, None).unwrap();
    let mut first = proof(&d["db"]["proofs"][0]["proof"]);
    first.manifest = manifest(&d["manifest"]);
    assert!(s.apply_proof(&db_key, first).unwrap().manifest_learned);
    let db_manifest = s.info(&db_key).unwrap().manifest.unwrap();
    let derived = db_manifest.content_manifest(&db_key).unwrap();
    assert_eq!(derived.hash().unwrap(), blobs_key);
    s.open_replica(blobs_key, Some(derived)).unwrap();
    for (name, key, core) in [("db", db_key, &d["db"]), ("blobs", blobs_key, &d["blobs"])] {
        for (i, case) in core["proofs"].as_array().unwrap().iter().enumerate() {
            if name == "db" && i == 0 {
                continue;
            }
            s.apply_proof(&key, proof(&case["proof"]))
                .unwrap_or_else(|e| panic!("{name} #{i}: {e}"));
        }
        let info = s.info(&key).unwrap();
        assert_eq!(info.length, u(&core["length"]));
        assert_eq!(
            info.contiguous_length, info.length,
            "{name}: every block held"
        );
        for (i, b) in core["blocks"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                s.get(&key, i as u64).unwrap().unwrap(),
                hexv(b),
                "{name} block {i}"
            );
        }
    }
    // and our replica serves them back with the same proofs Node made
    for (key, core) in [(db_key, &d["db"]), (blobs_key, &d["blobs"])] {
        for case in core["proofs"].as_array().unwrap() {
            let req = request(&case["request"]);
            assert_eq!(s.create_proof(&key, &req).unwrap(), proof(&case["proof"]));
        }
    }
}

#[test]
fn writer_truncates_and_replica_follows_the_new_fork() {
    let (wd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w = Store::open(wd.path()).unwrap();
    let r = Store::open(rd.path()).unwrap();
    let key = w
        .create_writer(&KeyPair::from_seed(&[11; 32]), CoreKind::Default)
        .unwrap();
    w.append(&key, blocks(10)).unwrap();
    r.open_replica(key, None).unwrap();
    replicate_all(&w, &r, &key);
    let a = w.truncate(&key, 6).unwrap();
    assert_eq!(a.length, 6);
    let other: Vec<Vec<u8>> = (0..3).map(|i| format!("new {i}").into_bytes()).collect();
    w.append(&key, other.clone()).unwrap();
    let wi = w.info(&key).unwrap();
    assert_eq!((wi.length, wi.fork, wi.held_blocks), (9, 1, 9));
    assert_eq!(w.get(&key, 7).unwrap().unwrap(), other[1]);
    // a fork proof must start from 0
    let mid = w
        .create_proof(
            &key,
            &Request {
                fork: 1,
                upgrade: upgrade(5, 4),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(matches!(
        r.apply_proof(&key, mid),
        Err(Error::Unsupported(_))
    ));
    let p = w
        .create_proof(
            &key,
            &Request {
                fork: 1,
                block: Some(RequestBlock { index: 7, nodes: 0 }),
                upgrade: upgrade(0, 9),
                ..Default::default()
            },
        )
        .unwrap();
    let mut forged = p.clone();
    forged.upgrade.as_mut().unwrap().signature.as_mut().unwrap()[5] ^= 1;
    assert!(r.apply_proof(&key, forged).is_err());
    assert_eq!(
        r.info(&key).unwrap().fork,
        0,
        "a refused fork proof changes nothing"
    );
    r.apply_proof(&key, p).unwrap();
    let ri = r.info(&key).unwrap();
    assert_eq!((ri.length, ri.fork, ri.held_blocks), (9, 1, 1));
    assert_eq!(r.get(&key, 7).unwrap().unwrap(), other[1]);
    assert_eq!(
        r.get(&key, 0).unwrap(),
        None,
        "old-fork blocks are dropped, fetched again"
    );
    replicate_all(&w, &r, &key);
    for i in 0..9 {
        assert_eq!(r.get(&key, i).unwrap(), w.get(&key, i).unwrap());
    }
    // an old-fork proof is stale now
    let mut old = w
        .create_proof(
            &key,
            &Request {
                fork: 1,
                block: Some(RequestBlock { index: 2, nodes: 3 }),
                ..Default::default()
            },
        )
        .unwrap();
    old.fork = 0;
    assert!(matches!(r.apply_proof(&key, old), Err(Error::Stale(_))));
    drop((w, r));
    let (w, r) = (
        Store::open(wd.path()).unwrap(),
        Store::open(rd.path()).unwrap(),
    );
    assert_eq!(w.info(&key).unwrap(), wi);
    assert_eq!(r.info(&key).unwrap().length, 9);
    assert_eq!(r.get(&key, 8).unwrap().unwrap(), other[2]);
}
