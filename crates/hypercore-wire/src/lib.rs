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
//!
//! Driving a session (one per connection; the transport gives whole frames, the initiator flag
//! and the handshake hash):
//!
//! ```text
//! let mut s = Session::new(SessionConfig { is_initiator, handshake_hash, limits: Limits::default(), push: false })?;
//! s.add_core(key, store, CoreOptions { download: true })?;      // for every core to replicate
//! loop {
//!     while let Some(frame) = s.poll_transmit() { transport.send(frame) }   // as it accepts
//!     while let Some(event) = s.poll_event() { /* ChannelRequested → add_core / reject_core,
//!                                                 Downloaded/Upgraded → core_updated on the
//!                                                 core's other sessions, CaughtUp, … */ }
//!     select! {
//!         frame = transport.recv() => if let Err(reason) = s.handle_frame(&frame) { close; ban? }
//!         _ = tick(10 s) => s.on_timer(),
//!         _ = core grew locally => s.core_updated(&key),
//!     }
//! }
//! ```

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
