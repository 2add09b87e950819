//! Migration of a data folder from the hypercore 0.14 layout (`DATA/cores/<hex key>/`: oplog,
//! tree, bitfield, data) into the engine's store in `DATA/engine/` (one `engine.redb` and a
//! `data/` folder: the layout `hypercore_engine::Store` owns; `engine` names the component,
//! as `cores` named the 0.14 one).
//!
//! Every block is verified as if it came from a peer: for each core, the 0.14 crate builds
//! proofs (`create_proof`, as replication uses it) — first a signed upgrade to its length,
//! then one block proof per held block — and the engine's `apply_proof` verifies each one
//! (hashes up to the signed roots, the Ed25519 signature over the compat signable) before it
//! stores anything. Blocks are grouped into engine batches (one durable commit per batch); a
//! batch that fails verification is retried proof by proof so that only the bad blocks are
//! left out, and every one of them is listed in [`MigrationReport::failures`].
//!
//! Writable cores keep their secret keys: the 0.14 crate keeps each writer's key pair in the
//! core's own oplog header (the node's command log is keyed by `DATA/identity`, published
//! sites' db and blobs cores by key pairs `laptop::publish` generated and stored only there),
//! so the key pair is taken from the opened core, with `DATA/identity` as the fallback for the
//! node's own log.
//!
//! Idempotent and resumable: the engine's state is the progress record (every commit is
//! durable), so a rerun after a crash skips what is already stored and goes on; when every
//! core has been processed, `DATA/engine/MIGRATED-FROM-0.14.json` (the report) is written
//! atomically and later runs return at once. The 0.14 files are only read, never changed.
//!
//! Removing the old files: once the daemon runs on the engine, [`retire_old_cores`] renames
//! `DATA/cores/` to `DATA/cores.pre-engine/` (only after a completed migration); the user then
//! deletes it with `rm -r DATA/cores.pre-engine` when satisfied (nothing reads it any more).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::FutureExt;
use hypercore::encoding::{CompactEncoding, HypercoreState};
use hypercore::{HypercoreBuilder, RequestBlock, RequestUpgrade, Storage};
use hypercore_engine as engine;

use crate::model::keys::Key;

/// The engine's folder inside the data folder.
pub const ENGINE_DIR: &str = "engine";
/// Written in [`ENGINE_DIR`] when a migration completed: the report, as JSON.
pub const MARKER: &str = "MIGRATED-FROM-0.14.json";
/// Where [`retire_old_cores`] moves `DATA/cores/`.
pub const RETIRED_DIR: &str = "cores.pre-engine";

/// Block proofs per engine commit (and bytes: whichever limit comes first).
const BATCH_BLOCKS: usize = 64;
const BATCH_BYTES: usize = 4 << 20;
/// Levels of proof nodes asked for at most (a path in any real tree is shorter).
const MAX_REQUEST_NODES: u64 = 64;

/// What stops a migration (it can be run again: it resumes).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("engine store {path}: {source}")]
    Engine {
        path: PathBuf,
        source: engine::Error,
    },
    #[error("core {key}: the engine could not store it: {source}")]
    Store { key: String, source: engine::Error },
    #[error("cannot start a runtime to read the 0.14 cores: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write the migration marker: {0}")]
    Marker(String),
    /// Test hook ([`MigrateOptions::fail_after_commits`]): a migration killed midway.
    #[error("migration interrupted (injected) after {0} commits")]
    Injected(u64),
}

/// Something left out of the engine, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MigrationFailure {
    /// Core key (hex).
    pub core: String,
    /// The block, or None when the whole core (or its signed tree) failed.
    pub block: Option<u64>,
    /// Why.
    pub reason: String,
}

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MigrationReport {
    /// True when an earlier run had completed: nothing was done (the counts are that run's).
    #[serde(default)]
    pub already_migrated: bool,
    /// 0.14 cores found.
    pub cores: u64,
    /// Cores whose every held block is in the engine.
    pub cores_complete: u64,
    /// Cores migrated with their secret key (still appendable).
    pub writable_cores: u64,
    /// Blocks verified and stored by this run.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks found already stored (by an interrupted earlier run).
    pub blocks_already_there: u64,
    /// Engine commits made.
    pub commits: u64,
    /// Blocks or cores that failed verification or could not be read: not in the engine.
    pub failures: Vec<MigrationFailure>,
    /// Things worth knowing that lose nothing (e.g. a core whose creation never finished).
    pub notes: Vec<String>,
    /// Wall time of the run.
    pub seconds: f64,
}

/// Options (for tests).
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// Stop with [`MigrateError::Injected`] after this many engine commits.
    pub fail_after_commits: Option<u64>,
}

/// Whether `data_dir` was migrated (the marker exists).
pub fn is_migrated(data_dir: &Path) -> bool {
    data_dir.join(ENGINE_DIR).join(MARKER).exists()
}

/// Migrates `data_dir` (see the module doc). Blocking: call it before starting the async
/// runtime or from `spawn_blocking` (it runs its own small runtime for the 0.14 crate).
pub fn migrate(data_dir: &Path) -> Result<MigrationReport, MigrateError> {
    migrate_with(data_dir, &MigrateOptions::default())
}

/// [`migrate`] with options.
pub fn migrate_with(
    data_dir: &Path,
    opts: &MigrateOptions,
) -> Result<MigrationReport, MigrateError> {
    let started = Instant::now();
    let engine_dir = data_dir.join(ENGINE_DIR);
    let marker = engine_dir.join(MARKER);
    if let Ok(bytes) = std::fs::read(&marker) {
        let mut report: MigrationReport = serde_json::from_slice(&bytes).unwrap_or_default();
        report.already_migrated = true;
        return Ok(report);
    }
    let store = engine::Store::open(&engine_dir).map_err(|source| MigrateError::Engine {
        path: engine_dir.clone(),
        source,
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(MigrateError::Runtime)?;
    let identity = read_identity(data_dir);
    let mut report = MigrationReport::default();
    let mut m = Migrator {
        store: &store,
        report: &mut report,
        opts,
        identity,
    };
    for (key, dir) in core_dirs(&data_dir.join("cores"))? {
        m.report.cores += 1;
        rt.block_on(m.core(&key, &dir))?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    write_marker(&marker, &report)?;
    tracing::info!(
        cores = report.cores,
        blocks = report.blocks,
        bytes = report.bytes,
        failures = report.failures.len(),
        "migrated the data folder to the hypercore engine"
    );
    Ok(report)
}

/// After a completed migration, moves `DATA/cores/` to `DATA/cores.pre-engine/` (kept until
/// the user deletes it). Returns the new path, or None when there was nothing to move.
/// Refuses (returns None) before the migration has completed.
pub fn retire_old_cores(data_dir: &Path) -> Result<Option<PathBuf>, MigrateError> {
    let cores = data_dir.join("cores");
    if !is_migrated(data_dir) || !cores.exists() {
        return Ok(None);
    }
    let to = data_dir.join(RETIRED_DIR);
    std::fs::rename(&cores, &to).map_err(|source| MigrateError::Io {
        path: cores.clone(),
        source,
    })?;
    Ok(Some(to))
}

fn read_identity(data_dir: &Path) -> Option<engine::KeyPair> {
    let bytes = std::fs::read(data_dir.join("identity")).ok()?;
    let seed: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(engine::KeyPair::from_seed(&seed))
}

/// The 0.14 core folders, in key order (so an interrupted run resumes in the same order).
fn core_dirs(root: &Path) -> Result<BTreeMap<[u8; 32], PathBuf>, MigrateError> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(MigrateError::Io {
                path: root.to_path_buf(),
                source,
            })
        }
    };
    let mut out = BTreeMap::new();
    for entry in rd {
        let entry = entry.map_err(|source| MigrateError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        if let Ok(k) = Key::parse(&entry.file_name().to_string_lossy()) {
            out.insert(k.0, entry.path());
        }
    }
    Ok(out)
}

fn write_marker(path: &Path, report: &MigrationReport) -> Result<(), MigrateError> {
    use std::io::Write;
    let json =
        serde_json::to_vec_pretty(report).map_err(|e| MigrateError::Marker(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| MigrateError::Marker(format!("{}: {e}", tmp.display()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&json).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Whether an engine error means the proof did not verify (vs. this machine's storage failed).
fn is_verification_error(e: &engine::Error) -> bool {
    use engine::Error as E;
    matches!(
        e,
        E::Decode(_)
            | E::OutOfRange(_)
            | E::InvalidProof(_)
            | E::InvalidRequest(_)
            | E::InvalidManifest(_)
            | E::Unsupported(_)
            | E::Stale(_)
    )
}

struct Migrator<'a> {
    store: &'a engine::Store,
    report: &'a mut MigrationReport,
    opts: &'a MigrateOptions,
    identity: Option<engine::KeyPair>,
}

/// A block proof waiting for its batch.
struct Pending {
    index: u64,
    bytes: usize,
    proof: engine::Proof,
}

impl Migrator<'_> {
    fn fail(&mut self, key: &[u8; 32], block: Option<u64>, reason: impl Into<String>) {
        let f = MigrationFailure {
            core: hex::encode(key),
            block,
            reason: reason.into(),
        };
        tracing::warn!(core = %f.core, block = ?f.block, "not migrated: {}", f.reason);
        self.report.failures.push(f);
    }

    fn store_err(key: &[u8; 32], source: engine::Error) -> MigrateError {
        MigrateError::Store {
            key: hex::encode(key),
            source,
        }
    }

    async fn core(&mut self, key: &[u8; 32], dir: &Path) -> Result<(), MigrateError> {
        match std::fs::metadata(dir.join("oplog")) {
            Ok(m) if m.len() > 0 => {}
            _ => {
                self.report.notes.push(format!(
                    "{}: no oplog (its creation never finished): nothing stored, skipped",
                    hex::encode(key)
                ));
                return Ok(());
            }
        }
        // The 0.14 crate panics on some damaged or foreign headers: contain it.
        let opened = std::panic::AssertUnwindSafe(open_014(dir))
            .catch_unwind()
            .await;
        let mut hc = match opened {
            Ok(Ok(hc)) => hc,
            Ok(Err(e)) => {
                self.fail(key, None, format!("the 0.14 core does not open: {e}"));
                return Ok(());
            }
            Err(_) => {
                self.fail(key, None, "the 0.14 core does not open (it panicked)");
                return Ok(());
            }
        };
        if hc.key_pair().public.to_bytes() != *key {
            self.fail(key, None, "the folder holds another core");
            return Ok(());
        }
        let writer = match &hc.key_pair().secret {
            Some(s) => engine::KeyPair::from_secret_key(&s.to_keypair_bytes()).ok(),
            None => self
                .identity
                .clone()
                .filter(|kp| kp.public_key == *key && kp.can_sign()),
        };
        let known = self.store.info(key).is_ok();
        if !known {
            let created = match &writer {
                Some(kp) => self
                    .store
                    .create_writer(kp, engine::CoreKind::Compat)
                    .map(|_| ()),
                None => self.store.open_replica(*key, None),
            };
            created.map_err(|e| Self::store_err(key, e))?;
        }
        if writer.is_some() {
            self.report.writable_cores += 1;
        }
        let info = hc.info();
        let have = self
            .store
            .info(key)
            .map_err(|e| Self::store_err(key, e))?
            .length;
        if have > info.length {
            self.fail(key, None, "the engine already holds a longer core");
            return Ok(());
        }
        if have < info.length {
            let up = RequestUpgrade {
                start: have,
                length: info.length - have,
            };
            let proof = match hc.create_proof(None, None, None, Some(up)).await {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.fail(key, None, "the 0.14 core gives no signed tree");
                    return Ok(());
                }
                Err(e) => {
                    self.fail(
                        key,
                        None,
                        format!("the 0.14 core gives no signed tree: {e}"),
                    );
                    return Ok(());
                }
            };
            let applied = map_proof(&proof).and_then(|p| self.store.apply_proof(key, p));
            match applied {
                Ok(_) => self.count_commit()?,
                Err(e) if is_verification_error(&e) => {
                    self.fail(key, None, format!("signed tree does not verify: {e}"));
                    return Ok(());
                }
                Err(e) => return Err(Self::store_err(key, e)),
            }
        }
        let failures_before = self.report.failures.len();
        let mut pending: Vec<Pending> = Vec::new();
        let mut pending_bytes = 0usize;
        for index in 0..info.length {
            if !hc.has(index) {
                continue;
            }
            if self.store.has(key, index).unwrap_or(false) {
                self.report.blocks_already_there += 1;
                continue;
            }
            let nodes = self
                .store
                .missing_nodes(key, index)
                .map_err(|e| Self::store_err(key, e))?
                .min(MAX_REQUEST_NODES);
            let req = RequestBlock { index, nodes };
            let proof = match hc.create_proof(Some(req), None, None, None).await {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.fail(key, Some(index), "the 0.14 core cannot read the block");
                    continue;
                }
                Err(e) => {
                    self.fail(
                        key,
                        Some(index),
                        format!("the 0.14 core gives no proof: {e}"),
                    );
                    continue;
                }
            };
            let proof = match map_proof(&proof) {
                Ok(p) => p,
                Err(e) => {
                    self.fail(key, Some(index), format!("malformed 0.14 proof: {e}"));
                    continue;
                }
            };
            let bytes = proof.block.as_ref().map_or(0, |b| b.value.len());
            pending_bytes += bytes;
            pending.push(Pending {
                index,
                bytes,
                proof,
            });
            if pending.len() >= BATCH_BLOCKS || pending_bytes >= BATCH_BYTES {
                self.flush(key, std::mem::take(&mut pending))?;
                pending_bytes = 0;
            }
        }
        self.flush(key, pending)?;
        if self.report.failures.len() == failures_before {
            self.report.cores_complete += 1;
        }
        Ok(())
    }

    /// Applies block proofs in one commit; if any fails verification, one by one.
    fn flush(&mut self, key: &[u8; 32], pending: Vec<Pending>) -> Result<(), MigrateError> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut batch = engine::Batch::new();
        for p in &pending {
            batch.apply(*key, p.proof.clone());
        }
        match self.store.commit(batch) {
            Ok(_) => {
                for p in &pending {
                    self.count_block(p.bytes);
                }
                return self.count_commit();
            }
            Err(e) if is_verification_error(&e) => {}
            Err(e) => return Err(Self::store_err(key, e)),
        }
        for p in pending {
            match self.store.apply_proof(key, p.proof) {
                Ok(_) => {
                    self.count_block(p.bytes);
                    self.count_commit()?;
                }
                Err(e) if is_verification_error(&e) => {
                    self.fail(key, Some(p.index), format!("does not verify: {e}"));
                }
                Err(e) => return Err(Self::store_err(key, e)),
            }
        }
        Ok(())
    }

    fn count_block(&mut self, bytes: usize) {
        self.report.blocks += 1;
        self.report.bytes += bytes as u64;
    }

    fn count_commit(&mut self) -> Result<(), MigrateError> {
        self.report.commits += 1;
        match self.opts.fail_after_commits {
            Some(n) if self.report.commits >= n => Err(MigrateError::Injected(n)),
            _ => Ok(()),
        }
    }
}

async fn open_014(dir: &Path) -> Result<hypercore::Hypercore, hypercore::HypercoreError> {
    let storage = Storage::new_disk(&dir.to_path_buf(), false).await?;
    HypercoreBuilder::new(storage).open(true).build().await
}

/// A 0.14 tree node as the engine's (through its compact encoding: index, size, hash).
fn map_node(n: &hypercore::Node) -> engine::Result<engine::Node> {
    let mut state = HypercoreState::new();
    let bad = |_| engine::Error::Decode("0.14 node does not encode");
    state.preencode(n).map_err(bad)?;
    let mut buf = vec![0u8; state.end()];
    state.encode(n, &mut buf).map_err(bad)?;
    let mut r = engine::encoding::Reader::new(&buf);
    let index = r.uint()?;
    let size = r.uint()?;
    let hash = r.fixed32()?;
    r.finish()?;
    Ok(engine::Node { index, size, hash })
}

fn map_nodes(nodes: &[hypercore::Node]) -> engine::Result<Vec<engine::Node>> {
    nodes.iter().map(map_node).collect()
}

/// Maps a 0.14 proof onto the engine's (both are Node's wire `Data` shape).
pub fn map_proof(p: &hypercore::Proof) -> engine::Result<engine::Proof> {
    Ok(engine::Proof {
        fork: p.fork,
        block: match &p.block {
            Some(b) => Some(engine::DataBlock {
                index: b.index,
                value: b.value.clone(),
                nodes: map_nodes(&b.nodes)?,
            }),
            None => None,
        },
        hash: match &p.hash {
            Some(h) => Some(engine::DataHash {
                index: h.index,
                nodes: map_nodes(&h.nodes)?,
            }),
            None => None,
        },
        seek: match &p.seek {
            Some(s) => Some(engine::DataSeek {
                bytes: s.bytes,
                nodes: map_nodes(&s.nodes)?,
            }),
            None => None,
        },
        upgrade: match &p.upgrade {
            Some(u) => Some(engine::DataUpgrade {
                start: u.start,
                length: u.length,
                nodes: map_nodes(&u.nodes)?,
                additional_nodes: map_nodes(&u.additional_nodes)?,
                signature: Some(u.signature.clone()).filter(|s| !s.is_empty()),
            }),
            None => None,
        },
        manifest: None,
    })
}
