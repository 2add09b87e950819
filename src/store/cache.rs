//! The [`BlockCache`]: verified blocks kept in memory, shared by every core of a store.

use std::sync::{Arc, Mutex as StdMutex};

use crate::model::keys::Key;

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

    pub(super) fn get(&self, key: &Key, index: u64) -> Option<Arc<[u8]>> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .get(&(*key, index))
            .cloned()
    }

    pub(super) fn put(&self, key: Key, index: u64, block: Arc<[u8]>) {
        if block.len() > self.budget / 8 {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
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

    pub(super) fn forget(&self, key: &Key) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
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
