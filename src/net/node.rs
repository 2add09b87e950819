//! A node on the network: the iroh endpoint, the live connections (one per remote id), and
//! the cores it wants. Every connection, dialled or accepted, runs the same two things:
//! - *serving*: each stream the peer opens names a core by discovery key and proves knowledge
//!   of its key with a capability ([`super::capability`]); it is served if we hold it, the
//!   capability is right and the [`Policy`] lets this peer read it, else answered with the
//!   same `NotFound` (so a peer cannot tell "absent" from "not for you" from "wrong key");
//! - *pulling*: for every wanted core, a stream is opened to the peer and the core is
//!   replicated from it (verified), then followed for new versions.
//!
//! Adding a want starts pulls on every live connection; a new connection starts pulls of
//! every want. Dropping a want stops its pulls.
//!
//! A peer that misbehaves (malformed or oversized frames, proofs that do not verify, request
//! or stream floods) has its connection closed with a reason ([`close_code`]) and is refused
//! for [`MISBEHAVIOUR_BAN`]; a storage fault of ours (disk full) never blames the peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use iroh::endpoint::Connection;
use iroh::Endpoint;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::capability::{self, Session};
use super::endpoint::{PeerAddr, ALPN};
use super::replicate::{pull, serve, PullEnd, ReplicationError};
use super::wire::{read_message, write_message, Message, WireError, MAX_READER_FRAME};
use crate::model::keys::Key;
use crate::store::{Core, CoreStore};

/// Decides which peer may read which core.
pub trait Policy: Send + Sync + 'static {
    fn may_serve(&self, peer: &Key, core: &Key) -> bool;
}

/// Handles connections of another protocol (ALPN) than replication, e.g. pairing.
pub type ProtocolHandler = Arc<dyn Fn(Connection) + Send + Sync>;

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
/// When storing a core fails here (disk full), try again after this long.
pub const RETRY_STORAGE: Duration = Duration::from_secs(3);
/// How long a peer that misbehaved is refused.
pub const MISBEHAVIOUR_BAN: Duration = Duration::from_secs(60);
/// A refused peer's new connection is held (unserved) this long before it is closed.
pub const BANNED_CLOSE_DELAY: Duration = Duration::from_secs(5);
/// Streams a peer may open in a burst, and per second after that. An honest peer opens one
/// per wanted core and retries each at most every few seconds; thousands in a row is a
/// flood. (QUIC itself caps the streams open at once at 100.)
pub const STREAM_BURST: f64 = 1024.0;
pub const STREAMS_PER_SECOND: f64 = 256.0;

/// QUIC application close codes (the reason text says more).
pub mod close_code {
    /// Replaced by a newer connection to the same peer.
    pub const REPLACED: u32 = 0;
    /// The peer broke the protocol: malformed or oversized frames, unexpected messages.
    pub const PROTOCOL: u32 = 1;
    /// The peer sent data that does not verify against the core's key.
    pub const BAD_DATA: u32 = 2;
    /// The peer opened streams or sent requests faster than allowed.
    pub const FLOOD: u32 = 3;
    /// The peer misbehaved recently and is refused for a while.
    pub const BANNED: u32 = 4;
}

/// A token bucket: `take` succeeds while the peer stays within a burst of `burst` and a
/// sustained `rate` per second. Pure: the caller passes the time.
#[derive(Debug, Clone, Copy)]
pub struct RateBudget {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: std::time::Instant,
}

impl RateBudget {
    pub fn new(burst: f64, rate: f64, now: std::time::Instant) -> RateBudget {
        RateBudget {
            tokens: burst,
            burst,
            rate,
            last: now,
        }
    }

    pub fn take(&mut self, now: std::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The session secret of a connection (TLS exported keying material), the same at both ends.
fn session_secret(conn: &Connection) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, capability::EXPORTER_LABEL, b"")
        .ok()?;
    Some(out)
}

struct ConnEntry {
    conn: Connection,
    pulls: HashMap<Key, JoinHandle<()>>,
}

struct State {
    conns: HashMap<Key, ConnEntry>,
    wants: HashMap<Key, Arc<Core>>,
    last_seen: HashMap<Key, u64>,
    /// Peers that misbehaved, refused until the given instant.
    banned: HashMap<Key, std::time::Instant>,
}

/// The network side of one dat-mirror process.
pub struct Node {
    endpoint: Endpoint,
    store: Arc<CoreStore>,
    policy: Arc<dyn Policy>,
    state: StdMutex<State>,
    events: broadcast::Sender<PeerEvent>,
    /// Handlers of the other ALPNs this node accepts.
    protocols: StdMutex<HashMap<Vec<u8>, ProtocolHandler>>,
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
                banned: HashMap::new(),
            }),
            events,
            protocols: StdMutex::new(HashMap::new()),
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

    /// Accepts connections for `alpn` too, handing each to `handler`.
    pub fn add_protocol(&self, alpn: &[u8], handler: ProtocolHandler) {
        let mut protocols = self.protocols.lock().unwrap();
        protocols.insert(alpn.to_vec(), handler);
        let alpns = std::iter::once(ALPN.to_vec())
            .chain(protocols.keys().cloned())
            .collect();
        self.endpoint.set_alpns(alpns);
    }

    /// Closes the connection to `peer` (if any); it may dial again.
    pub fn disconnect(&self, peer: &Key, reason: &str) {
        if let Some(e) = self.state.lock().unwrap().conns.get(peer) {
            e.conn.close(0u32.into(), reason.as_bytes());
        }
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
            return Some(crate::util::clock::now_ms());
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

    /// How much longer `peer` is refused because it misbehaved (None: it is not).
    pub fn banned_for(&self, peer: &Key) -> Option<Duration> {
        let st = self.state.lock().unwrap();
        let until = *st.banned.get(peer)?;
        until.checked_duration_since(std::time::Instant::now())
    }

    /// Closes `conn` because its peer misbehaved, and refuses the peer for a while.
    pub fn disconnect_misbehaving(&self, peer: Key, conn: &Connection, code: u32, reason: &str) {
        tracing::warn!(peer = %peer.short(), "disconnecting a misbehaving peer: {reason}");
        self.state
            .lock()
            .unwrap()
            .banned
            .insert(peer, std::time::Instant::now() + MISBEHAVIOUR_BAN);
        let reason: String = reason.chars().take(200).collect();
        conn.close(code.into(), reason.as_bytes());
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
                        Ok(conn) if conn.alpn() != ALPN => {
                            let handler = node.protocols.lock().unwrap().get(conn.alpn()).cloned();
                            match handler {
                                Some(h) => h(conn),
                                None => conn.close(0u32.into(), b"unknown protocol"),
                            }
                        }
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
        if let Some(left) = self.banned_for(&peer) {
            tracing::debug!(peer = %peer.short(), "refusing a peer that misbehaved ({left:?} left)");
            // Close only after a pause: a peer that redials as soon as it is closed then
            // costs one handshake per pause, not a busy loop. Nothing is served meanwhile.
            tokio::spawn(async move {
                tokio::time::sleep(BANNED_CLOSE_DELAY.min(left)).await;
                conn.close(
                    close_code::BANNED.into(),
                    b"misbehaved recently; refused for a while",
                );
            });
            return;
        }
        let Some(secret) = session_secret(&conn) else {
            conn.close(close_code::PROTOCOL.into(), b"no TLS session secret");
            return;
        };
        let session = Session {
            server: self.id(),
            reader: peer,
            secret,
        };
        {
            let mut st = self.state.lock().unwrap();
            if let Some(old) = st.conns.remove(&peer) {
                for h in old.pulls.values() {
                    h.abort();
                }
                old.conn.close(
                    close_code::REPLACED.into(),
                    b"replaced by a newer connection",
                );
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
            let mut budget =
                RateBudget::new(STREAM_BURST, STREAMS_PER_SECOND, std::time::Instant::now());
            loop {
                let (send, mut recv) = match conn.accept_bi().await {
                    Ok(s) => s,
                    Err(_) => break,
                };
                if !budget.take(std::time::Instant::now()) {
                    self.disconnect_misbehaving(
                        peer,
                        &conn,
                        close_code::FLOOD,
                        &format!(
                            "opened streams faster than {STREAMS_PER_SECOND}/s (burst {STREAM_BURST})"
                        ),
                    );
                    break;
                }
                let node = self.clone();
                let conn = conn.clone();
                tokio::spawn(async move {
                    let open = tokio::time::timeout(
                        OPEN_TIMEOUT,
                        read_message(&mut recv, MAX_READER_FRAME),
                    )
                    .await;
                    let (dk, cap) = match open {
                        Ok(Ok(Some(Message::Open {
                            discovery_key,
                            capability,
                        }))) => (discovery_key, capability),
                        Ok(Ok(None)) | Ok(Err(WireError::Io(_))) => return,
                        Err(_) => {
                            tracing::debug!(peer = %peer.short(), "stream without an Open in {OPEN_TIMEOUT:?}");
                            return;
                        }
                        Ok(Ok(Some(other))) => {
                            let reason = format!("stream opened with {other:?} instead of Open");
                            node.disconnect_misbehaving(peer, &conn, close_code::PROTOCOL, &reason);
                            return;
                        }
                        Ok(Err(e)) => {
                            node.disconnect_misbehaving(
                                peer,
                                &conn,
                                close_code::PROTOCOL,
                                &e.to_string(),
                            );
                            return;
                        }
                    };
                    node.serve_stream(&conn, session, dk, cap, send, recv).await;
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
                st.last_seen.insert(peer, crate::util::clock::now_ms());
                drop(st);
                let _ = self.events.send(PeerEvent::Disconnected(peer));
            }
        });
    }

    /// Serves the core a stream asked for, or answers `NotFound` — the same bytes whether
    /// we do not hold the core, the capability is wrong, or the policy refuses this peer.
    async fn serve_stream(
        &self,
        conn: &Connection,
        session: Session,
        dk: [u8; 32],
        cap: [u8; 32],
        mut send: iroh::endpoint::SendStream,
        recv: iroh::endpoint::RecvStream,
    ) {
        let peer = session.reader;
        let key = self.store.key_by_discovery_key(&dk);
        // Hash even when the core is unknown, so the answer takes the same work either way.
        let cap_ok = capability::verify(&key.unwrap_or(Key(dk)), &session, &cap);
        let allowed = match key {
            Some(key) if cap_ok && self.policy.may_serve(&peer, &key) => Some(key),
            _ => None,
        };
        let core = match allowed {
            Some(key) => match self.store.open_existing(&key).await {
                Ok(core) => core,
                Err(e) => {
                    tracing::warn!("cannot open core {} for {}: {e}", key.short(), peer.short());
                    None
                }
            },
            None => None,
        };
        let Some(core) = core else {
            let _ = write_message(&mut send, &Message::NotFound).await;
            let _ = send.finish();
            return;
        };
        let key = core.key();
        match serve(core, recv, send).await {
            Ok(()) => {}
            Err(e) if e.blames_peer() => {
                let code = match e {
                    ReplicationError::Wire(WireError::Flood(_)) => close_code::FLOOD,
                    _ => close_code::PROTOCOL,
                };
                self.disconnect_misbehaving(peer, conn, code, &e.to_string());
            }
            Err(e) => {
                tracing::debug!(peer = %peer.short(), core = %key.short(), "serving ended: {e}");
            }
        }
    }

    fn spawn_pull(
        self: &Arc<Self>,
        peer: Key,
        conn: Connection,
        core: Arc<Core>,
    ) -> JoinHandle<()> {
        let node = self.clone();
        tokio::spawn(async move {
            let key = core.key();
            let Some(secret) = session_secret(&conn) else {
                return;
            };
            let cap = capability::capability(
                &key,
                &Session {
                    server: peer,
                    reader: node.id(),
                    secret,
                },
            );
            let mut backoff = Duration::from_secs(1);
            loop {
                let result = match conn.open_bi().await {
                    Ok((send, recv)) => pull(core.clone(), cap, recv, send).await,
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
                    Err(e) if e.blames_peer() => {
                        let code = match e {
                            ReplicationError::BadProof(_) => close_code::BAD_DATA,
                            _ => close_code::PROTOCOL,
                        };
                        node.disconnect_misbehaving(peer, &conn, code, &e.to_string());
                        return;
                    }
                    Err(ReplicationError::Storage(e)) => {
                        // Ours, not the peer's: keep the connection, try again later.
                        tracing::warn!(core = %key.short(), "cannot store what {} sent: {e}", peer.short());
                        tokio::time::sleep(RETRY_STORAGE).await;
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
