//! A node on the network: the iroh endpoint, the live connections (one per remote id), and
//! the cores it wants. Every connection, dialled or accepted, runs the same two things:
//! - *serving*: each stream the peer opens names a core by discovery key; it is served if we
//!   hold it and the [`Policy`] lets this peer read it, else answered `NotFound` (so a peer
//!   cannot tell "absent" from "not for you");
//! - *pulling*: for every wanted core, a stream is opened to the peer and the core is
//!   replicated from it (verified), then followed for new versions.
//!
//! Adding a want starts pulls on every live connection; a new connection starts pulls of
//! every want. Dropping a want stops its pulls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use iroh::endpoint::Connection;
use iroh::Endpoint;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::keys::Key;
use super::replicate::{pull, serve, PullEnd};
use super::store::{Core, CoreStore};
use super::transport::{PeerAddr, ALPN};
use super::wire::{read_message, write_message, Message};

/// Decides which peer may read which core.
pub trait Policy: Send + Sync + 'static {
    fn may_serve(&self, peer: &Key, core: &Key) -> bool;
}

/// Connection events, for status views ("mirror online, last seen").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Connected(Key),
    Disconnected(Key),
}

/// How long a peer has to name the core after opening a stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// When a peer does not have a wanted core, ask again after this long.
const RETRY_NOT_FOUND: Duration = Duration::from_secs(10);

struct ConnEntry {
    conn: Connection,
    pulls: HashMap<Key, JoinHandle<()>>,
}

struct State {
    conns: HashMap<Key, ConnEntry>,
    wants: HashMap<Key, Arc<Core>>,
    last_seen: HashMap<Key, u64>,
}

/// The network side of one dat-mirror process.
pub struct Node {
    endpoint: Endpoint,
    store: Arc<CoreStore>,
    policy: Arc<dyn Policy>,
    state: StdMutex<State>,
    events: broadcast::Sender<PeerEvent>,
}

impl Node {
    /// Starts accepting connections on `endpoint`.
    pub fn start(endpoint: Endpoint, store: Arc<CoreStore>, policy: Arc<dyn Policy>) -> Arc<Node> {
        let (events, _) = broadcast::channel(64);
        let node = Arc::new(Node {
            endpoint,
            store,
            policy,
            state: StdMutex::new(State {
                conns: HashMap::new(),
                wants: HashMap::new(),
                last_seen: HashMap::new(),
            }),
            events,
        });
        let accepting = node.clone();
        tokio::spawn(async move { accepting.accept_loop().await });
        node
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn id(&self) -> Key {
        Key(*self.endpoint.id().as_bytes())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    pub fn is_connected(&self, peer: &Key) -> bool {
        self.state.lock().unwrap().conns.contains_key(peer)
    }

    pub fn connected_peers(&self) -> Vec<Key> {
        self.state.lock().unwrap().conns.keys().copied().collect()
    }

    /// Unix ms when `peer` was last connected (now, if it is).
    pub fn last_seen(&self, peer: &Key) -> Option<u64> {
        let st = self.state.lock().unwrap();
        if st.conns.contains_key(peer) {
            return Some(super::status::now_ms());
        }
        st.last_seen.get(peer).copied()
    }

    /// Number of connected peers currently replicating `core` with us (pulling from them).
    pub fn peers_for(&self, core: &Key) -> u32 {
        let st = self.state.lock().unwrap();
        st.conns
            .values()
            .filter(|c| c.pulls.get(core).is_some_and(|h| !h.is_finished()))
            .count() as u32
    }

    /// Dials `addr` (or returns the live connection to it). Without a direct address the
    /// endpoint's address lookups (mDNS, DHT) find the peer; with relays on, this node's own
    /// relays are offered as the peer's likely relays too (peers configured with the same
    /// relay share it).
    pub async fn connect(self: &Arc<Self>, addr: &PeerAddr) -> anyhow::Result<Connection> {
        if let Some(c) = self.state.lock().unwrap().conns.get(&addr.id) {
            return Ok(c.conn.clone());
        }
        let mut target = addr.endpoint_addr()?;
        for relay in self.endpoint.addr().relay_urls() {
            target = target.with_relay_url(relay.clone());
        }
        let conn = match self.endpoint.connect(target, ALPN).await {
            Ok(conn) => conn,
            Err(e) if addr.addr.is_none() => {
                return Err(anyhow::anyhow!(
                    "cannot reach {} by its id alone ({e}): give ID@IP:PORT, or enable mDNS \
                     (same network), the DHT or a relay on both sides",
                    addr.id
                ))
            }
            Err(e) => return Err(e.into()),
        };
        self.clone().adopt(conn.clone());
        Ok(conn)
    }

    /// Keeps a connection to `addr` up: dials, waits for it to close, dials again (with
    /// back-off while the peer is unreachable). Runs until the process ends.
    pub fn keep_connected(self: &Arc<Self>, addr: PeerAddr) -> JoinHandle<()> {
        let node = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                match node.connect(&addr).await {
                    Ok(conn) => {
                        backoff = Duration::from_millis(250);
                        tracing::info!(peer = %addr.id.short(), "connected to {addr}");
                        let reason = conn.closed().await;
                        tracing::info!(peer = %addr.id.short(), "connection closed: {reason}");
                    }
                    Err(e) => {
                        tracing::debug!(peer = %addr.id.short(), "cannot reach {addr}: {e:#}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        })
    }

    /// Start replicating `core` from every peer (now and in future connections).
    pub fn want(self: &Arc<Self>, core: Arc<Core>) {
        let key = core.key();
        let mut st = self.state.lock().unwrap();
        if st.wants.contains_key(&key) {
            return;
        }
        st.wants.insert(key, core.clone());
        let peers: Vec<(Key, Connection)> =
            st.conns.iter().map(|(k, c)| (*k, c.conn.clone())).collect();
        for (peer, conn) in peers {
            let handle = self.spawn_pull(peer, conn, core.clone());
            if let Some(e) = st.conns.get_mut(&peer) {
                e.pulls.insert(key, handle);
            }
        }
    }

    /// Stop replicating `key` from anyone.
    pub fn unwant(&self, key: &Key) {
        let mut st = self.state.lock().unwrap();
        st.wants.remove(key);
        for entry in st.conns.values_mut() {
            if let Some(h) = entry.pulls.remove(key) {
                h.abort();
            }
        }
    }

    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let node = self.clone();
            tokio::spawn(async move {
                match incoming.accept() {
                    Ok(accepting) => match accepting.await {
                        Ok(conn) => node.adopt(conn),
                        Err(e) => tracing::debug!("incoming connection failed: {e}"),
                    },
                    Err(e) => tracing::debug!("incoming connection refused: {e}"),
                }
            });
        }
    }

    /// Registers a connection (replacing an older one to the same peer), starts pulls of
    /// every want, and serves the streams the peer opens.
    fn adopt(self: Arc<Self>, conn: Connection) {
        let peer = Key(*conn.remote_id().as_bytes());
        let id = conn.stable_id();
        {
            let mut st = self.state.lock().unwrap();
            if let Some(old) = st.conns.remove(&peer) {
                for h in old.pulls.values() {
                    h.abort();
                }
                old.conn
                    .close(0u32.into(), b"replaced by a newer connection");
            }
            let wants: Vec<Arc<Core>> = st.wants.values().cloned().collect();
            let pulls = wants
                .into_iter()
                .map(|core| (core.key(), self.spawn_pull(peer, conn.clone(), core)))
                .collect();
            st.conns.insert(
                peer,
                ConnEntry {
                    conn: conn.clone(),
                    pulls,
                },
            );
        }
        let _ = self.events.send(PeerEvent::Connected(peer));
        tokio::spawn(async move {
            loop {
                let (send, mut recv) = match conn.accept_bi().await {
                    Ok(s) => s,
                    Err(_) => break,
                };
                let node = self.clone();
                tokio::spawn(async move {
                    let open = tokio::time::timeout(OPEN_TIMEOUT, read_message(&mut recv)).await;
                    let dk = match open {
                        Ok(Ok(Some(Message::Open { discovery_key }))) => discovery_key,
                        other => {
                            tracing::debug!(peer = %peer.short(), "stream without a valid Open: {other:?}");
                            return;
                        }
                    };
                    node.serve_stream(peer, dk, send, recv).await;
                });
            }
            // The connection is gone: forget it (unless a newer one replaced it already).
            let mut st = self.state.lock().unwrap();
            if st
                .conns
                .get(&peer)
                .is_some_and(|e| e.conn.stable_id() == id)
            {
                if let Some(e) = st.conns.remove(&peer) {
                    for h in e.pulls.values() {
                        h.abort();
                    }
                }
                st.last_seen.insert(peer, super::status::now_ms());
                drop(st);
                let _ = self.events.send(PeerEvent::Disconnected(peer));
            }
        });
    }

    async fn serve_stream(
        &self,
        peer: Key,
        dk: [u8; 32],
        mut send: iroh::endpoint::SendStream,
        recv: iroh::endpoint::RecvStream,
    ) {
        let core = match self.store.find_by_discovery_key(&dk).await {
            Ok(Some(core)) if self.policy.may_serve(&peer, &core.key()) => core,
            Ok(_) => {
                let _ = write_message(&mut send, &Message::NotFound).await;
                let _ = send.finish();
                return;
            }
            Err(e) => {
                tracing::warn!("cannot open a core for {}: {e}", peer.short());
                let _ = write_message(&mut send, &Message::NotFound).await;
                let _ = send.finish();
                return;
            }
        };
        let key = core.key();
        if let Err(e) = serve(core, recv, send).await {
            tracing::debug!(peer = %peer.short(), core = %key.short(), "serving ended: {e}");
        }
    }

    fn spawn_pull(
        self: &Arc<Self>,
        peer: Key,
        conn: Connection,
        core: Arc<Core>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let key = core.key();
            let mut backoff = Duration::from_secs(1);
            loop {
                let result = match conn.open_bi().await {
                    Ok((send, recv)) => pull(core.clone(), recv, send).await,
                    Err(_) => return, // connection closed
                };
                match result {
                    Ok(PullEnd::NotFound) => {
                        tracing::debug!(peer = %peer.short(), core = %key.short(), "peer does not have it");
                        tokio::time::sleep(RETRY_NOT_FOUND).await;
                    }
                    Ok(PullEnd::Closed) => {
                        if conn.close_reason().is_some() {
                            return;
                        }
                        tokio::time::sleep(backoff).await;
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer.short(), core = %key.short(), "replication failed: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
            }
        })
    }
}
