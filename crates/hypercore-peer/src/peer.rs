//! [`Peer`]: the cores this process replicates (one engine store), shared by every
//! connection. Connections run as tasks (see `runner.rs`); a core that grows — appended here,
//! or fetched on one connection — is announced on every other connection without reconnecting.

use crate::core_store::{Claims, EngineCore};
use crate::error::PeerError;
use crate::hooks::{DefaultHooks, Hooks};
use crate::io::{FrameIo, SwarmIo};
use crate::runner;
use hypercore_engine::Store;
use hypercore_wire::caps::discovery_key;
use hypercore_wire::session::{Event, Limits};
use hyperswarm_bridge::{JoinMode, Transport};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// How a peer runs its connections.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Hostile-peer limits of every session.
    pub limits: Limits,
    /// The session timer: unanswered requests are asked again after two ticks.
    pub timer: Duration,
    /// Frames buffered per connection and direction between the session and the transport.
    pub frame_queue: usize,
    /// Open the channel of every registered core on every connection, as Node's corestore
    /// does (true), or only of the cores we fetch, serving the others when the remote opens
    /// them (false: a node holding thousands of cores does not flood each connection).
    pub open_served: bool,
    /// Channel opens we refuse (cores unknown here or not for this remote) allowed in a
    /// burst, and per second after that; more is a flood and closes the connection. A Node
    /// peer opens every core of its corestore, so the burst is generous.
    pub refusal_burst: f64,
    pub refusals_per_second: f64,
    /// Push mode on every connection (see `hypercore_wire::session::SessionConfig::push`):
    /// for links where both ends run this crate; off by default.
    pub push: bool,
    /// How long fetched blocks may stay visible but not yet durable. Zero (the default):
    /// every burst of proofs is made durable (one fsync) before the application or the other
    /// connections hear of it. More: they hear at once, and the flush follows within this
    /// time — one fsync fewer on the path from a remote's append to our reaction. Safe where
    /// losing the tail of a *replica* in a crash costs only fetching it again, and where
    /// anything this node says durably about it comes from a durable commit of the same
    /// store (which syncs every lazy commit before it).
    pub flush_delay: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            timer: Duration::from_secs(5),
            frame_queue: 64,
            open_served: true,
            refusal_burst: 4096.0,
            refusals_per_second: 256.0,
            push: false,
            flush_delay: Duration::ZERO,
        }
    }
}

/// What happened on a connection, for the application (status, peer counts, bans).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A connection started.
    Connected {
        /// This peer's id for the connection.
        conn: u64,
        /// The remote's public key, when the transport has one.
        remote: Option<[u8; 32]>,
    },
    /// A session event (channel opened, block downloaded or uploaded, caught up, …).
    Session {
        /// The connection.
        conn: u64,
        /// The event.
        event: Event,
    },
    /// The remote opened a core we do not replicate with it (unknown here, or the [`Hooks`]
    /// refused this connection): refused, exactly as if we did not hold it.
    Refused {
        /// The connection.
        conn: u64,
        /// The remote's public key, when the transport has one.
        remote: Option<[u8; 32]>,
        /// The discovery key it asked for.
        discovery_key: [u8; 32],
    },
    /// A connection ended.
    Closed(ConnectionEnd),
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionEnd {
    /// This peer's id for the connection.
    pub conn: u64,
    /// The remote's public key, when the transport has one.
    pub remote: Option<[u8; 32]>,
    /// Why it ended.
    pub reason: String,
    /// Whether we closed it because the peer misbehaved (forged proof, bad capability,
    /// flood, malformed frame): a reason to ban it.
    pub hostile: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Control {
    Added([u8; 32]),
    Removed([u8; 32]),
    Updated {
        key: [u8; 32],
        from: Option<u64>,
    },
    /// The hooks' answers may have changed: every connection checks its cores again.
    Recheck,
}

#[derive(Clone)]
pub(crate) struct Registered {
    pub download: bool,
    pub claims: Claims,
}

pub(crate) struct Inner {
    pub store: Store,
    pub config: PeerConfig,
    pub hooks: Arc<dyn Hooks>,
    cores: Mutex<HashMap<[u8; 32], Registered>>,
    by_discovery_key: Mutex<HashMap<[u8; 32], [u8; 32]>>,
    pub control: broadcast::Sender<Control>,
    pub events: broadcast::Sender<PeerEvent>,
    next_conn: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub fn cores(&self) -> Vec<([u8; 32], Registered)> {
        lock(&self.cores)
            .iter()
            .map(|(k, r)| (*k, r.clone()))
            .collect()
    }

    pub fn core(&self, key: &[u8; 32]) -> Option<Registered> {
        lock(&self.cores).get(key).cloned()
    }

    pub fn key_of(&self, discovery_key: &[u8; 32]) -> Option<[u8; 32]> {
        lock(&self.by_discovery_key).get(discovery_key).copied()
    }

    pub fn engine_core(&self, key: [u8; 32], reg: &Registered) -> EngineCore {
        EngineCore::with_claims(
            self.store.clone(),
            key,
            reg.claims.clone(),
            self.hooks.clone(),
        )
    }

    pub fn emit(&self, event: PeerEvent) {
        let _ = self.events.send(event);
    }

    pub fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// One hypercore peer: an engine store, the cores it replicates, and its connections. Cheap to
/// clone (a handle).
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Inner>,
}

impl Peer {
    /// A peer over `store`, replicating no core yet.
    pub fn new(store: Store, config: PeerConfig) -> Self {
        Self::with_hooks(store, config, Arc::new(DefaultHooks))
    }

    /// A peer over `store` whose access, storage and durability decisions are `hooks`'.
    pub fn with_hooks(store: Store, config: PeerConfig, hooks: Arc<dyn Hooks>) -> Self {
        let (control, _) = broadcast::channel(1024);
        let (events, _) = broadcast::channel(4096);
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                hooks,
                cores: Mutex::new(HashMap::new()),
                by_discovery_key: Mutex::new(HashMap::new()),
                control,
                events,
                next_conn: AtomicU64::new(1),
            }),
        }
    }

    /// The engine store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Replicates core `key` on every connection, current and future: serves what we hold
    /// and, with `download`, fetches what peers hold that we lack. A core the store does not
    /// have is opened as a replica (its manifest is learned from the first proof).
    pub fn add_core(&self, key: [u8; 32], download: bool) -> Result<(), PeerError> {
        if self.inner.store.info(&key).is_err() {
            self.inner.store.open_replica(key, None)?;
        }
        let added = {
            let mut cores = lock(&self.inner.cores);
            let fresh = !cores.contains_key(&key);
            cores.insert(
                key,
                Registered {
                    download,
                    claims: Claims::default(),
                },
            );
            fresh
        };
        lock(&self.inner.by_discovery_key).insert(discovery_key(&key), key);
        if added {
            let _ = self.inner.control.send(Control::Added(key));
        }
        Ok(())
    }

    /// Stops replicating `key` (its channels close; the store keeps its data).
    pub fn remove_core(&self, key: &[u8; 32]) {
        lock(&self.inner.cores).remove(key);
        lock(&self.inner.by_discovery_key).remove(&discovery_key(key));
        let _ = self.inner.control.send(Control::Removed(*key));
    }

    /// The cores replicated.
    pub fn cores(&self) -> Vec<[u8; 32]> {
        self.inner.cores().into_iter().map(|(k, _)| k).collect()
    }

    /// Appends blocks to a core we write (one durable commit) and tells every connected peer;
    /// returns the new length.
    pub fn append(&self, key: &[u8; 32], blocks: Vec<Vec<u8>>) -> Result<u64, PeerError> {
        let applied = self.inner.store.append(key, blocks)?;
        self.core_updated(key);
        Ok(applied.length)
    }

    /// Tells every connected peer that `key` changed (after writing to the store directly).
    pub fn core_updated(&self, key: &[u8; 32]) {
        let _ = self.inner.control.send(Control::Updated {
            key: *key,
            from: None,
        });
    }

    /// The [`Hooks`]' answers may have changed (a peer was allowed or refused a core): every
    /// connection opens the cores it may now replicate and closes those it may no longer.
    pub fn access_changed(&self) {
        let _ = self.inner.control.send(Control::Recheck);
    }

    /// Events of every connection.
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.events.subscribe()
    }

    /// Runs one connection until it ends (by either side, or because the peer misbehaved).
    pub async fn run(&self, io: impl FrameIo) -> ConnectionEnd {
        runner::run(self.inner.clone(), Arc::new(io)).await
    }

    /// Runs one connection as a task.
    pub fn spawn(&self, io: impl FrameIo) -> JoinHandle<ConnectionEnd> {
        let peer = self.clone();
        tokio::spawn(async move { peer.run(io).await })
    }

    /// Accepts every connection of `transport` and runs each as a task, until the transport
    /// shuts down.
    pub async fn serve(&self, transport: Arc<dyn Transport>) {
        while let Some(conn) = transport.accept().await {
            self.spawn(SwarmIo(Arc::from(conn)));
        }
    }

    /// Joins core `key`'s discovery key on `transport` (announce with `server`, find peers
    /// with `client`).
    pub async fn join(
        &self,
        transport: &dyn Transport,
        key: &[u8; 32],
        mode: JoinMode,
    ) -> Result<(), PeerError> {
        transport
            .join(discovery_key(key), mode)
            .await
            .map_err(|e| PeerError::Transport(e.to_string()))
    }

    /// Waits until core `key` holds every block of a length of at least `min_length`.
    pub async fn wait_complete(
        &self,
        key: &[u8; 32],
        min_length: u64,
        timeout: Duration,
    ) -> Result<u64, PeerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let info = self.inner.store.info(key)?;
            if info.length >= min_length && info.length > 0 && info.contiguous_length >= info.length
            {
                return Ok(info.length);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PeerError::Session(format!(
                    "core {} not complete: {} of {} blocks (wanted {min_length})",
                    hex::encode(key),
                    info.contiguous_length,
                    info.length
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
