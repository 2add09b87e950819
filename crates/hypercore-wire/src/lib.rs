//! hypercore-wire: Hypercore's replication protocol as Node's hypercore 11 speaks it, in pure
//! Rust with no I/O.
//!
//! - [`encoding`]: compact-encoding primitives.
//! - [`mux`]: protomux frames (batches, open/reject/close, channel messages).
//! - [`messages`] and [`manifest`]: the `hypercore/alpha` channel's handshake and messages.
//! - [`caps`]: the replication capability and the discovery key.
//! - [`framing`]: 3-byte length prefixes for byte streams (TCP, QUIC) that carry frames.
//! - [`fuzzing`]: entry points for a libFuzzer harness.
//! - [`session`]: a per-connection state machine (frames in, frames and events out) that serves
//!   and fetches many cores through the [`store::CoreStore`] trait.

pub mod caps;
pub mod encoding;
pub mod error;
pub mod framing;
pub mod fuzzing;
pub mod manifest;
pub mod messages;
pub mod mux;
pub mod session;
pub mod store;

pub use error::DecodeError;
pub use manifest::{Manifest, Prologue, Signer};
pub use messages::{
    Bitfield, Cancel, Data, DataBlock, DataHash, DataSeek, DataUpgrade, Extension, Handshake,
    Message, NoData, Range, Request, RequestBlock, RequestSeek, RequestUpgrade, Sync, TreeNode,
    Want,
};

/// The protomux protocol name of a hypercore channel.
pub const PROTOCOL: &str = "hypercore/alpha";
