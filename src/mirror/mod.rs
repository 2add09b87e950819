//! The mirror daemon (`dat-mirror serve`): follows the command logs of its allowed laptops,
//! folds them into the mirror set, replicates and seeds every site in the set, writes its
//! status log, and serves the sites over HTTP.
//!
//! Desired state vs. running state: the mirror set (pure fold, [`crate::model::mirror_set`]) says what
//! should be mirrored; [`MirrorInner::reconcile`] starts and stops site tasks ([`site`]) to
//! match. On start, the already-acknowledged part of every log is folded first and reconciled
//! once; later entries are applied one by one, each acknowledged in the status log after its
//! effect is in place. Everything lives in the data folder, so a restarted mirror resumes.

pub mod control_socket;
pub mod http;
pub mod invites;
pub mod laptops;
pub mod site;
mod site_source;
pub mod status_log;
pub mod storage_cap;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, RwLock};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::drive;
use crate::model::command::Command;
use crate::model::keys::Key;
use crate::model::mirror_set::MirrorSet;
use crate::model::status::StatusEvent;
use crate::net::endpoint::{self, Bound, NetworkConfig};
use crate::net::endpoint::{DataLock, Identity};
use crate::net::node::{Node, Policy};
use crate::net::providers::Providers;
use crate::store::{Core, CoreInfo, CoreStore};
use status_log::StatusLog;

/// How `dat-mirror serve` was asked to run.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub data: PathBuf,
    /// iroh (QUIC) listen address for peers.
    pub listen: SocketAddr,
    /// HTTP gateway listen address (none: no gateway).
    pub http: Option<SocketAddr>,
    /// Laptop ids to follow, in addition to those saved in the data folder.
    pub allow: Vec<Key>,
    /// Discovery routes (mDNS, DHT, relays); `NetworkConfig::offline()` for none.
    pub network: NetworkConfig,
}

/// A running site.
pub struct SiteRuntime {
    pub alias: Option<String>,
    pub db: Arc<Core>,
    pub blobs: Option<Arc<Core>>,
    /// (db length, unix ms when the mirror first saw that length).
    seen: (u64, u64),
    task: JoinHandle<()>,
}

/// One running site, as seen from outside its task.
#[derive(Clone)]
pub struct SiteSnapshot {
    pub key: Key,
    pub alias: Option<String>,
    pub db: Arc<Core>,
    /// Known once the db header has arrived.
    pub blobs: Option<Arc<Core>>,
    /// Unix ms when the mirror first saw the site's current version.
    pub updated_ms: Option<u64>,
}

/// Both cores of a site hold every block any peer has announced, and the db has at least
/// its header. (Whether every file of that version is held is checked by the site task.)
pub(crate) fn cores_in_sync(db: &CoreInfo, blobs: &CoreInfo) -> bool {
    db.synced() && blobs.synced() && db.length > 0
}

fn snapshot(key: &Key, s: &SiteRuntime) -> SiteSnapshot {
    SiteSnapshot {
        key: *key,
        alias: s.alias.clone(),
        db: s.db.clone(),
        blobs: s.blobs.clone(),
        updated_ms: Some(s.seen.1),
    }
}

/// Who may read what from a mirror: the status log only to allowed laptops, mirrored sites
/// to anyone who knows their key, nothing else (command logs are never served).
struct MirrorPolicy {
    own: Key,
    allowed: Arc<RwLock<BTreeSet<Key>>>,
    served: Arc<RwLock<HashSet<Key>>>,
}

impl Policy for MirrorPolicy {
    fn may_serve(&self, peer: &Key, core: &Key) -> bool {
        if *core == self.own {
            return self.allowed.read().unwrap().contains(peer);
        }
        self.served.read().unwrap().contains(core)
    }
}

/// The state shared by the mirror's tasks.
pub struct MirrorInner {
    pub identity: Identity,
    pub data: PathBuf,
    pub store: Arc<CoreStore>,
    pub node: Arc<Node>,
    /// Announces the mirrored sites (DHT) and finds who holds a site.
    pub providers: Arc<Providers>,
    pub status: StatusLog,
    pub http_url: Option<String>,
    allowed: Arc<RwLock<BTreeSet<Key>>>,
    /// Unpaired laptops: their logs are kept (and folded up to what was acknowledged, so
    /// the sites they asked for stay) but no longer followed or answered.
    revoked: RwLock<BTreeSet<Key>>,
    /// The follower task of each allowed laptop's command log.
    followers: StdMutex<HashMap<Key, JoinHandle<()>>>,
    /// Where followers send the entries they read (to the controller).
    entries: mpsc::Sender<LogEntry>,
    served: Arc<RwLock<HashSet<Key>>>,
    set: StdMutex<MirrorSet>,
    sites: StdMutex<BTreeMap<Key, SiteRuntime>>,
    /// Custom domains of the HTTP gateway: host name → site.
    /// Replaced whole (rarely); read on every HTTP request, so handed out as an `Arc`.
    domains: RwLock<Arc<BTreeMap<String, Key>>>,
    /// `serve --max-storage` in bytes (0: no cap).
    max_storage: std::sync::atomic::AtomicU64,
}

/// A started mirror (for the CLI and tests).
pub struct Mirror {
    pub inner: Arc<MirrorInner>,
    /// The bound peer address.
    pub listen: SocketAddr,
    /// The bound HTTP address.
    pub http: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    _lock: DataLock,
}

impl Mirror {
    pub fn key(&self) -> Key {
        self.inner.identity.key()
    }

    /// Stops every task and closes the endpoint.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        let sites: Vec<SiteRuntime> = std::mem::take(&mut *self.inner.sites.lock().unwrap())
            .into_values()
            .collect();
        for s in sites {
            s.task.abort();
        }
        for (_, f) in self.inner.followers.lock().unwrap().drain() {
            f.abort();
        }
        let _ = std::fs::remove_file(crate::ipc::socket_path(&self.inner.data));
        self.inner.node.endpoint().close().await;
    }
}

/// Starts a mirror: binds the peer endpoint and the HTTP gateway, replays the logs, and runs
/// until [`Mirror::shutdown`] (or the process ends).
pub async fn start(config: MirrorConfig) -> anyhow::Result<Mirror> {
    let lock = DataLock::acquire(&config.data)?;
    let identity = Identity::load_or_create(&config.data)?;
    let store = Arc::new(CoreStore::new(&config.data)?);
    let status_core = store
        .open_or_create_writable(&identity.signing_key())
        .await?;

    let mut allowed = laptops::load_list(&config.data, laptops::ALLOW_FILE)?;
    let mut revoked = laptops::load_list(&config.data, laptops::REVOKED_FILE)?;
    allowed.extend(config.allow.iter().copied());
    revoked.retain(|k| !allowed.contains(k));
    laptops::save_list(&config.data, laptops::ALLOW_FILE, &allowed)?;
    laptops::save_list(&config.data, laptops::REVOKED_FILE, &revoked)?;
    let allowed = Arc::new(RwLock::new(allowed));
    let served = Arc::new(RwLock::new(HashSet::new()));

    let Bound { endpoint, lookups } =
        endpoint::bind(&identity, config.listen, &config.network).await?;
    let listen = endpoint
        .bound_sockets()
        .into_iter()
        .next()
        .unwrap_or(config.listen);
    let policy = MirrorPolicy {
        own: identity.key(),
        allowed: allowed.clone(),
        served: served.clone(),
    };
    let pairing = crate::net::pairing::Pairing::new();
    let node = Node::builder(endpoint, store.clone(), Arc::new(policy))
        .accept(crate::net::pairing::PAIR_ALPN, pairing.clone())
        .spawn();
    let providers = Providers::start(node.clone(), &lookups, &identity);

    let http_listener =
        match config.http {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen for HTTP on {addr} (is the port in use?)")
            })?),
            None => None,
        };
    let http = http_listener.as_ref().and_then(|l| l.local_addr().ok());
    let http_url = http.map(|a| format!("http://{a}"));

    let (entries, rx) = mpsc::channel::<LogEntry>(256);
    let inner = Arc::new(MirrorInner {
        identity,
        data: config.data.clone(),
        store,
        node,
        providers,
        status: StatusLog::new(status_core),
        http_url: http_url.clone(),
        allowed,
        revoked: RwLock::new(revoked),
        followers: StdMutex::new(HashMap::new()),
        entries,
        served,
        set: StdMutex::new(MirrorSet::new()),
        sites: StdMutex::new(BTreeMap::new()),
        domains: RwLock::new(Arc::new(BTreeMap::new())),
        max_storage: std::sync::atomic::AtomicU64::new(0),
    });
    inner
        .status
        .record(StatusEvent::Online { http: http_url })
        .await;

    let mut tasks = Vec::new();
    if let Some(listener) = http_listener {
        // [serve] status / base_host are wired here by the settings work (defaults for now).
        let gateway = http::GatewayConfig::with_token_in(&config.data)?;
        let inner2 = inner.clone();
        tasks.push(tokio::spawn(async move {
            http::serve(inner2, listener, gateway).await
        }));
    }

    // Replay what was already acknowledged (of unpaired laptops' logs too), then follow
    // every allowed log live.
    let next_unacked = inner.status.next_unacked().await?;
    let mut logs: Vec<Key> = inner.allowed();
    logs.extend(inner.revoked.read().unwrap().iter().copied());
    for log in logs {
        let core = inner.store.open_or_create_replica(&log).await?;
        let from = next_unacked
            .get(&log)
            .copied()
            .unwrap_or(0)
            .min(core.info().contiguous_length);
        for seq in 0..from {
            if let Some(bytes) = core.get(seq).await? {
                if let Ok(cmd) = Command::decode(&bytes) {
                    inner.set.lock().unwrap().apply(log, &cmd);
                }
            }
        }
        if inner.allowed.read().unwrap().contains(&log) {
            inner.follow_laptop(core, from);
        }
    }
    inner.remove_leftovers().await;
    inner.reconcile().await;
    let controller = inner.clone();
    tasks.push(tokio::spawn(async move { controller.control(rx).await }));
    laptops::accept_pairings(&inner, &pairing);
    tasks.push(control_socket::spawn(inner.clone())?);

    tracing::info!(
        "mirror {} listening on {listen}{}",
        inner.identity.key(),
        http.map(|h| format!(", HTTP on http://{h}"))
            .unwrap_or_default()
    );
    Ok(Mirror {
        inner,
        listen,
        http,
        tasks,
        _lock: lock,
    })
}

/// One command-log entry, as read by a follower.
struct LogEntry {
    log: Key,
    seq: u64,
    bytes: Vec<u8>,
}

/// Reads a command log in order as its entries arrive, from `from` on.
async fn follow(core: Arc<Core>, from: u64, tx: mpsc::Sender<LogEntry>) {
    let log = core.key();
    let mut next = from;
    let mut rx = core.subscribe();
    loop {
        let contiguous = rx.borrow_and_update().contiguous_length;
        while next < contiguous {
            match core.get(next).await {
                Ok(Some(bytes)) => {
                    if tx
                        .send(LogEntry {
                            log,
                            seq: next,
                            bytes,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    next += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(log = %log.short(), "cannot read command {next}: {e}");
                    break;
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl MirrorInner {
    /// Applies live command-log entries one at a time: fold, reconcile, acknowledge.
    async fn control(self: Arc<Self>, mut rx: mpsc::Receiver<LogEntry>) {
        while let Some(LogEntry { log, seq, bytes }) = rx.recv().await {
            if !self.allowed.read().unwrap().contains(&log) {
                // Read just before its laptop was unpaired: left for a later pairing.
                continue;
            }
            match Command::decode(&bytes) {
                Ok(cmd) => {
                    tracing::info!(log = %log.short(), seq, "command: {cmd:?}");
                    self.set.lock().unwrap().apply(log, &cmd);
                    self.reconcile().await;
                    self.status.record(StatusEvent::Ack { log, seq }).await;
                }
                Err(e) => {
                    tracing::warn!(log = %log.short(), seq, "skipping a command entry: {e}");
                    self.status
                        .record(StatusEvent::Rejected {
                            log,
                            seq,
                            reason: e.to_string(),
                        })
                        .await;
                }
            }
        }
    }

    /// Starts a site task for every site in the set that has none, stops (and deletes) every
    /// running site that left the set, and updates aliases.
    pub async fn reconcile(self: &Arc<Self>) {
        let wanted: BTreeMap<Key, Option<String>> = self
            .set
            .lock()
            .unwrap()
            .iter()
            .map(|(k, w)| (*k, w.alias.clone()))
            .collect();
        let running: Vec<Key> = self.sites.lock().unwrap().keys().copied().collect();
        for key in running.iter().filter(|k| !wanted.contains_key(k)) {
            self.stop_site(key).await;
        }
        for (key, alias) in wanted {
            let exists = {
                let mut sites = self.sites.lock().unwrap();
                if let Some(s) = sites.get_mut(&key) {
                    s.alias = alias.clone();
                    true
                } else {
                    false
                }
            };
            if !exists {
                self.start_site(key, alias).await;
            }
        }
    }

    async fn start_site(self: &Arc<Self>, key: Key, alias: Option<String>) {
        let db = match self.store.open_or_create_replica(&key).await {
            Ok(db) => db,
            Err(e) => {
                self.status
                    .record(StatusEvent::Error {
                        key,
                        reason: format!("cannot store the site: {e}"),
                    })
                    .await;
                return;
            }
        };
        tracing::info!(site = %key.short(), "mirroring {}", alias.as_deref().unwrap_or(""));
        self.served.write().unwrap().insert(key);
        self.providers.announce(key.discovery_key());
        let task = tokio::spawn(site::run_site(self.clone(), key, db.clone()));
        self.sites.lock().unwrap().insert(
            key,
            SiteRuntime {
                alias,
                seen: (db.info().length, crate::util::clock::now_ms()),
                db,
                blobs: None,
                task,
            },
        );
    }

    /// Deletes site data on disk that the mirror set no longer names (left behind when the
    /// mirror stopped between applying an `Unmirror` and deleting the data). Keeps this
    /// mirror's own log, every allowed laptop's command log, and both cores of every site
    /// in the set; never deletes a core this mirror can write.
    async fn remove_leftovers(&self) {
        let mut keep: HashSet<Key> = self.allowed().into_iter().collect();
        keep.extend(self.revoked.read().unwrap().iter().copied());
        keep.insert(self.identity.key());
        let sites: Vec<Key> = self.set.lock().unwrap().keys().copied().collect();
        for site in sites {
            keep.insert(site);
            if let Ok(Some(db)) = self.store.open_existing(&site).await {
                if let Ok(Some(block0)) = db.get(0).await {
                    if let Ok(drive::Header {
                        content_feed: Some(blobs),
                        ..
                    }) = drive::decode_header(&block0)
                    {
                        keep.insert(Key(blobs));
                    }
                }
            }
        }
        for key in self.store.keys_on_disk() {
            if keep.contains(&key) {
                continue;
            }
            match self.store.open_existing(&key).await {
                Ok(Some(core)) if core.info().writable => continue,
                _ => {}
            }
            tracing::info!("removing leftover data of {key} (no longer in the mirror set)");
            if let Err(e) = self.store.delete(&key) {
                tracing::warn!("cannot remove leftover data of {key}: {e}");
            }
        }
    }

    /// Called by a site task once it knows its blobs core.
    pub(crate) fn set_blobs(&self, key: &Key, blobs: Arc<Core>) {
        self.served.write().unwrap().insert(blobs.key());
        if let Some(s) = self.sites.lock().unwrap().get_mut(key) {
            s.blobs = Some(blobs);
        }
    }

    async fn stop_site(&self, key: &Key) {
        let Some(site) = self.sites.lock().unwrap().remove(key) else {
            return;
        };
        self.providers.withdraw(&key.discovery_key());
        let SiteRuntime {
            db, blobs, task, ..
        } = site;
        task.abort();
        let _ = task.await;
        let mut cores = vec![db.key()];
        // The task may have been stopped after it created the blobs core but before it
        // reported it (even in the middle of creating it, leaving files that cannot be
        // opened): the db header names it, so it is deleted too.
        let blobs = match blobs {
            Some(b) => Some(b.key()),
            None => match db.get(0).await {
                Ok(Some(block0)) => drive::decode_header(&block0)
                    .ok()
                    .and_then(|h| h.content_feed)
                    .map(Key),
                _ => None,
            },
        };
        cores.extend(blobs);
        for core in &cores {
            self.served.write().unwrap().remove(core);
            self.node.unwant(core);
        }
        drop(db);
        for core in &cores {
            if let Err(e) = self.store.delete(core) {
                tracing::error!(site = %key.short(), "cannot delete {core}: {e}");
            }
        }
        tracing::info!(site = %key.short(), "removed");
        self.status.record(StatusEvent::Removed { key: *key }).await;
    }

    /// A snapshot of the running sites.
    pub fn sites(&self) -> Vec<SiteSnapshot> {
        self.sites
            .lock()
            .unwrap()
            .iter()
            .map(|(k, s)| snapshot(k, s))
            .collect()
    }

    /// The running site `key`.
    pub fn site_snapshot(&self, key: &Key) -> Option<SiteSnapshot> {
        self.sites
            .lock()
            .unwrap()
            .get(key)
            .map(|s| snapshot(key, s))
    }

    /// The site an alias names.
    pub fn site_by_alias(&self, alias: &str) -> Option<Key> {
        let sites = self.sites.lock().unwrap();
        sites
            .iter()
            .find(|(_, s)| s.alias.as_deref() == Some(alias))
            .map(|(k, _)| *k)
    }

    /// Records that the site's db has `length` blocks (for Last-Modified and "last sync").
    pub(crate) fn note_version(&self, key: &Key, length: u64) {
        if let Some(s) = self.sites.lock().unwrap().get_mut(key) {
            if s.seen.0 != length {
                s.seen = (length, crate::util::clock::now_ms());
            }
        }
    }

    /// Maps custom domains (host name → site) for the HTTP gateway.
    pub fn set_domains(&self, domains: BTreeMap<String, Key>) {
        let lower = domains
            .into_iter()
            .map(|(h, k)| (h.trim_end_matches('.').to_ascii_lowercase(), k))
            .collect();
        *self.domains.write().unwrap() = Arc::new(lower);
    }

    pub fn domains(&self) -> Arc<BTreeMap<String, Key>> {
        self.domains.read().unwrap().clone()
    }

    /// The running site named by `key`.
    pub fn site(&self, key: &Key) -> Option<(Arc<Core>, Option<Arc<Core>>)> {
        self.site_snapshot(key).map(|s| (s.db, s.blobs))
    }

    /// Sets the storage cap (`serve --max-storage`; None: no cap). Site tasks check it
    /// before they fetch, so it applies to running sites within a second or so.
    pub fn set_max_storage(&self, bytes: Option<u64>) {
        self.max_storage
            .store(bytes.unwrap_or(0), std::sync::atomic::Ordering::SeqCst);
    }

    pub fn max_storage(&self) -> Option<u64> {
        match self.max_storage.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// May sites fetch more data? `Err` says why not (the storage cap is reached).
    pub fn storage_check(&self) -> Result<(), String> {
        storage_cap::may_fetch(self.store.held_bytes(), self.max_storage())
    }

    pub fn allowed(&self) -> Vec<Key> {
        self.allowed.read().unwrap().iter().copied().collect()
    }
}
