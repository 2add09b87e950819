//! The hypercore network plane of a daemon: the sites it holds, replicated with the peers
//! people run (hyper:// browsers such as Agregore, Pear apps, Node's hyperdrive) over the
//! HyperDHT. It owns one [`Peer`] (the hypercore replication protocol over the engine's store,
//! every proof verified before anything is stored) and one [`HyperswarmBridge`] (the HyperDHT,
//! reached through Node's hyperswarm in a child process), and knows sites as drives: a site is
//! its db core, announced on the db core's discovery key as hyperdrive does; its blobs core
//! joins the replication as soon as the db header naming it is held.
//!
//! What the daemon gets: [`HyperNet::add_site`] / [`HyperNet::remove_site`], peer counts per
//! site ([`HyperNet::peers`]), what this plane stored and what its peers hold
//! ([`HyperNet::updates`], so the store's views refresh), [`HyperNet::core_updated`] (tell
//! connected peers about blocks that arrived another way), and the bridge's state for `status`
//! ([`HyperNet::state`]). Nothing here knows the daemons.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use hypercore_engine::Store;
use hypercore_peer::{drive, Peer, PeerConfig, PeerEvent};
use hypercore_wire::session::Event;
use hyperswarm_bridge::{BridgeOptions, BridgeStatus, HyperswarmBridge, JoinMode, Transport};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::keys::Key;

/// One site as this plane replicates it.
#[derive(Debug, Clone, Copy)]
struct Site {
    /// Fetch what peers hold that we lack (a mirrored site), or only serve (a site we write).
    download: bool,
    /// The blobs core, once the db header naming it is held.
    blobs: Option<[u8; 32]>,
}

/// What the plane reports to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaneUpdate {
    /// Core `key` gained blocks or length (verified, stored).
    Stored([u8; 32]),
    /// A peer announced `length` for core `key`.
    RemoteLength([u8; 32], u64),
}

#[derive(Default)]
struct State {
    sites: HashMap<[u8; 32], Site>,
    /// Connections with an open channel, per core key.
    channels: HashMap<[u8; 32], HashSet<u64>>,
}

/// The hypercore network plane (see the module header). Cheap to clone.
#[derive(Clone)]
pub struct HyperNet {
    peer: Peer,
    bridge: Arc<HyperswarmBridge>,
    state: Arc<Mutex<State>>,
    updates: broadcast::Sender<PlaneUpdate>,
    cancel: CancellationToken,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// What `status` shows of the plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HyperNetState {
    /// Running, with our public key on the HyperDHT.
    Running { public_key: [u8; 32] },
    /// The bridge is restarting (its Node process died); the last error.
    Restarting(String),
    /// It cannot run until something is installed: why, and the command that fixes it.
    Unavailable { reason: String, fix: String },
    /// Shut down.
    Stopped,
}

impl HyperNet {
    /// Starts the bridge with `options` and replicates over it from `store`. Fails with the
    /// bridge's error (it names the command that fixes a missing Node or bridge install).
    pub async fn start(store: Store, options: BridgeOptions) -> anyhow::Result<HyperNet> {
        let cancel = CancellationToken::new();
        let bridge = Arc::new(
            HyperswarmBridge::start(options, cancel.clone())
                .await
                .map_err(|e| anyhow::anyhow!("cannot join the hypercore network: {e}"))?,
        );
        let peer = Peer::new(store, PeerConfig::default());
        let (updates, _) = broadcast::channel(1024);
        let net = HyperNet {
            peer,
            bridge,
            state: Arc::default(),
            updates,
            cancel,
            tasks: Arc::default(),
        };
        let serve = tokio::spawn({
            let peer = net.peer.clone();
            let transport: Arc<dyn Transport> = net.bridge.clone();
            async move { peer.serve(transport).await }
        });
        let events = tokio::spawn(net.clone().follow_events(net.peer.subscribe()));
        net.tasks().extend([serve, events]);
        Ok(net)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tasks(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replicates the site whose db core is `db` on the hypercore network: announces it and
    /// looks up peers on its discovery key, serves what is held and, with `download`, fetches
    /// what is missing (db first, then the blobs core the db header names).
    pub async fn add_site(&self, db: Key, download: bool) -> anyhow::Result<()> {
        let blobs = drive::blobs_key(self.peer.store(), &db.0).ok().flatten();
        self.peer.add_core(db.0, download)?;
        if let Some(b) = blobs {
            self.peer.add_core(b, download)?;
        }
        self.lock().sites.insert(db.0, Site { download, blobs });
        self.peer
            .join(&*self.bridge, &db.0, JoinMode::BOTH)
            .await
            .map_err(|e| anyhow::anyhow!("cannot announce {} on the HyperDHT: {e}", db.short()))
    }

    /// Stops replicating the site (the store keeps its data; open connections stay for other
    /// sites).
    pub async fn remove_site(&self, db: Key) {
        let site = self.lock().sites.remove(&db.0);
        self.peer.remove_core(&db.0);
        if let Some(b) = site.and_then(|s| s.blobs) {
            self.peer.remove_core(&b);
        }
        if let Err(e) = self
            .bridge
            .leave(hypercore_engine::discovery_key(&db.0))
            .await
        {
            tracing::debug!(site = %db.short(), "leaving its topic: {e}");
        }
    }

    /// Connections with the site's db core open (peers replicating it with us now).
    pub fn peers(&self, db: &Key) -> usize {
        self.lock().channels.get(&db.0).map_or(0, HashSet::len)
    }

    /// What this plane stores and what its peers announce.
    pub fn updates(&self) -> broadcast::Receiver<PlaneUpdate> {
        self.updates.subscribe()
    }

    /// Tells connected peers that `key` changed (blocks arrived another way, e.g. from a
    /// laptop over iroh).
    pub fn core_updated(&self, key: &Key) {
        self.add_blobs_of(&key.0);
        self.peer.core_updated(&key.0);
    }

    /// The plane's state, for `status`.
    pub fn state(&self) -> HyperNetState {
        match self.bridge.status() {
            BridgeStatus::Running { .. } => HyperNetState::Running {
                public_key: self.bridge.public_key(),
            },
            BridgeStatus::Restarting { last_error, .. } => HyperNetState::Restarting(last_error),
            BridgeStatus::Unavailable { reason, fix } => HyperNetState::Unavailable { reason, fix },
            BridgeStatus::Stopped => HyperNetState::Stopped,
        }
    }

    /// The replication peer (tests and benches read its store and events).
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Stops the bridge (its Node process exits) and every connection.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.bridge.shutdown().await;
        for t in self.tasks().drain(..) {
            t.abort();
        }
    }

    /// Keeps the channel counts, adds a site's blobs core once its db header is held, and
    /// reports stored blocks.
    async fn follow_events(self, mut events: broadcast::Receiver<PeerEvent>) {
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!("hypercore network: {n} events skipped");
                    self.recount_blobs();
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            match event {
                PeerEvent::Session { conn, event } => self.session_event(conn, event),
                PeerEvent::Closed(end) => {
                    if end.hostile {
                        tracing::warn!(
                            remote = ?end.remote.map(|k| hex::encode(&k[..4])),
                            "hypercore network: closed a misbehaving peer: {}",
                            end.reason
                        );
                    }
                    for conns in self.lock().channels.values_mut() {
                        conns.remove(&end.conn);
                    }
                }
                PeerEvent::Connected { .. } | PeerEvent::Refused { .. } => {}
            }
        }
    }

    fn session_event(&self, conn: u64, event: Event) {
        match event {
            Event::ChannelOpened { key } => {
                self.lock().channels.entry(key).or_default().insert(conn);
            }
            Event::ChannelClosed { key, .. } => {
                if let Some(c) = self.lock().channels.get_mut(&key) {
                    c.remove(&conn);
                }
            }
            Event::Downloaded { key, .. } | Event::Upgraded { key, .. } => {
                let _ = self.updates.send(PlaneUpdate::Stored(key));
                self.add_blobs_of(&key);
            }
            Event::RemoteSync { key, length, .. } => {
                let _ = self.updates.send(PlaneUpdate::RemoteLength(key, length));
            }
            _ => {}
        }
    }

    /// If `db` is a site's db core whose blobs core is not replicated yet and its header is
    /// held now, replicates the blobs core too.
    fn add_blobs_of(&self, db: &[u8; 32]) {
        let download = match self.lock().sites.get(db) {
            Some(Site {
                blobs: None,
                download,
            }) => *download,
            _ => return,
        };
        let Ok(Some(blobs)) = drive::blobs_key(self.peer.store(), db) else {
            return;
        };
        if let Err(e) = self.peer.add_core(blobs, download) {
            tracing::warn!("hypercore network: cannot replicate a site's files: {e}");
            return;
        }
        if let Some(site) = self.lock().sites.get_mut(db) {
            site.blobs = Some(blobs);
        }
    }

    fn recount_blobs(&self) {
        let dbs: Vec<[u8; 32]> = self.lock().sites.keys().copied().collect();
        for db in dbs {
            self.add_blobs_of(&db);
        }
    }
}
