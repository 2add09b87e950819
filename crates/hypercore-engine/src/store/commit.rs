//! Batches: appends and proof applications across any number of cores, staged on copies of
//! the cores' state (nothing shared changes while staging), then made durable in order —
//! block bytes written past each data file's committed end, one write-ahead log record
//! (with the bytes of small batches) synced once, then one redb write transaction — and only
//! then swapped into memory. Any error before the redb commit leaves the store exactly as it
//! was (the record is taken back); uncommitted data-file bytes are ignored and reused.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use super::records::{BlockLocation, BLOCKS, META, NODES};
use super::wal::{self, ChangeRef};
use super::{db_err, CoreState, DbNodes, Overlay, Store};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::proof::{verify_tree, verify_upgrade, Proof};
use crate::prove::NodeSource;
use crate::tree::{Node, TreeBatch};
use crate::verifier::Verifier;

/// What one operation of a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Whether the core's signed length grew.
    pub upgraded: bool,
    /// The core's length afterwards.
    pub length: u64,
    /// The core's byte length afterwards.
    pub byte_length: u64,
    /// The block stored by a proof (None if the proof had none or it was already held).
    pub block_stored: Option<u64>,
    /// Whether the proof taught us the core's manifest.
    pub manifest_learned: bool,
}

enum Op {
    Append([u8; 32], Vec<Vec<u8>>),
    Truncate([u8; 32], u64),
    Apply([u8; 32], Box<Proof>),
}

/// Operations committed together with one durable commit.
#[derive(Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `blocks` to the writable core `key`.
    pub fn append(&mut self, key: [u8; 32], blocks: Vec<Vec<u8>>) {
        self.ops.push(Op::Append(key, blocks));
    }

    /// Truncates the writable core `key` to `length` blocks, starting a new fork.
    pub fn truncate(&mut self, key: [u8; 32], length: u64) {
        self.ops.push(Op::Truncate(key, length));
    }

    /// Verifies and applies `proof` to core `key`.
    pub fn apply(&mut self, key: [u8; 32], proof: Proof) {
        self.ops.push(Op::Apply(key, Box::new(proof)));
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A durable batch writing at most this many bytes to a core puts them in its log record
/// (synced with it) instead of fdatasync'ing the data file as well: one fsync, not two.
pub const EMBED_DURABLE: usize = 256 * 1024;
/// The same for lazy batches, smaller: replication's bulk (64 KiB blocks) would otherwise be
/// written twice. Commands and small files still cost no data-file sync at the next flush.
pub const EMBED_LAZY: usize = 16 * 1024;

struct Staged {
    /// Whether this batch's bytes are in its log record.
    embedded: bool,
    core: CoreState,
    committed_end: u64,
    pending: Vec<u8>,
    nodes: HashMap<u64, Node>,
    blocks: Vec<(u64, BlockLocation)>,
    /// Stored nodes and blocks past this length are deleted in the commit (truncation;
    /// 0 when a replica moves to a new fork and starts its tree over).
    cut: Option<u64>,
}

impl Staged {
    fn push_block(&mut self, index: u64, data: &[u8]) -> Result<()> {
        let offset = self
            .committed_end
            .checked_add(self.pending.len() as u64)
            .ok_or(Error::OutOfRange("data file offset"))?;
        self.pending.extend_from_slice(data);
        self.blocks.push((
            index,
            BlockLocation {
                offset,
                len: data.len() as u64,
            },
        ));
        self.core.bitfield.set(index);
        Ok(())
    }

    fn append(&mut self, blocks: &[Vec<u8>]) -> Result<Applied> {
        let kp = self.core.key_pair.clone().ok_or(Error::NotWritable)?;
        let m = &self.core.meta;
        let mut batch = TreeBatch::new(self.core.roots.clone(), m.length, m.fork)?;
        batch.byte_length = m.byte_length;
        let first = m.length;
        for (i, b) in blocks.iter().enumerate() {
            batch.append(b)?;
            self.push_block(first + i as u64, b)?;
        }
        let signature = self.core.verifier.sign(&batch.head(), &kp)?;
        if !self.core.verifier.signs_alone(&kp.public_key)
            && !self.core.verifier.verify(&batch.head(), Some(&signature))
        {
            return Err(Error::Unsupported("appending to a multi-signer core"));
        }
        for n in &batch.nodes {
            self.nodes.insert(n.index, *n);
        }
        self.core.roots = batch.roots;
        self.core.meta.length = batch.length;
        self.core.meta.byte_length = batch.byte_length;
        self.core.meta.signature = Some(signature);
        Ok(Applied {
            upgraded: !blocks.is_empty(),
            length: batch.length,
            byte_length: batch.byte_length,
            ..Applied::default()
        })
    }

    fn trusted(&self, db: &DbNodes<'_>, root: &Node) -> Result<()> {
        let src = Overlay {
            staged: &self.nodes,
            db: DbNodes {
                table: db.table,
                id: db.id,
            },
        };
        match src.node(root.index)? {
            Some(n) if n == *root => Ok(()),
            _ => Err(Error::InvalidProof("proof does not hash to a trusted node")),
        }
    }

    fn learn_manifest(&self, m: &Manifest) -> Result<Option<Manifest>> {
        if self.core.meta.manifest.is_some() {
            return Ok(None);
        }
        if !m.matches_key(&self.core.meta.key)? {
            return Err(Error::InvalidManifest(
                "manifest does not belong to the key",
            ));
        }
        Ok(Some(m.clone()))
    }

    fn apply(&mut self, db: &DbNodes<'_>, proof: &Proof) -> Result<Applied> {
        if proof.fork < self.core.meta.fork {
            return Err(Error::Stale("proof from an older fork"));
        }
        if proof.fork > self.core.meta.fork {
            return self.apply_new_fork(proof);
        }
        let meta = &self.core.meta;
        let mut tree_nodes = Vec::new();
        let root = verify_tree(proof, &mut tree_nodes)?;
        let mut learned = None;
        let mut upgraded = None;
        if let Some(u) = &proof.upgrade {
            if u.start != meta.length || u.length == 0 {
                return Err(Error::Stale("upgrade does not start at our length"));
            }
            let mut batch = TreeBatch::new(self.core.roots.clone(), meta.length, meta.fork)?;
            batch.byte_length = meta.byte_length;
            let verifier = match &proof.manifest {
                Some(m) if meta.manifest.is_none() => {
                    learned = self.learn_manifest(m)?;
                    Verifier::new(&meta.key, Some(m))?
                }
                _ => self.core.verifier.clone(),
            };
            let prologue = match (&learned, &meta.manifest) {
                (Some(m), _) | (None, Some(m)) if !verifier.is_compat() => m.prologue.clone(),
                _ => None,
            };
            let consumed = verify_upgrade(proof, root, &mut batch, prologue.as_ref())?;
            if !verifier.verify(&batch.head(), batch.signature.as_deref()) {
                return Err(Error::InvalidProof("bad signature"));
            }
            if !consumed {
                if let Some(r) = &root {
                    self.trusted(db, r)?;
                }
            }
            upgraded = Some(batch);
        } else {
            if let Some(r) = &root {
                self.trusted(db, r)?;
            }
            if let Some(m) = &proof.manifest {
                learned = self.learn_manifest(m)?;
            }
        }
        // Everything is verified: stage it.
        for n in tree_nodes {
            self.nodes.insert(n.index, n);
        }
        let was_upgraded = upgraded.is_some();
        if let Some(b) = upgraded {
            for n in &b.nodes {
                self.nodes.insert(n.index, *n);
            }
            self.core.roots = b.roots;
            self.core.meta.length = b.length;
            self.core.meta.byte_length = b.byte_length;
            self.core.meta.signature = b.signature;
        }
        let manifest_learned = learned.is_some();
        if let Some(m) = learned {
            self.core.verifier = Verifier::new(&self.core.meta.key, Some(&m))?;
            self.core.meta.manifest = Some(m);
        }
        let mut block_stored = None;
        if let Some(b) = &proof.block {
            if !self.core.bitfield.get(b.index) {
                self.push_block(b.index, &b.value)?;
                block_stored = Some(b.index);
            }
        }
        Ok(Applied {
            upgraded: was_upgraded,
            length: self.core.meta.length,
            byte_length: self.core.meta.byte_length,
            block_stored,
            manifest_learned,
        })
    }

    /// The writer truncated: a proof on a newer fork with a signed upgrade from 0 replaces
    /// our tree (and drops every block we held: they are fetched again, verified against the
    /// new tree). Anything else on a newer fork is refused as unsupported.
    fn apply_new_fork(&mut self, proof: &Proof) -> Result<Applied> {
        if !proof
            .upgrade
            .as_ref()
            .is_some_and(|u| u.start == 0 && u.length > 0)
        {
            return Err(Error::Unsupported(
                "a new fork needs a signed upgrade from 0",
            ));
        }
        let mut tree_nodes = Vec::new();
        let root = verify_tree(proof, &mut tree_nodes)?;
        let meta = &self.core.meta;
        let mut batch = TreeBatch::new(Vec::new(), 0, proof.fork)?;
        let mut learned = None;
        let verifier = match &proof.manifest {
            Some(m) if meta.manifest.is_none() => {
                learned = self.learn_manifest(m)?;
                Verifier::new(&meta.key, Some(m))?
            }
            _ => self.core.verifier.clone(),
        };
        let prologue = match (&learned, &meta.manifest) {
            (Some(m), _) | (None, Some(m)) if !verifier.is_compat() => m.prologue.clone(),
            _ => None,
        };
        let consumed = verify_upgrade(proof, root, &mut batch, prologue.as_ref())?;
        if !verifier.verify(&batch.head(), batch.signature.as_deref()) {
            return Err(Error::InvalidProof("bad signature"));
        }
        if !consumed && root.is_some() {
            return Err(Error::InvalidProof(
                "fork proof does not reach the signed roots",
            ));
        }
        let manifest_learned = learned.is_some();
        if let Some(m) = learned {
            self.core.verifier = verifier;
            self.core.meta.manifest = Some(m);
        }
        // verified: start the tree over on the new fork
        self.nodes.clear();
        self.blocks.clear();
        self.cut = Some(0);
        self.core.bitfield = super::Bitfield::new();
        for n in tree_nodes.iter().chain(batch.nodes.iter()) {
            self.nodes.insert(n.index, *n);
        }
        self.core.roots = batch.roots;
        self.core.meta.length = batch.length;
        self.core.meta.byte_length = batch.byte_length;
        self.core.meta.signature = batch.signature;
        self.core.meta.fork = proof.fork;
        let mut block_stored = None;
        if let Some(b) = &proof.block {
            self.push_block(b.index, &b.value)?;
            block_stored = Some(b.index);
        }
        Ok(Applied {
            upgraded: true,
            length: self.core.meta.length,
            byte_length: self.core.meta.byte_length,
            block_stored,
            manifest_learned,
        })
    }

    /// Truncates a writable core to `length`, on a new fork, signed.
    fn truncate(&mut self, db: &DbNodes<'_>, length: u64) -> Result<Applied> {
        let kp = self.core.key_pair.clone().ok_or(Error::NotWritable)?;
        if length > self.core.meta.length {
            return Err(Error::InvalidRequest("cannot truncate past the length"));
        }
        let fork = self
            .core
            .meta
            .fork
            .checked_add(1)
            .ok_or(Error::OutOfRange("fork"))?;
        let src = Overlay {
            staged: &self.nodes,
            db: DbNodes {
                table: db.table,
                id: db.id,
            },
        };
        let mut roots = Vec::new();
        for r in crate::flat::full_roots(length)? {
            roots.push(
                src.node(r)?
                    .ok_or_else(|| Error::Corrupt(format!("root {r} missing")))?,
            );
        }
        let batch = TreeBatch::new(roots, length, fork)?;
        let signature = self.core.verifier.sign(&batch.head(), &kp)?;
        let head = 2 * length;
        self.nodes
            .retain(|i, _| crate::flat::right_span(*i).is_ok_and(|r| r < head));
        self.blocks.retain(|(i, _)| *i < length);
        let held: Vec<u64> = self
            .core
            .bitfield
            .ranges(u64::MAX)
            .into_iter()
            .flat_map(|(s, e)| s.max(length)..e)
            .collect();
        for i in held {
            self.core.bitfield.clear(i);
        }
        self.cut = Some(self.cut.map_or(length, |c| c.min(length)));
        self.core.roots = batch.roots;
        self.core.meta.length = length;
        self.core.meta.byte_length = batch.byte_length;
        self.core.meta.fork = fork;
        self.core.meta.signature = Some(signature);
        Ok(Applied {
            upgraded: false,
            length,
            byte_length: batch.byte_length,
            ..Applied::default()
        })
    }
}

impl Store {
    /// Runs every operation of `batch`, then makes all of them durable with one redb commit
    /// (after fdatasync of the data files written). All or nothing.
    pub fn commit(&self, batch: Batch) -> Result<Vec<Applied>> {
        super::guarded(|| self.commit_inner(batch, true)).inspect_err(|e| self.note_failure(e))
    }

    /// Runs every operation of `batch` in one commit that readers see at once but that is
    /// made durable only by the next [`Store::flush`] or durable [`Store::commit`]. A crash
    /// before that may lose lazy commits, whole, never half of one: the replay at open
    /// applies whole log records only, and only those whose bytes reached the disk.
    pub fn commit_lazy(&self, batch: Batch) -> Result<Vec<Applied>> {
        super::guarded(|| self.commit_inner(batch, false)).inspect_err(|e| self.note_failure(e))
    }

    /// Verifies and applies a proof like [`Store::apply_proof`], visible to readers at once
    /// but durable only at the next [`Store::flush`] (or durable commit): a replication
    /// session applying many proofs in a row pays one fsync per burst instead of one each.
    pub fn apply_proof_lazy(&self, key: &[u8; 32], proof: Proof) -> Result<Applied> {
        let mut b = Batch::new();
        b.apply(*key, proof);
        super::single(self.commit_lazy(b)?)
    }

    /// Makes every lazy commit durable with a checkpoint: fdatasync of the data files written
    /// since the last one, then a durable redb commit; the log starts over. Nothing to do (no
    /// fsync) when there were none. A flush ends a burst of lazy commits that no durable
    /// commit followed (a durable commit syncs them with its log record), and a checkpoint
    /// there rather than a log sync keeps redb's non-durable backlog short: each redb commit
    /// costs more the more non-durable ones precede it (a lazy append 106 → 126 µs over
    /// 4,000), and with log syncs alone a 100 MiB site replicated ~15 % slower.
    pub fn flush(&self) -> Result<()> {
        if !self.shared.lazy_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        super::guarded(|| {
            let _writer = self.writer_lock();
            if !self.shared.lazy_pending.load(Ordering::Acquire) {
                return Ok(());
            }
            self.shared.checkpoint_locked(&mut self.shared.wal())
        })
        .inspect_err(|e| self.note_failure(e))
    }

    fn commit_inner(&self, batch: Batch, durable: bool) -> Result<Vec<Applied>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Writers take turns; readers only wait for the final swap, not for the fsyncs.
        let _writer = self.writer_lock();
        let rtx = self.begin_read()?;
        let nodes_table = rtx.open_table(NODES).map_err(db_err)?;
        let mut staged: HashMap<[u8; 32], Staged> = HashMap::new();
        let mut out = Vec::with_capacity(batch.ops.len());
        for op in &batch.ops {
            let key = match op {
                Op::Append(k, _) | Op::Truncate(k, _) | Op::Apply(k, _) => *k,
            };
            let st = match staged.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let core = self
                        .lock()
                        .cores
                        .get(&key)
                        .ok_or(Error::UnknownCore)?
                        .clone();
                    let committed_end = core.meta.data_end;
                    v.insert(Staged {
                        embedded: false,
                        core,
                        committed_end,
                        pending: Vec::new(),
                        nodes: HashMap::new(),
                        blocks: Vec::new(),
                        cut: None,
                    })
                }
            };
            let db = DbNodes {
                table: &nodes_table,
                id: st.core.id,
            };
            out.push(match op {
                Op::Append(_, blocks) => st.append(blocks)?,
                Op::Truncate(_, length) => st.truncate(&db, *length)?,
                Op::Apply(_, proof) => st.apply(&db, proof)?,
            });
        }
        // 1. block bytes past the committed end: small batches' also go in the log record,
        //    others are fdatasync'ed before the log sync that makes the record durable
        let mut wal = self.shared.wal();
        let embed = if durable { EMBED_DURABLE } else { EMBED_LAZY };
        for st in staged.values_mut() {
            if st.pending.is_empty() {
                continue;
            }
            let f = &st.core.file;
            f.write_all_at(&st.pending, st.committed_end)
                .map_err(|e| crate::error::Error::io(&st.core.path, e))?;
            st.embedded = st.pending.len() <= embed;
            if st.embedded {
                wal.wrote(&st.core.path, &st.core.file);
            } else {
                // synced before the log sync (or checkpoint) that makes the record durable
                let mut unsynced = self
                    .shared
                    .unsynced
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                super::durability::add_once(&mut unsynced, &st.core.path, &st.core.file);
            }
            st.core.meta.data_end = st.committed_end + st.pending.len() as u64;
        }
        // 2. every core's nodes, block locations and record, in one redb transaction that
        //    commits after the log record (redb is made durable by checkpoints)
        let metas = staged
            .values()
            .map(|st| st.core.meta.encode())
            .collect::<Result<Vec<_>>>()?;
        let nodes: Vec<Vec<crate::tree::Node>> = staged
            .values()
            .map(|st| st.nodes.values().copied().collect())
            .collect();
        let changes: Vec<ChangeRef<'_>> = staged
            .values()
            .zip(&metas)
            .zip(&nodes)
            .map(|((st, meta), nodes)| ChangeRef {
                id: st.core.id,
                cut: st.cut,
                meta,
                nodes,
                blocks: &st.blocks,
                bytes: st
                    .embedded
                    .then_some((st.committed_end, st.pending.as_slice())),
            })
            .collect();
        let mut wtx = self.begin_write()?;
        wtx.set_durability(redb::Durability::None);
        {
            let mut nodes = wtx.open_table(NODES).map_err(db_err)?;
            let mut blocks = wtx.open_table(BLOCKS).map_err(db_err)?;
            let mut metas = wtx.open_table(META).map_err(db_err)?;
            for c in &changes {
                wal::write_rows(&mut nodes, &mut blocks, &mut metas, c)?;
            }
        }
        // 3. the log record: a durable commit syncs earlier bytes, then the log, once
        if durable {
            self.shared.sync_unsynced()?;
        }
        let (end, seq) = (wal.end, wal.seq);
        wal.append(seq + 1, &changes, durable)?;
        if let Err(e) = wtx.commit() {
            let _ = wal.retract(end, seq);
            let e = db_err(e);
            self.note_failure(&e);
            return Err(e);
        }
        drop(changes);
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        if durable {
            self.shared.log_syncs.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.lazy_pending.store(!durable, Ordering::Release);
        // 4. only now does memory change
        {
            let mut state = self.lock();
            for (key, st) in staged {
                state.cores.insert(key, st.core);
            }
        }
        // 5. a long log is checkpointed; a failure here loses nothing (the log holds it all)
        let options = &self.shared.options;
        if wal.end >= options.checkpoint_bytes || wal.records >= options.checkpoint_commits {
            let _ = self.shared.checkpoint_locked(&mut wal);
        }
        Ok(out)
    }
}
