//! The transport trait: how the daemon reaches the HyperDHT, whatever implements it.
//!
//! Narrow on purpose: join/leave topics, accept connections; a connection is a stream of
//! decrypted secret-stream messages (what protomux reads and writes in Node) plus the facts the
//! hypercore protocol needs (remote public key, handshake hash, initiator flag). The Node bridge
//! ([`crate::HyperswarmBridge`]) implements it today; a native Rust HyperDHT transport can
//! replace it without touching the replication code above it.

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, Stream};
use std::sync::Arc;

/// A 32-byte HyperDHT topic (for hypercore: a core's discovery key).
pub type Topic = [u8; 32];
/// An ed25519 public key (a peer's hyperswarm identity).
pub type PublicKey = [u8; 32];
/// The Noise handshake hash of a secret-stream (64 bytes: BLAKE2b-512).
pub type HandshakeHash = [u8; 64];

/// How to join a topic: announce ourselves (`server`), look others up (`client`), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JoinMode {
    pub server: bool,
    pub client: bool,
}

impl JoinMode {
    /// Announce and look up.
    pub const BOTH: JoinMode = JoinMode {
        server: true,
        client: true,
    };
    /// Announce only: peers connect to us.
    pub const SERVER: JoinMode = JoinMode {
        server: true,
        client: false,
    };
    /// Look up only: we connect to peers.
    pub const CLIENT: JoinMode = JoinMode {
        server: false,
        client: true,
    };
}

/// The facts of an established, encrypted connection.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The peer's public key (its hyperswarm identity), authenticated by the handshake.
    pub remote_public_key: PublicKey,
    /// The secret-stream handshake hash; hypercore's capabilities are keyed by it.
    pub handshake_hash: HandshakeHash,
    /// Whether we started the Noise handshake (the dialing side).
    pub is_initiator: bool,
}

impl std::fmt::Debug for ConnectionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionInfo")
            .field("remote_public_key", &hex::encode(self.remote_public_key))
            .field("handshake_hash", &hex::encode(self.handshake_hash))
            .field("is_initiator", &self.is_initiator)
            .finish()
    }
}

/// Why a transport request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The transport cannot run here (e.g. Node is missing); `fix` is the command that fixes it.
    #[error("the hypercore network is unavailable: {reason} (fix: {fix})")]
    Unavailable { reason: String, fix: String },
    /// The HyperDHT side refused or failed the request.
    #[error("{0}")]
    Failed(String),
    /// The transport stopped (or restarted) before the request completed.
    #[error("the transport stopped: {0}")]
    Stopped(String),
}

/// Why a connection cannot carry messages (any more).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// Closed, by either side or because the transport stopped; the reason says which.
    #[error("connection closed: {0}")]
    Closed(String),
    /// A message longer than the transport can carry in one piece.
    #[error("message of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
}

/// One encrypted connection to a HyperDHT peer, as a stream of messages.
///
/// Every method takes `&self`, so one task can send while another receives (wrap the box in an
/// `Arc`). Backpressure both ways: `send` waits while the peer is not taking messages, and
/// messages not yet received hold the peer back.
#[async_trait]
pub trait Connection: Send + Sync {
    /// The handshake facts.
    fn info(&self) -> &ConnectionInfo;
    /// Sends one message (delivered to the peer as one secret-stream message).
    async fn send(&self, msg: Bytes) -> Result<(), ConnectionError>;
    /// The next message; `Err(Closed(reason))` once the connection is closed and drained.
    async fn recv(&self) -> Result<Bytes, ConnectionError>;
    /// Closes the connection (messages already sent are flushed first).
    async fn close(&self, reason: &str);
}

/// Reaches peers by topic.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Joins `topic`; returns once the first announce/lookup is done. Joining again changes
    /// the mode. The topic stays joined across restarts of the transport until `leave`.
    async fn join(&self, topic: Topic, mode: JoinMode) -> Result<(), TransportError>;
    /// Leaves `topic` (no new connections from it; open connections stay).
    async fn leave(&self, topic: Topic) -> Result<(), TransportError>;
    /// The next incoming or outgoing connection; `None` once the transport is shut down.
    async fn accept(&self) -> Option<Box<dyn Connection>>;
    /// Our own public key on the network.
    fn public_key(&self) -> PublicKey;
}

/// The stream of connections of a transport (`accept` in a loop).
pub fn incoming<T: Transport + ?Sized + 'static>(
    transport: Arc<T>,
) -> impl Stream<Item = Box<dyn Connection>> {
    futures::stream::unfold(transport, |t| async move {
        let c = t.accept().await?;
        Some((c, t))
    })
}

/// The messages of a connection as a `Stream`: each `recv`, ending after the first error
/// (the close, with its reason). For protocol stacks that want `Stream + Sink` (e.g. an
/// adapter to `hypercore-protocol`'s cipher interface).
pub fn message_stream(
    conn: Arc<dyn Connection>,
) -> impl Stream<Item = Result<Bytes, ConnectionError>> + Send {
    futures::stream::unfold(Some(conn), |c| async move {
        let c = c?;
        match c.recv().await {
            Ok(m) => Some((Ok(m), Some(c))),
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// The sending half of a connection as a `Sink` (each item is one `send`).
pub fn message_sink(conn: Arc<dyn Connection>) -> impl Sink<Bytes, Error = ConnectionError> + Send {
    futures::sink::unfold(conn, |c, msg: Bytes| async move {
        c.send(msg).await?;
        Ok(c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio::sync::{mpsc, Mutex};

    /// A loopback connection: what is sent comes back.
    struct Loop {
        info: ConnectionInfo,
        tx: mpsc::UnboundedSender<Bytes>,
        rx: Mutex<mpsc::UnboundedReceiver<Bytes>>,
    }

    #[async_trait]
    impl Connection for Loop {
        fn info(&self) -> &ConnectionInfo {
            &self.info
        }
        async fn send(&self, msg: Bytes) -> Result<(), ConnectionError> {
            self.tx
                .send(msg)
                .map_err(|_| ConnectionError::Closed("gone".into()))
        }
        async fn recv(&self) -> Result<Bytes, ConnectionError> {
            let m = self.rx.lock().await.recv().await;
            m.filter(|m| !m.is_empty())
                .ok_or_else(|| ConnectionError::Closed("end".into()))
        }
        async fn close(&self, _: &str) {}
    }

    #[tokio::test]
    async fn stream_and_sink_adapters_carry_messages_and_end_with_the_reason() {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn: Arc<dyn Connection> = Arc::new(Loop {
            info: ConnectionInfo {
                remote_public_key: [1; 32],
                handshake_hash: [2; 64],
                is_initiator: true,
            },
            tx,
            rx: Mutex::new(rx),
        });
        let mut sink = Box::pin(message_sink(conn.clone()));
        for m in ["a", "bb", ""] {
            sink.send(Bytes::from(m)).await.unwrap();
        }
        let got: Vec<_> = message_stream(conn).collect().await;
        assert_eq!(
            got,
            vec![
                Ok(Bytes::from("a")),
                Ok(Bytes::from("bb")),
                Err(ConnectionError::Closed("end".into()))
            ]
        );
    }
}
