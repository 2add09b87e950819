//! Migration of a hypercore 0.14 data folder into the engine (`store::migrate`): folders made
//! with today's code path (a command log, a published site with history, partial replicas),
//! then migrated and compared block by block; a damaged block; a second run; an interrupted run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dat_mirror::laptop::publish::publish_dir;
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;
use dat_mirror::net::endpoint::Identity;
use dat_mirror::store::migrate::{self, MigrateError, MigrateOptions, MigrationReport};
use dat_mirror::store::CoreStore;
use hypercore_engine::Store;

use common::{make_site, pseudo_random};

struct Made {
    log: Key,
    site: Key,
    blobs: Key,
}

/// A laptop's data folder as the current release writes it: the command log (keyed by
/// `DATA/identity`) with entries, and a site published twice (its history kept).
async fn laptop_folder(data: &Path, big: usize) -> Made {
    let identity = Identity::load_or_create(data).unwrap();
    let store = CoreStore::new(data).unwrap();
    let log = store
        .open_or_create_writable(&identity.signing_key())
        .await
        .unwrap();
    for i in 0..12u8 {
        let cmd = Command::Mirror {
            key: Key([i; 32]),
            alias: Some(format!("site-{i}")),
        };
        log.append(&cmd.encode()).await.unwrap();
    }
    let site_dir = data.parent().unwrap().join("site");
    make_site(&site_dir, big);
    let v1 = publish_dir(&store, &site_dir, None).await.unwrap();
    std::fs::write(site_dir.join("index.html"), b"<h1>second version</h1>").unwrap();
    std::fs::write(site_dir.join("new.bin"), pseudo_random(200_000, 9)).unwrap();
    std::fs::remove_file(site_dir.join("css/site.css")).unwrap();
    let v2 = publish_dir(&store, &site_dir, Some(v1.key)).await.unwrap();
    assert!(v2.version > v1.version);
    let (_, blobs) = dat_mirror::laptop::publish::open_site(&store, &v1.key)
        .await
        .unwrap()
        .unwrap();
    Made {
        log: log.key(),
        site: v1.key,
        blobs: blobs.key(),
    }
}

/// A mirror's data folder: replicas of `from`'s cores holding every other block (verified
/// with the 0.14 crate, as replication does).
async fn mirror_folder(from: &Path, data: &Path, keys: &[Key]) {
    let src = CoreStore::new(from).unwrap();
    let dst = CoreStore::new(data).unwrap();
    for key in keys {
        let w = src.open_existing(key).await.unwrap().unwrap();
        let r = dst.open_or_create_replica(key).await.unwrap();
        let mut w = w.lock().await;
        let mut r = r.lock().await;
        let len = w.info().length;
        for i in (0..len).step_by(2) {
            let upgrade = (i == 0).then_some(hypercore::RequestUpgrade {
                start: 0,
                length: len,
            });
            let nodes = if i == 0 {
                0
            } else {
                r.missing_nodes(i).await.unwrap()
            };
            let proof = w
                .create_proof(
                    Some(hypercore::RequestBlock { index: i, nodes }),
                    None,
                    None,
                    upgrade,
                )
                .await
                .unwrap()
                .unwrap();
            assert!(r.verify_and_apply_proof(&proof).await.unwrap());
        }
    }
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

async fn run(data: &Path, opts: MigrateOptions) -> Result<MigrationReport, MigrateError> {
    let data = data.to_path_buf();
    tokio::task::spawn_blocking(move || migrate::migrate_with(&data, &opts))
        .await
        .unwrap()
}

/// Every block the 0.14 core holds is byte-identical in the engine (except `damaged`);
/// lengths and byte lengths agree. Returns the blocks compared.
async fn compare(data: &Path, engine: &Store, damaged: &[(Key, u64)]) -> u64 {
    let old = CoreStore::new(data).unwrap();
    let mut compared = 0;
    for key in old.keys_on_disk() {
        let core = old.open_existing(&key).await.unwrap().unwrap();
        let mut hc = core.lock().await;
        let info = engine.info(&key.0).unwrap();
        assert_eq!(info.length, hc.info().length, "{key} length");
        assert_eq!(info.byte_length, hc.info().byte_length, "{key} byte length");
        assert_eq!(info.writable, hc.info().writeable, "{key} writable");
        for i in 0..hc.info().length {
            let want = hc.get(i).await.unwrap();
            let got = engine.get(&key.0, i).unwrap();
            if damaged.contains(&(key, i)) {
                assert_eq!(got, None, "{key} damaged block {i} must not be stored");
                continue;
            }
            assert_eq!(got, want, "{key} block {i}");
            compared += u64::from(want.is_some());
        }
    }
    compared
}

#[tokio::test]
async fn laptop_folder_migrates_verified_and_stays_writable() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let made = laptop_folder(&data, 8 << 20).await;
    let before = snapshot(&data.join("cores"));

    let report = run(&data, MigrateOptions::default()).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.cores, 3);
    assert_eq!(report.cores_complete, 3);
    assert_eq!(report.writable_cores, 3);
    assert!(!report.already_migrated);
    let mib_s = report.bytes as f64 / (1 << 20) as f64 / report.seconds;
    eprintln!(
        "migrated {} blocks, {} bytes in {:.3} s ({mib_s:.1} MiB/s, {} commits)",
        report.blocks, report.bytes, report.seconds, report.commits
    );
    assert_eq!(snapshot(&data.join("cores")), before, "0.14 files changed");
    assert!(migrate::is_migrated(&data));

    let engine = Store::open(data.join(migrate::ENGINE_DIR)).unwrap();
    let compared = compare(&data, &engine, &[]).await;
    assert_eq!(compared, report.blocks);
    // the writers still append, signed with their own keys
    for key in [made.log, made.site, made.blobs] {
        let len = engine.info(&key.0).unwrap().length;
        let applied = engine
            .append(&key.0, vec![b"after migration".to_vec()])
            .unwrap();
        assert_eq!(applied.length, len + 1);
    }
    // and a fresh replica verifies what they append
    let other = tempfile::tempdir().unwrap();
    let replica = Store::open(other.path()).unwrap();
    replica.open_replica(made.log.0, None).unwrap();
    let len = engine.info(&made.log.0).unwrap().length;
    let proof = engine
        .create_proof(
            &made.log.0,
            &hypercore_engine::Request {
                block: Some(hypercore_engine::RequestBlock {
                    index: len - 1,
                    nodes: 0,
                }),
                upgrade: Some(hypercore_engine::RequestUpgrade {
                    start: 0,
                    length: len,
                }),
                ..Default::default()
            },
        )
        .unwrap();
    replica.apply_proof(&made.log.0, proof).unwrap();
    assert_eq!(
        replica.get(&made.log.0, len - 1).unwrap().unwrap(),
        b"after migration"
    );
    drop(engine);

    // retiring the old files moves them aside, kept
    let moved = migrate::retire_old_cores(&data).unwrap().unwrap();
    assert_eq!(moved, data.join(migrate::RETIRED_DIR));
    assert!(!data.join("cores").exists());
}

#[tokio::test]
async fn mirror_folder_with_partial_replicas_migrates() {
    let tmp = tempfile::tempdir().unwrap();
    let laptop = tmp.path().join("laptop");
    let made = laptop_folder(&laptop, 300_000).await;
    let data = tmp.path().join("mirror");
    mirror_folder(&laptop, &data, &[made.log, made.site, made.blobs]).await;

    let report = run(&data, MigrateOptions::default()).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!((report.cores, report.writable_cores), (3, 0));
    let engine = Store::open(data.join(migrate::ENGINE_DIR)).unwrap();
    assert_eq!(compare(&data, &engine, &[]).await, report.blocks);
    let info = engine.info(&made.blobs.0).unwrap();
    assert!(!info.writable);
    assert_eq!(info.held_blocks, info.length.div_ceil(2));
}

#[tokio::test]
async fn a_damaged_block_is_reported_and_the_rest_migrates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let made = laptop_folder(&data, 1 << 20).await;
    // garble bytes in the middle of the blobs core's data file: inside one block
    let file = data.join("cores").join(made.blobs.to_hex()).join("data");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    for b in &mut bytes[at..at + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&file, &bytes).unwrap();

    let report = run(&data, MigrateOptions::default()).await.unwrap();
    assert_eq!(report.failures.len(), 1, "{report:?}");
    let f = &report.failures[0];
    assert_eq!(f.core, made.blobs.to_hex());
    let bad = f.block.expect("the failure names the block");
    assert_eq!(report.cores_complete, 2);
    let engine = Store::open(data.join(migrate::ENGINE_DIR)).unwrap();
    let compared = compare(&data, &engine, &[(made.blobs, bad)]).await;
    assert_eq!(compared, report.blocks);
    // the report is kept with the marker
    let again = run(&data, MigrateOptions::default()).await;
    drop(engine);
    let again = again.unwrap();
    assert!(again.already_migrated);
    assert_eq!(again.failures, report.failures);
}

#[tokio::test]
async fn a_second_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    laptop_folder(&data, 300_000).await;
    let first = run(&data, MigrateOptions::default()).await.unwrap();
    let engine_dir = data.join(migrate::ENGINE_DIR);
    let after_first = snapshot(&engine_dir);
    let second = run(&data, MigrateOptions::default()).await.unwrap();
    assert!(second.already_migrated);
    assert_eq!(second.blocks, first.blocks);
    assert_eq!(snapshot(&engine_dir), after_first);
}

#[tokio::test]
async fn an_interrupted_migration_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    laptop_folder(&data, 2 << 20).await;
    let err = run(
        &data,
        MigrateOptions {
            fail_after_commits: Some(3),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MigrateError::Injected(3)), "{err}");
    assert!(!migrate::is_migrated(&data));

    let report = run(&data, MigrateOptions::default()).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(report.blocks_already_there > 0, "{report:?}");
    let engine = Store::open(data.join(migrate::ENGINE_DIR)).unwrap();
    let compared = compare(&data, &engine, &[]).await;
    assert_eq!(compared, report.blocks + report.blocks_already_there);
}

#[tokio::test]
async fn an_empty_data_folder_migrates_to_an_empty_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let report = run(tmp.path(), MigrateOptions::default()).await.unwrap();
    assert_eq!(report.cores, 0);
    assert!(migrate::is_migrated(tmp.path()));
}
