//! Test helper: a Merkle-free fake core. Block `i` of core `seed` has known content and the
//! "signature" of length `n` is a known function of (seed, n), so `apply` can "verify" without
//! a tree. Shared through `Arc<Mutex<_>>` like a real core replicated on many connections.

use hypercore_wire::store::{Applied, CoreInfo, CoreStore, StoreError};
use hypercore_wire::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The content of block `index` of core `seed`.
pub fn block(seed: u64, index: u64) -> Vec<u8> {
    format!("core {seed} block {index}").into_bytes()
}

fn signature(seed: u64, length: u64) -> Vec<u8> {
    format!("signed {seed} {length}").into_bytes()
}

/// A fake core.
#[derive(Debug, Default)]
pub struct FakeCore {
    pub seed: u64,
    pub length: u64,
    pub blocks: BTreeMap<u64, Vec<u8>>,
    /// Serve corrupted blocks (a forging peer).
    pub evil: bool,
    /// Blocks served (index → times).
    pub served: BTreeMap<u64, u32>,
    /// Proofs built for the remote's requests (storage reads).
    pub proofs_built: u64,
    /// Blocks applied.
    pub applied: Vec<u64>,
    /// Track claims (a core shared by several sessions fetches each block once).
    pub claiming: bool,
    /// Blocks claimed now.
    pub claims: std::collections::BTreeSet<u64>,
    /// Claims released that were never taken (must stay 0).
    pub bad_releases: u32,
}

/// A handle implementing [`CoreStore`].
#[derive(Debug, Clone)]
pub struct Fake(pub Arc<Mutex<FakeCore>>);

impl Fake {
    /// A core of `seed` holding blocks `0..held` with signed length `length`.
    pub fn new(seed: u64, length: u64, held: impl IntoIterator<Item = u64>) -> Self {
        let blocks = held.into_iter().map(|i| (i, block(seed, i))).collect();
        Fake(Arc::new(Mutex::new(FakeCore {
            seed,
            length,
            blocks,
            ..FakeCore::default()
        })))
    }

    /// The core's key (derived from the seed).
    pub fn key(&self) -> [u8; 32] {
        let seed = self.lock().seed;
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&seed.to_le_bytes());
        k[31] = 0x77;
        k
    }

    /// Locks the core.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeCore> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `n` blocks.
    pub fn append(&self, n: u64) {
        let mut c = self.lock();
        for _ in 0..n {
            let i = c.length;
            let b = block(c.seed, i);
            c.blocks.insert(i, b);
            c.length += 1;
        }
    }

    /// Boxed for a session.
    pub fn boxed(&self) -> Box<dyn CoreStore + Send> {
        Box::new(self.clone())
    }
}

impl CoreStore for Fake {
    fn info(&self) -> CoreInfo {
        let c = self.lock();
        let mut contig = 0;
        while c.blocks.contains_key(&contig) {
            contig += 1;
        }
        CoreInfo {
            length: c.length,
            fork: 0,
            contiguous_length: contig,
            has_manifest: false,
        }
    }

    fn has(&self, index: u64) -> bool {
        self.lock().blocks.contains_key(&index)
    }

    fn proof_for(&mut self, request: &Request) -> Result<Option<Data>, StoreError> {
        let mut c = self.lock();
        c.proofs_built += 1;
        let mut data = Data {
            request: request.id,
            fork: request.fork,
            ..Data::default()
        };
        if let Some(u) = &request.upgrade {
            let end = u.start.saturating_add(u.length);
            if end > c.length || u.length == 0 {
                return Err(StoreError::Invalid("bad upgrade".into()));
            }
            data.upgrade = Some(DataUpgrade {
                start: u.start,
                length: u.length,
                signature: Some(signature(c.seed, end)),
                ..DataUpgrade::default()
            });
        }
        if let Some(b) = &request.block {
            let Some(value) = c.blocks.get(&b.index).cloned() else {
                return Ok(None);
            };
            *c.served.entry(b.index).or_default() += 1;
            let value = if c.evil { b"forged".to_vec() } else { value };
            data.block = Some(DataBlock {
                index: b.index,
                value,
                nodes: vec![],
            });
        }
        Ok(Some(data))
    }

    fn try_claim(&mut self, index: u64) -> bool {
        let mut c = self.lock();
        !c.claiming || c.claims.insert(index)
    }

    fn release(&mut self, index: u64) {
        let mut c = self.lock();
        if c.claiming && !c.claims.remove(&index) {
            c.bad_releases += 1;
        }
    }

    fn apply(&mut self, data: &Data) -> Result<Applied, StoreError> {
        let mut c = self.lock();
        let mut length = c.length;
        if let Some(u) = &data.upgrade {
            let end = u.start.saturating_add(u.length);
            if u.signature.as_deref() != Some(&signature(c.seed, end)[..]) {
                return Err(StoreError::Invalid("bad signature".into()));
            }
            length = length.max(end);
        }
        let mut applied = Applied::default();
        if let Some(b) = &data.block {
            if b.index >= length || b.value != block(c.seed, b.index) {
                return Err(StoreError::Invalid("block does not verify".into()));
            }
            applied.block = Some(b.index);
            applied.block_bytes = b.value.len() as u64;
            c.blocks.insert(b.index, b.value.clone());
            c.applied.push(b.index);
        }
        c.length = length;
        applied.length = length;
        Ok(applied)
    }
}
