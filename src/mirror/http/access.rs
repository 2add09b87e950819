//! Who may see the mirror's own pages: the status page `/`, its JSON
//! `/.well-known/dat-mirror` and the Prometheus `/metrics`. They list every site key (a read
//! capability) and every paired laptop, so by default only the mirror's own host sees them.
//!
//! - [`StatusAccess`]: `local` (default: clients connecting from loopback or from the very
//!   address they connected to, i.e. a browser on the mirror itself), `public` (anyone), `off`
//!   (nobody; the paths answer 404 like any unknown path).
//! - [`StatusToken`]: the owner's secret link. A random 128-bit token kept in the data folder
//!   (file [`TOKEN_FILE`], mode 0600), printed at start as `http://HOST/?token=…`. With
//!   `local`, a request carrying `?token=<it>` sees the pages from anywhere.
//! - [`StatusLink`]: the token as the running gateway uses it, shared with the control
//!   socket so `dat-mirror status-link --rotate` replaces it without a restart: from the
//!   next request on, old links answer 404 and the new one works.
//!
//! Pure decisions ([`may_see_status`], [`is_local`]) so every rule is unit-tested.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use blake2::{Blake2b512, Digest};
use rand::RngCore;

/// The token's file in the mirror's data folder.
pub const TOKEN_FILE: &str = "http-status-token";
/// Query parameter that carries the token.
pub const TOKEN_PARAM: &str = "token";

/// `[serve] status`: who sees `/`, `/.well-known/dat-mirror` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusAccess {
    /// Clients on the mirror's own host, and anyone with the secret link.
    #[default]
    Local,
    /// Everyone.
    Public,
    /// Nobody: the paths answer 404.
    Off,
}

impl FromStr for StatusAccess {
    type Err = BadStatusAccess;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(Self::Local),
            "public" => Ok(Self::Public),
            "off" => Ok(Self::Off),
            _ => Err(BadStatusAccess(s.to_string())),
        }
    }
}

impl fmt::Display for StatusAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "local",
            Self::Public => "public",
            Self::Off => "off",
        })
    }
}

/// A status mode that is none of `local`, `public`, `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a status mode: use \"local\" (only the mirror's own host, the default), \"public\" or \"off\"")]
pub struct BadStatusAccess(pub String);

/// The owner's secret for the status pages (hex, 32 characters).
#[derive(Clone, PartialEq, Eq)]
pub struct StatusToken(String);

impl fmt::Debug for StatusToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatusToken(…)") // never in logs by accident
    }
}

/// The token file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the status token {path}: {source}; delete the file and restart the mirror to make a new one")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the status token {path} is damaged (expected 32 hex characters); delete it and restart the mirror to make a new one")]
    Damaged { path: PathBuf },
    #[error(
        "cannot write the status token {path}: {source}; check that the data folder is writable"
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StatusToken {
    /// A fresh random token (not saved).
    pub fn random() -> StatusToken {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        StatusToken(hex::encode(bytes))
    }

    /// The token text, for building the secret link.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token saved in `data`, or a new one saved there.
    pub fn load_or_create(data: &Path) -> Result<StatusToken, TokenError> {
        let path = data.join(TOKEN_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let t = text.trim();
                if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(StatusToken(t.to_ascii_lowercase()))
                } else {
                    Err(TokenError::Damaged { path })
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::rotate(data),
            Err(source) => Err(TokenError::Read { path, source }),
        }
    }

    /// Saves a new random token in `data` (old links stop working once the gateway uses it).
    pub fn rotate(data: &Path) -> Result<StatusToken, TokenError> {
        let token = StatusToken::random();
        let path = data.join(TOKEN_FILE);
        write_private(&path, token.0.as_bytes()).map_err(|source| TokenError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(token)
    }

    /// Does `presented` equal this token? Compares BLAKE2b digests, so the time taken says
    /// nothing about how many leading characters were right.
    pub fn matches(&self, presented: &str) -> bool {
        Blake2b512::digest(presented.as_bytes()) == Blake2b512::digest(self.0.as_bytes())
    }
}

/// The owner's secret link of a running gateway: the current token, shared (clones see a
/// rotation at once), and the data folder it is saved in.
#[derive(Debug, Clone)]
pub struct StatusLink {
    token: Arc<RwLock<StatusToken>>,
    data: Option<PathBuf>,
}

impl StatusLink {
    /// The token saved in `data` (made if missing); rotations are saved there.
    pub fn load_or_create(data: &Path) -> Result<StatusLink, TokenError> {
        Ok(StatusLink {
            token: Arc::new(RwLock::new(StatusToken::load_or_create(data)?)),
            data: Some(data.to_path_buf()),
        })
    }

    /// A link with `token`, not saved anywhere (rotations neither).
    pub fn fixed(token: StatusToken) -> StatusLink {
        StatusLink {
            token: Arc::new(RwLock::new(token)),
            data: None,
        }
    }

    pub fn current(&self) -> StatusToken {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new random token, saved first (so a restart keeps it), then used: links with the
    /// old one answer 404 from the next request on.
    pub fn rotate(&self) -> Result<StatusToken, TokenError> {
        let new = match &self.data {
            Some(data) => StatusToken::rotate(data)?,
            None => StatusToken::random(),
        };
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        Ok(new)
    }
}

/// tmp file (0600) + fsync + rename + fsync of the folder. (Replace with the shared
/// atomic-write helper once the data-folder work lands; this one adds the 0600 mode.)
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Is a client at `peer`, connected to our `local` address, on the mirror's own host? Yes for
/// loopback, and for a client whose address is the one it connected to (the kernel picks that
/// source address when a program on this host dials one of the host's own addresses).
pub fn is_local(peer: SocketAddr, local: SocketAddr) -> bool {
    let p = peer.ip().to_canonical();
    p.is_loopback() || p == local.ip().to_canonical()
}

/// The `token` parameter of a query string, if any.
pub fn token_param(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == TOKEN_PARAM).then_some(v)
    })
}

/// May this request see the status pages?
pub fn may_see_status(
    mode: StatusAccess,
    local: bool,
    token: Option<&StatusToken>,
    presented: Option<&str>,
) -> bool {
    match mode {
        StatusAccess::Off => false,
        StatusAccess::Public => true,
        StatusAccess::Local => {
            local || matches!((token, presented), (Some(t), Some(p)) if t.matches(p))
        }
    }
}

/// Canonical form of an address for per-address accounting: IPv4 (also when mapped into
/// IPv6) as is, IPv6 by its /64 (one host usually holds a whole /64).
pub fn address_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn locality() {
        let local = sa("192.168.1.20:8080");
        assert!(is_local(sa("127.0.0.1:5000"), local));
        assert!(is_local(sa("127.9.9.9:5000"), local));
        assert!(is_local(sa("[::1]:5000"), sa("[::1]:8080")));
        assert!(is_local(sa("[::ffff:127.0.0.1]:5000"), sa("[::]:8080")));
        assert!(is_local(sa("192.168.1.20:5000"), local));
        assert!(is_local(sa("[::ffff:192.168.1.20]:5000"), local));
        assert!(!is_local(sa("192.168.1.21:5000"), local));
        assert!(!is_local(sa("[fe80::1]:5000"), sa("[fe80::2]:8080")));
    }

    #[test]
    fn modes() {
        let t = StatusToken("0123456789abcdef0123456789abcdef".into());
        let good = Some("0123456789abcdef0123456789abcdef");
        for (mode, local, presented, want) in [
            (StatusAccess::Local, true, None, true),
            (StatusAccess::Local, false, None, false),
            (StatusAccess::Local, false, good, true),
            (StatusAccess::Local, false, Some("0123"), false),
            (StatusAccess::Local, false, Some(""), false),
            (StatusAccess::Public, false, None, true),
            (StatusAccess::Off, true, None, false),
            (StatusAccess::Off, false, good, false),
        ] {
            assert_eq!(
                may_see_status(mode, local, Some(&t), presented),
                want,
                "{mode} local={local} {presented:?}"
            );
        }
        assert!(!may_see_status(StatusAccess::Local, false, None, good));
        assert_eq!("LOCAL".parse(), Ok(StatusAccess::Local));
        assert_eq!(" public ".parse(), Ok(StatusAccess::Public));
        assert!("private".parse::<StatusAccess>().is_err());
    }

    #[test]
    fn token_params() {
        assert_eq!(token_param(None), None);
        assert_eq!(token_param(Some("token=abc")), Some("abc"));
        assert_eq!(token_param(Some("version=2&token=abc")), Some("abc"));
        assert_eq!(token_param(Some("tokens=abc")), None);
    }

    #[test]
    fn token_file_is_kept_private_and_rotates() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = StatusToken::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(StatusToken::load_or_create(dir.path()).unwrap(), a);
        let b = StatusToken::rotate(dir.path()).unwrap();
        assert_ne!(a, b);
        assert_eq!(StatusToken::load_or_create(dir.path()).unwrap(), b);
        assert!(!format!("{b:?}").contains(b.as_str()));
        std::fs::write(dir.path().join(TOKEN_FILE), "short").unwrap();
        let e = StatusToken::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("delete it"), "{e}");
    }

    #[test]
    fn a_status_link_rotates_for_every_clone_and_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let link = StatusLink::load_or_create(dir.path()).unwrap();
        let seen_by_gateway = link.clone();
        let old = link.current();
        let new = link.rotate().unwrap();
        assert_ne!(old, new);
        assert_eq!(seen_by_gateway.current(), new);
        assert_eq!(StatusToken::load_or_create(dir.path()).unwrap(), new);
    }

    #[test]
    fn address_groups() {
        assert_eq!(
            address_group("10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address_group("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address_group("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
    }
}
