//! The write-ahead log: a durable commit costs one fsync (also when it makes earlier lazy
//! commits durable); what the log holds survives the loss of every unsynced write to the data
//! files and redb; a record pointing at bytes that never reached the disk is not applied (and
//! the report says so); checkpoints keep the log short; a store closed cleanly leaves it empty.
//! "Power loss" here is a copy of the data folder taken while the store is open (what the
//! disk holds after a kill), then cut back to what had been synced.

mod common;

use common::copy_dir;
use hypercore_engine::{
    CoreKind, KeyPair, Request, RequestBlock, RequestUpgrade, Store, StoreOptions,
};
use std::fs;
use std::path::Path;

fn small(n: usize, tag: u8) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![tag ^ i as u8; 120 + i]).collect()
}

fn data_file(s: &Store, key: &[u8; 32]) -> std::path::PathBuf {
    s.block_file(key, 0).unwrap().unwrap().path
}

fn cut_to(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Block `i` with an upgrade to the writer's length (a replica fetching from a writer),
/// asking for as many tree levels as the replica lacks.
fn fetch(w: &Store, r: &Store, key: &[u8; 32], i: u64, lazy: bool) {
    let have = r.info(key).unwrap().length;
    let len = w.info(key).unwrap().length;
    for nodes in 0..64 {
        let p = w
            .create_proof(
                key,
                &Request {
                    block: Some(RequestBlock { index: i, nodes }),
                    upgrade: (have < len).then_some(RequestUpgrade {
                        start: have,
                        length: len - have,
                    }),
                    ..Default::default()
                },
            )
            .unwrap();
        let applied = if lazy {
            r.apply_proof_lazy(key, p)
        } else {
            r.apply_proof(key, p)
        };
        match applied {
            Ok(_) => return,
            Err(hypercore_engine::Error::InvalidProof(_)) => continue,
            Err(e) => panic!("block {i}: {e}"),
        }
    }
    panic!("block {i}: no proof applied");
}

#[test]
fn a_durable_commit_is_one_fsync_also_after_lazy_ones() {
    let (wd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w = Store::open(wd.path()).unwrap();
    let theirs = w
        .create_writer(&KeyPair::from_seed(&[1; 32]), CoreKind::Compat)
        .unwrap();
    w.append(&theirs, small(1, 1)).unwrap();
    // the mirror's pattern: a peer's command stored lazily, then our own durable append
    let r = Store::open(rd.path()).unwrap();
    let mine = r
        .create_writer(&KeyPair::from_seed(&[2; 32]), CoreKind::Default)
        .unwrap();
    r.open_replica(theirs, None).unwrap();
    for round in 0..5u8 {
        let before = r.stats();
        w.append(&theirs, small(1, round)).unwrap();
        let last = w.info(&theirs).unwrap().length - 1;
        fetch(&w, &r, &theirs, last, true);
        assert_eq!(
            r.stats().fsyncs(),
            before.fsyncs(),
            "a lazy commit syncs nothing"
        );
        r.append(&mine, small(1, round)).unwrap();
        let after = r.stats();
        assert_eq!(
            (
                after.commits - before.commits,
                after.fsyncs() - before.fsyncs()
            ),
            (2, 1),
            "round {round}: {before:?} -> {after:?}"
        );
        assert_eq!(after.log_syncs, before.log_syncs + 1);
        r.flush().unwrap();
        assert_eq!(r.stats(), after, "nothing left for the flush");
    }
}

#[test]
fn logged_commits_survive_losing_every_unsynced_write() {
    let dir = tempfile::tempdir().unwrap();
    let lost = tempfile::tempdir().unwrap();
    let big: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8; 64 * 1024]).collect();
    let (key, synced_len, path);
    let s = Store::open(dir.path()).unwrap();
    key = s
        .create_writer(&KeyPair::from_seed(&[5; 32]), CoreKind::Default)
        .unwrap();
    s.append(&key, big.clone()).unwrap(); // 512 KiB: too big for its record, synced
    synced_len = fs::metadata(data_file(&s, &key)).unwrap().len();
    assert_eq!(synced_len, 8 * 64 * 1024);
    for i in 0..6 {
        s.append(&key, small(1, 40 + i)).unwrap(); // small: in the log only
    }
    path = data_file(&s, &key);
    // the disk after a power loss: the log as synced, the data file without the small
    // appends' bytes; redb as the copy finds it (redb recovers its last durable commit)
    copy_dir(dir.path(), lost.path());
    let lost_path = lost.path().join(path.strip_prefix(dir.path()).unwrap());
    cut_to(&lost_path, synced_len);
    drop(s);
    let r = Store::open(lost.path()).unwrap();
    assert!(r.report().repairs.is_empty(), "{:?}", r.report());
    assert_eq!(r.report().log, None);
    assert_eq!(r.info(&key).unwrap().length, 14);
    for i in 0..6u8 {
        assert_eq!(
            r.get(&key, 8 + i as u64).unwrap().unwrap(),
            small(1, 40 + i)[0]
        );
    }
    assert_eq!(r.get(&key, 3).unwrap().unwrap(), big[3]);
    // it keeps working, and a second open has nothing left to replay
    r.append(&key, small(1, 99)).unwrap();
    drop(r);
    assert_eq!(
        fs::metadata(lost.path().join("engine.wal")).unwrap().len(),
        0
    );
    let r = Store::open(lost.path()).unwrap();
    assert_eq!(r.info(&key).unwrap().length, 15);
    assert_eq!(r.report().log, None);
}

#[test]
fn a_record_whose_bytes_never_reached_the_data_file_is_not_applied() {
    let (wd, rd, lost) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let w = Store::open(wd.path()).unwrap();
    let key = w
        .create_writer(&KeyPair::from_seed(&[6; 32]), CoreKind::Compat)
        .unwrap();
    // 64 KiB blocks: a lazy commit does not put them in its record
    let blocks: Vec<Vec<u8>> = (0..6).map(|i| vec![i as u8 + 1; 64 * 1024]).collect();
    w.append(&key, blocks.clone()).unwrap();
    let r = Store::open(rd.path()).unwrap();
    r.open_replica(key, None).unwrap();
    fetch(&w, &r, &key, 0, false); // durable: upgrade to 6 and block 0
    for i in 1..6 {
        fetch(&w, &r, &key, i, true);
    }
    // the kernel wrote the log back on its own, but the data file only up to block 2
    copy_dir(rd.path(), lost.path());
    let held = data_file(&r, &key);
    let lost_path = lost.path().join(held.strip_prefix(rd.path()).unwrap());
    cut_to(&lost_path, 3 * 64 * 1024);
    let s = Store::open(lost.path()).unwrap();
    let why = s
        .report()
        .log
        .clone()
        .expect("the report names the dropped records");
    assert!(why.contains("never reached the data file"), "{why}");
    let info = s.info(&key).unwrap();
    assert_eq!((info.length, info.held_blocks), (6, 3));
    for i in 0..3 {
        assert_eq!(s.get(&key, i).unwrap().unwrap(), blocks[i as usize]);
    }
    assert_eq!(s.get(&key, 3).unwrap(), None);
    // and the missing blocks can be fetched again
    for i in 3..6 {
        fetch(&w, &s, &key, i, false);
    }
    assert_eq!(s.get(&key, 5).unwrap().unwrap(), blocks[5]);
}

#[test]
fn checkpoints_keep_the_log_short_and_a_clean_close_empties_it() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        checkpoint_bytes: 4096,
        ..StoreOptions::default()
    };
    let s = Store::open_with(dir.path(), opts).unwrap();
    let key = s
        .create_writer(&KeyPair::from_seed(&[7; 32]), CoreKind::Default)
        .unwrap();
    let before = s.stats();
    let log = dir.path().join("engine.wal");
    let mut longest = 0;
    for i in 0..200u8 {
        s.append(&key, small(1, i)).unwrap();
        longest = longest.max(fs::metadata(&log).unwrap().len());
    }
    let st = s.stats();
    assert!(st.db_syncs - before.db_syncs >= 10, "{st:?}");
    assert!(st.db_syncs - before.db_syncs < 200, "{st:?}");
    assert!(longest < 4096 + 1024, "log grew to {longest} bytes");
    drop(s);
    assert_eq!(fs::metadata(&log).unwrap().len(), 0);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.info(&key).unwrap().length, 200);
    for i in 0..200u8 {
        assert_eq!(s.get(&key, i as u64).unwrap().unwrap(), small(1, i)[0]);
    }
}

#[test]
fn a_flush_checkpoints_and_so_does_every_nth_durable_commit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        checkpoint_commits: 40,
        ..StoreOptions::default()
    };
    let s = Store::open_with(dir.path(), opts).unwrap();
    let key = s
        .create_writer(&KeyPair::from_seed(&[9; 32]), CoreKind::Default)
        .unwrap();
    let log = dir.path().join("engine.wal");
    // lazy commits no durable commit followed: the flush checkpoints them (data, redb)
    for i in 0..3 {
        let mut b = hypercore_engine::Batch::new();
        b.append(key, small(1, i));
        s.commit_lazy(b).unwrap();
    }
    assert!(fs::metadata(&log).unwrap().len() > 0);
    let before = s.stats();
    s.flush().unwrap();
    let after = s.stats();
    assert_eq!(
        (
            after.data_syncs - before.data_syncs,
            after.db_syncs - before.db_syncs,
            after.log_syncs - before.log_syncs
        ),
        (1, 1, 0)
    );
    assert_eq!(fs::metadata(&log).unwrap().len(), 0);
    // durable commits alone checkpoint every checkpoint_commits
    let before = s.stats();
    for i in 0..100 {
        s.append(&key, small(1, i)).unwrap();
    }
    let after = s.stats();
    assert_eq!(after.db_syncs - before.db_syncs, 2);
    assert_eq!(after.log_syncs - before.log_syncs, 100);
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.info(&key).unwrap().length, 103);
}

#[test]
fn a_torn_last_record_loses_only_that_commit() {
    let (dir, lost) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s = Store::open(dir.path()).unwrap();
    let key = s
        .create_writer(&KeyPair::from_seed(&[8; 32]), CoreKind::Default)
        .unwrap();
    for i in 0..10 {
        s.append(&key, small(1, i)).unwrap();
    }
    copy_dir(dir.path(), lost.path());
    let log = lost.path().join("engine.wal");
    let len = fs::metadata(&log).unwrap().len();
    assert!(len > 0);
    cut_to(&log, len - 7);
    drop(s);
    let s = Store::open(lost.path()).unwrap();
    assert!(s.report().log.is_some(), "{:?}", s.report());
    assert_eq!(s.info(&key).unwrap().length, 9);
    assert_eq!(s.get(&key, 8).unwrap().unwrap(), small(1, 8)[0]);
    s.append(&key, small(1, 50)).unwrap();
    assert_eq!(s.get(&key, 9).unwrap().unwrap(), small(1, 50)[0]);
}
