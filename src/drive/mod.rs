//! Site drives in the Node hyperdrive layout (hyperdrive 11 on hypercore 10).
//!
//! A site is two hypercores:
//! - the **db core**, a Hyperbee B-tree: block 0 is a protobuf `Header` whose
//!   `metadata.contentFeed` is the blobs core key; every later block is a protobuf
//!   `Node { index, key, value }` (see [`messages`]). Keys are `"files" 0x00 "/path"`,
//!   values are JSON [`Entry`]s.
//! - the **blobs core**, Hyperblobs: file bytes in 64 KiB blocks, every file starting at a
//!   fresh block (see [`blobs`]).
//!
//! A *version* is a db core length: reading at version `V` uses the tree whose root is
//! level 0 of block `V - 1`'s index (versions below 2 are the empty drive).
//!
//! This module owns the error type and the [`BlockSource`] abstraction; the tree reader
//! lives in [`tree`], the copy-on-write tree writer in [`bee`], and folder publishing in
//! [`publish`]. Reading never panics and never loops on hostile blocks: every pointer is
//! range-checked, descent depth is bounded and full scans refuse to visit a node twice.

pub mod bee;
pub mod blobs;
pub mod messages;
pub mod publish;
pub mod tree;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hostile;

use std::future::Future;
use std::path::PathBuf;

pub use blobs::{blob_blocks, read_file, read_range, BLOCK_SIZE};
pub use messages::{
    decode_entry, decode_header, encode_entry, encode_header, file_key, key_path, BlobRef, Entry,
    Header, FILES_PREFIX,
};
pub use publish::{publish, PublishReport};
pub use tree::{find_entry, get_entry, list, normalize_path, DirEntry};

/// Which of a drive's two cores an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreKind {
    /// The Hyperbee (metadata) core.
    Db,
    /// The Hyperblobs (content) core.
    Blobs,
}

impl std::fmt::Display for CoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CoreKind::Db => "db",
            CoreKind::Blobs => "blobs",
        })
    }
}

/// Everything that can go wrong reading or writing a drive.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// Block 0 of the db core is not a Hyperbee header.
    #[error("not a hyperdrive: {0}")]
    NotHyperdrive(String),
    /// A block could be read but its content is invalid (bad protobuf, bad JSON, a tree
    /// pointer outside the version, a cycle, a tree too deep, ...).
    #[error("corrupt {core} block {index}: {reason}")]
    Corrupt {
        core: CoreKind,
        index: u64,
        reason: String,
    },
    /// The block is part of the core but not held locally (yet): retry after syncing.
    #[error("{core} block {index} is not available locally")]
    Missing { core: CoreKind, index: u64 },
    /// A version beyond the db core's length was asked for.
    #[error("version {version} is beyond the db core length {length}")]
    VersionOutOfRange { version: u64, length: u64 },
    /// The blobs core passed to `publish` is not the one the db header names.
    #[error("the blobs core key does not match the db header's content feed")]
    ContentFeedMismatch,
    /// A path that cannot be stored (not UTF-8, contains a NUL, ...).
    #[error("bad path {path:?}: {reason}")]
    BadPath { path: PathBuf, reason: String },
    /// Local file system error while publishing.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Error from the hypercore engine.
    #[error("hypercore: {0}")]
    Engine(#[from] hypercore_engine::Error),
    /// The block source could not read a block (its storage failed).
    #[error("reading a block: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl DriveError {
    pub(crate) fn corrupt(core: CoreKind, index: u64, reason: impl Into<String>) -> Self {
        DriveError::Corrupt {
            core,
            index,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DriveError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Random access to the blocks of one core. Implemented for [`EngineCore`] (a core of an
/// engine store); the store implements it for its shared cores (`store::CoreReader`).
pub trait BlockSource {
    /// Number of blocks in the core (its length, whether or not they are held locally).
    fn length(&self) -> u64;
    /// Block `index`, or `None` when it is not held locally (yet).
    fn block(
        &mut self,
        index: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, DriveError>> + Send;
}

/// One core of a `hypercore_engine::Store`, read directly (each read verifies the block
/// against its tree node; it blocks briefly on disk I/O).
#[derive(Clone, Debug)]
pub struct EngineCore {
    pub store: hypercore_engine::Store,
    pub key: [u8; 32],
}

impl EngineCore {
    pub fn new(store: hypercore_engine::Store, key: [u8; 32]) -> EngineCore {
        EngineCore { store, key }
    }
}

impl BlockSource for EngineCore {
    fn length(&self) -> u64 {
        self.store.info(&self.key).map_or(0, |i| i.length)
    }

    async fn block(&mut self, index: u64) -> Result<Option<Vec<u8>>, DriveError> {
        if index >= self.length() {
            return Ok(None);
        }
        Ok(self.store.get(&self.key, index)?)
    }
}

impl<S: BlockSource + Send> BlockSource for &mut S {
    fn length(&self) -> u64 {
        (**self).length()
    }

    fn block(
        &mut self,
        index: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, DriveError>> + Send {
        (**self).block(index)
    }
}

/// Fetches a block that must be present, mapping `None` to [`DriveError::Missing`].
pub(crate) async fn need_block<S: BlockSource>(
    src: &mut S,
    core: CoreKind,
    index: u64,
) -> Result<Vec<u8>, DriveError> {
    src.block(index)
        .await?
        .ok_or(DriveError::Missing { core, index })
}
