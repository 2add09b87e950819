//! One stored hypercore ([`Core`]) and what it holds ([`CoreInfo`]): a core of the engine
//! store, a watch channel that publishes a `CoreInfo` after every change (how replication
//! learns there is something new to send or fetch), and write-fault tracking. Engine calls
//! are synchronous and each mutation is one atomic commit: they run on the blocking pool
//! ([`super::run_blocking`]), so a dropped future never leaves a half-done write.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use hypercore_engine as engine;
use tokio::sync::{broadcast, watch};

use super::cache::BlockCache;
use super::space::{available_bytes, SpaceReserve, MIN_FREE_BYTES};
use super::{run_blocking, StoreError};
use crate::model::keys::Key;

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
    engine: Arc<engine::Store>,
    info: watch::Sender<CoreInfo>,
    cache: Arc<BlockCache>,
    /// The last write to this core failed (and why); cleared by the next successful write.
    fault: watch::Sender<Option<String>>,
    /// The store's space reserve, released when the disk is full.
    reserve: Arc<SpaceReserve>,
    /// The store's change feed: this core's key is sent whenever its published info changes.
    changes: broadcast::Sender<Key>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("key", &self.key).finish()
    }
}

fn info_of(engine: &engine::Store, key: &Key) -> Option<CoreInfo> {
    let i = engine.info(&key.0).ok()?;
    Some(CoreInfo {
        length: i.length,
        byte_length: i.byte_length,
        contiguous_length: i.contiguous_length,
        held_blocks: i.held_blocks.min(i.length),
        writable: i.writable,
        remote_length: None,
    })
}

impl Core {
    /// Shares core `key` of `engine` (it must be in the store).
    pub(super) fn new(
        key: Key,
        engine: Arc<engine::Store>,
        cache: Arc<BlockCache>,
        reserve: Arc<SpaceReserve>,
        changes: broadcast::Sender<Key>,
    ) -> Core {
        let info = info_of(&engine, &key).unwrap_or_default();
        Core {
            key,
            discovery_key: key.discovery_key(),
            engine,
            info: watch::channel(info).0,
            cache,
            fault: watch::channel(None).0,
            reserve,
            changes,
        }
    }

    pub fn key(&self) -> Key {
        self.key
    }

    pub fn discovery_key(&self) -> [u8; 32] {
        self.discovery_key
    }

    /// The engine store holding this core.
    pub fn engine(&self) -> &engine::Store {
        &self.engine
    }

    /// The latest published info.
    pub fn info(&self) -> CoreInfo {
        *self.info.borrow()
    }

    /// Watch the info change (length grows, blocks arrive).
    pub fn subscribe(&self) -> watch::Receiver<CoreInfo> {
        self.info.subscribe()
    }

    /// Reads the core's state from the engine and publishes it if it changed (call after
    /// writing to the engine directly, e.g. a publish's batches).
    pub fn refresh_info(&self) {
        // The engine is read inside the watch's write lock: two refreshes racing (two
        // sessions applying proofs to one core) must not publish an older reading after a
        // newer one, or every later upgrade asks from a length the core has passed.
        let changed = self.info.send_if_modified(|info| {
            let Some(fresh) = info_of(&self.engine, &self.key) else {
                return false;
            };
            let next = CoreInfo {
                remote_length: info.remote_length,
                ..fresh
            };
            let changed = *info != next;
            *info = next;
            changed
        });
        if changed {
            // Nobody listening is fine.
            let _ = self.changes.send(self.key);
        }
    }

    /// Checks there is room to store `bytes` more of this core's blocks (leaving room for
    /// the few small writes that report a problem: a replica does not fill the disk to the
    /// last byte). A full disk is published as this core's fault.
    pub fn reserve_space(&self, bytes: u64) -> Result<(), StoreError> {
        match self.lacks_space(MIN_FREE_BYTES + bytes) {
            Some(e) => {
                self.note_write(&Err(&e));
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Blocks were stored into this core by another writer of the engine (replication):
    /// publishes the new info and clears a previous write fault.
    pub fn note_stored(&self) {
        self.note_write(&Ok(()));
        self.refresh_info();
    }

    /// Storing into this core failed elsewhere (replication): publishes the fault.
    pub fn note_store_failed(&self, error: &str) {
        let disk_full = error.contains("os error 28") || error.contains("No space left");
        let source = if disk_full {
            std::io::Error::from_raw_os_error(libc::ENOSPC)
        } else {
            std::io::Error::other(error.to_string())
        };
        let e = StoreError::Io {
            path: self.engine.dir().to_path_buf(),
            source,
        };
        self.note_write(&Err(&e));
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

    /// Is block `index` held (verified and stored)?
    pub fn has(&self, index: u64) -> bool {
        self.engine.has(&self.key.0, index).unwrap_or(false)
    }

    /// How many levels of proof nodes a request for block `index` must ask for.
    pub fn missing_nodes(&self, index: u64) -> Result<u64, StoreError> {
        self.engine
            .missing_nodes(&self.key.0, index)
            .map_err(|e| StoreError::engine(&self.key, e))
    }

    /// A proof answering `req` (an error for requests this core cannot answer). Reads
    /// from disk: call it from a blocking context.
    pub fn create_proof_blocking(
        &self,
        req: &engine::Request,
    ) -> Result<engine::Proof, StoreError> {
        self.engine
            .create_proof(&self.key.0, req)
            .map_err(|e| StoreError::engine(&self.key, e))
    }

    /// Where block `index`'s verified bytes are on disk (None when not held).
    pub fn block_file(&self, index: u64) -> Result<Option<engine::BlockFile>, StoreError> {
        self.engine
            .block_file(&self.key.0, index)
            .map_err(|e| StoreError::engine(&self.key, e))
    }

    /// Stored tree node `index` (flat-tree index), if the store has it.
    pub fn tree_node(&self, index: u64) -> Result<Option<engine::Node>, StoreError> {
        self.engine
            .tree_node(&self.key.0, index)
            .map_err(|e| StoreError::engine(&self.key, e))
    }

    /// `Some(disk full)` when the file system holding the store has less than `need` bytes
    /// available (to unprivileged writers).
    fn lacks_space(&self, need: u64) -> Option<StoreError> {
        let dir = self.engine.dir();
        let free = available_bytes(dir)?;
        (free < need).then(|| StoreError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        })
    }

    /// Runs an engine mutation on the blocking pool and publishes its outcome there, right
    /// after the commit: the new info (also after a stale proof: our state moved on) and a
    /// storage fault or its end. A caller that stops waiting (a replication session ending
    /// with its connection) cannot leave the published length behind the engine's, which
    /// once made a laptop ask for upgrades from a length it had passed, forever.
    async fn mutate<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&engine::Store) -> engine::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let core = self.clone();
        run_blocking(move || core.mutate_in_place(work)).await?
    }

    /// [`Core::mutate`] on the calling thread, which must be allowed to block (a FUSE thread,
    /// the blocking pool; never a tokio worker).
    fn mutate_in_place<T>(
        &self,
        work: impl FnOnce(&engine::Store) -> engine::Result<T>,
    ) -> Result<T, StoreError> {
        tracing::debug!(target: "latency", core = %self.key.short(), "mutate start");
        let result = work(&self.engine).map_err(|e| StoreError::engine(&self.key, e));
        tracing::debug!(target: "latency", core = %self.key.short(), "mutate done");
        self.note_write(&result.as_ref().map(|_| ()));
        if result.as_ref().is_ok() || result.as_ref().is_err_and(StoreError::is_stale) {
            self.refresh_info();
        }
        result
    }

    /// Records the outcome of a mutation: a storage fault is published (the engine's
    /// commits are atomic, so nothing needs reopening); success clears a previous fault.
    fn note_write(&self, result: &Result<(), &StoreError>) {
        match result {
            Ok(()) => {
                if self.fault.send_if_modified(|f| f.take().is_some()) {
                    tracing::info!(core = %self.key.short(), "writes succeed again");
                    self.reserve.ensure();
                }
            }
            Err(e) if e.is_storage_fault() => {
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

    /// Appends entries (one signed batch, one durable commit) and returns the new length.
    pub async fn append_batch(self: &Arc<Self>, entries: &[Vec<u8>]) -> Result<u64, StoreError> {
        let key = self.key;
        let entries = entries.to_vec();
        let applied = self
            .mutate(move |engine| engine.append(&key.0, entries))
            .await?;
        Ok(applied.length)
    }

    /// Appends one entry and returns its index.
    pub async fn append(self: &Arc<Self>, entry: &[u8]) -> Result<u64, StoreError> {
        let len = self.append_batch(&[entry.to_vec()]).await?;
        Ok(len - 1)
    }

    /// [`Core::append`] on the calling thread, for a thread that may block and is not a tokio
    /// worker (a FUSE thread): the same durable commit without the hop to the blocking pool
    /// and back (two thread wake-ups on the path from `touch` to the mirror).
    pub fn append_in_place(&self, entry: &[u8]) -> Result<u64, StoreError> {
        let key = self.key;
        let entries = vec![entry.to_vec()];
        let applied = self.mutate_in_place(move |engine| engine.append(&key.0, entries))?;
        Ok(applied.length - 1)
    }

    /// Verifies a proof from a peer and, if it is valid, stores what it proves (one atomic
    /// commit). Returns whether it was applied (`false`: valid, but overtaken by what we
    /// already have). A proof that does not verify is `StoreError::Engine`; a failure to
    /// store a valid one (disk full) is `StoreError::Write`.
    pub async fn apply_proof(self: &Arc<Self>, proof: engine::Proof) -> Result<bool, StoreError> {
        // Leave room for the few small writes that report the problem (status log): a
        // replica does not fill the disk to the last byte.
        let need = MIN_FREE_BYTES + proof.block.as_ref().map_or(0, |b| b.value.len() as u64);
        if let Some(e) = self.lacks_space(need) {
            self.note_write(&Err(&e));
            return Err(e);
        }
        let key = self.key;
        match self
            .mutate(move |engine| engine.apply_proof(&key.0, proof))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_stale() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Verifies and applies `proofs` in one atomic commit (one data sync and one database
    /// commit for all of them). When that commit fails, each proof is applied on its own,
    /// so each gets its own outcome (a forged proof among valid ones is found, and blamed).
    pub async fn apply_proofs(
        self: &Arc<Self>,
        proofs: Vec<engine::Proof>,
    ) -> Vec<Result<bool, StoreError>> {
        let n = proofs.len();
        let bytes: u64 = proofs
            .iter()
            .map(|p| p.block.as_ref().map_or(0, |b| b.value.len() as u64))
            .sum();
        if n > 1 && self.lacks_space(MIN_FREE_BYTES + bytes).is_none() {
            let key = self.key;
            let batch = proofs.clone();
            let committed = self
                .mutate(move |engine| {
                    let mut b = engine::Batch::new();
                    for p in batch {
                        b.apply(key.0, p);
                    }
                    engine.commit(b)
                })
                .await;
            if committed.is_ok() {
                return (0..n).map(|_| Ok(true)).collect();
            }
        }
        let mut out = Vec::with_capacity(n);
        for p in proofs {
            out.push(self.apply_proof(p).await);
        }
        out
    }

    /// Block `index` if it is held, from the block cache when possible.
    pub async fn get_cached(&self, index: u64) -> Result<Option<Arc<[u8]>>, StoreError> {
        if let Some(b) = self.cache.get(&self.key, index) {
            return Ok(Some(b));
        }
        let Some(block) = self.get(index).await? else {
            return Ok(None);
        };
        let block: Arc<[u8]> = block.into();
        self.cache.put(self.key, index, block.clone());
        Ok(Some(block))
    }

    /// Reads block `index` if it is held (verified against its tree node on every read).
    pub async fn get(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.has(index) {
            return Ok(None);
        }
        let engine = self.engine.clone();
        let key = self.key;
        run_blocking(move || engine.get(&key.0, index))
            .await?
            .map_err(|e| StoreError::engine(&self.key, e))
    }

    /// [`Core::get`] on the calling thread: for a small block stored moments ago (a live log
    /// entry, in the page cache), where the hop to the blocking pool and back costs several
    /// times the read itself.
    pub fn get_blocking(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.has(index) {
            return Ok(None);
        }
        self.engine
            .get(&self.key.0, index)
            .map_err(|e| StoreError::engine(&self.key, e))
    }

    /// The byte offset of block `index` in the core's byte stream, by the Merkle tree (the
    /// byte lengths of the full subtrees left of it); `None` if a node is not stored.
    pub fn byte_offset_blocking(&self, index: u64) -> Result<Option<u64>, StoreError> {
        let Some(leaf) = index.checked_mul(2) else {
            return Ok(None);
        };
        let mut offset: u64 = 0;
        for node in full_roots(leaf) {
            match self.tree_node(node)? {
                Some(n) => offset = offset.saturating_add(n.size),
                None => return Ok(None),
            }
        }
        Ok(Some(offset))
    }

    /// Reads `len` bytes at `offset` of the core's byte stream, block by block from the
    /// core's data file (where each verified block sits at its recorded location). Only for
    /// byte ranges whose blocks are held: those bytes were verified before they were
    /// written. Blocks the calling thread; call it from a blocking context.
    pub fn read_bytes_blocking(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let length = self.info().length;
        // The last block starting at or before `offset` (binary search on byte offsets).
        let (mut lo, mut hi) = (0u64, length);
        let mut start_of_lo = 0u64;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match self
                .byte_offset_blocking(mid)
                .map_err(std::io::Error::other)?
            {
                Some(at) if at <= offset => {
                    lo = mid;
                    start_of_lo = at;
                }
                Some(_) => hi = mid,
                None => return Err(std::io::Error::other("tree node not stored")),
            }
        }
        self.read_span_blocking(lo, start_of_lo, offset, len)
    }

    /// Reads `len` bytes at byte `offset` of the stream, starting with block `block` that
    /// begins at byte `block_start` (≤ `offset`). Blocking.
    pub fn read_span_blocking(
        &self,
        mut block: u64,
        mut block_start: u64,
        offset: u64,
        len: usize,
    ) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len.min(64 << 20));
        let mut at = offset;
        let mut file: Option<(std::path::PathBuf, std::fs::File)> = None;
        while out.len() < len {
            let bf = self
                .block_file(block)
                .map_err(std::io::Error::other)?
                .ok_or_else(|| std::io::Error::other(format!("block {block} is not held")))?;
            let block_len = bf.location.len;
            let skip = at.saturating_sub(block_start);
            if skip < block_len {
                let take = (block_len - skip).min((len - out.len()) as u64) as usize;
                if file.as_ref().is_none_or(|(p, _)| *p != bf.path) {
                    file = Some((bf.path.clone(), std::fs::File::open(&bf.path)?));
                }
                let Some((_, f)) = &file else {
                    return Err(std::io::Error::other("data file not open"));
                };
                let from = out.len();
                out.resize(from + take, 0);
                f.read_exact_at(&mut out[from..], bf.location.offset.saturating_add(skip))?;
                at = at.saturating_add(take as u64);
            }
            block_start = block_start.saturating_add(block_len);
            block += 1;
        }
        Ok(out)
    }
}

/// The flat-tree indexes of the full subtrees left of `index` (flat-tree's `fullRoots`):
/// the nodes whose byte lengths sum to the byte offset of leaf `index`.
pub fn full_roots(index: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut leaves = index / 2;
    let mut offset: u64 = 0;
    while leaves > 0 {
        let factor = 1u64 << (63 - leaves.leading_zeros());
        out.push(offset + factor - 1);
        offset += 2 * factor;
        leaves -= factor;
    }
    out
}
