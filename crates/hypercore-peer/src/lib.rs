//! hypercore-peer: one hypercore peer, made of dat-mirror's three hypercore crates —
//! `hypercore-engine` (storage, proofs), `hypercore-wire` (the replication protocol's
//! per-connection [`Session`](hypercore_wire::session::Session)) and `hyperswarm-bridge`
//! (connections found on the HyperDHT).
//!
//! - [`EngineCore`] (`core_store.rs`): one engine core as the wire's `CoreStore`; every proof
//!   is verified by the engine before anything is stored.
//! - [`Peer`] (`peer.rs`): the replicated cores and their connections; live updates reach every
//!   connected peer; [`PeerEvent`]s report progress and hostile peers.
//! - [`Hooks`] (`hooks.rs`): the application's decisions — who may replicate which core, room
//!   to store, what to do once fetched data is durable.
//! - [`FrameIo`] (`io.rs`): what a connection runs over — [`SwarmIo`] for a hyperswarm
//!   connection, [`FramedIo`] for a length-framed byte stream (TCP, QUIC).
//! - `runner.rs`: the async loop driving a session (reader and writer tasks, timer, control).
//! - [`drive`]: the blobs key of a hyperdrive.
//!
//! ```no_run
//! # async fn demo(transport: std::sync::Arc<dyn hyperswarm_bridge::Transport>, db: [u8; 32])
//! # -> Result<(), hypercore_peer::PeerError> {
//! use hypercore_peer::{Peer, PeerConfig};
//! let store = hypercore_engine::Store::open("/var/lib/dat-mirror/cores")?;
//! let peer = Peer::new(store, PeerConfig::default());
//! peer.add_core(db, true)?;                                    // fetch and serve
//! peer.join(&*transport, &db, hyperswarm_bridge::JoinMode::BOTH).await?;
//! tokio::spawn({ let p = peer.clone(); async move { p.serve(transport).await } });
//! # Ok(()) }
//! ```

mod convert;
mod core_store;
pub mod drive;
mod error;
mod hooks;
mod io;
mod peer;
mod rate;
mod runner;

pub use convert::{
    data_to_engine, manifest_to_engine, manifest_to_wire, proof_to_wire, request_to_engine,
};
pub use core_store::{classify, EngineCore};
pub use error::PeerError;
pub use hooks::{Access, DefaultHooks, Hooks};
pub use io::{FrameIo, FramedIo, LinkInfo, SwarmIo};
pub use peer::{ConnectionEnd, Peer, PeerConfig, PeerEvent};
