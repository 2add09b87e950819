//! Replication counters for `/metrics`: block bytes and blocks served and received, proofs
//! rejected. Kept by the replication engine ([`super::engine`]) from the sessions' events:
//! a block counts as received once it is verified and stored, as served once its proof is
//! sent; a channel closed for an invalid proof counts one rejected proof.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters of one node's replication.
#[derive(Debug, Default)]
pub struct ReplicationCounters {
    pub bytes_served: AtomicU64,
    pub blocks_served: AtomicU64,
    pub bytes_received: AtomicU64,
    pub blocks_received: AtomicU64,
    pub proofs_rejected: AtomicU64,
}

impl ReplicationCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
