//! hypercore-engine: dat-mirror's own implementation of the hypercore data model.
//!
//! - Format core (pure): [`flat`] index math, [`crypto`] hashing and signing, [`manifest`]
//!   encoding and key derivation, [`verifier`] signatures (compat, single signer, multisig),
//!   [`tree`] batches, [`proof`] verification and [`prove`] creation.
//! - Storage ([`store`]): block bytes in an append-only data file per core; tree nodes,
//!   block locations, signatures, manifests and lengths in one `redb` database per data
//!   folder, one write transaction per batch.
//!
//! Node's `hypercore` 11 source is the specification; this is an independent implementation.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod crypto;
pub mod encoding;
pub mod error;
pub mod flat;
pub mod manifest;
pub mod proof;
pub mod prove;
pub mod store;
pub mod tree;
pub mod verifier;

pub use crypto::{discovery_key, KeyPair};
pub use error::{Error, Result};
pub use manifest::{Manifest, Prologue, Signer};
pub use proof::{
    DataBlock, DataHash, DataSeek, DataUpgrade, Proof, Request, RequestBlock, RequestSeek,
    RequestUpgrade,
};
pub use store::{
    Applied, Batch, BlockFile, BlockLocation, CoreKind, Info, OpenReport, Repair, Stats, Store,
    StoreOptions,
};
pub use tree::{Node, TreeBatch, TreeHead};
pub use verifier::Verifier;
