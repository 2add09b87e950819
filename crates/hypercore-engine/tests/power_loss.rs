//! Power-loss simulation: every file the engine writes (engine.redb, engine.wal, each data
//! file) is, in turn, cut short or garbled at its tail, or grown with uncommitted bytes —
//! of a folder closed cleanly, and of one copied while its store was running (its log then
//! holds every commit since the cores were created). The folder must open, keep every block
//! whose bytes survive, and report what it dropped. Also: a damaged core record is reported
//! and skipped without stopping the other cores.

mod common;

use common::copy_dir;
use hypercore_engine::{CoreKind, KeyPair, Request, RequestUpgrade, Store};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.join("engine.redb"), dir.join("engine.wal")];
    for e in fs::read_dir(dir.join("data")).unwrap() {
        out.push(e.unwrap().path());
    }
    out
}

/// A folder with a writer (3 commits) and a replica of another writer's core; with `live`,
/// also a copy of the folder taken before the store closes.
fn build(dir: &Path, live: Option<&Path>) -> (Vec<[u8; 32]>, Vec<Vec<Vec<u8>>>) {
    let s = Store::open(dir).unwrap();
    let w = s
        .create_writer(&KeyPair::from_seed(&[1; 32]), CoreKind::Default)
        .unwrap();
    let mut wblocks = Vec::new();
    for c in 0..3 {
        let b: Vec<Vec<u8>> = (0..10)
            .map(|i| vec![(c * 10 + i) as u8; 1000 + i * 37])
            .collect();
        s.append(&w, b.clone()).unwrap();
        wblocks.extend(b);
    }
    let od = tempfile::tempdir().unwrap();
    let o = Store::open(od.path()).unwrap();
    let ok = o
        .create_writer(&KeyPair::from_seed(&[2; 32]), CoreKind::Compat)
        .unwrap();
    let rblocks: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8 + 100; 5000]).collect();
    o.append(&ok, rblocks.clone()).unwrap();
    s.open_replica(ok, None).unwrap();
    s.apply_proof(
        &ok,
        o.create_proof(
            &ok,
            &Request {
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: 8,
                }),
                ..Default::default()
            },
        )
        .unwrap(),
    )
    .unwrap();
    for i in 0..8 {
        let p = o.create_proof(
            &ok,
            &Request {
                block: Some(hypercore_engine::RequestBlock { index: i, nodes: 3 }),
                ..Default::default()
            },
        );
        // nodes: 3 reaches the root of 8 blocks (index 7), which the replica holds
        s.apply_proof(&ok, p.unwrap()).unwrap();
    }
    if let Some(to) = live {
        copy_dir(dir, to);
        assert!(fs::metadata(to.join("engine.wal")).unwrap().len() > 0);
    }
    (vec![w, ok], vec![wblocks, rblocks])
}

fn check(dir: &Path, keys: &[[u8; 32]], blocks: &[Vec<Vec<u8>>], what: &str) -> usize {
    let s = Store::open(dir).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    let mut kept = 0;
    for (k, bl) in keys.iter().zip(blocks) {
        let Ok(info) = s.info(k) else {
            assert!(
                s.report()
                    .repairs
                    .iter()
                    .any(|r| r.key == *k && r.error.is_some()),
                "{what}: core vanished without a report"
            );
            continue;
        };
        for (i, b) in bl.iter().enumerate() {
            match s.get(k, i as u64) {
                Ok(Some(got)) => {
                    assert_eq!(&got, b, "{what}: block {i} wrong");
                    kept += 1;
                }
                Ok(None) => {
                    let reported = s
                        .report()
                        .repairs
                        .iter()
                        .any(|r| r.key == *k && r.dropped_blocks.contains(&(i as u64)));
                    // dropped log records are reported as such (the commits they held)
                    let log_dropped = s.report().log.is_some();
                    assert!(
                        reported || log_dropped || i as u64 >= info.length,
                        "{what}: block {i} lost without a report"
                    );
                }
                Err(e) => panic!("{what}: block {i}: {e}"),
            }
        }
        // the core still works: the writer appends, the store reopens
        if info.writable {
            s.append(k, vec![b"after".to_vec()])
                .unwrap_or_else(|e| panic!("{what}: append after repair: {e}"));
        }
    }
    drop(s);
    let again = Store::open(dir).unwrap();
    assert!(
        again.report().repairs.iter().all(|r| r.error.is_some()),
        "{what}: second open still repairing: {:?}",
        again.report()
    );
    kept
}

#[test]
fn torn_and_garbled_tails_of_every_file() {
    let base = tempfile::tempdir().unwrap();
    let (keys, blocks) = build(base.path(), None);
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    assert_eq!(check(base.path(), &keys, &blocks, "intact"), total);
    let base2 = tempfile::tempdir().unwrap();
    build(base2.path(), None);
    assert!(damage_every_file(base2.path(), &keys, &blocks) >= 45);
}

#[test]
fn torn_and_garbled_tails_of_every_file_of_a_running_store() {
    let (base, live) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (keys, blocks) = build(base.path(), Some(live.path()));
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    let intact = tempfile::tempdir().unwrap();
    copy_dir(live.path(), intact.path());
    assert_eq!(check(intact.path(), &keys, &blocks, "live, intact"), total);
    assert!(damage_every_file(live.path(), &keys, &blocks) >= 60);
}

/// Every file of `base`, in turn, cut, garbled or grown at its tail (in a copy), then
/// checked; returns the number of cases.
fn damage_every_file(base: &Path, keys: &[[u8; 32]], blocks: &[Vec<Vec<u8>>]) -> usize {
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    let mut cases = 0;
    for f in files(base) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let len = fs::metadata(&f).unwrap().len();
        for cut in [1u64, 17, 4096, 20_000, len / 2] {
            for mode in ["truncate", "garble", "grow"] {
                let t = tempfile::tempdir().unwrap();
                copy_dir(base, t.path());
                let target = t.path().join(f.strip_prefix(base).unwrap());
                let cut = cut.min(len);
                match mode {
                    "truncate" => OpenOptions::new()
                        .write(true)
                        .open(&target)
                        .unwrap()
                        .set_len(len - cut)
                        .unwrap(),
                    "garble" => {
                        let mut data = fs::read(&target).unwrap();
                        let n = data.len();
                        for (j, b) in data[n - cut as usize..].iter_mut().enumerate() {
                            *b ^= 0x5a ^ (j as u8);
                        }
                        fs::write(&target, data).unwrap();
                    }
                    _ => {
                        let mut fh = OpenOptions::new().append(true).open(&target).unwrap();
                        fh.write_all(&vec![0xab; cut as usize]).unwrap();
                    }
                }
                let what = format!("{mode} {cut} bytes of {name}");
                let kept = check(t.path(), keys, blocks, &what);
                eprintln!("{what}: kept {kept}/{total} blocks");
                cases += 1;
            }
        }
    }
    cases
}
