//! The hypercores on disk, in our own engine: one `hypercore_engine::Store` per data folder
//! (`DATA/engine/`: `engine.redb` for tree nodes, block locations, signatures and lengths,
//! `data/<hex key>.blocks` for block bytes, `engine.wal` for the commits since redb's last
//! checkpoint). Every core is shared in the process as one
//! `Arc<Core>`, which publishes a `CoreInfo` on a watch channel after every change (how
//! replication learns that there is something new to send or fetch).
//!
//! Layout: [`core`] (one `Core`: its info channel, write faults, append, get, proofs),
//! [`cache`] (verified blocks in memory), [`space`] (free space, disk-full detection, the
//! space reserve), [`reader`] (a `Core` as the drive format's block source); this file holds
//! the errors and the [`CoreStore`] (which cores exist, opening each once). [`migrate`]
//! converts a data folder of the hypercore 0.14 layout (`DATA/cores/`) into the engine.

mod cache;
mod core;
mod reader;
mod space;

pub mod log;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};

use hypercore_engine as engine;

pub use self::cache::BlockCache;
pub use self::core::{full_roots, Core, CoreInfo};
pub use self::reader::CoreReader;
pub use self::space::{
    available_bytes, disk_bytes, io_error_is_disk_full, SpaceReserve, MIN_FREE_BYTES,
};
use crate::model::keys::Key;

pub mod migrate;

/// The engine's folder inside the data folder.
pub use self::migrate::ENGINE_DIR;

/// Errors from opening or using cores on disk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine refused an operation (a proof that does not verify, a request it cannot
    /// answer, a core that is not writable).
    #[error("hypercore {key}: {source}")]
    Engine { key: String, source: engine::Error },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("core {0} is not on this machine")]
    NotFound(String),
    /// Writing to this machine's disk failed (disk full, I/O error). Not the peer's fault:
    /// what it sent was verified; we could not store it.
    #[error("cannot store core {key}: {}", describe_write_error(source))]
    Write { key: String, source: engine::Error },
    /// The task that ran a core operation failed (it panicked); the operation may be half
    /// done.
    #[error("a core operation failed unexpectedly ({0}); restarting dat-mirror reopens the core from disk")]
    Task(String),
}

/// The first line of a write error, starting with `disk full` when the disk (or quota) is
/// full, so status views can show it as such.
fn describe_write_error(e: &engine::Error) -> String {
    if engine_error_is_disk_full(e) {
        "disk full (no space left on the device holding the data folder)".into()
    } else {
        e.to_string()
    }
}

/// ENOSPC/EDQUOT from the engine (its own check, or an I/O error anywhere in the chain).
pub(crate) fn engine_error_is_disk_full(e: &engine::Error) -> bool {
    if e.is_disk_full() {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io_error_is_disk_full(io) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// Did an operation fail because of what a peer sent (false), or because storing or reading
/// here failed (true)?
pub(crate) fn is_storage_error(e: &engine::Error) -> bool {
    use engine::Error as E;
    matches!(e, E::Io { .. } | E::Db(_) | E::Corrupt(_))
}

impl StoreError {
    pub(crate) fn engine(key: &Key, source: engine::Error) -> StoreError {
        if is_storage_error(&source) {
            StoreError::Write {
                key: key.short(),
                source,
            }
        } else {
            StoreError::Engine {
                key: key.short(),
                source,
            }
        }
    }

    /// A fault of this machine's storage (the peer is not to blame).
    pub fn is_storage_fault(&self) -> bool {
        matches!(self, StoreError::Write { .. } | StoreError::Io { .. })
    }

    /// The disk (or the user's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Write { source, .. } | StoreError::Engine { source, .. } => {
                engine_error_is_disk_full(source)
            }
            StoreError::Io { source, .. } => io_error_is_disk_full(source),
            _ => false,
        }
    }

    /// A proof that fails its hash or signature check (or does not decode): the peer sent
    /// data the core's key did not sign.
    pub fn is_forgery(&self) -> bool {
        use engine::Error as E;
        matches!(
            self,
            StoreError::Engine {
                source: E::InvalidProof(_) | E::Decode(_) | E::InvalidManifest(_),
                ..
            }
        )
    }

    /// A valid proof overtaken by our own state (another peer got there first).
    pub fn is_stale(&self) -> bool {
        matches!(
            self,
            StoreError::Engine {
                source: engine::Error::Stale(_),
                ..
            }
        )
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The set of cores of one data directory.
#[derive(Debug)]
pub struct CoreStore {
    root: PathBuf,
    engine: Arc<engine::Store>,
    cache: Arc<BlockCache>,
    open: StdMutex<HashMap<Key, Arc<Core>>>,
    /// Discovery key → key of every core in the store: built once when the store is opened,
    /// kept up to date on create and delete, so an `Open` from a peer costs one lookup.
    by_discovery_key: StdMutex<HashMap<[u8; 32], Key>>,
    reserve: Arc<SpaceReserve>,
    /// Keys of open cores whose published info changed (see [`CoreStore::subscribe_changes`]).
    changes: tokio::sync::broadcast::Sender<Key>,
}

impl CoreStore {
    /// Opens the engine store of `data_dir` (`data_dir/engine`), creating it if needed.
    pub fn new(data_dir: &Path) -> Result<CoreStore, StoreError> {
        let engine = open_engine(&data_dir.join(ENGINE_DIR))?;
        let store = CoreStore {
            root: data_dir.to_path_buf(),
            cache: Arc::new(BlockCache::new(BlockCache::DEFAULT_BYTES)),
            open: StdMutex::new(HashMap::new()),
            by_discovery_key: StdMutex::new(HashMap::new()),
            reserve: Arc::new(SpaceReserve::new(data_dir.join("space-reserve"))),
            changes: tokio::sync::broadcast::channel(1024).0,
            engine,
        };
        store.reserve.ensure();
        let index = store
            .keys_on_disk()
            .into_iter()
            .map(|k| (k.discovery_key(), k))
            .collect();
        *lock(&store.by_discovery_key) = index;
        Ok(store)
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        &self.root
    }

    /// The engine store (shared by every core).
    pub fn engine(&self) -> &engine::Store {
        &self.engine
    }

    /// Is the core in the store (opened or not)?
    pub fn exists(&self, key: &Key) -> bool {
        self.engine.info(&key.0).is_ok()
    }

    /// The keys of every core in the store.
    pub fn keys_on_disk(&self) -> Vec<Key> {
        self.engine.cores().into_iter().map(Key).collect()
    }

    /// An already-open core.
    pub fn get_open(&self, key: &Key) -> Option<Arc<Core>> {
        lock(&self.open).get(key).cloned()
    }

    /// Opens a core that is in the store; `None` if it is not.
    pub async fn open_existing(&self, key: &Key) -> Result<Option<Arc<Core>>, StoreError> {
        if let Some(c) = self.get_open(key) {
            return Ok(Some(c));
        }
        if !self.exists(key) {
            return Ok(None);
        }
        Ok(Some(self.register(*key)))
    }

    /// Opens the core if it is in the store, else creates an empty replica of `key`
    /// (read-only: its blocks will come from peers, verified against `key`).
    pub async fn open_or_create_replica(&self, key: &Key) -> Result<Arc<Core>, StoreError> {
        if let Some(c) = self.open_existing(key).await? {
            return Ok(c);
        }
        // Any 32 bytes can name a core: a compat key is the writer's public key, a
        // manifest-keyed core's (hypercore 11, hyperdrive 13) is its manifest's hash.
        let engine = self.engine.clone();
        let k = key.0;
        run_blocking(move || engine.open_replica(k, None))
            .await?
            .map_err(|e| StoreError::engine(key, e))?;
        Ok(self.register(*key))
    }

    /// Makes every commit durable in redb and empties the engine's write-ahead log: what a
    /// daemon does when it stops cleanly, so the next start has nothing to replay (the engine
    /// also does it when the last handle closes, which a process exiting may never reach).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let engine = self.engine.clone();
        run_blocking(move || engine.checkpoint())
            .await?
            .map_err(|e| StoreError::Io {
                path: self.root.clone(),
                source: std::io::Error::other(e.to_string()),
            })
    }

    /// Opens the writable (compat-keyed: key = public key) core of `key_pair`, creating it
    /// if needed.
    pub async fn open_or_create_writable(
        &self,
        key_pair: &engine::KeyPair,
    ) -> Result<Arc<Core>, StoreError> {
        let key = Key(key_pair.public_key);
        if let Some(c) = self.get_open(&key) {
            return Ok(c);
        }
        let engine = self.engine.clone();
        let kp = key_pair.clone();
        run_blocking(move || engine.create_writer(&kp, engine::CoreKind::Compat))
            .await?
            .map_err(|e| StoreError::engine(&key, e))?;
        Ok(self.register(key))
    }

    /// Shares a core: from now on `key` opens to this `Core`.
    fn register(&self, key: Key) -> Arc<Core> {
        let mut open = lock(&self.open);
        if let Some(c) = open.get(&key) {
            return c.clone();
        }
        let c = Arc::new(Core::new(
            key,
            self.engine.clone(),
            self.cache.clone(),
            self.reserve.clone(),
            self.changes.clone(),
        ));
        open.insert(key, c.clone());
        lock(&self.by_discovery_key).insert(c.discovery_key(), key);
        c
    }

    /// The keys of open cores whose info changes (appended, fetched, published): how
    /// replication learns there is something new to tell its peers. A receiver that lags
    /// should treat every open core as changed.
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<Key> {
        self.changes.subscribe()
    }

    /// The keys of the open cores.
    pub fn open_keys(&self) -> Vec<Key> {
        lock(&self.open).keys().copied().collect()
    }

    /// The key of the core with discovery key `dk`, if it is on this machine (one lookup in
    /// an in-memory index; no disk access, no hashing).
    pub fn key_by_discovery_key(&self, dk: &[u8; 32]) -> Option<Key> {
        lock(&self.by_discovery_key).get(dk).copied()
    }

    /// Finds a core on disk by its discovery key.
    pub async fn find_by_discovery_key(
        &self,
        dk: &[u8; 32],
    ) -> Result<Option<Arc<Core>>, StoreError> {
        match self.key_by_discovery_key(dk) {
            Some(key) => self.open_existing(&key).await,
            None => Ok(None),
        }
    }

    /// Bytes of block data held by the open cores (what the storage cap counts).
    pub fn held_bytes(&self) -> u64 {
        lock(&self.open)
            .values()
            .map(|c| c.info().held_bytes())
            .sum()
    }

    /// Moves a core out of the store into a store of its own at `to` (its signed tree and
    /// every held block, each copied as a proof the new store verifies), then deletes it
    /// here. What `to` holds opens with `hypercore_engine::Store::open`. Blocking.
    pub fn move_out(&self, key: &Key, to: &Path) -> Result<(), StoreError> {
        let err = |e| StoreError::engine(key, e);
        let dst = engine::Store::open(to).map_err(err)?;
        let info = self.engine.info(&key.0).map_err(err)?;
        dst.open_replica(key.0, info.manifest.clone())
            .map_err(err)?;
        if info.length > 0 {
            let upgrade = engine::Request {
                upgrade: Some(engine::RequestUpgrade {
                    start: 0,
                    length: info.length,
                }),
                ..Default::default()
            };
            let proof = self.engine.create_proof(&key.0, &upgrade).map_err(err)?;
            dst.apply_proof(&key.0, proof).map_err(err)?;
            let mut batch = engine::Batch::new();
            for (start, end) in self.engine.held_ranges(&key.0).map_err(err)? {
                for index in start..end {
                    let nodes = dst.missing_nodes(&key.0, index).map_err(err)?;
                    let req = engine::Request {
                        block: Some(engine::RequestBlock { index, nodes }),
                        ..Default::default()
                    };
                    batch.apply(key.0, self.engine.create_proof(&key.0, &req).map_err(err)?);
                    if batch.len() >= 64 {
                        dst.commit(std::mem::take(&mut batch)).map_err(err)?;
                    }
                }
            }
            if !batch.is_empty() {
                dst.commit(batch).map_err(err)?;
            }
        }
        drop(dst);
        self.delete(key)
    }

    /// Forgets a core and deletes its data. Holders of the `Arc<Core>` keep a handle, but
    /// its reads fail from now on and nothing new can reach it.
    pub fn delete(&self, key: &Key) -> Result<(), StoreError> {
        lock(&self.open).remove(key);
        lock(&self.by_discovery_key).remove(&key.discovery_key());
        self.cache.forget(key);
        self.engine
            .remove_core(&key.0)
            .map_err(|e| StoreError::engine(key, e))
    }
}

/// Engine stores open in this process, by folder: a daemon restarted in the same process
/// (tests, or a restart after a failed start) shares the store that is still open, since
/// the database can be open only once (another process is kept out by the data folder's lock).
static OPEN: StdMutex<Vec<(PathBuf, std::sync::Weak<engine::Store>)>> = StdMutex::new(Vec::new());

/// How long opening waits for a store being closed in this process (its last handles are
/// dropped by work finishing on the blocking pool).
const OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn open_engine(dir: &Path) -> Result<Arc<engine::Store>, StoreError> {
    let io = |source: std::io::Error| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let canonical = dir.canonicalize().map_err(io)?;
    let started = std::time::Instant::now();
    loop {
        let mut open = lock(&OPEN);
        open.retain(|(_, w)| w.strong_count() > 0);
        if let Some(store) = open
            .iter()
            .find(|(p, _)| *p == canonical)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(store);
        }
        match engine::Store::open(&canonical) {
            Ok(store) => {
                let report = store.report();
                if report.database.is_some() || !report.repairs.is_empty() || report.log.is_some() {
                    tracing::warn!(
                        "{}: the store was repaired when it opened: {:?} {:?} {:?}",
                        canonical.display(),
                        report.database,
                        report.log,
                        report.repairs
                    );
                }
                let store = Arc::new(store);
                open.push((canonical, Arc::downgrade(&store)));
                return Ok(store);
            }
            Err(e) if e.to_string().contains("already open") && started.elapsed() < OPEN_WAIT => {
                drop(open);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(io(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Runs blocking engine work on the blocking pool: it completes even if the waiting future
/// is dropped (every engine mutation is one atomic commit).
pub(crate) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::time::Duration;

    fn key_pair() -> engine::KeyPair {
        engine::KeyPair::generate().unwrap()
    }

    #[tokio::test]
    async fn writable_core_reopens_with_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let signing = key_pair();
        let key = Key(signing.public_key);
        {
            let store = CoreStore::new(dir.path()).unwrap();
            let core = store.open_or_create_writable(&signing).await.unwrap();
            assert_eq!(core.append(b"one").await.unwrap(), 0);
            assert_eq!(core.append(b"two").await.unwrap(), 1);
            assert_eq!(core.info().length, 2);
            assert!(core.info().writable);
        }
        let store = CoreStore::new(dir.path()).unwrap();
        assert_eq!(store.keys_on_disk(), vec![key]);
        let core = store.open_existing(&key).await.unwrap().unwrap();
        assert_eq!(core.get(1).await.unwrap().unwrap(), b"two");
        assert_eq!(core.info().held_blocks, 2);
        assert!(core.info().writable);
        let again = store.open_or_create_writable(&signing).await.unwrap();
        assert!(Arc::ptr_eq(&core, &again));
        assert_eq!(
            store
                .find_by_discovery_key(&key.discovery_key())
                .await
                .unwrap()
                .unwrap()
                .key(),
            key
        );
        store.delete(&key).unwrap();
        assert!(!store.exists(&key));
    }

    #[tokio::test]
    async fn data_file_holds_blocks_at_their_byte_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let store = CoreStore::new(dir.path()).unwrap();
        let core = store.open_or_create_writable(&key_pair()).await.unwrap();
        let blocks: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000 + 37 * i as usize]).collect();
        core.append_batch(&blocks).await.unwrap();
        let mut offset = 0u64;
        for b in &blocks {
            assert_eq!(&core.read_bytes_blocking(offset, b.len()).unwrap(), b);
            assert_eq!(&*core.get_cached(0).await.unwrap().unwrap(), &blocks[0][..]);
            offset += b.len() as u64;
        }
        assert_eq!(core.info().byte_length, offset);
        // Spans across blocks, starting and ending inside them.
        let all: Vec<u8> = blocks.concat();
        assert_eq!(core.read_bytes_blocking(500, 5000).unwrap(), all[500..5500]);
    }

    /// A replication session that ends with its connection drops its apply future while the
    /// commit runs on the blocking pool. The commit completes; the published length must
    /// follow it, or the next session asks for upgrades from a length the core has passed
    /// and every answer is stale (seen in CI: "65 proofs were stale", site never mirrored).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_apply_whose_caller_stopped_waiting_still_publishes_the_new_length() {
        let (wdir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let writer_store = CoreStore::new(wdir.path()).unwrap();
        let signing = key_pair();
        let writer = writer_store
            .open_or_create_writable(&signing)
            .await
            .unwrap();
        let entries: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 100]).collect();
        writer.append_batch(&entries).await.unwrap();
        let replica_store = CoreStore::new(rdir.path()).unwrap();
        let replica = replica_store
            .open_or_create_replica(&Key(signing.public_key))
            .await
            .unwrap();
        let upgrade = engine::Request {
            fork: 0,
            block: None,
            hash: None,
            seek: None,
            upgrade: Some(engine::RequestUpgrade {
                start: 0,
                length: 50,
            }),
            manifest: false,
        };
        let proof = writer.create_proof_blocking(&upgrade).unwrap();
        // Polled once (the commit is handed to the blocking pool), then dropped.
        {
            let mut apply = std::pin::pin!(replica.apply_proof(proof));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(
                apply.as_mut().poll(&mut cx).is_pending(),
                "the apply finished before it could be dropped"
            );
        }
        let engine_length = || {
            replica_store
                .engine()
                .info(&signing.public_key)
                .unwrap()
                .length
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while engine_length() < 50 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(engine_length(), 50, "the dropped apply did not commit");
        let mut info = replica.subscribe();
        let published =
            tokio::time::timeout(Duration::from_secs(10), info.wait_for(|i| i.length == 50)).await;
        assert!(
            published.is_ok(),
            "the engine holds 50 blocks but the core still says {}",
            replica.info().length
        );
    }

    #[tokio::test]
    async fn replica_is_read_only_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = CoreStore::new(dir.path()).unwrap();
        let key = Key(key_pair().public_key);
        let core = store.open_or_create_replica(&key).await.unwrap();
        assert_eq!(core.info().length, 0);
        assert!(!core.info().writable);
        assert!(core.append(b"x").await.is_err());
    }
}
