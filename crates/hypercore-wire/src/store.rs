//! The storage side of replication, as the session sees it: [`CoreStore`] is implemented by the
//! storage engine (proof creation and verification live there, not here).

use crate::messages::{Data, Request};
use thiserror::Error;

/// What a core holds, as announced to peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreInfo {
    /// Signed length.
    pub length: u64,
    /// Fork id.
    pub fork: u64,
    /// Blocks `0..contiguous_length` are all held.
    pub contiguous_length: u64,
    /// The core has a manifest and is not a compat core (`sync.hasManifest`).
    pub has_manifest: bool,
}

/// What [`CoreStore::apply`] stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// The block stored, if the data carried one.
    pub block: Option<u64>,
    /// Bytes of that block.
    pub block_bytes: u64,
    /// The core's length after applying (grows with a verified upgrade).
    pub length: u64,
}

/// Why the store could not serve or apply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// The peer's fault: a proof that does not verify, a request that makes no sense. Nothing
    /// was stored.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Our fault (disk full, I/O error): the peer is not blamed.
    #[error("storage: {0}")]
    Storage(String),
}

/// One core's storage, as replication needs it. Implemented by the storage engine (often a
/// shared handle to a core also replicated on other connections). `info` and `has` are called
/// often (per message, per block considered) and should be cheap.
pub trait CoreStore {
    /// Length, fork and what is held.
    fn info(&self) -> CoreInfo;

    /// True if block `index` is held (the local bitfield).
    fn has(&self, index: u64) -> bool;

    /// Answers a remote request: the data with its proof, `Ok(None)` when the block is not
    /// held. Only called for requests on the core's current fork.
    fn proof_for(&mut self, request: &Request) -> Result<Option<Data>, StoreError>;

    /// Verifies `data` against the core's key (and the request it answers) and stores it.
    /// Must store nothing unless every proof verifies.
    fn apply(&mut self, data: &Data) -> Result<Applied, StoreError>;

    /// Tree nodes already held for block `index` (`request.block.nodes`); 0 asks for a full
    /// proof and is always correct.
    fn missing_nodes(&self, _index: u64) -> u64 {
        0
    }

    /// Claims block `index` before it is requested from a peer; `false` if another connection
    /// already has it in flight (a core shared by several sessions then fetches each block
    /// once). Every successful claim is followed by exactly one [`CoreStore::release`].
    fn try_claim(&mut self, _index: u64) -> bool {
        true
    }

    /// Ends a claim (the block arrived, was refused, timed out, or the channel closed).
    fn release(&mut self, _index: u64) {}

    /// Whether an upgrade proof from `remote_length` can be made (`sync.canUpgrade`).
    fn can_upgrade_from(&self, remote_length: u64) -> bool {
        let info = self.info();
        remote_length == 0 || remote_length < info.length
    }

    /// Bitfield words for blocks `start..start + 32 * words` (bit `i` of word `w` = block
    /// `start + 32 w + i`), as sent in a `bitfield` message.
    fn bitfield_words(&self, start: u64, words: usize) -> Vec<u32> {
        (0..words as u64)
            .map(|w| {
                (0..32u64).fold(0u32, |acc, bit| {
                    let index = start.saturating_add(w * 32 + bit);
                    acc | (u32::from(self.has(index)) << bit)
                })
            })
            .collect()
    }
}
