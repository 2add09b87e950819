//! Storage: one data folder holds `engine.redb` (tree nodes, block locations, signatures,
//! manifests, lengths of every core), `data/<key hex>.blocks` (each core's block bytes,
//! append-only) and `engine.wal` (the write-ahead log, [`wal`]). A batch writes block bytes
//! past the committed end, appends one log record holding its redb changes (and, for small
//! batches, its bytes), fdatasyncs the log (data files whose bytes are not in it first),
//! then commits the same changes to redb without a sync; checkpoints make redb durable and
//! empty the log. On open the log is replayed into redb, then the committed state is the
//! truth and bytes past it are ignored. All methods are synchronous: no await point can
//! leave partial state (run them with `spawn_blocking`; a dropped future cannot interrupt a
//! commit half-way).

mod bitfield;
mod commit;
mod cores;
mod durability;
mod open;
pub mod records;
mod wal;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use redb::{Database, ReadableTable};

pub use bitfield::Bitfield;
pub use commit::{Applied, Batch};
pub use open::{OpenReport, Repair};
pub use records::BlockLocation;

use crate::crypto::{self, KeyPair};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::proof::{Proof, Request};
use crate::prove::{self, NodeSource, TreeView};
use crate::tree::Node;
use crate::verifier::Verifier;
use records::{CoreMeta, BLOCKS, NODES};

pub(crate) fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Db(e.to_string())
}

/// Runs `f`, turning a panic inside redb (it asserts on some damaged pages) into an error.
/// Shared state is only replaced after a successful commit, so a caught panic leaves it intact.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::Corrupt(format!("database panicked: {msg}")))
    })
}

/// How a writable core is keyed.
#[derive(Debug, Clone)]
pub enum CoreKind {
    /// Key = the signer's public key (hypercore ≤ 10, corestore 6).
    Compat,
    /// Key = hash of the default single-signer manifest (hypercore 11, corestore 7).
    Default,
    /// Key = hash of this manifest (must list the key pair as its only signer).
    Manifest(Manifest),
}

/// What a core holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Core key.
    pub key: [u8; 32],
    /// Discovery key.
    pub discovery_key: [u8; 32],
    /// Signed length (blocks).
    pub length: u64,
    /// Blocks held from 0 without a gap.
    pub contiguous_length: u64,
    /// Bytes in the signed length.
    pub byte_length: u64,
    /// Fork id.
    pub fork: u64,
    /// Blocks held.
    pub held_blocks: u64,
    /// Whether this store can append to it.
    pub writable: bool,
    /// Whether it is verified as a compat core.
    pub compat: bool,
    /// Its manifest, when known.
    pub manifest: Option<Manifest>,
}

/// A block's bytes on disk (for `sendfile`): only blocks whose bytes were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFile {
    /// The core's data file.
    pub path: PathBuf,
    /// Offset and length in it.
    pub location: BlockLocation,
}

/// Held (verified) blocks of a run, where they lie on disk ([`Store::block_run`]).
#[derive(Debug, Clone)]
pub struct BlockRun {
    file: Arc<File>,
    /// The core's data file.
    pub path: PathBuf,
    /// Offset and length in the data file of blocks `from, from + 1, …`.
    pub locations: Vec<BlockLocation>,
}

impl BlockRun {
    /// Reads exactly `buf.len()` bytes at `offset` of the data file (`pread`).
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Is `other` (a reader's own descriptor of `path`) the very file these locations are in?
    pub fn is_file(&self, other: &File) -> std::io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (self.file.metadata()?, other.metadata()?);
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    }
}

/// redb's page cache per database. redb's default (1 GiB) lets a long-running mirror grow
/// towards it as its cores grow (seen in a soak: +10 MiB of RSS a minute); tree nodes,
/// bitfields and signatures of even large sites fit in far less, and block bytes are read
/// from the data files (the kernel's page cache), not from redb.
pub const DB_CACHE_BYTES: usize = 32 << 20;

/// A redb builder with this store's settings.
pub(crate) fn db_builder() -> redb::Builder {
    let mut b = Database::builder();
    b.set_cache_size(DB_CACHE_BYTES);
    b
}

/// How a store is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bytes of write-ahead log after which a commit checkpoints: data files and redb are
    /// synced and the log starts over (a replay on open reads at most about this much).
    pub checkpoint_bytes: u64,
    /// Commits since the last checkpoint after which a commit checkpoints (redb's commits
    /// between checkpoints are not durable, and each costs more the more of them there are
    /// since the last durable one; see [`Store::flush`]).
    pub checkpoint_commits: u64,
}

/// Default [`StoreOptions::checkpoint_bytes`]: about 2,000 small durable commits, or the
/// metadata of ~10,000 replicated blocks, between checkpoints.
pub const CHECKPOINT_BYTES: u64 = 1 << 20;
/// Default [`StoreOptions::checkpoint_commits`].
pub const CHECKPOINT_COMMITS: u64 = 256;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            checkpoint_bytes: CHECKPOINT_BYTES,
            checkpoint_commits: CHECKPOINT_COMMITS,
        }
    }
}

/// Counters for benchmarks and tests: together, every fsync the store makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Batches committed.
    pub commits: u64,
    /// fdatasync calls on data files.
    pub data_syncs: u64,
    /// fdatasync calls on the write-ahead log.
    pub log_syncs: u64,
    /// Durable redb commits (checkpoints, core creation and removal; one fsync each).
    pub db_syncs: u64,
}

impl Stats {
    /// Every fsync counted.
    pub fn fsyncs(&self) -> u64 {
        self.data_syncs + self.log_syncs + self.db_syncs
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CoreState {
    pub id: u64,
    pub meta: CoreMeta,
    pub roots: Vec<Node>,
    pub verifier: Verifier,
    pub key_pair: Option<KeyPair>,
    pub bitfield: Bitfield,
    pub file: Arc<File>,
    pub path: PathBuf,
}

impl CoreState {
    fn info(&self) -> Info {
        Info {
            key: self.meta.key,
            discovery_key: crypto::discovery_key(&self.meta.key),
            length: self.meta.length,
            contiguous_length: self.bitfield.first_missing(0).min(self.meta.length),
            byte_length: self.meta.byte_length,
            fork: self.meta.fork,
            held_blocks: self.bitfield.count(),
            writable: self.key_pair.is_some(),
            compat: self.verifier.is_compat(),
            manifest: self.meta.manifest.clone(),
        }
    }
}

pub(crate) struct State {
    pub cores: HashMap<[u8; 32], CoreState>,
    pub next_id: u64,
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    /// None after an I/O error closed it (redb refuses further use): reopened on next use.
    pub db: RwLock<Option<Database>>,
    pub db_broken: AtomicBool,
    pub state: Mutex<State>,
    pub options: StoreOptions,
    /// Held by whoever writes (commits, core creation): one writer at a time.
    pub writer: Mutex<()>,
    pub commits: AtomicU64,
    pub data_syncs: AtomicU64,
    pub log_syncs: AtomicU64,
    pub db_syncs: AtomicU64,
    /// Data files holding bytes that no log record holds, not yet fdatasync'ed: synced
    /// before the log sync that makes a record pointing into them durable.
    pub unsynced: Mutex<Vec<(PathBuf, Arc<File>)>>,
    /// A lazy commit's record was written since the log was last synced or checkpointed.
    pub lazy_pending: AtomicBool,
    /// The write-ahead log (taken after `writer`).
    pub wal: Mutex<wal::Wal>,
}

/// One data folder of cores. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    report: Arc<OpenReport>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

/// Reads stored nodes of one core from a table of a read transaction (the default) or of a
/// write transaction (the log's replay).
pub(crate) struct DbNodes<'a, T = redb::ReadOnlyTable<(u64, u64), &'static [u8]>> {
    pub table: &'a T,
    pub id: u64,
}

impl<T: ReadableTable<(u64, u64), &'static [u8]>> NodeSource for DbNodes<'_, T> {
    fn node(&self, index: u64) -> Result<Option<Node>> {
        match self.table.get((self.id, index)).map_err(db_err)? {
            Some(v) => Ok(Some(records::decode_node(index, v.value())?)),
            None => Ok(None),
        }
    }
}

/// Nodes staged by a commit (or a log record) over those already stored.
pub(crate) struct Overlay<'a, T = redb::ReadOnlyTable<(u64, u64), &'static [u8]>> {
    pub staged: &'a HashMap<u64, Node>,
    pub db: DbNodes<'a, T>,
}

impl<T: ReadableTable<(u64, u64), &'static [u8]>> NodeSource for Overlay<'_, T> {
    fn node(&self, index: u64) -> Result<Option<Node>> {
        match self.staged.get(&index) {
            Some(n) => Ok(Some(*n)),
            None => self.db.node(index),
        }
    }
}

pub(crate) fn data_path(dir: &Path, key: &[u8; 32]) -> PathBuf {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    dir.join("data").join(format!("{hex}.blocks"))
}

impl Store {
    /// Opens (or creates) the data folder `dir`, repairing torn tails; see [`Store::report`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let (shared, report) = open::open(dir.as_ref(), options)?;
        Ok(Store {
            shared: Arc::new(shared),
            report: Arc::new(report),
        })
    }

    /// What opening found and dropped.
    pub fn report(&self) -> &OpenReport {
        &self.report
    }

    /// The data folder.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Commit and sync counters.
    pub fn stats(&self) -> Stats {
        let sh = &self.shared;
        Stats {
            commits: sh.commits.load(Ordering::Relaxed),
            data_syncs: sh.data_syncs.load(Ordering::Relaxed),
            log_syncs: sh.log_syncs.load(Ordering::Relaxed),
            db_syncs: sh.db_syncs.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction> {
        self.shared.begin_read()
    }

    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction> {
        self.shared.begin_write()
    }

    pub(crate) fn note_failure(&self, e: &Error) {
        self.shared.note_failure(e)
    }

    /// Whether a commit is under way right now, so that another would wait for it (and its
    /// fsyncs). A hint for a caller choosing where to run a small write: it may change the
    /// moment after.
    pub fn is_committing(&self) -> bool {
        matches!(
            self.shared.writer.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        )
    }

    pub(crate) fn writer_lock(&self) -> MutexGuard<'_, ()> {
        self.shared.writer_lock()
    }

    /// Makes redb durable and empties the write-ahead log (done on its own every
    /// [`StoreOptions::checkpoint_bytes`] of log or [`StoreOptions::checkpoint_commits`]
    /// commits, and when the store closes).
    pub fn checkpoint(&self) -> Result<()> {
        let _writer = self.writer_lock();
        guarded(|| self.shared.checkpoint_locked(&mut self.shared.wal()))
    }

    /// Runs `f` in a redb write transaction that commits durably as a checkpoint (writer
    /// turn held by the caller): data files synced first, the log emptied after. For rare
    /// changes outside the log: core creation and removal, manifests, scrubs.
    pub(crate) fn durable_write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T>,
    ) -> Result<T> {
        self.shared.checkpoint_with(&mut self.shared.wal(), f)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keys of every core in the store.
    pub fn cores(&self) -> Vec<[u8; 32]> {
        self.lock().cores.keys().copied().collect()
    }

    /// What a core holds.
    pub fn info(&self, key: &[u8; 32]) -> Result<Info> {
        Ok(self.lock().cores.get(key).ok_or(Error::UnknownCore)?.info())
    }

    /// Whether block `index` is held.
    pub fn has(&self, key: &[u8; 32], index: u64) -> Result<bool> {
        Ok(self
            .lock()
            .cores
            .get(key)
            .ok_or(Error::UnknownCore)?
            .bitfield
            .get(index))
    }

    /// Held ranges `[start, end)` below the core's length.
    pub fn held_ranges(&self, key: &[u8; 32]) -> Result<Vec<(u64, u64)>> {
        let state = self.lock();
        let c = state.cores.get(key).ok_or(Error::UnknownCore)?;
        Ok(c.bitfield.ranges(c.meta.length))
    }

    /// First block at or after `from` that is not held (may equal the length).
    pub fn first_missing(&self, key: &[u8; 32], from: u64) -> Result<u64> {
        Ok(self
            .lock()
            .cores
            .get(key)
            .ok_or(Error::UnknownCore)?
            .bitfield
            .first_missing(from))
    }

    /// Where block `index`'s bytes live (None when not held).
    pub fn block_file(&self, key: &[u8; 32], index: u64) -> Result<Option<BlockFile>> {
        guarded(|| self.block_file_inner(key, index))
    }

    fn block_file_inner(&self, key: &[u8; 32], index: u64) -> Result<Option<BlockFile>> {
        let state = self.lock();
        let c = state.cores.get(key).ok_or(Error::UnknownCore)?;
        if !c.bitfield.get(index) {
            return Ok(None);
        }
        let rtx = self.begin_read()?;
        let blocks = rtx.open_table(BLOCKS).map_err(db_err)?;
        let Some(v) = blocks.get((c.id, index)).map_err(db_err)? else {
            return Ok(None);
        };
        Ok(Some(BlockFile {
            path: c.path.clone(),
            location: records::decode_location(v.value())?,
        }))
    }

    /// Where held blocks `from, from + 1, …` (below `to`, up to the first not held) lie in
    /// the data file: one lock and one read transaction for the run (`block_file` takes
    /// one per block). Read-only; for serving verified bytes straight from the file.
    pub fn block_run(&self, key: &[u8; 32], from: u64, to: u64) -> Result<BlockRun> {
        guarded(|| {
            let state = self.lock();
            let c = state.cores.get(key).ok_or(Error::UnknownCore)?;
            let end = c.bitfield.first_missing(from).min(to);
            let (id, file, path, rtx) = (c.id, c.file.clone(), c.path.clone(), self.begin_read()?);
            drop(state);
            let mut locations = Vec::with_capacity(end.saturating_sub(from).min(4096) as usize);
            if from < end {
                let blocks = rtx.open_table(BLOCKS).map_err(db_err)?;
                for row in blocks.range((id, from)..(id, end)).map_err(db_err)? {
                    let (k, v) = row.map_err(db_err)?;
                    if k.value().1 != from + locations.len() as u64 {
                        break;
                    }
                    locations.push(records::decode_location(v.value())?);
                }
            }
            Ok(BlockRun {
                file,
                path,
                locations,
            })
        })
    }

    /// Stored tree node `index` (flat-tree index) of a core, if the store has it: its byte
    /// length and hash (e.g. to compute a block's byte offset from the full roots left of it).
    pub fn tree_node(&self, key: &[u8; 32], index: u64) -> Result<Option<Node>> {
        guarded(|| {
            let (id, rtx) = {
                let state = self.lock();
                let c = state.cores.get(key).ok_or(Error::UnknownCore)?;
                (c.id, self.begin_read()?)
            };
            let nodes = rtx.open_table(NODES).map_err(db_err)?;
            DbNodes { table: &nodes, id }.node(index)
        })
    }

    /// Block `index`, verified against its tree node (None when not held).
    pub fn get(&self, key: &[u8; 32], index: u64) -> Result<Option<Vec<u8>>> {
        guarded(|| self.get_inner(key, index))
    }

    fn get_inner(&self, key: &[u8; 32], index: u64) -> Result<Option<Vec<u8>>> {
        let (id, file, rtx) = {
            let state = self.lock();
            let c = state.cores.get(key).ok_or(Error::UnknownCore)?;
            if !c.bitfield.get(index) {
                return Ok(None);
            }
            (c.id, c.file.clone(), self.begin_read()?)
        };
        let blocks = rtx.open_table(BLOCKS).map_err(db_err)?;
        let nodes = rtx.open_table(NODES).map_err(db_err)?;
        read_verified(&blocks, &DbNodes { table: &nodes, id }, &file, id, index).map(Some)
    }

    /// A proof answering `req` (fails on requests this core cannot answer).
    pub fn create_proof(&self, key: &[u8; 32], req: &Request) -> Result<Proof> {
        guarded(|| self.create_proof_inner(key, req))
    }

    fn create_proof_inner(&self, key: &[u8; 32], req: &Request) -> Result<Proof> {
        // copy only the head (not the bitfield): this runs for every request a peer sends
        let (id, roots, meta, file, manifest, rtx) = {
            let state = self.lock();
            let c = state.cores.get(key).ok_or(Error::UnknownCore)?;
            if let Some(b) = &req.block {
                if req.fork != c.meta.fork || !c.bitfield.get(b.index) {
                    return Err(Error::InvalidRequest("block not held"));
                }
            }
            let manifest = if req.manifest && !c.verifier.is_compat() {
                c.meta.manifest.clone()
            } else {
                None
            };
            let head = (
                c.meta.length,
                c.meta.byte_length,
                c.meta.fork,
                c.meta.signature.clone(),
            );
            (
                c.id,
                c.roots.clone(),
                head,
                c.file.clone(),
                manifest,
                self.begin_read()?,
            )
        };
        let nodes = rtx.open_table(NODES).map_err(db_err)?;
        let src = DbNodes { table: &nodes, id };
        let view = TreeView {
            roots: &roots,
            length: meta.0,
            byte_length: meta.1,
            fork: meta.2,
            signature: meta.3.as_deref(),
        };
        let mut proof = prove::create_proof(&view, &src, req)?;
        if let Some(b) = proof.block.as_mut() {
            let blocks = rtx.open_table(BLOCKS).map_err(db_err)?;
            b.value = read_verified(&blocks, &src, &file, id, b.index)?;
        }
        proof.manifest = manifest;
        Ok(proof)
    }

    /// How many levels of proof nodes a request for block `index` must ask for (the `nodes`
    /// of a wire block request): parents above the leaf up to the first node we store, 0
    /// when the block lies outside our tree (like Node's `missingNodes`).
    pub fn missing_nodes(&self, key: &[u8; 32], index: u64) -> Result<u64> {
        guarded(|| {
            let (id, length, rtx) = {
                let state = self.lock();
                let c = state.cores.get(key).ok_or(Error::UnknownCore)?;
                (c.id, c.meta.length, self.begin_read()?)
            };
            let nodes = rtx.open_table(NODES).map_err(db_err)?;
            let src = DbNodes { table: &nodes, id };
            let head = length.checked_mul(2).ok_or(Error::OutOfRange("length"))?;
            let leaf = index
                .checked_mul(2)
                .ok_or(Error::OutOfRange("block index"))?;
            let mut it = crate::flat::Iter::new(leaf)?;
            if it.right_span()? >= head {
                return Ok(0);
            }
            let mut cnt = 0;
            while !it.contains(head) && src.node(it.index)?.is_none() {
                cnt += 1;
                if cnt >= 64 {
                    return Err(Error::Corrupt("no stored ancestor".into()));
                }
                it.parent()?;
            }
            Ok(cnt)
        })
    }

    /// Appends blocks to a writable core in one durable commit.
    pub fn append(&self, key: &[u8; 32], blocks: Vec<Vec<u8>>) -> Result<Applied> {
        let mut b = Batch::new();
        b.append(*key, blocks);
        single(self.commit(b)?)
    }

    /// Truncates a writable core to `length` blocks (a new fork, signed) in one commit.
    pub fn truncate(&self, key: &[u8; 32], length: u64) -> Result<Applied> {
        let mut b = Batch::new();
        b.truncate(*key, length);
        single(self.commit(b)?)
    }

    /// Verifies `proof` fully, then stores what it proves in one durable commit.
    pub fn apply_proof(&self, key: &[u8; 32], proof: Proof) -> Result<Applied> {
        let mut b = Batch::new();
        b.apply(*key, proof);
        single(self.commit(b)?)
    }
}

pub(crate) fn single(mut out: Vec<Applied>) -> Result<Applied> {
    match out.pop() {
        Some(a) => Ok(a),
        None => Err(Error::Db("empty batch outcome".into())),
    }
}

pub(crate) fn read_verified(
    blocks: &impl ReadableTable<(u64, u64), &'static [u8]>,
    nodes: &impl NodeSource,
    file: &File,
    id: u64,
    index: u64,
) -> Result<Vec<u8>> {
    let loc = blocks
        .get((id, index))
        .map_err(db_err)?
        .ok_or_else(|| Error::Corrupt(format!("block {index} has no location")))
        .and_then(|v| records::decode_location(v.value()))?;
    read_at(nodes, file, index, &loc)
}

/// Reads block `index` from `loc` of its data file and checks it against its leaf node.
pub(crate) fn read_at(
    nodes: &impl NodeSource,
    file: &File,
    index: u64,
    loc: &BlockLocation,
) -> Result<Vec<u8>> {
    let len = usize::try_from(loc.len).map_err(|_| Error::Corrupt("block too long".into()))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, loc.offset)
        .map_err(|e| Error::Corrupt(format!("block {index} unreadable: {e}")))?;
    let leaf_index = index
        .checked_mul(2)
        .ok_or(Error::OutOfRange("block index"))?;
    let node = nodes
        .node(leaf_index)?
        .ok_or_else(|| Error::Corrupt(format!("block {index} has no tree node")))?;
    if node.size != loc.len || node.hash != crypto::leaf_hash(&buf) {
        return Err(Error::Corrupt(format!(
            "block {index} does not match its hash"
        )));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_committing_while_a_writer_holds_the_turn() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.is_committing());
        let turn = store.writer_lock();
        let other = store.clone();
        assert!(std::thread::spawn(move || other.is_committing())
            .join()
            .unwrap());
        drop(turn);
        assert!(!store.is_committing());
    }
}
