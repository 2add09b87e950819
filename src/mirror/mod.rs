//! The mirror daemon (`dat-mirror serve`): follows the command logs of its allowed laptops,
//! folds them into the mirror set, replicates and seeds every site in the set, writes its
//! status log, and serves the sites over HTTP.
//!
//! Desired state vs. running state: the mirror set (pure fold, [`crate::model::mirror_set`]) says
//! what should be mirrored; [`MirrorInner::reconcile`] starts and stops site tasks ([`site`], kept
//! by `running`) to match. On start, the already-acknowledged part of every log is folded first and
//! reconciled once; later entries are applied one by one, each acknowledged in the status log after
//! its effect is in place. Site data is deleted only for an applied `Unmirror` ([`leftovers`]).
//! Everything lives in the data folder, so a restarted mirror resumes. Start-up and shutdown are
//! the shared ones of [`crate::host`].

pub mod control_socket;
pub mod http;
pub mod hyperplane;
pub mod invites;
pub mod laptops;
pub mod leftovers;
mod running;
pub mod site;
mod site_source;
pub mod status_log;
pub mod storage_cap;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, RwLock};

use anyhow::Context;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::host::{DataDir, Host, Tasks};
use crate::model::command::Command;
use crate::model::keys::Key;
use crate::model::mirror_set::MirrorSet;
use crate::model::status::StatusEvent;
use crate::net::endpoint::{Identity, NetworkConfig};
use crate::net::node::{Node, Policy};
use crate::net::providers::Providers;
use crate::store::log::{EntryError, TypedLog};
use crate::store::CoreStore;
pub use running::SiteSnapshot;
use running::{blobs_key_of, Sites};
pub(crate) use running::{cores_in_sync, site_mirrored};
use site::SiteMessage;
use status_log::StatusLog;
use storage_cap::StorageCap;

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
    /// Custom domains of the HTTP gateway: host name → site.
    pub domains: BTreeMap<String, Key>,
    /// `serve --max-storage` in bytes (None: no cap).
    pub max_storage: Option<u64>,
    /// `[serve] status`: who sees the gateway's own pages (status, JSON, metrics).
    pub status: http::access::StatusAccess,
    /// `[serve] base_host`: each site on its own origin `<z32-key>.<base_host>`.
    pub base_host: Option<http::request::BaseHost>,
    /// `[serve] trash_days`: trash older than this is deleted (0: never).
    pub trash_days: u64,
}

impl Default for MirrorConfig {
    fn default() -> MirrorConfig {
        MirrorConfig {
            data: PathBuf::new(),
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            http: None,
            allow: vec![],
            network: NetworkConfig::offline(),
            domains: BTreeMap::new(),
            max_storage: None,
            status: http::access::StatusAccess::default(),
            base_host: None,
            trash_days: leftovers::DEFAULT_TRASH_DAYS,
        }
    }
}

/// Who may read what from a mirror: the status log only to allowed laptops, mirrored sites
/// to anyone who knows their key, nothing else (command logs are never served, and fetched
/// only from their laptop).
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

    /// A paired laptop's command log (keyed by the laptop's id): fetched only from that
    /// laptop ([`Policy::may_fetch`]); sites from anyone who holds them.
    fn is_log(&self, core: &Key) -> bool {
        self.allowed.read().unwrap().contains(core)
    }
}

/// The state shared by the mirror's tasks.
pub struct MirrorInner {
    pub identity: Identity,
    pub data: DataDir,
    pub store: Arc<CoreStore>,
    pub node: Arc<Node>,
    /// Announces the mirrored sites (DHT) and finds who holds a site.
    pub providers: Arc<Providers>,
    pub status: StatusLog,
    pub http_url: Option<String>,
    /// The owner's secret link to the status pages (with an HTTP gateway), rotatable live.
    pub status_link: Option<http::access::StatusLink>,
    /// `[serve] trash_days`.
    pub trash_days: u64,
    laptops: laptops::Laptops,
    /// Cores anyone may fetch (the running sites' db and blobs cores).
    served: Arc<RwLock<HashSet<Key>>>,
    sites: StdMutex<Sites>,
    /// Custom domains of the HTTP gateway (read on every request, so handed out as an `Arc`).
    domains: RwLock<Arc<BTreeMap<String, Key>>>,
    cap: StorageCap,
    /// Problems found at start that need the owner (unreadable log entries).
    problems: StdMutex<Vec<String>>,
    /// Sites the status log last said were mirrored (at which version), read at start and
    /// handed to each site's first run, so it does not say so again.
    recorded_mirrored: StdMutex<HashMap<Key, u64>>,
    /// The hypercore network plane (hyper:// browsers, Node peers), or why there is none.
    pub hyper: hyperplane::HyperPlane,
    tasks: Tasks,
    site_events: mpsc::UnboundedSender<SiteMessage>,
}

/// A started mirror (for the CLI and tests).
pub struct Mirror {
    pub inner: Arc<MirrorInner>,
    /// The bound peer address.
    pub listen: SocketAddr,
    /// The bound HTTP address.
    pub http: Option<SocketAddr>,
    _lock: crate::host::DataLock,
}

impl Mirror {
    pub fn key(&self) -> Key {
        self.inner.identity.key()
    }

    /// Stops every task (sites, followers, HTTP, control socket) and closes the endpoint.
    pub async fn shutdown(self) {
        self.inner.tasks.shutdown().await;
        self.inner.sites.lock().unwrap().running.clear();
        let _ = std::fs::remove_file(self.inner.data.control_socket());
        self.inner.hyper.shutdown().await;
        self.inner.node.shutdown().await;
        self.inner.node.endpoint().close().await;
        if let Err(e) = self.inner.store.checkpoint().await {
            tracing::warn!("{e} (the next start replays the write-ahead log)");
        }
    }
}

fn lower_domains(domains: BTreeMap<String, Key>) -> BTreeMap<String, Key> {
    domains
        .into_iter()
        .map(|(h, k)| (h.trim_end_matches('.').to_ascii_lowercase(), k))
        .collect()
}

/// Starts a mirror: binds the peer endpoint and the HTTP gateway, replays the logs, and runs
/// until [`Mirror::shutdown`] (or the process ends).
pub async fn start(config: MirrorConfig) -> anyhow::Result<Mirror> {
    let data = DataDir::new(&config.data);
    let opened = Host::open(data.clone()).await?;
    let lists = laptops::Lists::load_for_start(&data, &config.allow)?;
    let allowed = Arc::new(RwLock::new(lists.allowed.clone()));
    let served = Arc::new(RwLock::new(HashSet::new()));
    let policy = MirrorPolicy {
        own: opened.identity.key(),
        allowed: allowed.clone(),
        served: served.clone(),
    };
    let pairing = crate::net::pairing::Pairing::new();
    let host = opened
        .connect(config.listen, &config.network, Arc::new(policy), |node| {
            node.accept(crate::net::pairing::PAIR_ALPN, pairing.clone())
        })
        .await?;

    let http_listener =
        match config.http {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen for HTTP on {addr} (is the port in use?)")
            })?),
            None => None,
        };
    let http = http_listener.as_ref().and_then(|l| l.local_addr().ok());
    let http_url = http.map(|a| format!("http://{a}"));
    let status_link = match http {
        Some(_) => Some(http::access::StatusLink::load_or_create(&config.data)?),
        None => None,
    };

    let (commands, commands_rx) = mpsc::channel::<LogEntry>(256);
    let (site_events, site_events_rx) = mpsc::unbounded_channel();
    let Host {
        data,
        lock,
        identity,
        store,
        own_log,
        node,
        providers,
        listen,
        tasks,
    } = host;
    let hyper = hyperplane::HyperPlane::start(&config.network, &identity, &store, &tasks).await;
    let inner = Arc::new(MirrorInner {
        identity,
        data,
        cap: StorageCap::new(store.clone(), config.max_storage),
        store,
        node,
        providers,
        status: StatusLog::new(own_log),
        http_url: http_url.clone(),
        status_link,
        trash_days: config.trash_days,
        laptops: laptops::Laptops::new(allowed, lists.revoked, commands),
        served,
        sites: StdMutex::new(Sites {
            set: MirrorSet::new(),
            running: BTreeMap::new(),
            next_run: 0,
        }),
        domains: RwLock::new(Arc::new(lower_domains(config.domains))),
        problems: StdMutex::new(Vec::new()),
        recorded_mirrored: StdMutex::new(HashMap::new()),
        hyper,
        tasks,
        site_events,
    });
    inner
        .status
        .record(StatusEvent::Online { http: http_url })
        .await;

    if let Some(listener) = http_listener {
        let gateway = http::GatewayConfig {
            status: config.status,
            status_link: inner.status_link.clone(),
            base_host: config.base_host.clone(),
            ..http::GatewayConfig::default()
        };
        let inner2 = inner.clone();
        inner.tasks.spawn(http::serve(inner2, listener, gateway));
    }
    let events = inner.clone();
    inner.tasks.spawn(events.site_events(site_events_rx));

    inner.replay().await?;
    inner.reconcile().await;
    let controller = inner.clone();
    inner.tasks.spawn(controller.control(commands_rx));
    laptops::accept_pairings(&inner, &pairing);
    control_socket::spawn(&inner)?;
    inner.dial_known_laptops();
    leftovers::spawn_sweeper(&inner);

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
        _lock: lock,
    })
}

/// One command-log entry, as read by a follower.
struct LogEntry {
    log: Key,
    seq: u64,
    entry: Result<Command, EntryError<crate::model::command::CommandError>>,
}

/// Reads a command log in order as its entries arrive, from `from` on.
async fn follow(log: TypedLog<Command>, from: u64, tx: mpsc::Sender<LogEntry>) {
    let key = log.key();
    let mut entries = Box::pin(log.follow(from));
    while let Some((seq, entry)) = entries.next().await {
        if tx
            .send(LogEntry {
                log: key,
                seq,
                entry,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

impl MirrorInner {
    /// Folds what was already acknowledged (of unpaired laptops' logs too), starts following
    /// every allowed log live, and settles data left on disk ([`leftovers`]).
    async fn replay(self: &Arc<Self>) -> anyhow::Result<()> {
        let mut acked = self.status.acknowledged().await;
        *self.recorded_mirrored.lock().unwrap() = std::mem::take(&mut acked.mirrored);
        let mut damage: Vec<String> = acked
            .unreadable
            .iter()
            .map(|(seq, e)| format!("status entry {seq} of this mirror {e}"))
            .collect();
        // Every site any held entry asks for, acknowledged or not: those are kept on disk
        // (the unacknowledged ones are applied live in a moment).
        let mut any_entry = MirrorSet::new();
        for log in self.laptops.known() {
            let core = self.store.open_or_create_replica(&log).await?;
            let commands = TypedLog::<Command>::new(core);
            let acked_to = acked.next.get(&log).copied().unwrap_or(0);
            if commands.len() < acked_to {
                damage.push(format!(
                    "the copy of laptop {}'s command log holds {} entries, but {acked_to} were \
                     applied; it is fetched again from the laptop",
                    log.short(),
                    commands.len()
                ));
            }
            let from = acked_to.min(commands.len());
            for (seq, entry) in commands.entries(0..commands.len()).await {
                match entry {
                    Ok(cmd) => {
                        if seq < from {
                            self.sites.lock().unwrap().set.apply(log, &cmd);
                        }
                        any_entry.apply(log, &cmd);
                    }
                    Err(EntryError::Undecodable(_)) if acked.rejected.contains(&(log, seq)) => {}
                    Err(e) if seq < from => damage.push(format!(
                        "command {seq} of laptop {} (already applied) {e}",
                        log.short()
                    )),
                    Err(e) => tracing::warn!(log = %log.short(), seq, "command {e}"),
                }
            }
            if self.laptops.is_allowed(&log) {
                self.follow_laptop(commands, from);
            }
        }
        for d in &damage {
            tracing::error!("{d}");
        }
        leftovers::settle(self, &any_entry, &damage).await;
        *self.problems.lock().unwrap() = damage;
        Ok(())
    }

    /// Applies live command-log entries one at a time: fold, acknowledge, reconcile. The
    /// acknowledgement does not wait for the site to start or its data to be deleted: the
    /// command is durable in the log and folded, and a restart reconciles the set again
    /// (starting sites, finishing journalled deletions), so nothing is acknowledged that a
    /// crash could lose; the laptop sees `delivered` one site start sooner.
    async fn control(self: Arc<Self>, mut rx: mpsc::Receiver<LogEntry>) {
        let mut stalled: HashSet<(Key, u64)> = HashSet::new();
        while let Some(LogEntry { log, seq, entry }) = rx.recv().await {
            if !self.laptops.is_allowed(&log) {
                // Read just before its laptop was unpaired: left for a later pairing.
                continue;
            }
            match entry {
                Ok(cmd) => {
                    tracing::info!(log = %log.short(), seq, "command: {cmd:?}");
                    self.sites.lock().unwrap().set.apply(log, &cmd);
                    self.status.record(StatusEvent::Ack { log, seq }).await;
                    self.reconcile().await;
                }
                Err(EntryError::Undecodable(e)) => {
                    tracing::warn!(log = %log.short(), seq, "skipping a command entry: {e}");
                    self.status
                        .record(StatusEvent::Rejected {
                            log,
                            seq,
                            reason: e.to_string(),
                        })
                        .await;
                }
                Err(e) => {
                    // Not skipped: the follower reads it again; said once.
                    if stalled.insert((log, seq)) {
                        let problem = format!(
                            "command {seq} of laptop {} {e}; later commands of this laptop \
                             wait until it can be read",
                            log.short()
                        );
                        tracing::error!("{problem}");
                        self.problems.lock().unwrap().push(problem);
                    }
                }
            }
        }
    }

    /// Starts a site task for every site in the set that has none, stops (and deletes) every
    /// running site that left the set, and updates aliases.
    pub async fn reconcile(self: &Arc<Self>) {
        let (wanted, running): (BTreeMap<Key, Option<String>>, Vec<Key>) = {
            let sites = self.sites.lock().unwrap();
            (
                sites
                    .set
                    .iter()
                    .map(|(k, w)| (*k, w.alias.clone()))
                    .collect(),
                sites.running.keys().copied().collect(),
            )
        };
        for key in running.iter().filter(|k| !wanted.contains_key(k)) {
            self.stop_site(key).await;
        }
        for (key, alias) in wanted {
            let exists = {
                let mut sites = self.sites.lock().unwrap();
                if let Some(s) = sites.running.get_mut(&key) {
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

    /// Maps custom domains (host name → site) for the HTTP gateway. (Set at start from
    /// [`MirrorConfig::domains`]; kept for tests that change them while running.)
    pub fn set_domains(&self, domains: BTreeMap<String, Key>) {
        *self.domains.write().unwrap() = Arc::new(lower_domains(domains));
    }

    pub fn domains(&self) -> Arc<BTreeMap<String, Key>> {
        self.domains.read().unwrap().clone()
    }

    /// Changes the storage cap while running (set at start from
    /// [`MirrorConfig::max_storage`]). Site tasks check it before they fetch, so it applies
    /// to running sites within a second or so.
    pub fn set_max_storage(&self, bytes: Option<u64>) {
        self.cap.set(bytes);
    }

    pub fn max_storage(&self) -> Option<u64> {
        self.cap.get()
    }

    /// May sites fetch more data? `Err` says why not (the storage cap is reached).
    pub fn storage_check(&self) -> Result<(), String> {
        self.cap.check()
    }

    pub fn allowed(&self) -> Vec<Key> {
        self.laptops.allowed()
    }

    /// Problems that need the owner: log entries that cannot be read (while there are
    /// any, nothing on disk is deleted or moved at start). For the status page and log.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.problems.lock().unwrap().clone();
        problems.extend(self.hyper.problem());
        problems
    }
}
