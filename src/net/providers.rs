//! Provider lookup (content routing): who holds a site, found by the site's discovery key.
//! Holders sign an announcement on the mainline DHT (`announce_signed_peer`, keyed by the
//! first 20 bytes of the discovery key, re-announced while they hold it); the announcers'
//! ed25519 keys are iroh endpoint ids, which the address lookups of [`super::endpoint`] turn
//! into addresses. Peers already connected and mDNS peers on the local network are asked
//! too. Sits above the [`Node`]: it needs live connections; nothing below it needs it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use iroh_mdns_address_lookup::DiscoveryEvent;
use tokio::task::JoinHandle;

use super::endpoint::{Identity, Lookups};
use super::node::Node;
use crate::model::keys::Key;

/// A held site is announced on the DHT again this often (announcements expire on DHT nodes).
pub const REANNOUNCE: Duration = Duration::from_secs(12 * 60);
/// After a failed announcement, try again this soon.
const RETRY_ANNOUNCE: Duration = Duration::from_secs(30);
/// Longest a DHT provider query may take in [`Providers::find`].
pub const FIND_TIMEOUT: Duration = Duration::from_secs(20);

/// The DHT key a site's holders announce under: the first 20 bytes of its discovery key.
pub fn dht_topic(discovery_key: &[u8; 32]) -> n0_mainline::Id {
    n0_mainline::Id::from_bytes(&discovery_key[..20]).expect("20 bytes make a mainline id")
}

/// Announces the sites this node holds and finds who holds a site. Built on the node's
/// connections, the mDNS peers seen on the local network, and the mainline DHT.
pub struct Providers {
    node: Arc<Node>,
    dht: Option<n0_mainline::Dht>,
    signer: n0_mainline::SigningKey,
    /// Held discovery keys and the task re-announcing each.
    held: Mutex<HashMap<[u8; 32], JoinHandle<()>>>,
    /// dat-mirror nodes seen on the local network (mDNS), newest last.
    local: Arc<Mutex<Vec<Key>>>,
    watcher: Option<JoinHandle<()>>,
}

impl Drop for Providers {
    fn drop(&mut self) {
        for (_, t) in self.held.lock().unwrap().drain() {
            t.abort();
        }
        if let Some(w) = &self.watcher {
            w.abort();
        }
    }
}

impl Providers {
    /// Starts the provider lookup for `node` (bound with `lookups`, as `identity`).
    pub fn start(node: Arc<Node>, lookups: &Lookups, identity: &Identity) -> Arc<Providers> {
        let local = Arc::new(Mutex::new(Vec::new()));
        let watcher = lookups.mdns.clone().map(|mdns| {
            let local = local.clone();
            let own = identity.key();
            tokio::spawn(async move {
                let mut events = mdns.subscribe().await;
                while let Some(event) = events.next().await {
                    let mut local = local.lock().unwrap();
                    match event {
                        DiscoveryEvent::Discovered { endpoint_info, .. } => {
                            let id = Key(*endpoint_info.endpoint_id.as_bytes());
                            if id != own && !local.contains(&id) {
                                local.push(id);
                            }
                        }
                        DiscoveryEvent::Expired { endpoint_id } => {
                            local.retain(|k| k.0 != *endpoint_id.as_bytes());
                        }
                        _ => {}
                    }
                }
            })
        });
        Arc::new(Providers {
            node,
            dht: lookups.dht.clone(),
            signer: n0_mainline::SigningKey::from_bytes(&identity.secret().to_bytes()),
            held: Mutex::new(HashMap::new()),
            local,
            watcher,
        })
    }

    /// Says (on the DHT, if it is on) that this node holds the core with `discovery_key`, now
    /// and every [`REANNOUNCE`] until [`withdraw`](Self::withdraw). Idempotent.
    pub fn announce(&self, discovery_key: [u8; 32]) {
        let Some(dht) = self.dht.clone() else { return };
        let mut held = self.held.lock().unwrap();
        if held.get(&discovery_key).is_some_and(|t| !t.is_finished()) {
            return;
        }
        let signer = self.signer.clone();
        let task = tokio::spawn(async move {
            let topic = dht_topic(&discovery_key);
            loop {
                let wait = match dht.announce_signed_peer(topic, &signer).await {
                    Ok(_) => {
                        tracing::debug!(
                            "announced {} on the DHT",
                            hex::encode(&discovery_key[..8])
                        );
                        REANNOUNCE
                    }
                    Err(e) => {
                        tracing::debug!("cannot announce on the DHT (will retry): {e}");
                        RETRY_ANNOUNCE
                    }
                };
                tokio::time::sleep(wait).await;
            }
        });
        held.insert(discovery_key, task);
    }

    /// Stops announcing `discovery_key` (the DHT forgets it when the last announcement expires).
    pub fn withdraw(&self, discovery_key: &[u8; 32]) {
        if let Some(t) = self.held.lock().unwrap().remove(discovery_key) {
            t.abort();
        }
    }

    /// Discovery keys announced now.
    pub fn announced(&self) -> Vec<[u8; 32]> {
        self.held.lock().unwrap().keys().copied().collect()
    }

    /// dat-mirror nodes seen on the local network by mDNS (empty when mDNS is off).
    pub fn local_peers(&self) -> Vec<Key> {
        self.local.lock().unwrap().clone()
    }

    /// Node ids that may hold the core with `discovery_key`, best first, without duplicates
    /// and without this node: connected peers, then dat-mirror nodes on the local network,
    /// then the nodes that announced it on the DHT (signed, so each id really announced it).
    /// Connected and local peers are candidates only: dial them and ask (a peer answers
    /// `NotFound` for what it does not hold). Every id can be given to [`Node::connect`] with
    /// no address: the address lookups find the rest. The DHT query is bounded by
    /// [`FIND_TIMEOUT`].
    pub async fn find(&self, discovery_key: &[u8; 32]) -> Vec<Key> {
        let own = self.node.id();
        let mut out: Vec<Key> = Vec::new();
        let mut seen = BTreeSet::from([own]);
        let mut push = |k: Key, out: &mut Vec<Key>| {
            if seen.insert(k) {
                out.push(k);
            }
        };
        for k in self.node.connected_peers() {
            push(k, &mut out);
        }
        for k in self.local_peers() {
            push(k, &mut out);
        }
        for k in self.find_on_dht(discovery_key).await {
            push(k, &mut out);
        }
        out
    }

    /// Only the DHT part of [`find`](Self::find): ids that signed an announcement of
    /// `discovery_key`, in the order they arrived (empty when the DHT is off).
    pub async fn find_on_dht(&self, discovery_key: &[u8; 32]) -> Vec<Key> {
        let Some(dht) = &self.dht else { return vec![] };
        let mut out = Vec::new();
        let Ok(mut stream) = dht.get_signed_peers(dht_topic(discovery_key)).await else {
            return out;
        };
        let collect = async {
            while let Some(batch) = stream.next().await {
                for announce in batch {
                    let k = Key(*announce.key());
                    if !out.contains(&k) {
                        out.push(k);
                    }
                }
            }
        };
        let _ = tokio::time::timeout(FIND_TIMEOUT, collect).await;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_is_the_discovery_key_prefix() {
        let dk = Key([7; 32]).discovery_key();
        assert_eq!(dht_topic(&dk).as_bytes(), &dk[..20]);
    }
}
