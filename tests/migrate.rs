//! Migration of a hypercore 0.14 data folder into the engine (`store::migrate`): folders made
//! with today's code path (a command log, a published site with history, partial replicas),
//! then migrated and compared block by block; a damaged block; a second run; an interrupted run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dat_mirror::drive::{self, EngineCore};
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;
use dat_mirror::net::endpoint::Identity;
use dat_mirror::store::migrate::{self, MigrateError, MigrateOptions, MigrationReport};
use hypercore_engine::Store;

use common::{make_site, pseudo_random};

struct Made {
    log: Key,
    site: Key,
    blobs: Key,
}

/// The folder of core `key` in the 0.14 layout.
fn old_dir(data: &Path, key: &Key) -> PathBuf {
    data.join("cores").join(key.to_hex())
}

/// Creates a 0.14 core in `data`: writable with `seed`, or a replica of `public`.
async fn old_create(data: &Path, public: [u8; 32], seed: Option<[u8; 32]>) -> hypercore::Hypercore {
    let dir = old_dir(data, &Key(public));
    std::fs::create_dir_all(&dir).unwrap();
    let storage = hypercore::Storage::new_disk(&dir, false).await.unwrap();
    let secret = seed.map(|s| hypercore::SigningKey::from_bytes(&s));
    hypercore::HypercoreBuilder::new(storage)
        .key_pair(hypercore::PartialKeypair {
            public: hypercore::VerifyingKey::from_bytes(&public).unwrap(),
            secret,
        })
        .build()
        .await
        .unwrap()
}

/// Opens the 0.14 core in `dir`.
async fn old_open(dir: &Path) -> hypercore::Hypercore {
    let storage = hypercore::Storage::new_disk(&dir.to_path_buf(), false)
        .await
        .unwrap();
    hypercore::HypercoreBuilder::new(storage)
        .open(true)
        .build()
        .await
        .unwrap()
}

/// A laptop's data folder as the previous release wrote it (hypercore 0.14 files in
/// `DATA/cores/`): the command log (keyed by `DATA/identity`) with entries, and a site
/// published twice (its history kept: the two versions are two signed appends). The drive's
/// blocks are made by today's publish in a scratch engine store with the same key pairs.
async fn laptop_folder(data: &Path, big: usize) -> Made {
    let identity = Identity::load_or_create(data).unwrap();
    let seed = identity.secret().to_bytes();
    let log_key = Key(identity.signing_key().public_key);
    let mut log = old_create(data, log_key.0, Some(seed)).await;
    for i in 0..12u8 {
        let cmd = Command::Mirror {
            key: Key([i; 32]),
            alias: Some(format!("site-{i}")),
        };
        log.append(&cmd.encode()).await.unwrap();
    }
    let scratch = data.parent().unwrap().join("scratch-engine");
    let store = Store::open(&scratch).unwrap();
    let seeds: [[u8; 32]; 2] = [rand_seed(), rand_seed()];
    let kps = seeds.map(|s| hypercore_engine::KeyPair::from_seed(&s));
    let keys = kps.clone().map(|kp| {
        store
            .create_writer(&kp, hypercore_engine::CoreKind::Compat)
            .unwrap()
    });
    let mut db = EngineCore::new(store.clone(), keys[0]);
    let mut blobs = EngineCore::new(store.clone(), keys[1]);
    let site_dir = data.parent().unwrap().join("site");
    make_site(&site_dir, big);
    let v1 = drive::publish(&mut db, &mut blobs, &site_dir)
        .await
        .unwrap();
    let blobs_v1 = store.info(&keys[1]).unwrap().length;
    std::fs::write(site_dir.join("index.html"), b"<h1>second version</h1>").unwrap();
    std::fs::write(site_dir.join("new.bin"), pseudo_random(200_000, 9)).unwrap();
    std::fs::remove_file(site_dir.join("css/site.css")).unwrap();
    let v2 = drive::publish(&mut db, &mut blobs, &site_dir)
        .await
        .unwrap();
    assert!(v2.version > v1.version);
    for ((key, seed), split) in keys.iter().zip(seeds).zip([v1.version, blobs_v1]) {
        let mut old = old_create(data, *key, Some(seed)).await;
        let length = store.info(key).unwrap().length;
        let all: Vec<Vec<u8>> = (0..length)
            .map(|i| store.get(key, i).unwrap().unwrap())
            .collect();
        let (first, second) = all.split_at(split as usize);
        for part in [first, second] {
            if !part.is_empty() {
                old.append_batch(part).await.unwrap();
            }
        }
    }
    drop((db, blobs, store));
    std::fs::remove_dir_all(&scratch).unwrap();
    Made {
        log: log_key,
        site: Key(keys[0]),
        blobs: Key(keys[1]),
    }
}

fn rand_seed() -> [u8; 32] {
    hypercore_engine::KeyPair::generate()
        .unwrap()
        .secret_key()
        .unwrap()[..32]
        .try_into()
        .unwrap()
}

/// A mirror's data folder: replicas of `from`'s cores holding every other block (verified
/// with the 0.14 crate, as replication did).
async fn mirror_folder(from: &Path, data: &Path, keys: &[Key]) {
    for key in keys {
        let mut w = old_open(&old_dir(from, key)).await;
        let mut r = old_create(data, key.0, None).await;
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
    let mut compared = 0;
    for entry in std::fs::read_dir(data.join("cores")).unwrap() {
        let entry = entry.unwrap();
        let key = Key::parse(&entry.file_name().to_string_lossy()).unwrap();
        let mut hc = old_open(&entry.path()).await;
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

/// A laptop whose data folder has the previous layout (hypercore 0.14 files) starts as a
/// daemon: the folder is converted at start-up (the old files kept aside), its command log
/// goes on, and its site reaches a mirror and is served over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_data_folder_starts_as_a_daemon_and_serves_its_sites() {
    common::init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let lap = tmp.path().join("lap");
    let made = laptop_folder(&lap, 300_000).await;
    let mirror = common::start_mirror(
        &tmp.path().join("pi"),
        "127.0.0.1:0".parse().unwrap(),
        vec![made.log],
    )
    .await;
    let laptop = common::start_laptop(&lap, vec![common::mirror_addr(&mirror)]).await;
    assert!(migrate::is_migrated(&lap));
    assert!(!lap.join("cores").exists(), "0.14 files moved aside");
    assert!(lap.join(migrate::RETIRED_DIR).exists(), "and kept");
    for key in [made.log, made.site, made.blobs] {
        assert!(laptop.inner.store.exists(&key), "{key} converted");
    }
    let seq = laptop
        .inner
        .append(Command::Mirror {
            key: made.site,
            alias: None,
        })
        .await
        .unwrap();
    assert_eq!(seq, 12, "the converted command log goes on");
    let url = format!(
        "{}/{}/index.html",
        common::http_base(&mirror),
        made.site.to_hex()
    );
    let body = common::wait_until("the mirror to serve the site", || async {
        let (status, _, body) = common::http_get(&url).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(body, b"<h1>second version</h1>");
    laptop.shutdown().await;
    mirror.shutdown().await;
}
