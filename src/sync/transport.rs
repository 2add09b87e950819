//! The transport: this node's identity (an ed25519 key kept in `DATA/identity`) and its iroh
//! endpoint (QUIC, connections end-to-end encrypted and authenticated by public key), and
//! peer addresses (`ID` or `ID@IP:PORT`). Which routes find a peer by id alone (mDNS, DHT,
//! relays) is [`super::discovery`]'s business.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use iroh::{Endpoint, EndpointAddr, SecretKey};

pub use super::discovery::NetworkConfig;
use super::keys::Key;

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
                let tmp = path.with_extension("tmp");
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&tmp)
                        .with_context(|| format!("cannot write {}", tmp.display()))?;
                    f.write_all(&secret.to_bytes())?;
                    f.sync_all()?;
                }
                std::fs::rename(&tmp, &path)?;
                Ok(Identity { secret })
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn key(&self) -> Key {
        Key(*self.secret.public().as_bytes())
    }

    /// The same key pair as hypercore wants it, to sign this node's own log.
    pub fn signing_key(&self) -> hypercore::SigningKey {
        hypercore::SigningKey::from_bytes(&self.secret.to_bytes())
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
/// discovery routes `net` switches on (see [`super::discovery`]; use
/// [`NetworkConfig::offline`] for direct addresses only).
pub async fn bind(
    identity: &Identity,
    listen: SocketAddr,
    net: &NetworkConfig,
) -> anyhow::Result<Endpoint> {
    Ok(super::discovery::bind(identity, listen, net)
        .await?
        .endpoint)
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
        assert_eq!(a.signing_key().verifying_key().to_bytes(), a.key().0);
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

/// An exclusive lock on a data folder (`DATA/lock`, flock), so two dat-mirror processes
/// never open the same hypercores. Released when dropped or when the process dies.
#[derive(Debug)]
pub struct DataLock {
    _file: std::fs::File,
}

impl DataLock {
    pub fn acquire(data_dir: &Path) -> anyhow::Result<DataLock> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
        let path = data_dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            anyhow::bail!(
                "another dat-mirror process is using {}; stop it first (or use another --data folder)",
                data_dir.display()
            );
        }
        Ok(DataLock { _file: file })
    }
}
