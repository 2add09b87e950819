//! How peers find each other by id alone, and who holds a site: the network routes besides a
//! direct `ID@IP:PORT` address, each switchable ([`NetworkConfig`]):
//! - **mDNS** (`iroh-mdns-address-lookup`): peers on the same local network announce their
//!   id and addresses under the service name `dat-mirror`;
//! - **DHT** (`iroh-mainline-address-lookup`): each endpoint publishes a signed record of its
//!   addresses on the BitTorrent mainline DHT under its id;
//! - **relays** (iroh relay servers): a peer keeps a connection to a home relay and can be
//!   reached through it when no direct path works (NAT, firewalls).
//!
//! It also owns the *provider lookup* ([`Providers`]): who holds a site, found by the site's
//! discovery key. Holders sign an announcement on the mainline DHT (`announce_signed_peer`,
//! keyed by the first 20 bytes of the discovery key, re-announced while they hold it); the
//! announcers' ed25519 keys are iroh endpoint ids, which the address lookups above turn into
//! addresses. Nothing here contacts any host unless its route is switched on;
//! [`NetworkConfig::offline`] switches every route off.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use iroh::address_lookup::AddrFilter;
use iroh::endpoint::{presets, QuicTransportConfig};
use iroh::{Endpoint, RelayMode, RelayUrl};
use iroh_mainline_address_lookup::DhtAddressLookup;
use iroh_mdns_address_lookup::{DiscoveryEvent, MdnsAddressLookup};
use tokio::task::JoinHandle;

use super::keys::Key;
use super::peer::Node;
use super::transport::{Identity, ALPN, IDLE_TIMEOUT, KEEP_ALIVE};

/// The mDNS service name dat-mirror nodes announce themselves under (other iroh
/// applications on the network use other names, so they are not seen as candidates).
pub const MDNS_SERVICE: &str = "dat-mirror";
/// A held site is announced on the DHT again this often (announcements expire on DHT nodes).
pub const REANNOUNCE: Duration = Duration::from_secs(12 * 60);
/// After a failed announcement, try again this soon.
const RETRY_ANNOUNCE: Duration = Duration::from_secs(30);
/// Longest a DHT provider query may take in [`Providers::find`].
pub const FIND_TIMEOUT: Duration = Duration::from_secs(20);

/// Which relay servers to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayChoice {
    /// No relay: peers are reached on direct addresses only.
    Off,
    /// iroh's default public relays.
    Default,
    /// These relay servers (e.g. one you run yourself with `iroh-relay`).
    Custom(Vec<RelayUrl>),
}

impl std::str::FromStr for RelayChoice {
    type Err = String;
    /// `off`, `default`, or one or more relay URLs separated by spaces or commas.
    fn from_str(s: &str) -> Result<RelayChoice, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "false" | "no" => return Ok(RelayChoice::Off),
            "default" | "on" | "true" | "yes" => return Ok(RelayChoice::Default),
            _ => {}
        }
        let urls = s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|u| !u.is_empty())
            .map(|u| {
                let ok = u.starts_with("https://") || u.starts_with("http://");
                if !ok {
                    return Err(format!(
                        "{u:?} is not a relay: use `default`, `off` or a URL like https://relay.example.org"
                    ));
                }
                u.parse::<RelayUrl>()
                    .map_err(|e| format!("{u:?} is not a relay URL: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err("empty relay: use `default`, `off` or a URL".into());
        }
        Ok(RelayChoice::Custom(urls))
    }
}

impl std::fmt::Display for RelayChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayChoice::Off => f.write_str("off"),
            RelayChoice::Default => f.write_str("default"),
            RelayChoice::Custom(urls) => {
                let urls: Vec<String> = urls
                    .iter()
                    .map(|u| u.to_string().trim_end_matches('/').to_string())
                    .collect();
                f.write_str(&urls.join(","))
            }
        }
    }
}

/// The discovery routes of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Find and be found on the local network (mDNS).
    pub mdns: bool,
    /// Publish this node's addresses and held sites on the mainline DHT, and look others up.
    pub dht: bool,
    /// DHT bootstrap nodes as `HOST:PORT`; empty = the DHT crate's default public ones.
    pub dht_bootstrap: Vec<String>,
    pub relay: RelayChoice,
}

impl NetworkConfig {
    /// Every route off: peers are reached on direct addresses only, and nothing contacts any
    /// other host. What tests, benchmarks and the demo use.
    pub fn offline() -> NetworkConfig {
        NetworkConfig {
            mdns: false,
            dht: false,
            dht_bootstrap: vec![],
            relay: RelayChoice::Off,
        }
    }

    /// The product defaults: mDNS on, DHT on (default bootstrap), iroh's default relays.
    pub fn public_defaults() -> NetworkConfig {
        NetworkConfig {
            mdns: true,
            dht: true,
            dht_bootstrap: vec![],
            relay: RelayChoice::Default,
        }
    }

    fn dht_builder(&self) -> n0_mainline::DhtBuilder {
        let mut b = n0_mainline::Dht::builder();
        if !self.dht_bootstrap.is_empty() {
            b.bootstrap(&self.dht_bootstrap);
        }
        // Any free port: 6881 (the crate's default) may be taken by a BitTorrent client.
        b.port(0);
        b
    }

    fn relay_mode(&self) -> RelayMode {
        match &self.relay {
            RelayChoice::Off => RelayMode::Disabled,
            RelayChoice::Default => RelayMode::Default,
            RelayChoice::Custom(urls) => RelayMode::custom(urls.iter().cloned()),
        }
    }
}

/// What [`bind`] started besides the endpoint: handles the provider lookup uses.
#[derive(Clone, Default)]
pub struct Lookups {
    /// The mDNS service (also installed in the endpoint), when mDNS is on.
    pub mdns: Option<MdnsAddressLookup>,
    /// A mainline DHT client for site announcements, when the DHT is on.
    pub dht: Option<n0_mainline::Dht>,
}

/// A bound endpoint and its lookups.
pub struct Bound {
    pub endpoint: Endpoint,
    pub lookups: Lookups,
}

/// Binds an endpoint for `identity` on `listen` with the routes `net` switches on.
pub async fn bind(
    identity: &Identity,
    listen: SocketAddr,
    net: &NetworkConfig,
) -> anyhow::Result<Bound> {
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(identity.secret().clone())
        .alpns(vec![ALPN.to_vec()])
        .relay_mode(net.relay_mode())
        .transport_config(
            QuicTransportConfig::builder()
                .max_concurrent_bidi_streams(super::transport::MAX_STREAMS.into())
                .keep_alive_interval(KEEP_ALIVE)
                .max_idle_timeout(Some(
                    IDLE_TIMEOUT
                        .try_into()
                        .expect("8 s is a valid idle timeout"),
                ))
                .build(),
        )
        .clear_ip_transports()
        .bind_addr(listen)
        .map_err(|e| anyhow::anyhow!("invalid listen address {listen}: {e}"))?;
    let mut lookups = Lookups::default();
    let id = iroh::PublicKey::from_bytes(&identity.key().0)
        .map_err(|e| anyhow::anyhow!("invalid identity: {e}"))?;
    if net.mdns {
        let mdns = MdnsAddressLookup::builder()
            .service_name(MDNS_SERVICE)
            .build(id)
            .map_err(|e| anyhow::anyhow!("cannot start mDNS (turn it off with --no-mdns): {e}"))?;
        builder = builder.address_lookup(mdns.clone());
        lookups.mdns = Some(mdns);
    }
    if net.dht {
        // Relayed peers publish their relay only (their IP stays private); without a relay
        // there is nothing else to publish but the direct addresses.
        let filter = match net.relay {
            RelayChoice::Off => AddrFilter::unfiltered(),
            _ => AddrFilter::relay_only(),
        };
        builder = builder.address_lookup(
            DhtAddressLookup::builder()
                .dht_builder(net.dht_builder())
                .addr_filter(filter),
        );
        let dht = net.dht_builder().build().with_context(|| {
            "cannot start the DHT client (turn it off with --no-dht)".to_string()
        })?;
        lookups.dht = Some(dht);
    }
    let endpoint = builder
        .bind()
        .await
        .with_context(|| format!("cannot listen on {listen} (is another dat-mirror using it?)"))?;
    Ok(Bound { endpoint, lookups })
}

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
    fn relay_choice_parses_and_prints() {
        assert_eq!("off".parse::<RelayChoice>().unwrap(), RelayChoice::Off);
        assert_eq!(
            "Default".parse::<RelayChoice>().unwrap(),
            RelayChoice::Default
        );
        let c: RelayChoice = "https://relay.example.org".parse().unwrap();
        assert!(matches!(&c, RelayChoice::Custom(u) if u.len() == 1));
        assert_eq!(c.to_string(), "https://relay.example.org");
        assert_eq!(c.to_string().parse::<RelayChoice>().unwrap(), c);
        let two: RelayChoice = "http://10.0.0.1:3340, https://r.example.org"
            .parse()
            .unwrap();
        assert!(matches!(&two, RelayChoice::Custom(u) if u.len() == 2));
        assert_eq!(two.to_string().parse::<RelayChoice>().unwrap(), two);
        for bad in ["", "relay.example.org", "ftp://x", "https://"] {
            assert!(bad.parse::<RelayChoice>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn offline_switches_every_route_off() {
        let n = NetworkConfig::offline();
        assert!(!n.mdns && !n.dht && n.relay == RelayChoice::Off);
        assert!(matches!(n.relay_mode(), RelayMode::Disabled));
    }

    #[test]
    fn topic_is_the_discovery_key_prefix() {
        let dk = Key([7; 32]).discovery_key();
        assert_eq!(dht_topic(&dk).as_bytes(), &dk[..20]);
    }
}
