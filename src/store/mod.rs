//! The hypercores on disk. Every core lives in `DATA/cores/<hex key>/` (hypercore's own
//! files: oplog, tree, bitfield, data) and is opened at most once per process; callers share
//! an `Arc<Core>`. A `Core` owns the `Hypercore` behind an async mutex (its methods take
//! `&mut self`) and publishes a `CoreInfo` on a watch channel after every change, which is
//! how replication learns that there is something new to send or fetch.

pub mod log;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};

use hypercore::{
    HypercoreBuilder, HypercoreError, PartialKeypair, SigningKey, Storage, VerifyingKey,
};
use tokio::sync::{watch, Mutex, MutexGuard};

use crate::model::keys::Key;

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

/// Space a replica leaves free on its file system: blocks are not applied below this (the
/// status log and the oplog's housekeeping still have room to write).
pub const MIN_FREE_BYTES: u64 = 2 * 1024 * 1024;

/// Bytes available to unprivileged writers on the file system holding `path` (None if the
/// file system cannot tell).
pub fn available_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

fn hypercore_error_is_disk_full(e: &HypercoreError) -> bool {
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

/// ENOSPC or EDQUOT.
pub fn io_error_is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Did a proof fail because of what the peer sent (false), or because storing or reading it
/// here failed (true)?
fn is_storage_fault(e: &HypercoreError) -> bool {
    matches!(
        e,
        HypercoreError::IO { .. }
            | HypercoreError::CorruptStorage { .. }
            | HypercoreError::EmptyStorage { .. }
    )
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

/// What a core holds, as last published on its watch channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreInfo {
    /// Number of blocks in the core (as far as this machine has verified its tree).
    pub length: u64,
    /// Total bytes of all `length` blocks.
    pub byte_length: u64,
    /// Blocks `[0, contiguous_length)` are all held.
    pub contiguous_length: u64,
    /// Blocks held (may exceed `contiguous_length` when blocks arrive out of order).
    pub held_blocks: u64,
    pub writable: bool,
    /// The longest length a peer has announced for this core (None: no peer has, yet).
    pub remote_length: Option<u64>,
}

impl CoreInfo {
    /// Every block of the known length is held.
    pub fn complete(&self) -> bool {
        self.held_blocks >= self.length
    }

    /// Every block is held and no peer has announced a longer core: in sync.
    pub fn synced(&self) -> bool {
        self.complete() && self.remote_length.is_some_and(|r| self.length >= r)
    }

    /// Bytes held: exact when complete, else proportional to blocks held.
    pub fn held_bytes(&self) -> u64 {
        if self.complete() || self.length == 0 {
            self.byte_length
        } else {
            ((self.byte_length as u128 * self.held_blocks as u128) / self.length as u128) as u64
        }
    }
}

/// One hypercore, shared by everything in the process that reads, writes or replicates it.
pub struct Core {
    key: Key,
    discovery_key: [u8; 32],
    dir: PathBuf,
    inner: Mutex<hypercore::Hypercore>,
    info: watch::Sender<CoreInfo>,
    cache: Arc<BlockCache>,
    /// The core's `data` file, opened read-only on first use (see [`Core::read_bytes`]).
    data: std::sync::OnceLock<std::fs::File>,
    /// The last write to this core failed (and why); cleared by the next successful write.
    fault: watch::Sender<Option<String>>,
    /// A write failed halfway: the in-memory hypercore may be out of step with its files,
    /// so it is reopened from disk before the next mutation.
    needs_reopen: std::sync::atomic::AtomicBool,
    /// The store's space reserve, released when the disk is full.
    reserve: Arc<SpaceReserve>,
}

/// A file of `SpaceReserve::BYTES` kept in the data folder and deleted the moment a write
/// fails because the disk is full, so that the few small writes that report the problem
/// (a status-log entry saying `disk full`) still fit. Re-created once writes succeed again.
#[derive(Debug)]
pub struct SpaceReserve {
    path: PathBuf,
}

impl SpaceReserve {
    pub const BYTES: usize = 512 * 1024;

    /// Creates the reserve file if it is missing (best effort: no space, no reserve).
    pub fn ensure(&self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() == Self::BYTES as u64) {
            return;
        }
        let tmp = self.path.with_extension("tmp");
        let written = std::fs::write(&tmp, vec![0xa5u8; Self::BYTES])
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!("no space reserve at {}: {e}", self.path.display());
        }
    }

    /// Deletes the reserve file; true if there was one.
    pub fn release(&self) -> bool {
        let released = std::fs::remove_file(&self.path).is_ok();
        if released {
            tracing::warn!(
                "disk full: released the {} KiB space reserve so status can still be written",
                Self::BYTES / 1024
            );
        }
        released
    }
}

type BlockLru = lru::LruCache<(Key, u64), Arc<[u8]>>;

/// Verified blocks kept in memory, shared by every core of a store: blocks never change
/// once verified, so a block read once (a B-tree node on every request, say) is served from
/// here instead of through hypercore's storage. Bounded in bytes, least recently used first.
pub struct BlockCache {
    /// The blocks, and their total size in bytes.
    inner: StdMutex<(BlockLru, usize)>,
    budget: usize,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockCache({} bytes)", self.budget)
    }
}

impl BlockCache {
    /// Default budget: 32 MiB.
    pub const DEFAULT_BYTES: usize = 32 << 20;

    pub fn new(budget: usize) -> BlockCache {
        BlockCache {
            inner: StdMutex::new((lru::LruCache::unbounded(), 0)),
            budget,
        }
    }

    fn get(&self, key: &Key, index: u64) -> Option<Arc<[u8]>> {
        self.inner.lock().unwrap().0.get(&(*key, index)).cloned()
    }

    fn put(&self, key: Key, index: u64, block: Arc<[u8]>) {
        if block.len() > self.budget / 8 {
            return;
        }
        let mut g = self.inner.lock().unwrap();
        let (lru, bytes) = &mut *g;
        *bytes += block.len();
        if let Some(old) = lru.put((key, index), block) {
            *bytes -= old.len();
        }
        while *bytes > self.budget {
            match lru.pop_lru() {
                Some((_, b)) => *bytes -= b.len(),
                None => break,
            }
        }
    }

    fn forget(&self, key: &Key) {
        let mut g = self.inner.lock().unwrap();
        let (lru, bytes) = &mut *g;
        let stale: Vec<(Key, u64)> = lru
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(b) = lru.pop(&k) {
                *bytes -= b.len();
            }
        }
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("key", &self.key).finish()
    }
}

impl Core {
    pub fn key(&self) -> Key {
        self.key
    }

    pub fn discovery_key(&self) -> [u8; 32] {
        self.discovery_key
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest published info.
    pub fn info(&self) -> CoreInfo {
        *self.info.borrow()
    }

    /// Watch the info change (length grows, blocks arrive).
    pub fn subscribe(&self) -> watch::Receiver<CoreInfo> {
        self.info.subscribe()
    }

    /// Exclusive access to the hypercore. Call [`Core::publish_info`] after changing it.
    pub async fn lock(&self) -> MutexGuard<'_, hypercore::Hypercore> {
        self.inner.lock().await
    }

    /// Recompute and publish the info from a locked core. `held_delta` is the number of
    /// blocks that became held by the change (0 if unknown or none).
    pub fn publish_info(&self, core: &hypercore::Hypercore, held_delta: u64) {
        let i = core.info();
        self.info.send_modify(|info| {
            info.length = i.length;
            info.byte_length = i.byte_length;
            info.contiguous_length = i.contiguous_length;
            info.writable = i.writeable;
            info.held_blocks = (info.held_blocks + held_delta)
                .max(i.contiguous_length)
                .min(i.length);
        });
    }

    /// Records the length a peer announced for this core.
    pub fn note_remote_length(&self, length: u64) {
        self.info.send_if_modified(|info| {
            if info.remote_length.is_none_or(|r| r < length) {
                info.remote_length = Some(length);
                true
            } else {
                false
            }
        });
    }

    /// Why the last write to this core failed, if it did (`None` once a write succeeds).
    pub fn fault(&self) -> Option<String> {
        self.fault.borrow().clone()
    }

    /// Watch write faults come and go.
    pub fn subscribe_fault(&self) -> watch::Receiver<Option<String>> {
        self.fault.subscribe()
    }

    /// `Some(disk full)` when the file system holding this core has less than `need` bytes
    /// available (to unprivileged writers).
    fn lacks_space(&self, need: u64) -> Option<StoreError> {
        let free = available_bytes(&self.dir)?;
        (free < need).then(|| StoreError::Io {
            path: self.dir.clone(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        })
    }

    /// Records the outcome of a mutation: a storage fault marks the in-memory core for
    /// reopening; success clears a previous fault.
    fn note_write(&self, result: &Result<(), &StoreError>) {
        match result {
            Ok(()) => {
                if self.fault.send_if_modified(|f| f.take().is_some()) {
                    tracing::info!(core = %self.key.short(), "writes succeed again");
                    self.reserve.ensure();
                }
            }
            Err(e) if e.is_storage_fault() => {
                self.needs_reopen
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                let reason = if e.is_disk_full() {
                    self.reserve.release();
                    "disk full: no space left in the data folder to store this site; \
                     free space (dat-mirror retries every few seconds)"
                        .to_string()
                } else {
                    format!("storage error: {e}")
                };
                tracing::warn!(core = %self.key.short(), "{e}");
                self.fault.send_replace(Some(reason));
            }
            Err(_) => {}
        }
    }

    /// Reopens the hypercore from its files if a failed write left it out of step. hypercore
    /// 0.14 writes a block's bytes, then an oplog entry, then (every few changes) bitfield,
    /// tree and oplog header; a failure halfway leaves in-memory state (oplog offsets, tree
    /// changes) that the files do not have. The files themselves stay consistent: the oplog
    /// drops a trailing partial entry when it is opened, and bytes written past what the
    /// bitfield marks as held are never read.
    async fn reopen_if_needed(&self, hc: &mut hypercore::Hypercore) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if !self.needs_reopen.load(Ordering::SeqCst) {
            return Ok(());
        }
        let write = |source| StoreError::Write {
            key: self.key.short(),
            source,
        };
        let storage = Storage::new_disk(&self.dir, false).await.map_err(write)?;
        let fresh = HypercoreBuilder::new(storage)
            .open(true)
            .build()
            .await
            .map_err(write)?;
        *hc = fresh;
        self.needs_reopen.store(false, Ordering::SeqCst);
        tracing::info!(core = %self.key.short(), "reopened from disk after a failed write");
        let held = count_held(hc);
        let i = hc.info();
        self.info.send_modify(|info| {
            info.length = i.length;
            info.byte_length = i.byte_length;
            info.contiguous_length = i.contiguous_length;
            info.writable = i.writeable;
            info.held_blocks = held;
        });
        Ok(())
    }

    /// Appends entries (one signed batch) and returns the new length.
    ///
    /// Runs on a task of its own: hypercore's methods are not cancel-safe (a future dropped
    /// halfway through a write leaves the in-memory core out of step with its files), so
    /// every mutation completes even if the caller is cancelled.
    pub async fn append_batch(self: &Arc<Self>, entries: &[Vec<u8>]) -> Result<u64, StoreError> {
        let core = self.clone();
        let entries = entries.to_vec();
        detached(async move {
            let mut hc = core.lock().await;
            let result = match core.reopen_if_needed(&mut hc).await {
                Ok(()) => hc.append_batch(&entries).await.map_err(|e| {
                    if is_storage_fault(&e) {
                        StoreError::Write {
                            key: core.key.short(),
                            source: e,
                        }
                    } else {
                        StoreError::hc(&core.key, e)
                    }
                }),
                Err(e) => Err(e),
            };
            core.note_write(&result.as_ref().map(|_| ()));
            let out = result?;
            core.publish_info(&hc, entries.len() as u64);
            Ok(out.length)
        })
        .await
    }

    /// Appends one entry and returns its index.
    pub async fn append(self: &Arc<Self>, entry: &[u8]) -> Result<u64, StoreError> {
        let len = self.append_batch(&[entry.to_vec()]).await?;
        Ok(len - 1)
    }

    /// Verifies a proof from a peer and, if it is valid, stores what it proves. Returns
    /// whether it was applied. Like every mutation, runs to completion on its own task.
    /// A proof that does not verify is `StoreError::Hypercore`; a failure to store a valid
    /// one (disk full) is `StoreError::Write`.
    pub async fn apply_proof(
        self: &Arc<Self>,
        proof: hypercore::Proof,
    ) -> Result<bool, StoreError> {
        let core = self.clone();
        detached(async move {
            let mut hc = core.lock().await;
            if let Err(e) = core.reopen_if_needed(&mut hc).await {
                core.note_write(&Err(&e));
                return Err(e);
            }
            // Refuse before writing rather than fail halfway: a write that fails with ENOSPC
            // inside hypercore 0.14 can leave its tree missing a node (seen as "Could not
            // load node … blank" after reopening), so the data folder keeps MIN_FREE_BYTES.
            let need = MIN_FREE_BYTES + proof.block.as_ref().map_or(0, |b| b.value.len() as u64);
            if let Some(e) = core.lacks_space(need) {
                core.note_write(&Err(&e));
                // Nothing was written: the in-memory core is still in step with its files.
                core.needs_reopen
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                return Err(e);
            }
            let had = proof.block.as_ref().is_some_and(|b| hc.has(b.index));
            let result = hc.verify_and_apply_proof(&proof).await.map_err(|e| {
                if is_storage_fault(&e) {
                    StoreError::Write {
                        key: core.key.short(),
                        source: e,
                    }
                } else {
                    StoreError::hc(&core.key, e)
                }
            });
            if matches!(result, Ok(true)) {
                core.note_write(&Ok(()));
            } else if let Err(e) = &result {
                core.note_write(&Err(e));
            }
            let applied = result?;
            if applied {
                let gained = proof
                    .block
                    .as_ref()
                    .is_some_and(|b| !had && hc.has(b.index));
                core.publish_info(&hc, gained as u64);
            }
            Ok(applied)
        })
        .await
    }

    /// Block `index` if it is held, from the block cache when possible.
    pub async fn get_cached(&self, index: u64) -> Result<Option<Arc<[u8]>>, StoreError> {
        if let Some(b) = self.cache.get(&self.key, index) {
            return Ok(Some(b));
        }
        let mut hc = self.lock().await;
        if !hc.has(index) {
            return Ok(None);
        }
        let Some(block) = hc
            .get(index)
            .await
            .map_err(|e| StoreError::hc(&self.key, e))?
        else {
            return Ok(None);
        };
        drop(hc);
        let block: Arc<[u8]> = block.into();
        self.cache.put(self.key, index, block.clone());
        Ok(Some(block))
    }

    /// Reads `len` bytes at `offset` of the core's byte stream straight from its `data` file,
    /// where hypercore stores every block at its byte offset. Only for byte ranges whose
    /// blocks the caller has checked are held (`has`): those bytes were verified before they
    /// were written. Blocks the calling thread; call it from a blocking context.
    pub fn read_bytes_blocking(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let file = match self.data.get() {
            Some(f) => f,
            None => {
                let f = std::fs::File::open(self.dir.join("data"))?;
                self.data.get_or_init(|| f)
            }
        };
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Reads block `index` if it is held.
    pub async fn get(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut core = self.lock().await;
        core.get(index)
            .await
            .map_err(|e| StoreError::hc(&self.key, e))
    }
}

/// Blocks held by `core`: the contiguous prefix, then a bitfield lookup per later block.
fn count_held(core: &hypercore::Hypercore) -> u64 {
    let i = core.info();
    let mut held = i.contiguous_length;
    for index in i.contiguous_length..i.length {
        if core.has(index) {
            held += 1;
        }
    }
    held
}

/// Runs `work` on a task of its own and waits for it: the work completes even if the
/// waiting future is dropped.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::spawn(work).await.unwrap_or_else(|e| {
        Err(StoreError::Hypercore {
            key: String::new(),
            source: HypercoreError::InvalidOperation {
                context: format!("core task failed: {e}"),
            },
        })
    })
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
            reserve: Arc::new(SpaceReserve {
                path: data_dir.join("space-reserve"),
            }),
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
        let storage = Storage::new_disk(&dir, false)
            .await
            .map_err(|e| StoreError::hc(key, e))?;
        let core = HypercoreBuilder::new(storage)
            .open(true)
            .build()
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
        let storage = Storage::new_disk(&dir, false)
            .await
            .map_err(|e| StoreError::hc(key, e))?;
        let core = HypercoreBuilder::new(storage)
            .key_pair(key_pair)
            .build()
            .await
            .map_err(|e| StoreError::hc(key, e))?;
        Ok(self.register(*key, dir, core).await)
    }

    async fn register(&self, key: Key, dir: PathBuf, mut core: hypercore::Hypercore) -> Arc<Core> {
        let i = core.info();
        // Count held blocks once (a bitfield lookup each); afterwards it is kept up to date.
        let held = count_held(&core);
        // Touch nothing else: reading is enough to validate the open.
        let _ = core.get(0).await;
        let info = CoreInfo {
            length: i.length,
            byte_length: i.byte_length,
            contiguous_length: i.contiguous_length,
            held_blocks: held,
            writable: i.writeable,
            remote_length: None,
        };
        let (tx, _) = watch::channel(info);
        let c = Arc::new(Core {
            key,
            discovery_key: key.discovery_key(),
            dir,
            inner: Mutex::new(core),
            info: tx,
            cache: self.cache.clone(),
            data: std::sync::OnceLock::new(),
            fault: watch::channel(None).0,
            needs_reopen: std::sync::atomic::AtomicBool::new(false),
            reserve: self.reserve.clone(),
        });
        self.open.lock().unwrap().insert(key, c.clone());
        self.by_discovery_key
            .lock()
            .unwrap()
            .insert(c.discovery_key, key);
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

/// Reads a shared core block by block for the drive reader, taking the core's lock only
/// for each block (so replication and serving interleave).
#[derive(Clone)]
pub struct CoreReader {
    core: Arc<Core>,
    length: u64,
}

impl CoreReader {
    /// A reader of the core as long as it is now.
    pub fn new(core: Arc<Core>) -> CoreReader {
        let length = core.info().length;
        CoreReader { core, length }
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

impl crate::drive::BlockSource for CoreReader {
    fn length(&self) -> u64 {
        self.length
    }

    async fn block(&mut self, index: u64) -> Result<Option<Vec<u8>>, crate::drive::DriveError> {
        if index >= self.length {
            return Ok(None);
        }
        match self.core.get_cached(index).await {
            Ok(b) => Ok(b.map(|b| b.to_vec())),
            Err(StoreError::Hypercore { source, .. }) => Err(source.into()),
            Err(e) => Err(crate::drive::DriveError::Hypercore(
                hypercore::HypercoreError::InvalidOperation {
                    context: e.to_string(),
                },
            )),
        }
    }
}
