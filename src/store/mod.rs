//! The hypercores on disk. Every core lives in `DATA/cores/<hex key>/` (hypercore's own
//! files: oplog, tree, bitfield, data) and is opened at most once per process; callers share
//! an `Arc<Core>`. A `Core` owns the `Hypercore` behind an async mutex (its methods take
//! `&mut self`) and publishes a `CoreInfo` on a watch channel after every change, which is
//! how replication learns that there is something new to send or fetch.
//!
//! Layout: [`core`] (one `Core`: the hypercore, its info channel, write faults, opening and
//! creating), [`cache`] (verified blocks in memory), [`space`] (free space, disk-full
//! detection, the space reserve), [`reader`] (a `Core` as the drive format's block source);
//! this file holds the errors and the [`CoreStore`] (which cores exist, opening each once).

mod cache;
mod core;
mod reader;
mod space;

pub mod log;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};

use hypercore::{HypercoreError, PartialKeypair, SigningKey, VerifyingKey};
use tokio::sync::Mutex;

pub use self::cache::BlockCache;
use self::core::build_core;
pub use self::core::{Core, CoreInfo};
pub use self::reader::CoreReader;
use self::space::hypercore_error_is_disk_full;
pub use self::space::{available_bytes, io_error_is_disk_full, SpaceReserve, MIN_FREE_BYTES};
use crate::model::keys::Key;

pub mod migrate;

/// Errors from opening or using cores on disk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("hypercore {key}: {source}")]
    Hypercore { key: String, source: HypercoreError },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a valid ed25519 public key")]
    BadKey(String),
    #[error("core {0} is not on this machine")]
    NotFound(String),
    /// Writing to this machine's disk failed (disk full, I/O error). Not the peer's fault:
    /// what it sent was verified; we could not store it.
    #[error("cannot store core {key}: {}", describe_write_error(source))]
    Write { key: String, source: HypercoreError },
    /// The task that ran a core operation failed (it panicked); the operation may be half
    /// done.
    #[error("a core operation failed unexpectedly ({0}); restarting dat-mirror reopens the core from disk")]
    Task(String),
}

/// The first line of a write error, starting with `disk full` when the disk (or quota) is
/// full, so status views can show it as such.
fn describe_write_error(e: &HypercoreError) -> String {
    if hypercore_error_is_disk_full(e) {
        "disk full (no space left on the device holding the data folder)".into()
    } else {
        e.to_string()
    }
}

impl StoreError {
    fn hc(key: &Key, source: HypercoreError) -> StoreError {
        StoreError::Hypercore {
            key: key.short(),
            source,
        }
    }

    /// A fault of this machine's storage (the peer is not to blame).
    pub fn is_storage_fault(&self) -> bool {
        matches!(self, StoreError::Write { .. } | StoreError::Io { .. })
    }

    /// The disk (or the user's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Write { source, .. } | StoreError::Hypercore { source, .. } => {
                hypercore_error_is_disk_full(source)
            }
            StoreError::Io { source, .. } => io_error_is_disk_full(source),
            _ => false,
        }
    }
}

/// The set of cores of one data directory.
#[derive(Debug)]
pub struct CoreStore {
    root: PathBuf,
    cache: Arc<BlockCache>,
    open: StdMutex<HashMap<Key, Arc<Core>>>,
    /// Discovery key → key of every core on disk: built once when the store is created,
    /// kept up to date on create and delete, so an `Open` from a peer costs one lookup.
    by_discovery_key: StdMutex<HashMap<[u8; 32], Key>>,
    /// Serialises opening so a core is never opened twice.
    opening: Mutex<()>,
    reserve: Arc<SpaceReserve>,
}

impl CoreStore {
    /// Uses `data_dir/cores`, creating it if needed.
    pub fn new(data_dir: &Path) -> Result<CoreStore, StoreError> {
        let root = data_dir.join("cores");
        std::fs::create_dir_all(&root).map_err(|source| StoreError::Io {
            path: root.clone(),
            source,
        })?;
        let mut store = CoreStore {
            root,
            cache: Arc::new(BlockCache::new(BlockCache::DEFAULT_BYTES)),
            open: StdMutex::new(HashMap::new()),
            by_discovery_key: StdMutex::new(HashMap::new()),
            opening: Mutex::new(()),
            reserve: Arc::new(SpaceReserve::new(data_dir.join("space-reserve"))),
        };
        store.reserve.ensure();
        let index = store
            .keys_on_disk()
            .into_iter()
            .map(|k| (k.discovery_key(), k))
            .collect();
        store.by_discovery_key = StdMutex::new(index);
        Ok(store)
    }

    fn dir_of(&self, key: &Key) -> PathBuf {
        self.root.join(key.to_hex())
    }

    /// Is the core on disk (opened or not)?
    pub fn exists(&self, key: &Key) -> bool {
        self.open.lock().unwrap().contains_key(key) || self.dir_of(key).join("oplog").exists()
    }

    /// The keys of every core on disk.
    pub fn keys_on_disk(&self) -> Vec<Key> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return vec![];
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| Key::parse(&e.file_name().to_string_lossy()).ok())
            .collect()
    }

    /// An already-open core.
    pub fn get_open(&self, key: &Key) -> Option<Arc<Core>> {
        self.open.lock().unwrap().get(key).cloned()
    }

    /// Opens a core that is on disk; `None` if it is not.
    pub async fn open_existing(&self, key: &Key) -> Result<Option<Arc<Core>>, StoreError> {
        if let Some(c) = self.get_open(key) {
            return Ok(Some(c));
        }
        let _guard = self.opening.lock().await;
        if let Some(c) = self.get_open(key) {
            return Ok(Some(c));
        }
        let dir = self.dir_of(key);
        match std::fs::metadata(dir.join("oplog")) {
            Err(_) => return Ok(None),
            Ok(m) if m.len() == 0 => {
                // Creation was interrupted before hypercore wrote the oplog header (a task
                // aborted, a process killed): nothing was ever stored, and hypercore cannot
                // open it. Start over.
                tracing::warn!("{key}: removing an unfinished core (empty oplog)");
                std::fs::remove_dir_all(&dir).map_err(|source| StoreError::Io {
                    path: dir.clone(),
                    source,
                })?;
                return Ok(None);
            }
            Ok(_) => {}
        }
        let core = build_core(&dir, None)
            .await
            .map_err(|e| StoreError::hc(key, e))?;
        if core.key_pair().public.to_bytes() != key.0 {
            return Err(StoreError::BadKey(format!(
                "{} (folder holds another core)",
                key
            )));
        }
        Ok(Some(self.register(*key, dir, core).await))
    }

    /// Opens the core if it is on disk, else creates an empty replica of `key` (read-only:
    /// its blocks will come from peers, verified against `key`).
    pub async fn open_or_create_replica(&self, key: &Key) -> Result<Arc<Core>, StoreError> {
        if let Some(c) = self.open_existing(key).await? {
            return Ok(c);
        }
        let public =
            VerifyingKey::from_bytes(&key.0).map_err(|_| StoreError::BadKey(key.to_hex()))?;
        self.create(
            key,
            PartialKeypair {
                public,
                secret: None,
            },
        )
        .await
    }

    /// Opens the writable core of `signing` (creating it if needed).
    pub async fn open_or_create_writable(
        &self,
        signing: &SigningKey,
    ) -> Result<Arc<Core>, StoreError> {
        let key = Key(signing.verifying_key().to_bytes());
        if let Some(c) = self.open_existing(&key).await? {
            return Ok(c);
        }
        self.create(
            &key,
            PartialKeypair {
                public: signing.verifying_key(),
                secret: Some(signing.clone()),
            },
        )
        .await
    }

    async fn create(&self, key: &Key, key_pair: PartialKeypair) -> Result<Arc<Core>, StoreError> {
        let _guard = self.opening.lock().await;
        if let Some(c) = self.get_open(key) {
            return Ok(c);
        }
        let dir = self.dir_of(key);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let core = build_core(&dir, Some(key_pair))
            .await
            .map_err(|e| StoreError::hc(key, e))?;
        Ok(self.register(*key, dir, core).await)
    }

    /// Shares a just-opened hypercore: from now on `key` opens to this `Core`. (Opening read
    /// the oplog header, tree roots and bitfield; a damaged block shows up as an error of the
    /// read that meets it.)
    async fn register(&self, key: Key, dir: PathBuf, hc: hypercore::Hypercore) -> Arc<Core> {
        let c = Arc::new(Core::new(
            key,
            dir,
            hc,
            self.cache.clone(),
            self.reserve.clone(),
        ));
        self.open.lock().unwrap().insert(key, c.clone());
        self.by_discovery_key
            .lock()
            .unwrap()
            .insert(c.discovery_key(), key);
        c
    }

    /// The key of the core with discovery key `dk`, if it is on this machine (one lookup in
    /// an in-memory index; no disk access, no hashing).
    pub fn key_by_discovery_key(&self, dk: &[u8; 32]) -> Option<Key> {
        self.by_discovery_key.lock().unwrap().get(dk).copied()
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
        self.open
            .lock()
            .unwrap()
            .values()
            .map(|c| c.info().held_bytes())
            .sum()
    }

    /// Forgets a core and deletes its files. Holders of the `Arc<Core>` keep a working
    /// handle until they drop it (the files stay open), but nothing new can reach it.
    pub fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.open.lock().unwrap().remove(key);
        self.by_discovery_key
            .lock()
            .unwrap()
            .remove(&key.discovery_key());
        self.cache.forget(key);
        let dir = self.dir_of(key);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path: dir, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writable_core_reopens_with_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let signing = hypercore::generate_signing_key();
        let key = Key(signing.verifying_key().to_bytes());
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
    async fn a_core_whose_creation_was_interrupted_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key(hypercore::generate_signing_key().verifying_key().to_bytes());
        let store = CoreStore::new(dir.path()).unwrap();
        // What an aborted creation leaves: the folder and an empty oplog.
        let core_dir = store.dir_of(&key);
        std::fs::create_dir_all(&core_dir).unwrap();
        std::fs::write(core_dir.join("oplog"), b"").unwrap();
        assert!(store.open_existing(&key).await.unwrap().is_none());
        let core = store.open_or_create_replica(&key).await.unwrap();
        assert_eq!(core.info().length, 0);
        drop(core);
        let again = CoreStore::new(dir.path()).unwrap();
        assert!(
            again.open_existing(&key).await.unwrap().is_some(),
            "created for real"
        );
    }

    #[tokio::test]
    async fn data_file_holds_blocks_at_their_byte_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let store = CoreStore::new(dir.path()).unwrap();
        let core = store
            .open_or_create_writable(&hypercore::generate_signing_key())
            .await
            .unwrap();
        let blocks: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000 + 37 * i as usize]).collect();
        core.append_batch(&blocks).await.unwrap();
        let mut offset = 0u64;
        for b in &blocks {
            assert_eq!(&core.read_bytes_blocking(offset, b.len()).unwrap(), b);
            assert_eq!(&*core.get_cached(0).await.unwrap().unwrap(), &blocks[0][..]);
            offset += b.len() as u64;
        }
        assert_eq!(core.info().byte_length, offset);
    }

    #[tokio::test]
    async fn replica_is_read_only_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = CoreStore::new(dir.path()).unwrap();
        let key = Key(hypercore::generate_signing_key().verifying_key().to_bytes());
        let core = store.open_or_create_replica(&key).await.unwrap();
        assert_eq!(core.info().length, 0);
        assert!(!core.info().writable);
        assert!(core.append(b"x").await.is_err());
    }
}
