//! The mirror on the hypercore network: when `[network] hyperswarm` is on, it starts the plane
//! ([`crate::net::hypernet`]: Node's hyperswarm in a child process, our replication protocol
//! over it) on the same engine store the rest of the mirror uses. Every running site is
//! replicated there (fetched from whoever serves it — a Node publisher, a hyper:// browser —
//! and served to anyone who knows its key), blocks the plane stores refresh the store's views
//! (so site tasks, HTTP and `status` see them), and a machine without Node runs without the
//! plane and says why, with the command that fixes it.

use std::sync::Arc;

use blake2::digest::{Update, VariableOutput};
use hyperswarm_bridge::BridgeOptions;

use crate::host::Tasks;
use crate::model::keys::Key;
use crate::net::endpoint::{Identity, NetworkConfig};
use crate::net::hypernet::{HyperNet, HyperNetState, PlaneUpdate};
use crate::store::CoreStore;

/// The mirror's hypercore network plane, or why there is none.
#[derive(Clone)]
pub enum HyperPlane {
    /// `[network] hyperswarm = false` (or `--no-hyperswarm`, tests, the demo).
    Off,
    /// It could not start (Node or the bridge missing): the message, with its fix.
    Unavailable(String),
    On(HyperNet),
}

impl HyperPlane {
    /// Starts the plane if `network` asks for it. Never fails: a plane that cannot start is
    /// [`HyperPlane::Unavailable`], logged once with its fix, and the mirror runs without it.
    pub async fn start(
        network: &NetworkConfig,
        identity: &Identity,
        store: &Arc<CoreStore>,
        tasks: &Tasks,
    ) -> HyperPlane {
        if !network.hyperswarm {
            return HyperPlane::Off;
        }
        let options = bridge_options(identity, &network.hyperswarm_bootstrap);
        let net = match HyperNet::start(store.engine().clone(), options).await {
            Ok(net) => net,
            Err(e) => {
                let why = format!("{e:#}");
                tracing::warn!("{why}; the mirror runs without the hypercore network (hyper:// browsers and Node peers cannot reach its sites)");
                return HyperPlane::Unavailable(why);
            }
        };
        // What the plane stores and what its peers hold reach the store's views (site tasks
        // wake on them; a site fetched from Node peers alone is "mirrored" once it holds
        // what they announced).
        let mut updates = net.updates();
        let store = store.clone();
        tasks.spawn(async move {
            loop {
                match updates.recv().await {
                    Ok(PlaneUpdate::Stored(key)) => {
                        if let Some(core) = store.get_open(&Key(key)) {
                            core.refresh_info();
                        }
                    }
                    Ok(PlaneUpdate::RemoteLength(key, length)) => {
                        if let Some(core) = store.get_open(&Key(key)) {
                            core.note_remote_length(length);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        for key in store.keys_on_disk() {
                            if let Some(core) = store.get_open(&key) {
                                core.refresh_info();
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let plane = HyperPlane::On(net);
        tracing::info!("hypercore network: {}", plane.describe());
        plane
    }

    pub fn net(&self) -> Option<&HyperNet> {
        match self {
            HyperPlane::On(net) => Some(net),
            _ => None,
        }
    }

    /// Replicates a site there (fetch and serve).
    pub async fn add_site(&self, key: Key) {
        if let Some(net) = self.net() {
            if let Err(e) = net.add_site(key, true).await {
                tracing::warn!(site = %key.short(), "hypercore network: {e:#}");
            }
        }
    }

    /// Stops replicating a site there (before its data is deleted).
    pub async fn remove_site(&self, key: Key) {
        if let Some(net) = self.net() {
            net.remove_site(key).await;
        }
    }

    /// Tells the plane's peers that `key` changed (blocks that came from a laptop).
    pub fn core_updated(&self, key: &Key) {
        if let Some(net) = self.net() {
            net.core_updated(key);
        }
    }

    /// Peers replicating the site there now.
    pub fn peers(&self, key: &Key) -> u32 {
        self.net()
            .map_or(0, |n| u32::try_from(n.peers(key)).unwrap_or(u32::MAX))
    }

    /// One line for the status page and `dat-mirror status`.
    pub fn describe(&self) -> String {
        match self {
            HyperPlane::Off => "off ([network] hyperswarm = false)".into(),
            HyperPlane::Unavailable(why) => format!("unavailable: {why}"),
            HyperPlane::On(net) => match net.state() {
                HyperNetState::Running { public_key } => {
                    format!("on, as {}", hex::encode(&public_key[..8]))
                }
                HyperNetState::Restarting(e) => format!("restarting the bridge ({e})"),
                HyperNetState::Unavailable { reason, fix } => {
                    format!("unavailable: {reason} (fix: {fix})")
                }
                HyperNetState::Stopped => "stopped".into(),
            },
        }
    }

    /// A problem the owner should fix, if the plane was asked for and cannot run.
    pub fn problem(&self) -> Option<String> {
        match self {
            HyperPlane::Unavailable(why) => Some(format!(
                "not on the hypercore network (hyper:// browsers cannot reach the sites): {why}"
            )),
            HyperPlane::On(net) => match net.state() {
                HyperNetState::Unavailable { reason, fix } => Some(format!(
                    "not on the hypercore network: {reason} (fix: {fix})"
                )),
                _ => None,
            },
            HyperPlane::Off => None,
        }
    }

    pub async fn shutdown(&self) {
        if let Some(net) = self.net() {
            net.shutdown().await;
        }
    }
}

/// The bridge's options: a swarm identity derived from the mirror's (stable across restarts,
/// distinct from its iroh key), the bootstrap nodes, and — when every bootstrap node is on
/// this machine (a local testnet) — sockets on loopback that need no NAT probing.
fn bridge_options(identity: &Identity, bootstrap: &[String]) -> BridgeOptions {
    let mut seed = [0u8; 32];
    let mut h = blake2::Blake2bVar::new(32).expect("32 is a valid BLAKE2b output size");
    h.update(b"dat-mirror hyperswarm seed v1");
    h.update(&identity.secret().to_bytes());
    h.finalize_variable(&mut seed)
        .expect("the buffer is the output size");
    let mut options = BridgeOptions::new(seed);
    options.bootstrap = bootstrap.to_vec();
    let loopback = !bootstrap.is_empty()
        && bootstrap
            .iter()
            .all(|b| b.starts_with("127.") || b.starts_with("localhost:"));
    if loopback {
        options.host = Some("127.0.0.1".into());
        options.firewalled = false;
    }
    options
}
