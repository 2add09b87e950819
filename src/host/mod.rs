//! What both daemons (`serve`, `mount`) are built on: the data folder ([`DataDir`], its lock,
//! its state files), one start-up sequence ([`Host::open`] then [`Opened::connect`]: lock,
//! identity, store, own log, network, node, provider lookup) and one way to run and stop
//! background tasks ([`Tasks`]: a tokio-util `CancellationToken` and `TaskTracker`, so
//! shutdown cancels every task and waits for it instead of aborting handles).
//!
//! Arrows: `host` uses `net` and `store`; `mirror` and `laptop` use `host`; nothing below
//! imports it.

pub mod data_dir;
pub mod lock;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use data_dir::DataDir;
pub use lock::DataLock;

use crate::net::endpoint::{self, Bound, Identity, NetworkConfig};
use crate::net::node::{Node, NodeBuilder, Policy};
use crate::net::providers::Providers;
use crate::store::{Core, CoreStore};

/// Background tasks of a daemon (or of one part of it, see [`Tasks::child`]).
#[derive(Clone, Default)]
pub struct Tasks {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Runs `fut` until it ends or these tasks are cancelled (it is then dropped at its
    /// next await point). The handle resolves when it has stopped.
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = fut => {}
            }
        })
    }

    /// Tasks cancelled with these (and on their own), tracked with these.
    pub fn child(&self) -> Tasks {
        Tasks {
            cancel: self.cancel.child_token(),
            tracker: self.tracker.clone(),
        }
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Aborts `handle` (a task another module spawned, e.g. [`Node::keep_connected`]) when
    /// these tasks are cancelled.
    pub fn abort_on_cancel(&self, handle: JoinHandle<()>) {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            cancel.cancelled().await;
            handle.abort();
            let _ = handle.await;
        });
    }

    /// Cancels every task and waits until all have stopped.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Start-up, first half: the data folder is locked and its identity, store and own log
/// (command log of a laptop, status log of a mirror) are open. Nothing is on the network.
pub struct Opened {
    pub data: DataDir,
    pub lock: DataLock,
    pub identity: Identity,
    pub store: Arc<CoreStore>,
    pub own_log: Arc<Core>,
}

/// A started daemon's common parts.
pub struct Host {
    pub data: DataDir,
    pub lock: DataLock,
    pub identity: Identity,
    pub store: Arc<CoreStore>,
    pub own_log: Arc<Core>,
    pub node: Arc<Node>,
    pub providers: Arc<Providers>,
    /// The bound peer address.
    pub listen: SocketAddr,
    pub tasks: Tasks,
}

impl Host {
    /// Locks the data folder (made private, 0700) and opens identity, store and own log.
    pub async fn open(data: DataDir) -> anyhow::Result<Opened> {
        let lock = DataLock::acquire(data.root())?;
        let identity = Identity::load_or_create(data.root())?;
        migrate_old_layout(data.root()).await?;
        let store = Arc::new(CoreStore::new(data.root())?);
        let own_log = store
            .open_or_create_writable(&identity.signing_key())
            .await?;
        Ok(Opened {
            data,
            lock,
            identity,
            store,
            own_log,
        })
    }

    /// Stops every task, removes the control socket and closes the endpoint.
    pub async fn shutdown(&self) {
        self.tasks.shutdown().await;
        let _ = std::fs::remove_file(self.data.control_socket());
        self.node.shutdown().await;
        self.node.endpoint().close().await;
    }
}

impl Opened {
    /// Start-up, second half: binds the endpoint, starts the node (answering peers under
    /// `policy`) and the provider lookup.
    pub async fn connect(
        self,
        listen: SocketAddr,
        network: &NetworkConfig,
        policy: Arc<dyn Policy>,
        protocols: impl FnOnce(NodeBuilder) -> NodeBuilder,
    ) -> anyhow::Result<Host> {
        let Bound { endpoint, lookups } = endpoint::bind(&self.identity, listen, network).await?;
        let bound = endpoint
            .bound_sockets()
            .into_iter()
            .next()
            .unwrap_or(listen);
        let node = protocols(Node::builder(endpoint, self.store.clone(), policy)).spawn();
        let providers = Providers::start(node.clone(), &lookups, &self.identity);
        Ok(Host {
            data: self.data,
            lock: self.lock,
            identity: self.identity,
            store: self.store,
            own_log: self.own_log,
            node,
            providers,
            listen: bound,
            tasks: Tasks::new(),
        })
    }
}

/// A data folder written by an earlier release (hypercore 0.14 files in `DATA/cores/`) is
/// converted into the engine's store before anything opens it, then `cores/` is moved to
/// `cores.pre-engine/` (kept until the user deletes it). A failure stops start-up.
pub async fn migrate_old_layout(root: &std::path::Path) -> anyhow::Result<()> {
    use crate::store::migrate;
    if !root.join("cores").exists() {
        return Ok(());
    }
    if !migrate::is_migrated(root) {
        tracing::info!(
            "{}: converting the data folder from the hypercore 0.14 layout to the engine \
             (every block is verified; this runs once)",
            root.display()
        );
        let dir = root.to_path_buf();
        let report = tokio::task::spawn_blocking(move || migrate::migrate(&dir))
            .await
            .map_err(|e| anyhow::anyhow!("the migration task failed: {e}"))?
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot convert {} to the new storage engine: {e}. Nothing was changed \
                     in {}/cores; fix the cause (free space, permissions) and start \
                     dat-mirror again: the conversion resumes where it stopped",
                    root.display(),
                    root.display()
                )
            })?;
        tracing::info!(
            cores = report.cores,
            blocks = report.blocks,
            bytes = report.bytes,
            failures = report.failures.len(),
            seconds = report.seconds,
            "data folder converted to the engine"
        );
        for f in &report.failures {
            tracing::warn!(core = %f.core, block = ?f.block, "not converted: {}", f.reason);
        }
    }
    if let Some(to) = migrate::retire_old_cores(root)? {
        tracing::info!(
            "the hypercore 0.14 files are kept in {}; delete them with `rm -r {}` once \
             everything works",
            to.display(),
            to.display()
        );
    }
    Ok(())
}
