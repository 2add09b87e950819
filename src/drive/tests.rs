//! Round-trip tests of the drive format on real disk hypercores: publish, read back,
//! republish with differences, old versions, large trees and B-tree invariants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::bee::Editor;
use super::tree::Tree;
use super::*;

/// A writable core in a store of its own at `dir`.
pub(super) async fn new_core(dir: &Path) -> EngineCore {
    let store = hypercore_engine::Store::open(dir).unwrap();
    let kp = hypercore_engine::KeyPair::generate().unwrap();
    let key = store
        .create_writer(&kp, hypercore_engine::CoreKind::Compat)
        .unwrap();
    EngineCore::new(store, key)
}

/// The core of the store at `dir`, opened again.
pub(super) async fn reopen(dir: &Path) -> EngineCore {
    let store = hypercore_engine::Store::open(dir).unwrap();
    let key = store.cores()[0];
    EngineCore::new(store, key)
}

/// What the tests do to a core besides reading it as a block source.
#[allow(async_fn_in_trait)]
pub(super) trait TestOps {
    fn info(&self) -> hypercore_engine::Info;
    async fn append(&mut self, block: &[u8]) -> Result<u64, DriveError>;
    async fn append_batch(&mut self, blocks: &[Vec<u8>]) -> Result<u64, DriveError>;
    async fn get(&mut self, index: u64) -> Result<Option<Vec<u8>>, DriveError>;
    /// Makes blocks `[start, end)` not held (their bytes damaged, then scrubbed away).
    async fn clear(&mut self, start: u64, end: u64) -> Result<(), DriveError>;
}

impl TestOps for EngineCore {
    fn info(&self) -> hypercore_engine::Info {
        self.store.info(&self.key).unwrap()
    }
    async fn append(&mut self, block: &[u8]) -> Result<u64, DriveError> {
        Ok(self.store.append(&self.key, vec![block.to_vec()])?.length)
    }
    async fn append_batch(&mut self, blocks: &[Vec<u8>]) -> Result<u64, DriveError> {
        Ok(self.store.append(&self.key, blocks.to_vec())?.length)
    }
    async fn get(&mut self, index: u64) -> Result<Option<Vec<u8>>, DriveError> {
        Ok(self.store.get(&self.key, index)?)
    }
    async fn clear(&mut self, start: u64, end: u64) -> Result<(), DriveError> {
        use std::os::unix::fs::FileExt;
        for i in start..end {
            if let Some(bf) = self.store.block_file(&self.key, i)? {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&bf.path)
                    .unwrap();
                f.write_all_at(&vec![0xee; bf.location.len as usize], bf.location.offset)
                    .unwrap();
            }
        }
        self.store.scrub(&self.key)?;
        Ok(())
    }
}

/// Deterministic pseudo-random bytes.
pub(super) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

struct Site {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    db_dir: PathBuf,
    blobs_dir: PathBuf,
    db: EngineCore,
    blobs: EngineCore,
}

async fn site() -> Site {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let db_dir = tmp.path().join("db");
    let blobs_dir = tmp.path().join("blobs");
    let db = new_core(&db_dir).await;
    let blobs = new_core(&blobs_dir).await;
    Site {
        _tmp: tmp,
        src,
        db_dir,
        blobs_dir,
        db,
        blobs,
    }
}

/// Every regular file / symlink under `root`, as drive paths.
fn local_files(root: &Path) -> BTreeMap<String, Result<Vec<u8>, String>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = format!("{prefix}/{}", e.file_name().to_str().unwrap());
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push((e.path(), name));
            } else if ft.is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                out.insert(name, Err(t.to_str().unwrap().to_string()));
            } else {
                out.insert(name, Ok(std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

/// Asserts that `version` of the drive holds exactly `want` (Ok = content, Err = link).
async fn assert_drive(
    db: &mut EngineCore,
    blobs: &mut EngineCore,
    version: u64,
    want: &BTreeMap<String, Result<Vec<u8>, String>>,
) {
    let listed = list(db, version, "/", true).await.unwrap();
    let paths: Vec<&str> = listed.iter().map(DirEntry::path).collect();
    assert_eq!(paths, want.keys().map(String::as_str).collect::<Vec<_>>());
    for (path, content) in want {
        let entry = get_entry(db, version, path).await.unwrap().unwrap();
        match content {
            Ok(bytes) => {
                assert_eq!(entry.linkname, None, "{path}");
                let blob = entry.blob.unwrap();
                assert_eq!(blob.byte_length, bytes.len() as u64);
                assert_eq!(blob.block_length, (bytes.len() as u64).div_ceil(BLOCK_SIZE));
                assert_eq!(&read_file(blobs, &blob).await.unwrap(), bytes, "{path}");
            }
            Err(link) => {
                assert_eq!(entry.linkname.as_ref(), Some(link));
                assert_eq!(entry.blob, None);
            }
        }
    }
}

fn fill_sample(src: &Path) {
    write(src, "index.html", b"<h1>hello</h1>");
    write(src, "a/b/c/deep.txt", b"deep");
    write(src, "a/top.css", b"body{}");
    write(src, "empty.txt", b"");
    write(src, "one.bin", b"x");
    write(src, "exact64k.bin", &noise(1, 64 * 1024));
    write(src, "big200k.bin", &noise(2, 200 * 1024));
    write(src, "ünïcødé/日本語 file.txt", "こんにちは".as_bytes());
    write(src, ".hidden", b"dotfiles are published");
    std::os::unix::fs::symlink("a/b/c/deep.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("a/dangling")).unwrap();
    write(src, "run.sh", b"#!/bin/sh\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn round_trip_folder() {
    let mut s = site().await;
    fill_sample(&s.src);
    let want = local_files(&s.src);
    let report = publish(&mut s.db, &mut s.blobs, &s.src).await.unwrap();
    assert_eq!(report.files, want.len() as u64);
    assert_eq!(report.added, want.len() as u64);
    assert_eq!((report.changed, report.removed), (0, 0));
    assert_eq!(report.version, 1 + want.len() as u64);
    let total: u64 = want
        .values()
        .map(|c| c.as_ref().map_or(0, |b| b.len() as u64))
        .sum();
    assert_eq!(report.bytes_appended, total);
    assert_eq!(s.blobs.info().byte_length, total);

    // Read back after reopening both cores from disk (read-only).
    drop((s.db, s.blobs));
    let mut db = reopen(&s.db_dir).await;
    let mut blobs = reopen(&s.blobs_dir).await;
    let header = decode_header(&db.get(0).await.unwrap().unwrap()).unwrap();
    assert_eq!(header.content_feed, Some(blobs.key));
    assert_drive(&mut db, &mut blobs, report.version, &want).await;

    let run = get_entry(&mut db, report.version, "/run.sh")
        .await
        .unwrap()
        .unwrap();
    assert!(run.executable);
    let idx = get_entry(&mut db, report.version, "index.html")
        .await
        .unwrap()
        .unwrap();
    assert!(!idx.executable);
    let empty = get_entry(&mut db, report.version, "/empty.txt")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(empty.blob.unwrap().block_length, 0);
    assert_eq!(
        get_entry(&mut db, report.version, "/nope").await.unwrap(),
        None
    );
    assert_eq!(
        get_entry(&mut db, report.version, "/a").await.unwrap(),
        None
    );
    assert_eq!(get_entry(&mut db, report.version, "/").await.unwrap(), None);
    assert!(get_entry(&mut db, report.version, "/./a/../a/top.css")
        .await
        .unwrap()
        .is_some());

    // Every file starts at a fresh block; blocks are 64 KiB except each file's last.
    let big = get_entry(&mut db, report.version, "/big200k.bin")
        .await
        .unwrap()
        .unwrap()
        .blob
        .unwrap();
    for i in 0..big.block_length {
        let b = blobs.get(big.block_offset + i).await.unwrap().unwrap();
        let want_len = if i + 1 < big.block_length {
            65536
        } else {
            200 * 1024 - 3 * 65536
        };
        assert_eq!(b.len(), want_len);
    }
    let r = read_range(&mut blobs, &big, 65530..65542).await.unwrap();
    assert_eq!(r, noise(2, 200 * 1024)[65530..65542]);

    // Non-recursive listings give files and immediate subdirectories.
    let top: Vec<String> = list(&mut db, report.version, "/", false)
        .await
        .unwrap()
        .iter()
        .map(|e| match e {
            DirEntry::Dir { path } => format!("{path}/"),
            DirEntry::File { path, .. } => path.clone(),
        })
        .collect();
    assert_eq!(
        top,
        [
            "/.hidden",
            "/a/",
            "/big200k.bin",
            "/empty.txt",
            "/exact64k.bin",
            "/index.html",
            "/link",
            "/one.bin",
            "/run.sh",
            "/ünïcødé/"
        ]
    );
    let a = list(&mut db, report.version, "/a/", false).await.unwrap();
    let a: Vec<&str> = a.iter().map(DirEntry::path).collect();
    assert_eq!(a, ["/a/b", "/a/dangling", "/a/top.css"]);
    let a_rec = list(&mut db, report.version, "/a", true).await.unwrap();
    assert_eq!(a_rec.len(), 3);
    assert!(list(&mut db, report.version, "/none", false)
        .await
        .unwrap()
        .is_empty());
    // The empty drive and out-of-range versions.
    assert!(list(&mut db, 1, "/", true).await.unwrap().is_empty());
    assert!(matches!(
        get_entry(&mut db, report.version + 1, "/x").await,
        Err(DriveError::VersionOutOfRange { .. })
    ));
}

#[tokio::test]
async fn republish_diff_and_old_versions() {
    let mut s = site().await;
    fill_sample(&s.src);
    let v1_files = local_files(&s.src);
    let r1 = publish(&mut s.db, &mut s.blobs, &s.src).await.unwrap();

    // Unchanged: nothing is written.
    let (db_len, blobs_len) = (s.db.info().length, s.blobs.info().length);
    let r = publish(&mut s.db, &mut s.blobs, &s.src).await.unwrap();
    assert_eq!(
        (r.added, r.changed, r.removed, r.bytes_appended),
        (0, 0, 0, 0)
    );
    assert_eq!(r.version, r1.version);
    assert_eq!(
        (s.db.info().length, s.blobs.info().length),
        (db_len, blobs_len)
    );

    // One changed (same size, different content), one added, one removed.
    write(&s.src, "one.bin", b"y");
    write(&s.src, "a/new.txt", b"new file");
    std::fs::remove_file(s.src.join("big200k.bin")).unwrap();
    let v2_files = local_files(&s.src);
    let r2 = publish(&mut s.db, &mut s.blobs, &s.src).await.unwrap();
    assert_eq!((r2.added, r2.changed, r2.removed), (1, 1, 1));
    assert_eq!(r2.bytes_appended, 1 + 8);
    assert_eq!(r2.version, r1.version + 3);
    assert_drive(&mut s.db, &mut s.blobs, r2.version, &v2_files).await;
    assert_drive(&mut s.db, &mut s.blobs, r1.version, &v1_files).await;

    // Unchanged files keep their blob refs.
    let old = get_entry(&mut s.db, r1.version, "/exact64k.bin")
        .await
        .unwrap();
    let new = get_entry(&mut s.db, r2.version, "/exact64k.bin")
        .await
        .unwrap();
    assert_eq!(old, new);

    // Executable bit only: changed, no content appended. A file replaced by a symlink.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        s.src.join("index.html"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::remove_file(s.src.join("a/top.css")).unwrap();
    std::os::unix::fs::symlink("../index.html", s.src.join("a/top.css")).unwrap();
    let r3 = publish(&mut s.db, &mut s.blobs, &s.src).await.unwrap();
    assert_eq!(
        (r3.added, r3.changed, r3.removed, r3.bytes_appended),
        (0, 2, 0, 0)
    );
    let e = get_entry(&mut s.db, r3.version, "/index.html")
        .await
        .unwrap()
        .unwrap();
    assert!(e.executable);
    assert_drive(&mut s.db, &mut s.blobs, r3.version, &local_files(&s.src)).await;

    // Everything removed: the tree becomes empty but old versions still read.
    std::fs::remove_dir_all(&s.src).unwrap();
    std::fs::create_dir(&s.src).unwrap();
    let r4 = publish(&mut s.db, &mut s.blobs, &s.src).await.unwrap();
    assert_eq!(r4.removed, v2_files.len() as u64);
    assert!(list(&mut s.db, r4.version, "/", true)
        .await
        .unwrap()
        .is_empty());
    assert!(list(&mut s.db, r4.version, "/", false)
        .await
        .unwrap()
        .is_empty());
    assert_drive(&mut s.db, &mut s.blobs, r2.version, &v2_files).await;
    // And it can grow again.
    write(&s.src, "back.txt", b"again");
    let r5 = publish(&mut s.db, &mut s.blobs, &s.src).await.unwrap();
    assert_eq!(r5.added, 1);
    assert_drive(&mut s.db, &mut s.blobs, r5.version, &local_files(&s.src)).await;
}

#[tokio::test]
async fn publish_errors() {
    let mut s = site().await;
    let missing = s.src.join("missing");
    assert!(matches!(
        publish(&mut s.db, &mut s.blobs, &missing).await,
        Err(DriveError::Io { .. })
    ));
    assert_eq!(s.db.info().length, 0, "nothing written on error");
    // Non-UTF-8 name.
    use std::os::unix::ffi::OsStrExt;
    let bad = s.src.join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
    std::fs::write(&bad, b"x").unwrap();
    let err = publish(&mut s.db, &mut s.blobs, &s.src).await.unwrap_err();
    assert!(matches!(err, DriveError::BadPath { .. }), "{err}");
    assert!(err.to_string().contains("bad"), "{err}");
    std::fs::remove_file(&bad).unwrap();
    // An empty folder: header only.
    let r = publish(&mut s.db, &mut s.blobs, &s.src).await.unwrap();
    assert_eq!((r.version, r.files), (1, 0));
    // A different blobs core than the header names.
    let mut other = new_core(&s.src.join("../other")).await;
    assert!(matches!(
        publish(&mut s.db, &mut other, &s.src).await,
        Err(DriveError::ContentFeedMismatch)
    ));
}

/// Walks the whole tree at `version`, checking B-tree invariants; returns (keys, depth).
pub(super) async fn check_tree(db: &mut EngineCore, version: u64) -> (usize, usize) {
    let mut tree = Tree::new(db, version).unwrap();
    let Some(root) = tree.root().await.unwrap() else {
        return (0, 0);
    };
    let mut leaf_depths = std::collections::BTreeSet::new();
    let mut count = 0;
    let mut todo = vec![(root, 0usize)];
    while let Some((level, depth)) = todo.pop() {
        count += level.keys.len();
        assert!(level.keys.len() <= 8, "node with {} keys", level.keys.len());
        if depth > 0 {
            assert!(
                level.keys.len() >= 4,
                "non-root node with {} keys",
                level.keys.len()
            );
        }
        if level.children.is_empty() {
            leaf_depths.insert(depth);
        }
        for &(seq, off) in &level.children {
            todo.push((tree.level(seq, off).await.unwrap(), depth + 1));
        }
    }
    assert_eq!(leaf_depths.len(), 1, "leaves at depths {leaf_depths:?}");
    (count, *leaf_depths.iter().next().unwrap() + 1)
}

#[tokio::test]
async fn many_files_multi_level_tree() {
    let mut s = site().await;
    for i in 0..1000 {
        write(
            &s.src,
            &format!("d{}/f{i:04}.txt", i % 7),
            format!("file {i}").as_bytes(),
        );
    }
    let want = local_files(&s.src);
    let r = publish(&mut s.db, &mut s.blobs, &s.src).await.unwrap();
    assert_eq!(r.files, 1000);
    let (keys, depth) = check_tree(&mut s.db, r.version).await;
    assert_eq!(keys, 1000);
    assert!(depth >= 3, "depth {depth}");
    assert_drive(&mut s.db, &mut s.blobs, r.version, &want).await;
    let d3 = list(&mut s.db, r.version, "/d3", false).await.unwrap();
    assert_eq!(
        d3.len(),
        want.keys().filter(|k| k.starts_with("/d3/")).count()
    );
    assert_eq!(
        list(&mut s.db, r.version, "/", false).await.unwrap().len(),
        7
    );

    // Remove two thirds, change some: deletions rebalance and the tree stays valid.
    for i in 0..1000 {
        let p = s.src.join(format!("d{}/f{i:04}.txt", i % 7));
        if i % 3 != 0 {
            std::fs::remove_file(p).unwrap();
        } else if i % 9 == 0 {
            std::fs::write(p, b"changed!").unwrap();
        }
    }
    let want2 = local_files(&s.src);
    let r2 = publish(&mut s.db, &mut s.blobs, &s.src).await.unwrap();
    assert_eq!(r2.removed, 666);
    assert_eq!(check_tree(&mut s.db, r2.version).await.0, 334);
    assert_drive(&mut s.db, &mut s.blobs, r2.version, &want2).await;
    assert_drive(&mut s.db, &mut s.blobs, r.version, &want).await;
}

#[tokio::test]
async fn editor_matches_model_at_every_version() {
    let tmp = tempfile::tempdir().unwrap();
    let mut db = new_core(tmp.path()).await;
    db.append(&encode_header(&[0; 32])).await.unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let rnd = noise(42, 6000);
    let mut snapshots = Vec::new();
    for round in 0..20 {
        let mut ed = Editor::open(&mut db).await.unwrap();
        for i in 0..100 {
            let r = &rnd[(round * 100 + i) * 3..];
            let key = file_key(&format!("/k{:03}", u16::from_le_bytes([r[0], r[1]]) % 400));
            if r[2] % 3 == 0 {
                let had = model.remove(&key).is_some();
                assert_eq!(ed.del(&key).await.unwrap(), had);
            } else {
                let e = Entry {
                    metadata: serde_json::json!({ "round": round, "i": i }),
                    ..Default::default()
                };
                let v = encode_entry(&e);
                ed.put(&key, &v).await.unwrap();
                model.insert(key, v);
            }
        }
        let blocks = ed.into_blocks();
        db.append_batch(&blocks).await.unwrap();
        snapshots.push((db.info().length, model.clone()));
    }
    for (version, model) in snapshots {
        let (keys, _) = check_tree(&mut db, version).await;
        assert_eq!(keys, model.len());
        let listed = list(&mut db, version, "/", true).await.unwrap();
        let got: Vec<(Vec<u8>, Vec<u8>)> = listed
            .into_iter()
            .map(|e| match e {
                DirEntry::File { path, entry } => (file_key(&path), encode_entry(&entry)),
                DirEntry::Dir { .. } => panic!("dir in recursive list"),
            })
            .collect();
        assert_eq!(got, model.into_iter().collect::<Vec<_>>());
    }
    // Every single block is a readable version.
    let len = db.info().length;
    for v in (2..=len).step_by(37) {
        check_tree(&mut db, v).await;
    }
}

/// The public futures are `Send`, so an HTTP server can run them on a multi-thread runtime.
#[allow(dead_code)]
fn futures_are_send(db: &mut EngineCore, blobs: &mut EngineCore, blob: &BlobRef) {
    fn send<T: Send>(_: T) {}
    send(get_entry(db, 2, "/x"));
    send(list(db, 2, "/", false));
    send(read_file(blobs, blob));
    send(read_range(blobs, blob, 0..1));
    send(publish(db, blobs, Path::new("/")));
}
