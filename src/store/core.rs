//! One stored hypercore ([`Core`]) and what it holds ([`CoreInfo`]): the `Hypercore` behind
//! an async mutex, a watch channel that publishes a `CoreInfo` after every change (how
//! replication learns there is something new to send or fetch), write-fault tracking (a
//! failed write marks the core for reopening from disk), and the one place a hypercore is
//! opened or created ([`build_core`]). Every mutation runs to completion on a task of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hypercore::{HypercoreBuilder, HypercoreError, PartialKeypair, Storage};
use tokio::sync::{watch, Mutex, MutexGuard};

use super::cache::BlockCache;
use super::space::{available_bytes, is_storage_fault, SpaceReserve, MIN_FREE_BYTES};
use super::StoreError;
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

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("key", &self.key).finish()
    }
}

impl Core {
    /// Wraps a freshly opened or created hypercore.
    pub(super) fn new(
        key: Key,
        dir: PathBuf,
        hc: hypercore::Hypercore,
        cache: Arc<BlockCache>,
        reserve: Arc<SpaceReserve>,
    ) -> Core {
        let i = hc.info();
        // Count held blocks once (a bitfield lookup each); afterwards it is kept up to date.
        let held = count_held(&hc);
        let info = CoreInfo {
            length: i.length,
            byte_length: i.byte_length,
            contiguous_length: i.contiguous_length,
            held_blocks: held,
            writable: i.writeable,
            remote_length: None,
        };
        Core {
            key,
            discovery_key: key.discovery_key(),
            dir,
            inner: Mutex::new(hc),
            info: watch::channel(info).0,
            cache,
            data: std::sync::OnceLock::new(),
            fault: watch::channel(None).0,
            needs_reopen: std::sync::atomic::AtomicBool::new(false),
            reserve,
        }
    }

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
        let fresh = build_core(&self.dir, None).await.map_err(write)?;
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
    tokio::spawn(work)
        .await
        .unwrap_or_else(|e| Err(StoreError::Task(e.to_string())))
}

/// Opens the hypercore whose files are in `dir` (`create: None`), or creates one there with
/// the key pair `create` (its public key, and the secret key for a writable core).
pub(super) async fn build_core(
    dir: &Path,
    create: Option<PartialKeypair>,
) -> Result<hypercore::Hypercore, HypercoreError> {
    let storage = Storage::new_disk(&dir.to_path_buf(), false).await?;
    let builder = HypercoreBuilder::new(storage);
    let builder = match create {
        None => builder.open(true),
        Some(key_pair) => builder.key_pair(key_pair),
    };
    builder.build().await
}
