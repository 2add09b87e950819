//! The endpoint: this node's identity (an ed25519 key kept in `DATA/identity`), its iroh
//! endpoint (QUIC, connections end-to-end encrypted and authenticated by public key), peer
//! addresses (`ID` or `ID@IP:PORT`), and the address lookups that find a peer by id alone,
//! each switchable ([`NetworkConfig`]):
//! - **mDNS** (`iroh-mdns-address-lookup`): peers on the same local network announce their
//!   id and addresses under the service name `dat-mirror`;
//! - **DHT** (`iroh-mainline-address-lookup`): each endpoint publishes a signed record of its
//!   addresses on the BitTorrent mainline DHT under its id;
//! - **relays** (iroh relay servers): a peer keeps a connection to a home relay and can be
//!   reached through it when no direct path works (NAT, firewalls).
//!
//! Nothing here contacts any host unless its route is switched on;
//! [`NetworkConfig::offline`] switches every route off. Who holds a site is
//! [`super::providers`]' business (above the node).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use iroh::address_lookup::AddrFilter;
use iroh::endpoint::{presets, QuicTransportConfig};
use iroh::{Endpoint, EndpointAddr, RelayMode, RelayUrl, SecretKey};
use iroh_mainline_address_lookup::DhtAddressLookup;
use iroh_mdns_address_lookup::MdnsAddressLookup;

use crate::model::keys::Key;

/// The ALPN of dat-mirror's replication protocol.
pub const ALPN: &[u8] = b"dat-mirror/replicate/1";

/// This node's key pair. Its public key is the node id, the key of its own log (a laptop's
/// command log, a mirror's status log) and the iroh endpoint id.
#[derive(Clone)]
pub struct Identity {
    secret: SecretKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.key().short())
    }
}

impl Identity {
    /// Loads `data_dir/identity`, creating it (mode 0600) on first use.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Identity> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
        let path = data_dir.join("identity");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    anyhow::anyhow!(
                        "{} is not a dat-mirror identity (expected 32 bytes, found {}); \
                         move it away to create a new identity",
                        path.display(),
                        bytes.len()
                    )
                })?;
                Ok(Identity {
                    secret: SecretKey::from_bytes(&bytes),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = SecretKey::from_bytes(&rand::random::<[u8; 32]>());
                crate::util::atomic::write_atomic(&path, &secret.to_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(Identity { secret })
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn key(&self) -> Key {
        Key(*self.secret.public().as_bytes())
    }

    /// The same key pair as the hypercore engine wants it, to sign this node's own log.
    pub fn signing_key(&self) -> hypercore_engine::KeyPair {
        hypercore_engine::KeyPair::from_seed(&self.secret.to_bytes())
    }

    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }
}

/// Keep-alive interval: an idle connection still sends a packet this often...
pub const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);
/// ...and is declared dead after this long without hearing from the peer (iroh's default is
/// 30 s; a mirror that was killed and restarted should be redialled sooner than that).
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// Concurrent replication streams a peer may open to us (about half as many sites): every
/// core replicated between two peers keeps one stream open (pull follows it for new
/// versions), 2 per site plus the logs; QUIC's default of 100 stalled a mirror at 49 sites.
pub const MAX_STREAMS: u32 = 4096;

/// Binds an endpoint for `identity` on `listen` (e.g. `0.0.0.0:0` for "any port") with the
/// routes `net` switches on (use [`NetworkConfig::offline`] for direct addresses only), for
/// callers that need no provider lookup.
pub async fn bind_endpoint(
    identity: &Identity,
    listen: SocketAddr,
    net: &NetworkConfig,
) -> anyhow::Result<Endpoint> {
    Ok(bind(identity, listen, net).await?.endpoint)
}

/// The mDNS service name dat-mirror nodes announce themselves under (other iroh
/// applications on the network use other names, so they are not seen as candidates).
pub const MDNS_SERVICE: &str = "dat-mirror";

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
    /// Join the hypercore network (the HyperDHT, through Node's hyperswarm): the second
    /// plane ([`super::hypernet`]), where hyper:// browsers and Node peers are.
    pub hyperswarm: bool,
    /// HyperDHT bootstrap nodes as `HOST:PORT`; empty = hyperdht's public ones.
    pub hyperswarm_bootstrap: Vec<String>,
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
            hyperswarm: false,
            hyperswarm_bootstrap: vec![],
        }
    }

    /// The product defaults: mDNS on, DHT on (default bootstrap), iroh's default relays.
    pub fn public_defaults() -> NetworkConfig {
        NetworkConfig {
            mdns: true,
            dht: true,
            dht_bootstrap: vec![],
            relay: RelayChoice::Default,
            hyperswarm: true,
            hyperswarm_bootstrap: vec![],
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
                .max_concurrent_bidi_streams(MAX_STREAMS.into())
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

/// A peer as given on the command line: its id, and optionally a direct address,
/// `ID@IP:PORT` or `ID` alone (then mDNS, the DHT or a relay must find it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    pub id: Key,
    pub addr: Option<SocketAddr>,
}

impl std::str::FromStr for PeerAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<PeerAddr, String> {
        let s = s.trim();
        let (id, addr) = match s.split_once('@') {
            Some((id, addr)) => (id, Some(addr)),
            None => (s, None),
        };
        let id = Key::parse(id).map_err(|e| {
            format!("'{s}' is not ID or ID@IP:PORT (e.g. 3b6a…f1@192.168.1.20:7070): {e}")
        })?;
        let addr = addr
            .map(|a| {
                a.parse()
                    .map_err(|e| format!("'{a}' is not an IP:PORT address: {e}"))
            })
            .transpose()?;
        Ok(PeerAddr { id, addr })
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            Some(addr) => write!(f, "{}@{}", self.id, addr),
            None => write!(f, "{}", self.id),
        }
    }
}

impl serde::Serialize for PeerAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PeerAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PeerAddr, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl PeerAddr {
    /// A peer at a known direct address.
    pub fn new(id: Key, addr: SocketAddr) -> PeerAddr {
        PeerAddr {
            id,
            addr: Some(addr),
        }
    }

    /// A peer known by id alone.
    pub fn id_only(id: Key) -> PeerAddr {
        PeerAddr { id, addr: None }
    }

    pub fn endpoint_addr(&self) -> anyhow::Result<EndpointAddr> {
        let id = iroh::PublicKey::from_bytes(&self.id.0)
            .map_err(|e| anyhow::anyhow!("{} is not a valid node id: {e}", self.id))?;
        let mut addr = EndpointAddr::new(id);
        if let Some(ip) = self.addr {
            addr = addr.with_ip_addr(ip);
        }
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_and_matches_hypercore_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.signing_key().public_key, a.key().0);
        assert_eq!(
            Key(*a.secret.public().as_bytes()).to_z32(),
            a.secret.public().to_z32()
        );
        std::fs::write(dir.path().join("identity"), b"short").unwrap();
        assert!(Identity::load_or_create(dir.path()).is_err());
    }

    #[test]
    fn peer_addr_parses() {
        let k = Key([5; 32]);
        let p: PeerAddr = format!("{k}@127.0.0.1:7000").parse().unwrap();
        assert_eq!(p.id, k);
        assert_eq!(p.addr, Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(p.to_string().parse::<PeerAddr>().unwrap(), p);
        let bare: PeerAddr = k.to_string().parse().unwrap();
        assert_eq!(bare, PeerAddr::id_only(k));
        assert_eq!(bare.to_string(), k.to_string());
        assert_eq!(bare.to_string().parse::<PeerAddr>().unwrap(), bare);
        assert!("nope".parse::<PeerAddr>().is_err());
        assert!(format!("{k}@localhost").parse::<PeerAddr>().is_err());
        assert!(format!("{k}@").parse::<PeerAddr>().is_err());
        assert!("@127.0.0.1:7000".parse::<PeerAddr>().is_err());
    }
}

#[cfg(test)]
mod network_config_tests {
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
}
