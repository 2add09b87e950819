//! [`HyperswarmBridge`]: the [`Transport`] that reaches the HyperDHT through a supervised
//! `node bridge.js` process, with its options, errors, status and events.
//!
//! Start it with [`HyperswarmBridge::start`]; it checks that Node and the js packages are there
//! (or says which command fixes it), starts the process, and hands it to the supervisor
//! (`supervisor.rs`), which restarts it with back-off when it dies and joins the topics again.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::frame::ToBridge;
use crate::session::Session;
use crate::transport::{Connection, JoinMode, PublicKey, Topic, Transport, TransportError};

/// How to run the bridge.
#[derive(Clone)]
pub struct BridgeOptions {
    /// Seed of the swarm key pair: the same seed gives the same identity on every start.
    pub seed: [u8; 32],
    /// DHT bootstrap nodes as `HOST:PORT`. When given, nothing else is contacted; empty means
    /// hyperdht's public bootstrap nodes.
    pub bootstrap: Vec<String>,
    /// Address every UDP socket binds (tests: `127.0.0.1`); `None` = all interfaces.
    pub host: Option<String>,
    /// `false` tells the DHT it is reachable (loopback tests); `true` (default) lets it find out.
    pub firewalled: bool,
    /// The `node` binary.
    pub node: PathBuf,
    /// The folder with `bridge.js` and its installed `node_modules`.
    pub js_dir: PathBuf,
    /// Flow-control window per connection and direction, in bytes.
    pub window: u32,
    /// Back-off between restarts.
    pub backoff: Backoff,
    /// How long a start may take until the bridge is READY.
    pub ready_timeout: Duration,
}

impl std::fmt::Debug for BridgeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeOptions")
            .field("seed", &"<secret>")
            .field("bootstrap", &self.bootstrap)
            .field("host", &self.host)
            .field("firewalled", &self.firewalled)
            .field("node", &self.node)
            .field("js_dir", &self.js_dir)
            .field("window", &self.window)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// Restart back-off: `initial` doubling per failed start up to `max`, each delay scaled by a
/// random factor in [0.5, 1.0] (jitter). A bridge that ran for `reset_after` starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// Where the bridge's JavaScript is: `$DAT_MIRROR_HYPERSWARM_BRIDGE_DIR` if set, else this
/// crate's `js/` folder (a source checkout).
pub fn default_js_dir() -> PathBuf {
    std::env::var_os("DAT_MIRROR_HYPERSWARM_BRIDGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js"))
}

impl BridgeOptions {
    /// Product defaults: public bootstrap nodes, all interfaces, `node` from `PATH`.
    pub fn new(seed: [u8; 32]) -> BridgeOptions {
        BridgeOptions {
            seed,
            bootstrap: Vec::new(),
            host: None,
            firewalled: true,
            node: PathBuf::from("node"),
            js_dir: default_js_dir(),
            window: 4 * 1024 * 1024,
            backoff: Backoff::default(),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the bridge cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    #[error("Node.js is not usable: {reason}; fix: {fix}")]
    NodeMissing { reason: String, fix: String },
    #[error("the hyperswarm bridge is not installed: {reason}; fix: {fix}")]
    NotInstalled { reason: String, fix: String },
    #[error("bad bridge option: {0}")]
    BadOption(String),
    #[error("could not start the bridge process: {0}")]
    Spawn(String),
    #[error("the bridge did not start: {0}")]
    StartFailed(String),
}

impl BridgeError {
    /// The command that fixes it, for errors a user fixes by installing something.
    pub fn fix(&self) -> Option<&str> {
        match self {
            BridgeError::NodeMissing { fix, .. } | BridgeError::NotInstalled { fix, .. } => {
                Some(fix)
            }
            _ => None,
        }
    }
}

/// What the bridge is doing now (for the log, the status page and `cat STATUS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeStatus {
    Running {
        pid: Option<u32>,
        restarts: u64,
    },
    /// Died; the next start is due after the back-off.
    Restarting {
        last_error: String,
        attempt: u32,
        next_in: Duration,
    },
    /// Cannot start until something is installed (`fix` says what); retried with back-off.
    Unavailable {
        reason: String,
        fix: String,
    },
    Stopped,
}

/// Something the supervisor did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeEvent {
    Started { pid: Option<u32> },
    Died { reason: String },
    StartFailed { error: String },
    Restarted { pid: Option<u32>, attempt: u32 },
    Stopped,
}

pub(crate) struct Inner {
    pub opts: BridgeOptions,
    pub cancel: CancellationToken,
    pub public_key: PublicKey,
    pub topics: Mutex<BTreeMap<Topic, JoinMode>>,
    pub session: Mutex<Option<Arc<Session>>>,
    pub incoming_tx: mpsc::Sender<Box<dyn Connection>>,
    incoming_rx: tokio::sync::Mutex<mpsc::Receiver<Box<dyn Connection>>>,
    pub status: watch::Sender<BridgeStatus>,
    pub events: broadcast::Sender<BridgeEvent>,
}

impl Inner {
    pub(crate) fn current(&self) -> Option<Arc<Session>> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_current(&self, s: Option<Arc<Session>>) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    pub(crate) fn topics(&self) -> Vec<(Topic, JoinMode)> {
        let t = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub(crate) fn event(&self, e: BridgeEvent) {
        let _ = self.events.send(e);
    }
}

/// The HyperDHT through Holepunch's hyperswarm in a supervised Node process.
#[derive(Clone)]
pub struct HyperswarmBridge {
    inner: Arc<Inner>,
    supervisor: Arc<Mutex<Option<JoinHandle<()>>>>,
}

fn check_options(opts: &BridgeOptions) -> Result<(), BridgeError> {
    for b in &opts.bootstrap {
        crate::config::parse_bootstrap(b).map_err(BridgeError::BadOption)?;
    }
    if opts.window < 64 * 1024 {
        return Err(BridgeError::BadOption(format!(
            "window {} is under 64 KiB",
            opts.window
        )));
    }
    Ok(())
}

impl HyperswarmBridge {
    /// Checks Node and the js packages, starts the bridge and waits until it is ready.
    /// `cancel` shuts it down (the process exits; `accept` returns `None`).
    pub async fn start(
        opts: BridgeOptions,
        cancel: CancellationToken,
    ) -> Result<HyperswarmBridge, BridgeError> {
        check_options(&opts)?;
        crate::child::preflight(&opts).await?;
        let (incoming_tx, incoming_rx) = mpsc::channel(64);
        let (session, task) = Session::start(&opts, incoming_tx.clone()).await?;
        let (status, _) = watch::channel(BridgeStatus::Running {
            pid: session.pid,
            restarts: 0,
        });
        let (events, _) = broadcast::channel(64);
        let inner = Arc::new(Inner {
            opts,
            cancel,
            public_key: session.public_key,
            topics: Mutex::new(BTreeMap::new()),
            session: Mutex::new(Some(session.clone())),
            incoming_tx,
            incoming_rx: tokio::sync::Mutex::new(incoming_rx),
            status,
            events,
        });
        tracing::info!(pid = ?session.pid, key = %hex::encode(inner.public_key), "hyperswarm bridge started");
        inner.event(BridgeEvent::Started { pid: session.pid });
        let sup = tokio::spawn(crate::supervisor::run(inner.clone(), session, task));
        Ok(HyperswarmBridge {
            inner,
            supervisor: Arc::new(Mutex::new(Some(sup))),
        })
    }

    /// What the bridge is doing now.
    pub fn status(&self) -> BridgeStatus {
        self.inner.status.borrow().clone()
    }

    /// Status changes.
    pub fn watch_status(&self) -> watch::Receiver<BridgeStatus> {
        self.inner.status.subscribe()
    }

    /// Starts, deaths and restarts from now on.
    pub fn events(&self) -> broadcast::Receiver<BridgeEvent> {
        self.inner.events.subscribe()
    }

    /// The process id of the running bridge, if one runs.
    pub fn child_pid(&self) -> Option<u32> {
        self.inner.current().and_then(|s| s.pid)
    }

    /// The topics joined (and re-joined after every restart).
    pub fn topics(&self) -> Vec<(Topic, JoinMode)> {
        self.inner.topics()
    }

    /// Stops the bridge and waits for the process to exit.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let sup = self
            .supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(sup) = sup {
            let _ = sup.await;
        }
    }
}

/// `join` returns after the bridge's first announce/lookup of the topic is flushed; while the
/// bridge is down (restarting, or unavailable) it records the topic and returns `Ok` at once:
/// the supervisor joins every recorded topic when the bridge is (re)started.
#[async_trait]
impl Transport for HyperswarmBridge {
    async fn join(&self, topic: Topic, mode: JoinMode) -> Result<(), TransportError> {
        if !mode.server && !mode.client {
            return self.leave(topic).await;
        }
        self.inner
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic, mode);
        // Not running now: the supervisor joins it when the bridge is back.
        let Some(s) = self.inner.current() else {
            return Ok(());
        };
        s.request(|req| ToBridge::Join {
            req,
            topic,
            server: mode.server,
            client: mode.client,
        })
        .await
    }

    async fn leave(&self, topic: Topic) -> Result<(), TransportError> {
        self.inner
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&topic);
        let Some(s) = self.inner.current() else {
            return Ok(());
        };
        s.request(|req| ToBridge::Leave { req, topic }).await
    }

    async fn accept(&self) -> Option<Box<dyn Connection>> {
        let mut rx = self.inner.incoming_rx.lock().await;
        tokio::select! {
            c = rx.recv() => c,
            _ = self.inner.cancel.cancelled() => None,
        }
    }

    fn public_key(&self) -> PublicKey {
        self.inner.public_key
    }
}
