//! Hostile and corrupt input: crafted db blocks (self-references, pointers past the end,
//! deep chains, shared subtrees, bad shapes, bad JSON, missing blocks) and random
//! mutations must give errors, never panics or hangs.

use std::time::Duration;

use super::messages::{encode_index, encode_node, Level};
use super::tests::{new_core, noise, TestOps};
use super::*;

const LIMIT: Duration = Duration::from_secs(20);

fn value() -> Vec<u8> {
    encode_entry(&Entry::default())
}

fn node(levels: &[Level], path: &str) -> Vec<u8> {
    encode_node(&encode_index(levels), &file_key(path), Some(&value()))
}

fn lvl(keys: &[u64], children: &[(u64, u64)]) -> Level {
    Level {
        keys: keys.to_vec(),
        children: children.to_vec(),
    }
}

/// A disk db core holding a header and then `blocks`.
async fn db_with(blocks: Vec<Vec<u8>>) -> (tempfile::TempDir, EngineCore) {
    let tmp = tempfile::tempdir().unwrap();
    let mut db = new_core(tmp.path()).await;
    db.append(&encode_header(&[1; 32])).await.unwrap();
    if !blocks.is_empty() {
        db.append_batch(&blocks).await.unwrap();
    }
    (tmp, db)
}

/// get_entry and both listings at the latest version, each under a time limit.
async fn probe<S: BlockSource + Send>(db: &mut S, path: &str) -> [Result<(), DriveError>; 3] {
    let v = db.length();
    let a = tokio::time::timeout(LIMIT, get_entry(db, v, path))
        .await
        .expect("get hangs");
    let b = tokio::time::timeout(LIMIT, list(db, v, "/", true))
        .await
        .expect("list hangs");
    let c = tokio::time::timeout(LIMIT, list(db, v, "/", false))
        .await
        .expect("ls hangs");
    [a.map(drop), b.map(drop), c.map(drop)]
}

fn is_corrupt(r: &Result<(), DriveError>) -> bool {
    matches!(r, Err(DriveError::Corrupt { .. }))
}

#[tokio::test]
async fn self_reference_is_corrupt() {
    // Block 1's root has a child pointing back at itself.
    let (_t, mut db) = db_with(vec![node(&[lvl(&[1], &[(1, 0), (1, 0)])], "/m")]).await;
    let [get, rec, ls] = probe(&mut db, "/a").await;
    assert!(is_corrupt(&get), "{get:?}");
    assert!(is_corrupt(&rec), "{rec:?}");
    assert!(is_corrupt(&ls), "{ls:?}");
}

#[tokio::test]
async fn pointers_outside_the_version_are_corrupt() {
    for levels in [
        vec![lvl(&[5], &[])],                      // key past the end
        vec![lvl(&[0], &[])],                      // key is the header
        vec![lvl(&[1], &[(9, 0), (1, 1)])],        // child past the end
        vec![lvl(&[1], &[(1, 7), (1, 7)])],        // no such level
        vec![lvl(&[1], &[(1, 1)]), lvl(&[], &[])], // children != keys + 1
        vec![],                                    // no root level
    ] {
        let (_t, mut db) = db_with(vec![node(&levels, "/m")]).await;
        let [get, rec, ls] = probe(&mut db, "/a").await;
        assert!(
            is_corrupt(&get) && is_corrupt(&rec) && is_corrupt(&ls),
            "{levels:?}"
        );
    }
    // A truncated index, and an odd number of child words (keys [1], children [1]).
    for idx in [
        &[0x0a, 5, 0x0a, 1, 1][..],
        &[0x0a, 6, 0x0a, 1, 1, 0x12, 1, 1],
    ] {
        let (_t, mut db) = db_with(vec![encode_node(idx, b"k", None)]).await;
        assert!(probe(&mut db, "/a").await.iter().all(is_corrupt));
    }
}

#[tokio::test]
async fn deep_chains_and_shared_subtrees_stop() {
    // Block i (2..=200) has two levels, each pointing at both levels of block i-1: a
    // 2^200-path DAG. Lookups hit the depth limit, scans notice the sharing.
    let mut blocks = vec![node(&[lvl(&[1], &[]), lvl(&[1], &[])], "/k0001")];
    for i in 2..=200u64 {
        let l = lvl(&[i], &[(i - 1, 0), (i - 1, 1)]);
        blocks.push(node(&[l.clone(), l], &format!("/k{i:04}")));
    }
    let (_t, mut db) = db_with(blocks).await;
    let [get, rec, ls] = probe(&mut db, "/k0000").await;
    assert!(is_corrupt(&get), "{get:?}");
    assert!(is_corrupt(&rec), "{rec:?}");
    assert!(is_corrupt(&ls), "{ls:?}");
}

#[tokio::test]
async fn unsorted_keys_and_bad_values() {
    // A leaf whose keys are out of order.
    let blocks = vec![
        node(&[lvl(&[1], &[])], "/b"),
        node(&[lvl(&[1, 2], &[])], "/a"),
        node(&[lvl(&[1, 2, 3], &[])], "/c"),
        node(&[lvl(&[1, 2, 3, 4], &[])], "/d"), // "/b" "/a" "/c" "/d"
    ];
    let (_t, mut db) = db_with(blocks).await;
    // The full scan notices; seeks may or may not, but must terminate.
    let [_, rec, _] = probe(&mut db, "/a").await;
    assert!(is_corrupt(&rec), "{rec:?}");
    // A value that is not JSON, and a key in the tree whose block has no value.
    let bad_json = encode_node(
        &encode_index(&[lvl(&[1], &[])]),
        &file_key("/x"),
        Some(b"{"),
    );
    let no_value = encode_node(&encode_index(&[lvl(&[1, 2], &[])]), &file_key("/y"), None);
    let (_t, mut db) = db_with(vec![bad_json, no_value]).await;
    assert!(is_corrupt(&get_entry(&mut db, 2, "/x").await.map(drop)));
    assert!(is_corrupt(&get_entry(&mut db, 3, "/y").await.map(drop)));
    assert!(is_corrupt(&get_entry(&mut db, 3, "/x").await.map(drop)));
    // A non-UTF-8 key inside the files range.
    let mut key = file_key("/z");
    key.push(0xff);
    let raw = encode_node(&encode_index(&[lvl(&[1], &[])]), &key, Some(&value()));
    let (_t, mut db) = db_with(vec![raw]).await;
    let [_, rec, ls] = probe(&mut db, "/a").await;
    assert!(is_corrupt(&rec) && is_corrupt(&ls));
}

#[tokio::test]
async fn random_blocks_and_bad_headers() {
    for seed in 0..50u64 {
        let junk = noise(seed, (seed as usize * 37) % 300);
        let _ = decode_header(&junk);
        let _ = messages::decode_node(1, &junk);
        let _ = messages::decode_index(1, &junk);
    }
    let blocks = (0..20)
        .map(|s| noise(s + 100, 1 + s as usize * 13))
        .collect();
    let (_t, mut db) = db_with(blocks).await;
    for r in probe(&mut db, "/a").await {
        assert!(r.is_err());
    }
    assert!(matches!(
        decode_header(&noise(7, 64)),
        Err(DriveError::NotHyperdrive(_))
    ));
}

#[tokio::test]
async fn missing_blocks_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..30 {
        std::fs::write(src.join(format!("f{i}")), vec![i as u8; 70_000]).unwrap();
    }
    let mut db = new_core(&tmp.path().join("db")).await;
    let mut blobs = new_core(&tmp.path().join("blobs")).await;
    let r = publish(&mut db, &mut blobs, &src).await.unwrap();
    let e = get_entry(&mut db, r.version, "/f3").await.unwrap().unwrap();
    let blob = e.blob.unwrap();
    blobs
        .clear(blob.block_offset + 1, blob.block_offset + 2)
        .await
        .unwrap();
    let err = read_file(&mut blobs, &blob).await.unwrap_err();
    assert!(
        matches!(err, DriveError::Missing { core: CoreKind::Blobs, index } if index == blob.block_offset + 1),
        "{err}"
    );
    db.clear(5, 6).await.unwrap();
    let results = probe(&mut db, "/f4").await;
    assert!(results.iter().any(|r| matches!(
        r,
        Err(DriveError::Missing {
            core: CoreKind::Db,
            index: 5
        })
    )));
    for r in results {
        assert!(
            matches!(r, Ok(()) | Err(DriveError::Missing { .. })),
            "{r:?}"
        );
    }
}

/// An in-memory block source for fast mutation fuzzing.
struct Mem(Vec<Vec<u8>>);

impl BlockSource for Mem {
    fn length(&self) -> u64 {
        self.0.len() as u64
    }
    async fn block(&mut self, index: u64) -> Result<Option<Vec<u8>>, DriveError> {
        Ok(self.0.get(index as usize).cloned())
    }
}

#[tokio::test]
async fn mutation_fuzz_never_panics_or_hangs() {
    // A valid 300-key drive, then many single-byte mutations of its blocks.
    let tmp = tempfile::tempdir().unwrap();
    let mut db = new_core(tmp.path()).await;
    db.append(&encode_header(&[1; 32])).await.unwrap();
    let mut ed = bee::Editor::open(&mut db).await.unwrap();
    for i in 0..300 {
        ed.put(&file_key(&format!("/d{}/f{i}", i % 5)), &value())
            .await
            .unwrap();
    }
    for i in (0..300).step_by(4) {
        ed.del(&file_key(&format!("/d{}/f{i}", i % 5)))
            .await
            .unwrap();
    }
    let blocks = ed.into_blocks();
    db.append_batch(&blocks).await.unwrap();
    let mut all = vec![db.get(0).await.unwrap().unwrap()];
    all.extend(blocks);
    let len = all.len();
    let rnd = noise(9, 4 * 2000);
    let mut errors = 0;
    for m in 0..2000 {
        let r = &rnd[m * 4..m * 4 + 4];
        let mut mutated = all.clone();
        // mutate one of the last blocks (they hold the paths every read walks)
        let b = len - 1 - (r[0] as usize % 40);
        let blk = &mut mutated[b];
        let at = u16::from_le_bytes([r[1], r[2]]) as usize % blk.len();
        blk[at] ^= r[3] | 1;
        let mut mem = Mem(mutated);
        errors += probe(&mut mem, "/d1/f1")
            .await
            .iter()
            .filter(|r| r.is_err())
            .count();
    }
    assert!(errors > 0);
}
