//! [`EngineCore`]: one core of a `hypercore_engine::Store` as the wire's [`CoreStore`]. Every
//! proof a peer sends is verified by the engine before anything is stored; claims (which block
//! some connection is fetching) are shared by every connection replicating the core, so each
//! block is fetched once.

use crate::convert::{data_to_engine, proof_to_wire, request_to_engine};
use crate::hooks::{DefaultHooks, Hooks};
use hypercore_engine::{Error as EngineError, Store};
use hypercore_wire::store::{Applied, CoreInfo, CoreStore, StoreError};
use hypercore_wire::{Data, Request};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Blocks some connection has in flight, per core (shared by the core's sessions).
pub(crate) type Claims = Arc<Mutex<HashSet<u64>>>;

/// One core of an engine store, as a replication session sees it.
pub struct EngineCore {
    store: Store,
    key: [u8; 32],
    claims: Claims,
    hooks: Arc<dyn Hooks>,
    /// Answer the remote's requests (false: a core we only fetch on this connection).
    serve: bool,
    /// The claims this channel holds: released when it ends (a connection that dies with
    /// requests in flight must not leave their blocks claimed, unfetchable, forever).
    mine: HashSet<u64>,
}

impl Drop for EngineCore {
    fn drop(&mut self) {
        if self.mine.is_empty() {
            return;
        }
        if let Ok(mut c) = self.claims.lock() {
            for i in &self.mine {
                c.remove(i);
            }
        }
    }
}

impl EngineCore {
    /// Core `key` of `store` (it must exist in the store: `open_replica` or `create_writer`).
    pub fn new(store: Store, key: [u8; 32]) -> Self {
        Self::with_claims(store, key, Claims::default(), Arc::new(DefaultHooks))
    }

    pub(crate) fn with_claims(
        store: Store,
        key: [u8; 32],
        claims: Claims,
        hooks: Arc<dyn Hooks>,
    ) -> Self {
        Self {
            store,
            key,
            claims,
            hooks,
            serve: true,
            mine: HashSet::new(),
        }
    }

    /// Answers no request of the remote (it may not be served this core).
    pub(crate) fn fetch_only(mut self) -> Self {
        self.serve = false;
        self
    }
}

/// Whose fault an engine error is: the peer's (`Invalid`: the channel is closed) or ours
/// (`Storage`: downloading pauses, the peer is not blamed).
pub fn classify(e: EngineError) -> StoreError {
    match e {
        EngineError::Decode(_)
        | EngineError::OutOfRange(_)
        | EngineError::InvalidProof(_)
        | EngineError::InvalidRequest(_)
        | EngineError::InvalidManifest(_)
        | EngineError::Unsupported(_) => StoreError::Invalid(e.to_string()),
        EngineError::Stale(_)
        | EngineError::NotWritable
        | EngineError::UnknownCore
        | EngineError::CoreExists
        | EngineError::Corrupt(_)
        | EngineError::Io { .. }
        | EngineError::Db(_) => StoreError::Storage(e.to_string()),
    }
}

impl CoreStore for EngineCore {
    fn info(&self) -> CoreInfo {
        match self.store.info(&self.key) {
            Ok(i) => CoreInfo {
                length: i.length,
                fork: i.fork,
                contiguous_length: i.contiguous_length,
                has_manifest: !i.compat && i.manifest.is_some(),
            },
            Err(_) => CoreInfo::default(),
        }
    }

    fn has(&self, index: u64) -> bool {
        self.store.has(&self.key, index).unwrap_or(false)
    }

    fn proof_for(&mut self, request: &Request) -> Result<Option<Data>, StoreError> {
        if !self.serve {
            return Ok(None);
        }
        if let Some(b) = &request.block {
            if !self.has(b.index) {
                return Ok(None);
            }
        }
        match self
            .store
            .create_proof(&self.key, &request_to_engine(request))
        {
            Ok(proof) => Ok(Some(proof_to_wire(request.id, proof))),
            Err(e) => Err(classify(e)),
        }
    }

    /// Verified and committed lazily: durable at the connection's next flush (after the
    /// frames that arrived together), before anyone is told it is stored.
    fn apply(&mut self, data: &Data) -> Result<Applied, StoreError> {
        let block_bytes = data.block.as_ref().map_or(0, |b| b.value.len() as u64);
        self.hooks
            .may_store(&self.key, block_bytes)
            .map_err(StoreError::Storage)?;
        match self.store.apply_proof_lazy(&self.key, data_to_engine(data)) {
            Ok(a) => Ok(Applied {
                block: a.block_stored,
                block_bytes: if a.block_stored.is_some() {
                    block_bytes
                } else {
                    0
                },
                length: a.length,
            }),
            // A proof overtaken by another connection's: nothing to store, nobody to blame.
            Err(EngineError::Stale(_)) => Ok(Applied {
                block: None,
                block_bytes: 0,
                length: self.info().length,
            }),
            Err(e) => Err(classify(e)),
        }
    }

    fn missing_nodes(&self, index: u64) -> u64 {
        self.store.missing_nodes(&self.key, index).unwrap_or(0)
    }

    fn try_claim(&mut self, index: u64) -> bool {
        let claimed = match self.claims.lock() {
            Ok(mut c) => c.insert(index),
            Err(_) => true,
        };
        if claimed {
            self.mine.insert(index);
        }
        claimed
    }

    fn release(&mut self, index: u64) {
        if self.mine.remove(&index) {
            if let Ok(mut c) = self.claims.lock() {
                c.remove(&index);
            }
        }
    }
}
