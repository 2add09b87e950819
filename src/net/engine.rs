//! The replication engine of the iroh plane: hypercore's own replication protocol (the one
//! Node peers speak, [`hypercore_peer`]) run over one bidirectional stream of each iroh
//! connection, independent of which daemon uses it. Given a [`Link`] to a peer it
//! - *serves* every core the peer opens that the [`Policy`] lets this peer read: the peer
//!   proves it knows the core's key with hypercore's capability, keyed by the link's shared
//!   secret (TLS exported keying material: bound to this very connection and to both ends'
//!   authenticated ids); a core we do not hold, a wrong capability or a refused peer all get
//!   the same refusal, so a peer cannot tell them apart;
//! - *fetches* every wanted core from the peers the policy says may hold it (a log only from
//!   its owner, a site from anyone): verified, live (new versions flow without reconnecting),
//!   opened again while the peer does not have it yet.
//!
//! A peer that misbehaves (malformed or oversized frames, proofs that do not verify, request
//! or channel floods, a bad capability) has its link closed with a reason ([`close_code`])
//! and is refused for [`MISBEHAVIOUR_BAN`]; a storage fault of ours (disk full) never blames
//! the peer. What the engine did is published as [`ReplicationEvent`]s, so callers (and
//! tests) can wait for the proof that an attempt happened instead of sleeping, and counted
//! ([`ReplicationCounters`]) for `/metrics`. Proofs that arrive together are stored with one
//! fsync (the peer crate's lazy commits) before anyone is told; log entries within
//! [`REPLICA_FLUSH_DELAY`] after.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex as StdMutex, RwLock};
use std::time::{Duration, Instant};

use hypercore_peer::{Access, FramedIo, Hooks, LinkInfo, Peer, PeerConfig, PeerEvent};
use hypercore_wire::session::{ChannelCloseReason, Event, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

use super::counters::ReplicationCounters;
use super::link::Link;
use crate::model::keys::Key;
use crate::store::{Core, CoreStore};

/// Decides which peer may read which core, and from whom a wanted core is fetched.
pub trait Policy: Send + Sync + 'static {
    /// May `peer` read `core` from us?
    fn may_serve(&self, peer: &Key, core: &Key) -> bool;
    /// Is `core` another node's log (a laptop's command log, a mirror's status log: keyed
    /// by that node's id)? Fetched log entries are acted on before their fsync
    /// ([`REPLICA_FLUSH_DELAY`]); a site's blocks are durable before anyone hears of them
    /// (a mirror reports what it holds, and must still hold it after a crash). Default: no.
    fn is_log(&self, _core: &Key) -> bool {
        false
    }
    /// May a wanted `core` be fetched from `peer`? A log only from its owner (its key is the
    /// owner's id): a stranger that knows a log's key must not learn even its length from
    /// us. Anything else from anyone.
    fn may_fetch(&self, peer: &Key, core: &Key) -> bool {
        !self.is_log(core) || peer == core
    }
}

/// The first bytes the dialling end writes on the replication stream (a QUIC stream is
/// seen by the other end only once bytes flow), then hypercore's framed protocol.
pub const STREAM_PREFACE: &[u8; 16] = b"dat-mirror/hc/1\n";
/// Largest frame accepted: a 1 MiB block with its proof and generous slack (sites use
/// 64 KiB blocks); larger is hostile.
pub const MAX_FRAME: usize = 8 << 20;
/// Channels one connection may have open (and channel opens refused in a burst).
pub const MAX_CHANNELS: usize = 1 << 16;
/// Timer ticks ([`RETRY_STORAGE`] each) before an unanswered request is asked again.
const REQUEST_TIMEOUT_TICKS: u64 = 20;
/// How long a peer has to open the replication stream after connecting.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// When storing a core fails here (disk full), fetching it resumes after this long (the
/// session's timer tick).
pub const RETRY_STORAGE: Duration = Duration::from_secs(3);
/// How long fetched entries of another node's log ([`Policy::is_log`]) may be acted on before
/// they are durable (see [`hypercore_peer::PeerConfig::flush_delay`]). The copy of a log is
/// signed by its owner: a crash before the flush loses only the copy's tail, fetched again.
/// What this node states durably about it (the mirror acknowledging a command) is a durable
/// commit of the same store, which makes every earlier lazy commit durable first. So the
/// fsync is off the path from a laptop's append to the mirror's acknowledgement, and from
/// that back to the laptop's view. Sites are not deferred: a mirror reports the bytes it
/// holds (HTTP, status), and after a crash must still hold what it reported.
pub const REPLICA_FLUSH_DELAY: Duration = Duration::from_millis(20);
/// How long a peer that misbehaved is refused.
pub const MISBEHAVIOUR_BAN: Duration = Duration::from_secs(60);

/// Application close codes of a link (the reason text says more).
pub mod close_code {
    /// Replaced by a newer connection to the same peer.
    pub const REPLACED: u32 = 0;
    /// The peer broke the protocol: malformed or oversized frames, unexpected messages.
    pub const PROTOCOL: u32 = 1;
    /// The peer sent data that does not verify against the core's key.
    pub const BAD_DATA: u32 = 2;
    /// The peer opened channels or sent requests faster than allowed.
    pub const FLOOD: u32 = 3;
    /// The peer misbehaved recently and is refused for a while.
    pub const BANNED: u32 = 4;

    /// Codes after which the closing end refuses us for [`super::MISBEHAVIOUR_BAN`].
    pub fn bans(code: u32) -> bool {
        matches!(code, PROTOCOL | BAD_DATA | FLOOD | BANNED)
    }

    /// The code for a session that ended because the peer misbehaved, from its reason.
    pub fn for_reason(reason: &str) -> u32 {
        if reason.contains("flood") || reason.contains("overflow") {
            FLOOD
        } else if reason.contains("invalid proof") {
            BAD_DATA
        } else {
            PROTOCOL
        }
    }
}

/// What the engine did that is worth waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationEvent {
    /// We refused `peer` the core with this discovery key (we do not hold it, the capability
    /// was wrong, or the policy refused the peer).
    ServedNotFound { peer: Key, discovery_key: [u8; 32] },
    /// `peer` refused us `core` (it does not hold it, or will not give it to us).
    PullNotFound { peer: Key, core: Key },
}

/// The policy and the wants, as the peer crate asks for them.
struct EngineHooks {
    store: Arc<CoreStore>,
    policy: Arc<dyn Policy>,
    wants: RwLock<HashSet<Key>>,
}

fn remote_of(link: &LinkInfo) -> Option<Key> {
    link.remote_public_key.map(Key)
}

impl Hooks for EngineHooks {
    fn flush_may_wait(&self, key: &[u8; 32]) -> bool {
        self.policy.is_log(&Key(*key))
    }

    fn access(&self, link: &LinkInfo, key: &[u8; 32]) -> Access {
        let Some(peer) = remote_of(link) else {
            return Access::NONE;
        };
        let core = Key(*key);
        let wanted = self
            .wants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&core);
        Access {
            serve: self.policy.may_serve(&peer, &core),
            fetch: wanted && self.policy.may_fetch(&peer, &core),
        }
    }

    fn resolve(&self, link: &LinkInfo, discovery_key: &[u8; 32]) -> Option<[u8; 32]> {
        let peer = remote_of(link)?;
        let key = self.store.key_by_discovery_key(discovery_key)?;
        self.policy.may_serve(&peer, &key).then_some(key.0)
    }

    fn may_store(&self, key: &[u8; 32], bytes: u64) -> Result<(), String> {
        match self.store.get_open(&Key(*key)) {
            Some(core) => core.reserve_space(bytes).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    fn stored(&self, keys: &[[u8; 32]]) {
        for key in keys {
            if let Some(core) = self.store.get_open(&Key(*key)) {
                core.note_stored();
            }
        }
    }

    fn remote_length(&self, key: &[u8; 32], length: u64) {
        if let Some(core) = self.store.get_open(&Key(*key)) {
            core.note_remote_length(length);
        }
    }
}

#[derive(Default)]
struct Live {
    /// Connection id (the peer crate's) → the remote.
    remotes: HashMap<u64, Key>,
    /// Connections with an open channel, per core.
    channels: HashMap<Key, HashSet<u64>>,
}

/// The replication side of one node: store, policy, wants, bans, events.
pub struct Engine {
    id: Key,
    peer: Peer,
    hooks: Arc<EngineHooks>,
    /// Peers that misbehaved, refused until the given instant.
    banned: StdMutex<HashMap<Key, Instant>>,
    events: broadcast::Sender<ReplicationEvent>,
    counters: Arc<ReplicationCounters>,
    live: StdMutex<Live>,
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// An engine over `store`; follows the store's changes (so peers hear of new blocks
    /// however they arrived) and the sessions' events until the runtime stops.
    pub fn new(id: Key, store: Arc<CoreStore>, policy: Arc<dyn Policy>) -> Arc<Engine> {
        let hooks = Arc::new(EngineHooks {
            store: store.clone(),
            policy,
            wants: RwLock::default(),
        });
        let config = PeerConfig {
            timer: RETRY_STORAGE,
            open_served: false,
            limits: Limits {
                max_frame: MAX_FRAME,
                // Both ends run this engine and open a channel per wanted core (a mirror
                // fetching a thousand sites opens them on each connection): room for that,
                // still a bound.
                max_channels: MAX_CHANNELS,
                // QUIC delivers every answer (or closes the connection): a request is given
                // up only after a minute of silence, not after two ticks of a slow link.
                request_timeout_ticks: REQUEST_TIMEOUT_TICKS,
                ..Limits::default()
            },
            refusal_burst: MAX_CHANNELS as f64,
            // Both ends are ours: a command or an acknowledgement travels with its append,
            // one round trip sooner than announce → request → data.
            push: true,
            flush_delay: REPLICA_FLUSH_DELAY,
            ..PeerConfig::default()
        };
        let peer = Peer::with_hooks(store.engine().clone(), config, hooks.clone());
        let engine = Arc::new(Engine {
            id,
            peer,
            hooks,
            banned: StdMutex::new(HashMap::new()),
            events: broadcast::channel(256).0,
            counters: Arc::default(),
            live: StdMutex::default(),
        });
        tokio::spawn(follow_changes(
            Arc::downgrade(&engine),
            store.subscribe_changes(),
        ));
        tokio::spawn(follow_events(
            Arc::downgrade(&engine),
            engine.peer.subscribe(),
        ));
        engine
    }

    pub fn id(&self) -> Key {
        self.id
    }

    pub fn counters(&self) -> &Arc<ReplicationCounters> {
        &self.counters
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ReplicationEvent> {
        self.events.subscribe()
    }

    fn emit(&self, event: ReplicationEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    /// Fetches `core` from every peer that may hold it, now and on later connections.
    pub fn want(&self, core: &Arc<Core>) {
        let key = core.key();
        self.hooks
            .wants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        if let Err(e) = self.peer.add_core(key.0, true) {
            tracing::warn!(core = %key.short(), "cannot replicate: {e}");
        }
    }

    /// Stops fetching `key` (its channels close; the store keeps its data).
    pub fn unwant(&self, key: &Key) {
        self.hooks
            .wants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.peer.remove_core(&key.0);
    }

    /// The policy's answers may have changed (a laptop paired or removed, a site started or
    /// stopped): every connection opens what it may now and closes what it may no longer.
    pub fn policy_changed(&self) {
        self.peer.access_changed();
    }

    /// Connected peers with `core`'s channel open (replicating it with us now).
    pub fn peers_for(&self, core: &Key) -> u32 {
        lock(&self.live)
            .channels
            .get(core)
            .map_or(0, |c| c.len() as u32)
    }

    /// How much longer `peer` is refused because it misbehaved (None: it is not).
    pub fn banned_for(&self, peer: &Key) -> Option<Duration> {
        let mut banned = lock(&self.banned);
        let until = *banned.get(peer)?;
        let left = until.checked_duration_since(Instant::now());
        if left.is_none() {
            banned.remove(peer);
        }
        left
    }

    /// Closes `link` because its peer misbehaved, and refuses the peer for a while.
    pub fn disconnect_misbehaving(&self, link: &impl Link, code: u32, reason: &str) {
        let peer = link.remote();
        tracing::warn!(peer = %peer.short(), "disconnecting a misbehaving peer: {reason}");
        lock(&self.banned).insert(peer, Instant::now() + MISBEHAVIOUR_BAN);
        link.close(code, reason);
    }

    /// Replicates with the peer at the other end of `link` until the link closes or the peer
    /// misbehaves. The end that dialled (`initiator`) opens the stream.
    pub async fn run_link<L: Link>(&self, link: L, initiator: bool) {
        tokio::select! {
            () = self.run_link_until_closed(&link, initiator) => {}
            () = link.closed() => {}
        }
    }

    async fn run_link_until_closed<L: Link>(&self, link: &L, initiator: bool) {
        let peer = link.remote();
        let Some(secret) = link.shared_secret() else {
            link.close(close_code::PROTOCOL, "no TLS session secret");
            return;
        };
        let stream = if initiator {
            let Some((mut send, recv)) = link.open_stream().await else {
                return;
            };
            if send.write_all(STREAM_PREFACE).await.is_err() {
                return;
            }
            (send, recv)
        } else {
            let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
                let (send, mut recv) = link.accept_stream().await?;
                let mut preface = [0u8; STREAM_PREFACE.len()];
                recv.read_exact(&mut preface).await.ok()?;
                Some((send, recv, preface))
            });
            match opened.await {
                Ok(Some((send, recv, preface))) if preface == *STREAM_PREFACE => (send, recv),
                Ok(Some(_)) => {
                    let reason = "the replication stream does not start with our preface";
                    self.disconnect_misbehaving(link, close_code::PROTOCOL, reason);
                    return;
                }
                Ok(None) => return,
                Err(_) => {
                    tracing::debug!(peer = %peer.short(), "no replication stream in {OPEN_TIMEOUT:?}");
                    return;
                }
            }
        };
        let (send, recv) = stream;
        let info = LinkInfo {
            is_initiator: initiator,
            handshake_hash: secret.to_vec(),
            remote_public_key: Some(peer.0),
        };
        let end = self
            .peer
            .run(FramedIo::new(tokio::io::join(recv, send), info))
            .await;
        if end.hostile {
            let code = close_code::for_reason(&end.reason);
            self.disconnect_misbehaving(link, code, &end.reason);
        } else {
            tracing::debug!(peer = %peer.short(), "replication ended: {}", end.reason);
        }
    }

    /// Keeps peer counts, events and counters from the sessions' events.
    fn session_event(&self, conn: u64, event: &Event) {
        let peer = lock(&self.live).remotes.get(&conn).copied();
        let c = &self.counters;
        match event {
            Event::ChannelOpened { key } => {
                lock(&self.live)
                    .channels
                    .entry(Key(*key))
                    .or_default()
                    .insert(conn);
            }
            Event::ChannelClosed { key, reason } => {
                if let Some(conns) = lock(&self.live).channels.get_mut(&Key(*key)) {
                    conns.remove(&conn);
                }
                match reason {
                    ChannelCloseReason::Rejected => {
                        if let Some(peer) = peer {
                            self.emit(ReplicationEvent::PullNotFound {
                                peer,
                                core: Key(*key),
                            });
                        }
                    }
                    ChannelCloseReason::InvalidProof(_) => {
                        ReplicationCounters::add(&c.proofs_rejected, 1);
                    }
                    _ => {}
                }
            }
            Event::Downloaded { bytes, .. } => {
                ReplicationCounters::add(&c.blocks_received, 1);
                ReplicationCounters::add(&c.bytes_received, *bytes);
            }
            Event::Uploaded { bytes, .. } => {
                ReplicationCounters::add(&c.blocks_served, 1);
                ReplicationCounters::add(&c.bytes_served, *bytes);
            }
            Event::StoreFailed { key, error } => {
                tracing::warn!(core = %Key(*key).short(), "cannot store what {} sent: {error}",
                    peer.map_or_else(|| "a peer".to_string(), |p| p.short()));
                if let Some(core) = self.hooks.store.get_open(&Key(*key)) {
                    core.note_store_failed(error);
                }
            }
            _ => {}
        }
    }
}

/// Tells connected peers about every core whose info changed, however it changed (appended
/// here, published, fetched on another connection or by the hypercore network plane).
async fn follow_changes(engine: std::sync::Weak<Engine>, mut changes: broadcast::Receiver<Key>) {
    loop {
        let changed = changes.recv().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        match changed {
            Ok(key) => engine.peer.core_updated(&key.0),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                for key in engine.hooks.store.open_keys() {
                    engine.peer.core_updated(&key.0);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn follow_events(
    engine: std::sync::Weak<Engine>,
    mut events: broadcast::Receiver<PeerEvent>,
) {
    loop {
        let event = events.recv().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        match event {
            Ok(PeerEvent::Connected { conn, remote }) => {
                if let Some(remote) = remote {
                    lock(&engine.live).remotes.insert(conn, Key(remote));
                }
            }
            Ok(PeerEvent::Session { conn, event }) => {
                tracing::trace!(conn, ?event, "replication");
                engine.session_event(conn, &event);
            }
            Ok(PeerEvent::Refused {
                remote,
                discovery_key,
                ..
            }) => {
                if let Some(peer) = remote {
                    engine.emit(ReplicationEvent::ServedNotFound {
                        peer: Key(peer),
                        discovery_key,
                    });
                }
            }
            Ok(PeerEvent::Closed(end)) => {
                let mut live = lock(&engine.live);
                live.remotes.remove(&end.conn);
                for conns in live.channels.values_mut() {
                    conns.remove(&end.conn);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!("replication: {n} session events skipped");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Replicates `from` into `to` (two stores of this process) through an in-memory pipe with
/// the same protocol and peer code as a link, and keeps `to`'s published info current:
/// for benchmarks and tests that want replication without a network. Runs until aborted.
pub fn replicate_in_memory(from: Arc<Core>, to: Arc<Core>) -> tokio::task::JoinHandle<()> {
    let (a, b) = tokio::io::duplex(4 << 20);
    let link = |is_initiator| LinkInfo {
        is_initiator,
        handshake_hash: vec![7; 32],
        remote_public_key: None,
    };
    let serving = Peer::new(from.engine().clone(), PeerConfig::default());
    let fetching = Peer::new(to.engine().clone(), PeerConfig::default());
    tokio::spawn(async move {
        if let Err(e) = serving
            .add_core(from.key().0, false)
            .and_then(|()| fetching.add_core(to.key().0, true))
        {
            tracing::warn!("cannot replicate in memory: {e}");
            return;
        }
        let serve = serving.spawn(FramedIo::new(a, link(true)));
        let fetch = fetching.spawn(FramedIo::new(b, link(false)));
        let mut events = fetching.subscribe();
        // The peer writes to the engine directly: publish what it stored.
        while !matches!(
            events.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ) {
            to.refresh_info();
        }
        serve.abort();
        fetch.abort();
    })
}
