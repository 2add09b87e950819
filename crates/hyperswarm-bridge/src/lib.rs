//! hyperswarm-bridge: how dat-mirror reaches Holepunch's HyperDHT (issue 11, part 3) and how
//! that is configured (part 5).
//!
//! - [`Transport`] / [`Connection`] (`transport.rs`): the narrow trait the replication code
//!   uses — join/leave topics, accept connections; a connection carries decrypted
//!   secret-stream messages plus remote key, handshake hash and initiator flag.
//! - [`HyperswarmBridge`] (`bridge.rs`): the implementation that runs Node's `hyperswarm` in a
//!   supervised child process (`js/bridge.js`) and talks to it over a socketpair inherited as
//!   fd 3 (`frame.rs`: the framed protocol; `session.rs`: one run of the process;
//!   `connection.rs`: a connection with credit-based flow control; `supervisor.rs`: restarts
//!   with back-off; `child.rs`: preflight checks and the spawn).
//! - [`HyperswarmConfig`] (`config.rs`): `[network] hyperswarm`, `hyperswarm_bootstrap`,
//!   their environment variables and flags.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hyperswarm_bridge::{BridgeOptions, HyperswarmBridge, JoinMode, Transport};
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let mut opts = BridgeOptions::new([7; 32]);
//! opts.bootstrap = vec!["127.0.0.1:49737".into()];
//! let bridge = HyperswarmBridge::start(opts, cancel.clone()).await?;
//! bridge.join([1; 32], JoinMode::SERVER).await?;
//! while let Some(conn) = bridge.accept().await {
//!     let msg = conn.recv().await?;
//!     conn.send(msg).await?;
//! }
//! # Ok(()) }
//! ```

mod bridge;
mod child;
pub mod config;
mod connection;
pub mod frame;
mod session;
mod supervisor;
mod transport;

pub use bridge::{
    default_js_dir, Backoff, BridgeError, BridgeEvent, BridgeOptions, BridgeStatus,
    HyperswarmBridge,
};
pub use config::{HyperswarmConfig, HyperswarmFlags, HyperswarmToml};
pub use connection::BridgeConnection;
pub use transport::{
    incoming, message_sink, message_stream, Connection, ConnectionError, ConnectionInfo,
    HandshakeHash, JoinMode, PublicKey, Topic, Transport, TransportError,
};
