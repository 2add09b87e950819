//! The seam between the replication engine ([`super::engine`]) and the transport under it.
//! A [`Link`] is an authenticated connection to one peer that carries independent
//! bidirectional byte streams; replication needs nothing else (plus a secret both ends share,
//! which binds capabilities to this link). Today the one implementation is an iroh QUIC
//! [`Connection`]; the hypercore network's transport (secret-stream over UDX, multiplexed
//! channels) plugs in here by implementing the same trait.

use std::future::Future;

use iroh::endpoint::{Connection, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite};

use super::capability;
use crate::model::keys::Key;

/// An authenticated, multiplexed connection to one peer.
pub trait Link: Clone + Send + Sync + 'static {
    type Send: AsyncWrite + Unpin + Send + 'static;
    type Recv: AsyncRead + Unpin + Send + 'static;

    /// The peer's id, as the transport authenticated it.
    fn remote(&self) -> Key;
    /// 32 bytes both ends derive from this very link (never sent over it); None if the
    /// transport cannot provide them, and then nothing may be replicated over the link.
    fn shared_secret(&self) -> Option<[u8; 32]>;
    /// Opens a stream to the peer; None once the link is closed.
    fn open_stream(&self) -> impl Future<Output = Option<(Self::Send, Self::Recv)>> + Send;
    /// The next stream the peer opens; None once the link is closed.
    fn accept_stream(&self) -> impl Future<Output = Option<(Self::Send, Self::Recv)>> + Send;
    /// Closes the link with an application code ([`super::node::close_code`]) and a reason.
    fn close(&self, code: u32, reason: &str);
    fn is_closed(&self) -> bool;
    /// Resolves once the link is closed (by either end, or with its endpoint). Every task
    /// working for a link ends with it: a task that outlives its link keeps the endpoint's
    /// socket bound, and a restarted daemon then cannot listen on its address.
    fn closed(&self) -> impl Future<Output = ()> + Send;
}

impl Link for Connection {
    type Send = SendStream;
    type Recv = RecvStream;

    fn remote(&self) -> Key {
        Key(*self.remote_id().as_bytes())
    }

    /// TLS exported keying material (RFC 5705), the same at both ends.
    fn shared_secret(&self) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        self.export_keying_material(&mut out, capability::EXPORTER_LABEL, b"")
            .ok()?;
        Some(out)
    }

    async fn open_stream(&self) -> Option<(SendStream, RecvStream)> {
        self.open_bi().await.ok()
    }

    async fn accept_stream(&self) -> Option<(SendStream, RecvStream)> {
        self.accept_bi().await.ok()
    }

    /// Closes the connection unless it is closed already. QUIC's close on a closed connection
    /// sends nothing, but noq then records "closed locally" over the peer's reason, and
    /// whoever reads the reason next (`keep_connected`, deciding whether the peer banned us)
    /// would read ours: a banned peer was redialled after 250 ms instead of after its ban.
    fn close(&self, code: u32, reason: &str) {
        if self.close_reason().is_some() {
            return;
        }
        let reason: String = reason.chars().take(200).collect();
        Connection::close(self, code.into(), reason.as_bytes());
    }

    fn is_closed(&self) -> bool {
        self.close_reason().is_some()
    }

    async fn closed(&self) {
        Connection::closed(self).await;
    }
}
