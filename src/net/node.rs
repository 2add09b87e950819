//! A node on the network: the iroh endpoint with its protocol [`Router`] (replication on
//! [`ALPN`], plus whatever other [`ProtocolHandler`]s the daemon registers, e.g. pairing),
//! the live connections (one per remote id), and the cores it wants. Every connection,
//! dialled or accepted, is handed to the [`Engine`]: hypercore's replication protocol on
//! one stream, serving what the peer may read and fetching every wanted core it may hold.
//!
//! A want is fetched on every live connection and every later one; dropping it closes its
//! channels. [`Node::keep_connected`] redials a peer with
//! a jittered back-off after *every* close (reset only once a connection stayed up for
//! [`STABLE_CONNECTION`]) and waits out a ban, so a peer that accepts and closes at once, or
//! a second process with our identity, costs a few dials a minute, not a storm.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, Instant};

use iroh::endpoint::{Connection, ConnectionError};
use iroh::protocol::{AcceptError, DynProtocolHandler, ProtocolHandler, Router, RouterBuilder};
use iroh::Endpoint;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::endpoint::{PeerAddr, ALPN};
use super::link::Link;
use crate::model::keys::Key;
use crate::store::{Core, CoreStore};
use crate::util::backoff::Backoff;

pub use super::engine::{
    close_code, Engine, Policy, ReplicationEvent, MISBEHAVIOUR_BAN, RETRY_STORAGE, STREAM_PREFACE,
};

/// Connection events, for status views ("mirror online, last seen").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Connected(Key),
    Disconnected(Key),
    /// A dial of [`Node::keep_connected`] failed; it tries again after a back-off. (Tests
    /// wait for it before asserting that an unreachable peer got nothing.)
    DialFailed(Key),
}

/// A refused peer's new connection is held (unserved) this long before it is closed.
pub const BANNED_CLOSE_DELAY: Duration = Duration::from_secs(5);
/// A connection that stayed up this long resets the redial back-off.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(30);
/// Redial pacing after a failed dial or a close: doubling from the first to the last, each
/// with up to +100 % jitter.
const REDIAL_MIN: Duration = Duration::from_millis(250);
const REDIAL_MAX: Duration = Duration::from_secs(15);

struct State {
    conns: HashMap<Key, Connection>,
    last_seen: HashMap<Key, u64>,
}

/// The network side of one dat-mirror process.
pub struct Node {
    endpoint: Endpoint,
    engine: Arc<Engine>,
    state: StdMutex<State>,
    events: broadcast::Sender<PeerEvent>,
    /// Accepts connections and hands each to the handler of its ALPN; dropped with the node.
    router: Router,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.id().short())
    }
}

/// Sets up a [`Node`] with other protocols besides replication.
pub struct NodeBuilder {
    endpoint: Endpoint,
    store: Arc<CoreStore>,
    policy: Arc<dyn Policy>,
    others: Vec<(Vec<u8>, Box<dyn DynProtocolHandler>)>,
}

impl NodeBuilder {
    /// Accepts connections for `alpn` too, handing each to `handler`.
    pub fn accept(mut self, alpn: &[u8], handler: impl ProtocolHandler) -> NodeBuilder {
        let handler: Box<dyn DynProtocolHandler> = Box::new(handler);
        self.others.push((alpn.to_vec(), handler));
        self
    }

    /// Starts accepting connections.
    pub fn spawn(self) -> Arc<Node> {
        let id = Key(*self.endpoint.id().as_bytes());
        let engine = Engine::new(id, self.store, self.policy);
        Arc::new_cyclic(|weak: &Weak<Node>| {
            let mut router: RouterBuilder = Router::builder(self.endpoint.clone())
                .accept(ALPN, Replication { node: weak.clone() });
            for (alpn, handler) in self.others {
                router = router.accept(alpn, handler);
            }
            Node {
                endpoint: self.endpoint,
                engine,
                state: StdMutex::new(State {
                    conns: HashMap::new(),
                    last_seen: HashMap::new(),
                }),
                events: broadcast::channel(64).0,
                router: router.spawn(),
            }
        })
    }
}

/// The replication protocol's handler: adopts the connection and serves it until it closes.
#[derive(Debug)]
struct Replication {
    node: Weak<Node>,
}

impl ProtocolHandler for Replication {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let Some(node) = self.node.upgrade() else {
            conn.close(0u32.into(), b"shutting down");
            return Ok(());
        };
        if let Some(serving) = node.adopt(conn, false) {
            serving.await;
        }
        Ok(())
    }
}

impl Node {
    /// Starts accepting replication connections on `endpoint`.
    pub fn start(endpoint: Endpoint, store: Arc<CoreStore>, policy: Arc<dyn Policy>) -> Arc<Node> {
        Node::builder(endpoint, store, policy).spawn()
    }

    /// A node that will accept other protocols too (see [`NodeBuilder::accept`]).
    pub fn builder(
        endpoint: Endpoint,
        store: Arc<CoreStore>,
        policy: Arc<dyn Policy>,
    ) -> NodeBuilder {
        NodeBuilder {
            endpoint,
            store,
            policy,
            others: Vec::new(),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn id(&self) -> Key {
        self.engine.id()
    }

    /// Stops accepting, shuts the protocol handlers down and closes the endpoint.
    pub async fn shutdown(&self) {
        if let Err(e) = self.router.shutdown().await {
            tracing::warn!("a protocol handler failed while shutting down: {e}");
        }
    }

    /// Closes the connection to `peer` (if any); it may dial again.
    pub fn disconnect(&self, peer: &Key, reason: &str) {
        if let Some(conn) = self.lock().conns.get(peer) {
            Link::close(conn, close_code::REPLACED, reason);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    /// What replication did (`NotFound` served or received), for waiting on an attempt.
    /// Bytes and blocks served and received, proofs rejected (for `/metrics`).
    pub fn replication_counters(&self) -> &Arc<super::counters::ReplicationCounters> {
        self.engine.counters()
    }

    pub fn replication_events(&self) -> broadcast::Receiver<ReplicationEvent> {
        self.engine.subscribe()
    }

    pub fn is_connected(&self, peer: &Key) -> bool {
        self.lock().conns.contains_key(peer)
    }

    pub fn connected_peers(&self) -> Vec<Key> {
        self.lock().conns.keys().copied().collect()
    }

    /// Unix ms when `peer` was last connected (now, if it is).
    pub fn last_seen(&self, peer: &Key) -> Option<u64> {
        let st = self.lock();
        if st.conns.contains_key(peer) {
            return Some(crate::util::clock::now_ms());
        }
        st.last_seen.get(peer).copied()
    }

    /// Number of connected peers currently replicating `core` with us.
    pub fn peers_for(&self, core: &Key) -> u32 {
        self.engine.peers_for(core)
    }

    /// The policy's answers may have changed: connections open and close cores to match.
    pub fn policy_changed(&self) {
        self.engine.policy_changed();
    }

    /// How much longer `peer` is refused because it misbehaved (None: it is not).
    pub fn banned_for(&self, peer: &Key) -> Option<Duration> {
        self.engine.banned_for(peer)
    }

    /// Closes `conn` because its peer misbehaved, and refuses the peer for a while.
    pub fn disconnect_misbehaving(&self, conn: &Connection, code: u32, reason: &str) {
        self.engine.disconnect_misbehaving(conn, code, reason);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain maps behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live connection to `peer`, skipping one that is closed but not yet forgotten.
    fn live_connection(&self, peer: &Key) -> Option<Connection> {
        let st = self.lock();
        let conn = st.conns.get(peer)?;
        (!Link::is_closed(conn)).then(|| conn.clone())
    }

    /// Dials `addr` (or returns the live connection to it). Without a direct address the
    /// endpoint's address lookups (mDNS, DHT) find the peer; with relays on, this node's own
    /// relays are offered as the peer's likely relays too (peers configured with the same
    /// relay share it).
    pub async fn connect(self: &Arc<Self>, addr: &PeerAddr) -> anyhow::Result<Connection> {
        if let Some(conn) = self.live_connection(&addr.id) {
            return Ok(conn);
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
        if let Some(serving) = self.clone().adopt(conn.clone(), true) {
            tokio::spawn(serving);
        }
        Ok(conn)
    }

    /// Keeps a connection to `addr` up: dials, waits for it to close, waits a jittered
    /// back-off (the peer's ban, if it banned us), dials again. Runs until aborted.
    pub fn keep_connected(self: &Arc<Self>, addr: PeerAddr) -> JoinHandle<()> {
        let node = self.clone();
        tokio::spawn(async move {
            let mut backoff = Backoff::new(REDIAL_MIN, REDIAL_MAX);
            loop {
                let conn = match node.connect(&addr).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::debug!(peer = %addr.id.short(), "cannot reach {addr}: {e:#}");
                        let _ = node.events.send(PeerEvent::DialFailed(addr.id));
                        tokio::time::sleep(backoff.next_delay()).await;
                        continue;
                    }
                };
                let since = Instant::now();
                tracing::info!(peer = %addr.id.short(), "connected to {addr}");
                let reason = conn.closed().await;
                tracing::info!(peer = %addr.id.short(), "connection closed: {reason}");
                if since.elapsed() >= STABLE_CONNECTION {
                    backoff.reset();
                }
                if node.live_connection(&addr.id).is_some() {
                    // The peer dialled us meanwhile (its connection replaced ours): use it.
                    continue;
                }
                let wait = match redial_after(&reason) {
                    Some(ban) => {
                        tracing::info!(peer = %addr.id.short(), "the peer refuses us; dialling again in {ban:?}");
                        ban
                    }
                    None => backoff.next_delay(),
                };
                tokio::time::sleep(wait).await;
            }
        })
    }

    /// Start replicating `core` from every peer (now and in future connections).
    pub fn want(self: &Arc<Self>, core: Arc<Core>) {
        self.engine.want(&core);
    }

    /// Stop replicating `key` from anyone.
    pub fn unwant(&self, key: &Key) {
        self.engine.unwant(key);
    }

    /// Registers a connection (replacing an older one to the same peer) and returns the
    /// future that replicates over it until it closes (None: the connection is refused).
    /// `initiator`: we dialled it (and open the replication stream).
    fn adopt(
        self: Arc<Self>,
        conn: Connection,
        initiator: bool,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let peer = Link::remote(&conn);
        let id = conn.stable_id();
        if let Some(left) = self.banned_for(&peer) {
            tracing::debug!(peer = %peer.short(), "refusing a peer that misbehaved ({left:?} left)");
            // Close only after a pause: a peer that redials as soon as it is closed then
            // costs one handshake per pause, not a busy loop. Nothing is served meanwhile.
            tokio::spawn(async move {
                tokio::time::sleep(BANNED_CLOSE_DELAY.min(left)).await;
                Link::close(
                    &conn,
                    close_code::BANNED,
                    "misbehaved recently; refused for a while",
                );
            });
            return None;
        }
        {
            let mut st = self.lock();
            if let Some(old) = st.conns.insert(peer, conn.clone()) {
                Link::close(&old, close_code::REPLACED, "replaced by a newer connection");
            }
        }
        let _ = self.events.send(PeerEvent::Connected(peer));
        Some(async move {
            self.engine.run_link(conn.clone(), initiator).await;
            // The connection is gone (or its replication ended): close it and forget it
            // (unless a newer one replaced it already).
            Link::close(&conn, close_code::REPLACED, "replication ended");
            let mut st = self.lock();
            if st.conns.get(&peer).is_some_and(|c| c.stable_id() == id) {
                st.conns.remove(&peer);
                st.last_seen.insert(peer, crate::util::clock::now_ms());
                drop(st);
                let _ = self.events.send(PeerEvent::Disconnected(peer));
            }
        })
    }
}

/// How long to wait before redialling a peer that closed with a code meaning it refuses
/// us (it misbehaved-banned us): the whole ban, plus jitter so banned peers do not return in
/// step. None: an ordinary close, paced by the back-off.
fn redial_after(reason: &ConnectionError) -> Option<Duration> {
    let ConnectionError::ApplicationClosed(close) = reason else {
        return None;
    };
    let code = u32::try_from(u64::from(close.error_code)).ok()?;
    close_code::bans(code)
        .then(|| MISBEHAVIOUR_BAN + MISBEHAVIOUR_BAN.mul_f64(rand::random::<f64>() / 10.0))
}
