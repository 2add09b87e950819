//! The replication engine, independent of the transport: given a [`Link`] to a peer it
//! - *serves* every stream the peer opens: the stream names a core by discovery key and
//!   proves knowledge of its key with a capability ([`super::capability`]) bound to the
//!   link's session; it is served if we hold the core, the capability is right and the
//!   [`Policy`] lets this peer read it, else answered with the same `NotFound` (so a peer
//!   cannot tell "absent" from "not for you" from "wrong key");
//! - *pulls* a wanted core: opens a stream, replicates the core (verified), follows it for
//!   new versions, and asks again (paced by [`Backoff`]) until the link closes.
//!
//! A peer that misbehaves (malformed or oversized frames, proofs that do not verify, request
//! or stream floods) has its link closed with a reason ([`close_code`]) and is refused for
//! [`MISBEHAVIOUR_BAN`]; a storage fault of ours (disk full) never blames the peer. What the
//! engine did is published as [`ReplicationEvent`]s, so callers (and tests) can wait for the
//! proof that an attempt happened instead of sleeping, and counted
//! ([`ReplicationCounters`]: bytes and blocks served and received, proofs rejected) for
//! `/metrics`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;

use super::capability::{self, Session};
use super::counters::{Counted, ReplicationCounters, Side};
use super::link::Link;
use super::rate::RateBudget;
use super::replicate::{pull, serve, PullEnd, ReplicationError};
use super::wire::{read_message, write_message, Message, WireError, MAX_READER_FRAME};
use crate::model::keys::Key;
use crate::store::{Core, CoreStore};
use crate::util::backoff::Backoff;

/// Decides which peer may read which core.
pub trait Policy: Send + Sync + 'static {
    fn may_serve(&self, peer: &Key, core: &Key) -> bool;
}

/// How long a peer has to name the core after opening a stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// When a peer does not have a wanted core, ask again after this long.
const RETRY_NOT_FOUND: Duration = Duration::from_secs(10);
/// When storing a core fails here (disk full), try again after this long.
pub const RETRY_STORAGE: Duration = Duration::from_secs(3);
/// How long a peer that misbehaved is refused.
pub const MISBEHAVIOUR_BAN: Duration = Duration::from_secs(60);
/// Streams a peer may open in a burst, and per second after that. An honest peer opens one
/// per wanted core and retries each at most every few seconds; thousands in a row is a
/// flood. (QUIC itself caps the streams open at once at 100.)
pub const STREAM_BURST: f64 = 1024.0;
pub const STREAMS_PER_SECOND: f64 = 256.0;
/// Pacing of a pull that failed for another reason than the peer's fault or ours.
const PULL_RETRY_MIN: Duration = Duration::from_secs(1);
const PULL_RETRY_MAX: Duration = Duration::from_secs(60);

/// Application close codes of a link (the reason text says more).
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

    /// Codes after which the closing end refuses us for [`super::MISBEHAVIOUR_BAN`].
    pub fn bans(code: u32) -> bool {
        matches!(code, PROTOCOL | BAD_DATA | FLOOD | BANNED)
    }
}

/// What the engine did that is worth waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationEvent {
    /// We answered `NotFound` to `peer` for the core with this discovery key (we do not hold
    /// it, the capability was wrong, or the policy refused the peer).
    ServedNotFound { peer: Key, discovery_key: [u8; 32] },
    /// A pull of `core` from `peer` ended with the peer's `NotFound`.
    PullNotFound { peer: Key, core: Key },
}

/// The replication side of one node: store, policy, bans, events.
pub struct Engine {
    id: Key,
    store: Arc<CoreStore>,
    policy: Arc<dyn Policy>,
    /// Peers that misbehaved, refused until the given instant.
    banned: StdMutex<HashMap<Key, Instant>>,
    events: broadcast::Sender<ReplicationEvent>,
    counters: Arc<ReplicationCounters>,
}

impl Engine {
    pub fn new(id: Key, store: Arc<CoreStore>, policy: Arc<dyn Policy>) -> Engine {
        Engine {
            id,
            store,
            policy,
            banned: StdMutex::new(HashMap::new()),
            events: broadcast::channel(256).0,
            counters: Arc::default(),
        }
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

    /// How much longer `peer` is refused because it misbehaved (None: it is not).
    pub fn banned_for(&self, peer: &Key) -> Option<Duration> {
        let mut banned = self.banned.lock().unwrap_or_else(|e| e.into_inner());
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
        self.banned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, Instant::now() + MISBEHAVIOUR_BAN);
        link.close(code, reason);
    }

    /// Serves the streams the peer opens on `link` until the link closes (or the peer
    /// floods it with streams).
    pub async fn serve_link<L: Link>(self: &Arc<Self>, link: L, session: Session) {
        let mut budget = RateBudget::new(STREAM_BURST, STREAMS_PER_SECOND, Instant::now());
        while let Some((send, recv)) = link.accept_stream().await {
            if !budget.take(Instant::now()) {
                let reason = format!(
                    "opened streams faster than {STREAMS_PER_SECOND}/s (burst {STREAM_BURST})"
                );
                self.disconnect_misbehaving(&link, close_code::FLOOD, &reason);
                return;
            }
            let engine = self.clone();
            let link = link.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = engine.serve_stream(&link, session, send, recv) => {}
                    () = link.closed() => {}
                }
            });
        }
    }

    /// Reads the `Open` of one stream and serves the core it names, or answers `NotFound` —
    /// the same bytes whether we do not hold the core, the capability is wrong, or the
    /// policy refuses this peer.
    async fn serve_stream<L: Link>(
        &self,
        link: &L,
        session: Session,
        mut send: L::Send,
        mut recv: L::Recv,
    ) {
        let peer = session.reader;
        let open = tokio::time::timeout(OPEN_TIMEOUT, read_message(&mut recv, MAX_READER_FRAME));
        let (dk, cap) = match open.await {
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
                self.disconnect_misbehaving(link, close_code::PROTOCOL, &reason);
                return;
            }
            Ok(Err(e)) => {
                self.disconnect_misbehaving(link, close_code::PROTOCOL, &e.to_string());
                return;
            }
        };
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
            let _ = send.shutdown().await;
            self.emit(ReplicationEvent::ServedNotFound {
                peer,
                discovery_key: dk,
            });
            return;
        };
        let key = core.key();
        let send = Counted::new(send, self.counters.clone(), Side::Served);
        match serve(core, recv, send).await {
            Ok(()) => {}
            Err(e) if e.blames_peer() => {
                let code = match e {
                    ReplicationError::Wire(WireError::Flood(_)) => close_code::FLOOD,
                    _ => close_code::PROTOCOL,
                };
                self.disconnect_misbehaving(link, code, &e.to_string());
            }
            Err(e) => {
                tracing::debug!(peer = %peer.short(), core = %key.short(), "serving ended: {e}");
            }
        }
    }

    /// Replicates `core` from the peer at the other end of `link` (the reader side of
    /// `session`), session after session, until the link closes or the peer misbehaves.
    pub async fn pull_core<L: Link>(&self, link: L, session: Session, core: Arc<Core>) {
        tokio::select! {
            () = self.pull_core_until_closed(&link, session, core) => {}
            () = link.closed() => {}
        }
    }

    async fn pull_core_until_closed<L: Link>(&self, link: &L, session: Session, core: Arc<Core>) {
        let key = core.key();
        let peer = session.server;
        let cap = capability::capability(&key, &session);
        let mut backoff = Backoff::new(PULL_RETRY_MIN, PULL_RETRY_MAX);
        loop {
            let Some((send, recv)) = link.open_stream().await else {
                return; // the link closed
            };
            let recv = Counted::new(recv, self.counters.clone(), Side::Received);
            let end = pull(core.clone(), cap, recv, send).await;
            if let Err(ReplicationError::BadProof(_)) = &end {
                ReplicationCounters::add(&self.counters.proofs_rejected, 1);
            }
            match end {
                Ok(PullEnd::NotFound) => {
                    tracing::debug!(peer = %peer.short(), core = %key.short(), "peer does not have it");
                    self.emit(ReplicationEvent::PullNotFound { peer, core: key });
                    tokio::time::sleep(RETRY_NOT_FOUND).await;
                }
                Ok(PullEnd::Closed) => {
                    if link.is_closed() {
                        return;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) if e.blames_peer() => {
                    let code = match e {
                        ReplicationError::BadProof(_) => close_code::BAD_DATA,
                        _ => close_code::PROTOCOL,
                    };
                    self.disconnect_misbehaving(link, code, &e.to_string());
                    return;
                }
                Err(ReplicationError::Storage(e)) => {
                    // Ours, not the peer's: keep the link, try again later.
                    tracing::warn!(core = %key.short(), "cannot store what {} sent: {e}", peer.short());
                    tokio::time::sleep(RETRY_STORAGE).await;
                }
                Err(e) => {
                    tracing::warn!(peer = %peer.short(), core = %key.short(), "replication failed: {e}");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}
