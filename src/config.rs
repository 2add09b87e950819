//! The configuration file and how settings are chosen.
//!
//! Every command-line flag can also be set in a TOML file, by default
//! `$XDG_CONFIG_HOME/dat-mirror/config.toml` (`~/.config/dat-mirror/config.toml`), or the file
//! named by `--config PATH` / `$DAT_MIRROR_CONFIG`:
//!
//! ```toml
//! data = "/var/lib/dat-mirror"            # --data
//!
//! [serve]                                  # dat-mirror serve
//! listen = "0.0.0.0:7070"                  # --listen
//! http = "0.0.0.0:8080"                    # --http
//! allow = ["<LAPTOP_ID>"]                  # --allow (repeatable)
//! max_storage = "2GiB"                     # --max-storage (500M, 2G, 1.5GiB, 100MB, …)
//!
//! [serve.domains]                          # --domain HOST=KEY (repeatable)
//! "www.example.org" = "<SITE_KEY>"         # custom domain of the HTTP gateway
//!
//! [mount]                                  # dat-mirror mount
//! mountpoint = "~/dat-mirror"              # the MOUNTPOINT argument
//! mirrors = ["<MIRROR_ID>@192.168.1.20:7070"]  # --mirror (repeatable)
//! listen = "0.0.0.0:0"                     # --listen
//!
//! [network]                                # serve and mount: how peers find each other
//! mdns = true                              # --no-mdns: local network discovery
//! dht = true                               # --no-dht: mainline DHT (addresses, site holders)
//! relay = "default"                        # --relay default|off|URL
//! dht_bootstrap = []                       # HOST:PORT; empty: the public bootstrap nodes
//! ```
//!
//! A setting is taken from, in order: the command line, the environment
//! (`DAT_MIRROR_<SECTION>_<KEY>`, see the `ENV_*` constants), the file, the built-in default.
//! Parsing and choosing are pure functions (no I/O except [`load`]), unit-tested below.
//! Errors name the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::model::keys::Key;
use crate::net::endpoint::PeerAddr;
use crate::net::endpoint::{NetworkConfig, RelayChoice};

/// Environment variable naming the configuration file.
pub const ENV_CONFIG: &str = "DAT_MIRROR_CONFIG";
/// Environment variable for `data` / `--data`.
pub const ENV_DATA: &str = "DAT_MIRROR_DATA";
/// Environment variable for `[serve] listen` / `serve --listen`.
pub const ENV_SERVE_LISTEN: &str = "DAT_MIRROR_SERVE_LISTEN";
/// Environment variable for `[serve] http` / `serve --http`.
pub const ENV_SERVE_HTTP: &str = "DAT_MIRROR_SERVE_HTTP";
/// Environment variable for `[serve] allow` / `serve --allow` (comma-separated ids).
pub const ENV_SERVE_ALLOW: &str = "DAT_MIRROR_SERVE_ALLOW";
/// Environment variable for `[serve.domains]` / `serve --domain` (comma-separated HOST=KEY).
pub const ENV_SERVE_DOMAINS: &str = "DAT_MIRROR_SERVE_DOMAINS";
/// Environment variable for `[serve] max_storage` / `serve --max-storage`.
pub const ENV_SERVE_MAX_STORAGE: &str = "DAT_MIRROR_SERVE_MAX_STORAGE";
/// Environment variable for `[mount] mountpoint` / the `mount` argument.
pub const ENV_MOUNT_MOUNTPOINT: &str = "DAT_MIRROR_MOUNT_MOUNTPOINT";
pub const ENV_SERVE_MOUNT: &str = "DAT_MIRROR_SERVE_MOUNT";
/// Environment variable for `[mount] mirrors` / `mount --mirror` (comma-separated).
pub const ENV_MOUNT_MIRRORS: &str = "DAT_MIRROR_MOUNT_MIRRORS";
/// Environment variable for `[mount] listen` / `mount --listen`.
pub const ENV_MOUNT_LISTEN: &str = "DAT_MIRROR_MOUNT_LISTEN";

/// Environment variable for `[network] mdns` (`true`/`false`; `serve/mount --no-mdns`).
pub const ENV_NETWORK_MDNS: &str = "DAT_MIRROR_NETWORK_MDNS";
/// Environment variable for `[network] dht` (`true`/`false`; `serve/mount --no-dht`).
pub const ENV_NETWORK_DHT: &str = "DAT_MIRROR_NETWORK_DHT";
/// Environment variable for `[network] relay` (`default`, `off` or URLs; `--relay`).
pub const ENV_NETWORK_RELAY: &str = "DAT_MIRROR_NETWORK_RELAY";
/// Environment variable for `[network] dht_bootstrap` (comma-separated HOST:PORT).
pub const ENV_NETWORK_DHT_BOOTSTRAP: &str = "DAT_MIRROR_NETWORK_DHT_BOOTSTRAP";

/// Default `[serve] listen`: peers connect here (QUIC).
pub const DEFAULT_SERVE_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    7070,
));
/// Default `[serve] http`: the HTTP gateway, local only until configured otherwise.
pub const DEFAULT_SERVE_HTTP: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));
/// Default `[mount] listen`: any free port.
pub const DEFAULT_MOUNT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// A value read from the file, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
}

/// The parsed configuration file. Every field is optional: unset means "not configured".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    /// The file it was read from (`None`: there is no file).
    pub path: Option<PathBuf>,
    pub data: Option<Located<PathBuf>>,
    pub serve: ServeSection,
    pub mount: MountSection,
    pub network: NetworkSection,
}

/// `[network]`: discovery routes of `serve` and `mount` (see [`crate::net::providers`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSection {
    pub mdns: Option<Located<bool>>,
    pub dht: Option<Located<bool>>,
    pub relay: Option<Located<RelayChoice>>,
    pub dht_bootstrap: Option<Located<Vec<String>>>,
}

/// `[serve]`: settings of `dat-mirror serve`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeSection {
    pub listen: Option<Located<SocketAddr>>,
    pub http: Option<Located<SocketAddr>>,
    pub allow: Option<Located<Vec<Key>>>,
    /// Custom domains of the HTTP gateway: host name (lower case) → site.
    pub domains: Option<Located<BTreeMap<String, Key>>>,
    /// Where to mount the read-only tree of mirrored sites.
    pub mount: Option<Located<PathBuf>>,
    /// Storage cap in bytes.
    pub max_storage: Option<Located<u64>>,
}

/// `[mount]`: settings of `dat-mirror mount`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountSection {
    pub mountpoint: Option<Located<PathBuf>>,
    pub mirrors: Option<Located<Vec<PeerAddr>>>,
    pub listen: Option<Located<SocketAddr>>,
}

/// A configuration file that cannot be used: which file, which line, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    /// Dotted key, e.g. `serve.listen`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

// The file as TOML sees it; values are checked and converted afterwards so that every error
// can point at its line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    data: Option<Spanned<String>>,
    serve: Option<RawServe>,
    mount: Option<RawMount>,
    network: Option<RawNetwork>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    mdns: Option<Spanned<bool>>,
    dht: Option<Spanned<bool>>,
    relay: Option<Spanned<String>>,
    dht_bootstrap: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    listen: Option<Spanned<String>>,
    http: Option<Spanned<String>>,
    allow: Option<Spanned<Vec<Spanned<String>>>>,
    domains: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    mount: Option<Spanned<String>>,
    max_storage: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    mountpoint: Option<Spanned<String>>,
    mirrors: Option<Spanned<Vec<Spanned<String>>>>,
    listen: Option<Spanned<String>>,
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key a TOML/serde error at `span` is about, read from the text around it: the
/// nearest `[table]` header above, and the key on the line (or the nearest line above with a
/// `key =`, for values spread over several lines).
fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = line_of(text, span.start).checked_sub(1)?;
    let clean = |s: &str| s.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
    let header = |l: &str| {
        let t = l.trim();
        (t.starts_with('[') && !t.contains('='))
            .then(|| clean(t.trim_start_matches('[').split(']').next().unwrap_or("")))
    };
    if let Some(h) = lines.get(idx).and_then(|l| header(l)) {
        return Some(h);
    }
    let mut key = None;
    let mut table = None;
    for l in lines[..=idx.min(lines.len().saturating_sub(1))]
        .iter()
        .rev()
    {
        if let Some(h) = header(l) {
            table = Some(h);
            break;
        }
        if key.is_none() {
            let t = l.split('#').next().unwrap_or("");
            if let Some((k, _)) = t.split_once('=') {
                key = Some(clean(k));
            }
        }
    }
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

/// Parses the text of a configuration file. `path` is only used in errors; `home` expands
/// paths that start with `~/`.
pub fn parse(text: &str, path: &Path, home: Option<&Path>) -> Result<ConfigFile, ConfigError> {
    let err = |span: Option<Range<usize>>, key: Option<String>, message: String| ConfigError {
        path: path.to_path_buf(),
        line: span.map(|s| line_of(text, s.start)),
        key,
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span();
        let key = span.as_ref().and_then(|s| key_at(text, s));
        err(span, key, e.message().trim().to_string())
    })?;

    let addr = |v: Option<Spanned<String>>, key: &str| -> Result<_, ConfigError> {
        v.map(|s| {
            let span = s.span();
            s.get_ref()
                .parse::<SocketAddr>()
                .map(|value| Located {
                    value,
                    line: line_of(text, span.start),
                })
                .map_err(|e| {
                    err(
                        Some(span),
                        Some(key.into()),
                        format!("{:?} is not an IP:PORT address ({e})", s.get_ref()),
                    )
                })
        })
        .transpose()
    };
    let dir = |v: Option<Spanned<String>>, key: &str| -> Result<_, ConfigError> {
        v.map(|s| {
            let span = s.span();
            expand_path(s.get_ref(), home)
                .map(|value| Located {
                    value,
                    line: line_of(text, span.start),
                })
                .map_err(|m| err(Some(span), Some(key.into()), m))
        })
        .transpose()
    };
    fn list<T>(
        v: Option<Spanned<Vec<Spanned<String>>>>,
        text: &str,
        mut one: impl FnMut(&str) -> Result<T, String>,
        mut fail: impl FnMut(Range<usize>, String) -> ConfigError,
    ) -> Result<Option<Located<Vec<T>>>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        let line = line_of(text, v.span().start);
        let mut out = Vec::new();
        for item in v.into_inner() {
            let span = item.span();
            out.push(one(item.get_ref()).map_err(|m| fail(span, m))?);
        }
        Ok(Some(Located { value: out, line }))
    }

    let serve = raw.serve.unwrap_or(RawServe {
        listen: None,
        http: None,
        allow: None,
        domains: None,
        mount: None,
        max_storage: None,
    });
    let domains = match serve.domains {
        None => None,
        Some(table) => {
            let line = line_of(text, table.span().start);
            let mut out = BTreeMap::new();
            for (host, key) in table.into_inner() {
                let span = key.span();
                let (host, key) = parse_domain_pair(&host, key.get_ref())
                    .map_err(|m| err(Some(span), Some(format!("serve.domains.{host}")), m))?;
                out.insert(host, key);
            }
            Some(Located { value: out, line })
        }
    };
    let mount = raw.mount.unwrap_or(RawMount {
        mountpoint: None,
        mirrors: None,
        listen: None,
    });
    let network = raw.network.unwrap_or_default();
    let flag = |v: Option<Spanned<bool>>| {
        v.map(|b| Located {
            line: line_of(text, b.span().start),
            value: b.into_inner(),
        })
    };
    let relay = network
        .relay
        .map(|r| {
            let span = r.span();
            r.get_ref()
                .parse::<RelayChoice>()
                .map(|value| Located {
                    value,
                    line: line_of(text, span.start),
                })
                .map_err(|m| err(Some(span), Some("network.relay".into()), m))
        })
        .transpose()?;
    let network = NetworkSection {
        mdns: flag(network.mdns),
        dht: flag(network.dht),
        relay,
        dht_bootstrap: list(network.dht_bootstrap, text, parse_bootstrap, |span, m| {
            err(Some(span), Some("network.dht_bootstrap".into()), m)
        })?,
    };
    Ok(ConfigFile {
        network,
        path: Some(path.to_path_buf()),
        data: dir(raw.data, "data")?,
        serve: ServeSection {
            listen: addr(serve.listen, "serve.listen")?,
            http: addr(serve.http, "serve.http")?,
            allow: list(
                serve.allow,
                text,
                |s| {
                    Key::parse_link(s)
                        .map_err(|e| format!("{s:?} is not a laptop id (64 hex characters): {e}"))
                },
                |span, m| err(Some(span), Some("serve.allow".into()), m),
            )?,
            domains,
            mount: dir(serve.mount, "serve.mount")?,
            max_storage: serve
                .max_storage
                .map(|s| {
                    let span = s.span();
                    crate::model::units::parse_size(s.get_ref())
                        .map(|value| Located {
                            value,
                            line: line_of(text, span.start),
                        })
                        .map_err(|m| err(Some(span), Some("serve.max_storage".into()), m))
                })
                .transpose()?,
        },
        mount: MountSection {
            mountpoint: dir(mount.mountpoint, "mount.mountpoint")?,
            mirrors: list(
                mount.mirrors,
                text,
                |s| s.parse::<PeerAddr>(),
                |span, m| err(Some(span), Some("mount.mirrors".into()), m),
            )?,
            listen: addr(mount.listen, "mount.listen")?,
        },
    })
}

/// A DHT bootstrap node: `HOST:PORT`.
pub fn parse_bootstrap(s: &str) -> Result<String, String> {
    let s = s.trim();
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_string()),
        _ => Err(format!(
            "{s:?} is not a DHT bootstrap node: use HOST:PORT, e.g. 192.168.1.5:6881"
        )),
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), as the environment gives switches.
pub fn parse_switch(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// The discovery routes in effect, each with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenNetwork {
    pub mdns: Chosen<bool>,
    pub dht: Chosen<bool>,
    pub relay: Chosen<RelayChoice>,
    pub dht_bootstrap: Chosen<Vec<String>>,
}

impl ChosenNetwork {
    /// Chooses each route: flag, then environment, then file, then the product default.
    pub fn choose(
        mdns: Given<bool>,
        dht: Given<bool>,
        relay: Given<RelayChoice>,
        dht_bootstrap: Given<Vec<String>>,
        file: &ConfigFile,
    ) -> ChosenNetwork {
        let d = NetworkConfig::public_defaults();
        let path = file.path.as_deref();
        let n = &file.network;
        ChosenNetwork {
            mdns: choose(mdns, n.mdns.as_ref(), path, Some(d.mdns)).expect("has a default"),
            dht: choose(dht, n.dht.as_ref(), path, Some(d.dht)).expect("has a default"),
            relay: choose(relay, n.relay.as_ref(), path, Some(d.relay)).expect("has a default"),
            dht_bootstrap: choose(dht_bootstrap, n.dht_bootstrap.as_ref(), path, Some(vec![]))
                .expect("has a default"),
        }
    }

    pub fn config(&self) -> NetworkConfig {
        NetworkConfig {
            mdns: self.mdns.value,
            dht: self.dht.value,
            dht_bootstrap: self.dht_bootstrap.value.clone(),
            relay: self.relay.value.clone(),
        }
    }
}

/// A custom domain and its site: a host name (no scheme, port or path; lower-cased) and a
/// site key (hex, z-base32 or a `hyper://` link).
pub fn parse_domain_pair(host: &str, key: &str) -> Result<(String, Key), String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid {
        return Err(format!(
            "{host:?} is not a host name (like www.example.org: letters, digits, '-' and '.')"
        ));
    }
    let key = Key::parse_link(key).map_err(|e| format!("{key:?} is not a site key: {e}"))?;
    Ok((host, key))
}

/// `HOST=KEY`, as `serve --domain` takes it.
pub fn parse_domain_arg(s: &str) -> Result<(String, Key), String> {
    let (host, key) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not HOST=KEY (e.g. www.example.org=hyper://<key>)"))?;
    parse_domain_pair(host, key)
}

/// A path from the file: absolute, or `~/…` (expanded with `home`). Relative paths are
/// refused: a service's working directory is rarely what the author of the file had in mind.
pub fn expand_path(s: &str, home: Option<&Path>) -> Result<PathBuf, String> {
    if s == "~" || s.starts_with("~/") {
        let home = home.ok_or_else(|| format!("{s:?} starts with ~ but HOME is not set"))?;
        return Ok(match s.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => home.to_path_buf(),
        });
    }
    let p = PathBuf::from(s);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(format!(
            "{s:?} is a relative path: use an absolute path or one starting with ~/"
        ))
    }
}

/// Where the configuration file is looked for when no `--config` is given:
/// `$XDG_CONFIG_HOME/dat-mirror/config.toml`, else `$HOME/.config/dat-mirror/config.toml`.
pub fn default_config_path(xdg_config_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let base = xdg_config_home
        .filter(|p| p.is_absolute())
        .map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join(".config")))?;
    Some(base.join("dat-mirror").join("config.toml"))
}

/// The default data folder: `$XDG_DATA_HOME/dat-mirror`, else `$HOME/.local/share/dat-mirror`.
pub fn default_data_dir(xdg_data_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let base = xdg_data_home
        .filter(|p| p.is_absolute())
        .map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join(".local/share")))?;
    Some(base.join("dat-mirror"))
}

/// Reads and parses the file at `path`. A missing file is `Ok(None)` unless `required` (it
/// was named explicitly).
pub fn load(
    path: &Path,
    required: bool,
    home: Option<&Path>,
) -> Result<Option<ConfigFile>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path, home).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) => Err(ConfigError {
            path: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read the configuration file: {e}"),
        }),
    }
}

/// What the command line says about a setting (clap already merged flag and environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Given<T> {
    /// Given as a flag or argument.
    Flag(T),
    /// Taken from this environment variable.
    Env(&'static str, T),
    /// Not given.
    Absent,
}

/// Where a chosen value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File { path: PathBuf, line: usize },
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("command line"),
            Source::Env(v) => write!(f, "${v}"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A chosen value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen<T> {
    pub value: T,
    pub source: Source,
}

/// Chooses a setting: command line, then environment, then file, then `default`.
pub fn choose<T: Clone>(
    given: Given<T>,
    file: Option<&Located<T>>,
    file_path: Option<&Path>,
    default: Option<T>,
) -> Option<Chosen<T>> {
    match given {
        Given::Flag(value) => Some(Chosen {
            value,
            source: Source::Flag,
        }),
        Given::Env(var, value) => Some(Chosen {
            value,
            source: Source::Env(var),
        }),
        Given::Absent => match file {
            Some(l) => Some(Chosen {
                value: l.value.clone(),
                source: Source::File {
                    path: file_path.map(Path::to_path_buf).unwrap_or_default(),
                    line: l.line,
                },
            }),
            None => default.map(|value| Chosen {
                value,
                source: Source::Default,
            }),
        },
    }
}

/// Every setting with its chosen value, as `dat-mirror config` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The file looked at, and whether it exists.
    pub file: Option<(PathBuf, bool)>,
    pub data: Option<Chosen<PathBuf>>,
    pub serve_listen: Chosen<SocketAddr>,
    pub serve_http: Chosen<SocketAddr>,
    pub serve_allow: Chosen<Vec<Key>>,
    pub serve_domains: Chosen<BTreeMap<String, Key>>,
    pub serve_mount: Option<Chosen<PathBuf>>,
    pub serve_max_storage: Option<Chosen<u64>>,
    pub mount_mountpoint: Option<Chosen<PathBuf>>,
    pub mount_mirrors: Chosen<Vec<PeerAddr>>,
    pub mount_listen: Chosen<SocketAddr>,
    pub network: ChosenNetwork,
}

fn quote(s: &str) -> String {
    // JSON string escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL,
    // which JSON leaves alone.
    serde_json::to_string(s)
        .expect("a string serialises")
        .replace('\u{7f}', "\\u007f")
}

fn quote_list<T: fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", items.join(", "))
}

impl Effective {
    /// The settings as a configuration file (every line says where its value came from);
    /// `dat-mirror config > config.toml` is a valid starting point.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |setting: String, source: &dyn fmt::Display| {
            out.push_str(&format!("{setting:<54} # {source}\n"));
        };
        match &self.file {
            Some((p, true)) => line(format!("# config file: {}", p.display()), &"read"),
            Some((p, false)) => line(format!("# config file: {}", p.display()), &"not found"),
            None => line("# config file: none".into(), &"HOME is not set"),
        }
        match &self.data {
            Some(c) => line(
                format!("data = {}", quote(&c.value.to_string_lossy())),
                &c.source,
            ),
            None => line("# data = (unset)".into(), &"set XDG_DATA_HOME or HOME"),
        }
        out.push_str("\n[serve]\n");
        let mut line = |setting: String, source: &dyn fmt::Display| {
            out.push_str(&format!("{setting:<54} # {source}\n"));
        };
        line(
            format!("listen = {}", quote(&self.serve_listen.value.to_string())),
            &self.serve_listen.source,
        );
        line(
            format!("http = {}", quote(&self.serve_http.value.to_string())),
            &self.serve_http.source,
        );
        line(
            format!("allow = {}", quote_list(&self.serve_allow.value)),
            &self.serve_allow.source,
        );
        match &self.serve_mount {
            Some(c) => line(
                format!("mount = {}", quote(&c.value.to_string_lossy())),
                &c.source,
            ),
            None => line("# mount = (unset: no read-only tree)".into(), &"default"),
        }
        match &self.serve_max_storage {
            Some(c) => line(
                format!("max_storage = {}", quote(&format!("{}B", c.value))),
                &c.source,
            ),
            None => line("# max_storage = (unset: no cap)".into(), &"default"),
        }
        out.push_str(&format!(
            "\n{:<54} # {}\n",
            "[serve.domains]", self.serve_domains.source
        ));
        for (host, key) in &self.serve_domains.value {
            out.push_str(&format!("{} = {}\n", quote(host), quote(&key.to_string())));
        }
        out.push_str("\n[mount]\n");
        let mut line = |setting: String, source: &dyn fmt::Display| {
            out.push_str(&format!("{setting:<54} # {source}\n"));
        };
        match &self.mount_mountpoint {
            Some(c) => line(
                format!("mountpoint = {}", quote(&c.value.to_string_lossy())),
                &c.source,
            ),
            None => line(
                "# mountpoint = \"~/dat-mirror\"".into(),
                &"unset: `dat-mirror mount` needs it",
            ),
        }
        line(
            format!("mirrors = {}", quote_list(&self.mount_mirrors.value)),
            &self.mount_mirrors.source,
        );
        line(
            format!("listen = {}", quote(&self.mount_listen.value.to_string())),
            &self.mount_listen.source,
        );
        out.push_str("\n[network]\n");
        let n = &self.network;
        let mut line = |setting: String, source: &dyn fmt::Display| {
            out.push_str(&format!("{setting:<54} # {source}\n"));
        };
        line(format!("mdns = {}", n.mdns.value), &n.mdns.source);
        line(format!("dht = {}", n.dht.value), &n.dht.source);
        line(
            format!("relay = {}", quote(&n.relay.value.to_string())),
            &n.relay.source,
        );
        line(
            format!("dht_bootstrap = {}", quote_list(&n.dht_bootstrap.value)),
            &n.dht_bootstrap.source,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAPTOP: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

    fn p(text: &str) -> Result<ConfigFile, ConfigError> {
        parse(
            text,
            Path::new("/etc/dat-mirror/config.toml"),
            Some(Path::new("/home/me")),
        )
    }

    #[test]
    fn parses_every_setting() {
        let text = format!(
            "data = \"/srv/dat\"\n\n[serve]\nlisten = \"0.0.0.0:7071\"\nhttp = \"[::]:80\"\n\
             allow = [\n  \"{LAPTOP}\",\n]\n\n[serve.domains]\n\"WWW.Example.org.\" = \"hyper://{LAPTOP}\"\n\n[mount]\nmountpoint = \"~/dm\"\n\
             mirrors = [\"{LAPTOP}@192.168.1.20:7070\"]\nlisten = \"0.0.0.0:7000\"\n"
        );
        let c = p(&text).unwrap();
        assert_eq!(
            c.data,
            Some(Located {
                value: "/srv/dat".into(),
                line: 1
            })
        );
        assert_eq!(c.serve.listen.as_ref().unwrap().value.port(), 7071);
        assert_eq!(c.serve.listen.as_ref().unwrap().line, 4);
        assert_eq!(c.serve.http.unwrap().value, "[::]:80".parse().unwrap());
        let allow = c.serve.allow.unwrap();
        assert_eq!(allow.line, 6);
        assert_eq!(allow.value, vec![Key::parse(LAPTOP).unwrap()]);
        let domains = c.serve.domains.unwrap();
        assert_eq!(domains.line, 10);
        assert_eq!(
            domains.value,
            BTreeMap::from([("www.example.org".to_string(), Key::parse(LAPTOP).unwrap())])
        );
        assert_eq!(
            c.mount.mountpoint.unwrap().value,
            PathBuf::from("/home/me/dm")
        );
        let mirrors = c.mount.mirrors.unwrap().value;
        assert_eq!(mirrors[0].addr, Some("192.168.1.20:7070".parse().unwrap()));
        assert_eq!(c.mount.listen.unwrap().value.port(), 7000);
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        let c = p("# nothing here\n").unwrap();
        assert_eq!(c.data, None);
        assert_eq!(c.serve, ServeSection::default());
        assert_eq!(c.mount, MountSection::default());
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../dist/config.example.toml");
        let c = p(text).unwrap();
        assert!(c.serve.listen.is_some() && c.serve.http.is_some());
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let e = p("[serve]\nlisten = \"0.0.0.0:1\"\nlisen = \"x\"\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("serve.lisen"));
        assert!(e.message.contains("unknown field `lisen`"), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with("/etc/dat-mirror/config.toml:3: key `serve.lisen`: "),
            "{shown}"
        );

        let e = p("data = \"/x\"\n[srve]\nlisten = \"0.0.0.0:1\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(e.key.as_deref(), Some("srve"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let e = p("\n[serve]\nhttp = 8080\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("serve.http")),
            "{e}"
        );
        let e = p("[mount]\nmirrors = \"one\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("mount.mirrors")),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_the_line_of_the_value() {
        let e = p("[serve]\nlisten = \"7070\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("serve.listen")));
        assert!(e.message.contains("IP:PORT"), "{e}");

        let e = p(&format!(
            "[serve]\nallow = [\n  \"{LAPTOP}\",\n  \"nope\",\n]\n"
        ))
        .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("serve.allow")),
            "{e}"
        );

        let e = p("[mount]\nmirrors = [\"abc\"]\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("mount.mirrors")));
        assert!(e.message.contains("ID@IP:PORT"), "{e}");

        let e = p("[serve.domains]\n\"a.org\" = \"nokey\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("serve.domains.a.org")),
            "{e}"
        );
        let e = p(&format!("[serve.domains]\n\"a b\" = \"{LAPTOP}\"\n")).unwrap_err();
        assert!(e.message.contains("host name"), "{e}");

        let e = p("data = \"relative/dir\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("data")));
        assert!(e.message.contains("relative"), "{e}");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = p("[serve]\nlisten = \"0.0.0.0:1\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn domain_arguments() {
        let (h, key) = parse_domain_arg(&format!("Blog.Example.org=hyper://{LAPTOP}")).unwrap();
        assert_eq!(
            (h.as_str(), key),
            ("blog.example.org", Key::parse(LAPTOP).unwrap())
        );
        assert!(parse_domain_arg("blog.example.org").is_err());
        assert!(parse_domain_arg(&format!("http://x.org/={LAPTOP}")).is_err());
        assert!(parse_domain_arg("x.org=nokey").is_err());
    }

    #[test]
    fn home_expansion() {
        let home = Some(Path::new("/home/me"));
        assert_eq!(expand_path("~", home).unwrap(), PathBuf::from("/home/me"));
        assert_eq!(
            expand_path("~/a", home).unwrap(),
            PathBuf::from("/home/me/a")
        );
        assert_eq!(expand_path("/abs", None).unwrap(), PathBuf::from("/abs"));
        assert!(expand_path("~/a", None).is_err());
        assert!(expand_path("~other/a", home).is_err());
    }

    #[test]
    fn default_locations_follow_xdg() {
        let home = Some(Path::new("/home/me"));
        assert_eq!(
            default_config_path(None, home).unwrap(),
            PathBuf::from("/home/me/.config/dat-mirror/config.toml")
        );
        assert_eq!(
            default_config_path(Some(Path::new("/etc")), home).unwrap(),
            PathBuf::from("/etc/dat-mirror/config.toml")
        );
        // A relative XDG variable is invalid per the spec and ignored.
        assert_eq!(
            default_config_path(Some(Path::new("rel")), home).unwrap(),
            PathBuf::from("/home/me/.config/dat-mirror/config.toml")
        );
        assert_eq!(default_config_path(None, None), None);
        assert_eq!(
            default_data_dir(None, home).unwrap(),
            PathBuf::from("/home/me/.local/share/dat-mirror")
        );
        assert_eq!(
            default_data_dir(Some(Path::new("/var/lib")), home).unwrap(),
            PathBuf::from("/var/lib/dat-mirror")
        );
    }

    #[test]
    fn precedence_is_flag_env_file_default() {
        let file = Located { value: 3, line: 7 };
        let path = Some(Path::new("/c.toml"));
        let c = |g| choose(g, Some(&file), path, Some(4)).unwrap();
        assert_eq!(c(Given::Flag(1)).source, Source::Flag);
        assert_eq!(c(Given::Flag(1)).value, 1);
        assert_eq!(c(Given::Env("V", 2)).value, 2);
        assert_eq!(c(Given::Env("V", 2)).source, Source::Env("V"));
        let from_file = c(Given::Absent);
        assert_eq!(from_file.value, 3);
        assert_eq!(from_file.source.to_string(), "/c.toml:7");
        let d = choose(Given::Absent, None, path, Some(4)).unwrap();
        assert_eq!((d.value, d.source), (4, Source::Default));
        assert_eq!(choose::<i32>(Given::Absent, None, path, None), None);
    }

    #[test]
    fn max_storage_parses_with_units_and_errors_point_at_the_line() {
        let c = p("[serve]\nmax_storage = \"1.5GiB\"\n").unwrap();
        let cap = c.serve.max_storage.unwrap();
        assert_eq!((cap.value, cap.line), (3 << 29, 2));
        let e = p("[serve]\nlisten = \"0.0.0.0:1\"\nmax_storage = \"2X\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("serve.max_storage"))
        );
        assert!(e.message.contains("e.g. 500M"), "{}", e.message);
    }

    #[test]
    fn render_round_trips_through_parse() {
        let key = Key::parse(LAPTOP).unwrap();
        let eff = Effective {
            file: Some(("/c.toml".into(), true)),
            data: Some(Chosen {
                value: "/var/lib/dat \"mirror\"".into(),
                source: Source::Env(ENV_DATA),
            }),
            serve_listen: Chosen {
                value: DEFAULT_SERVE_LISTEN,
                source: Source::Default,
            },
            serve_http: Chosen {
                value: "[::1]:8081".parse().unwrap(),
                source: Source::Flag,
            },
            serve_allow: Chosen {
                value: vec![key, key],
                source: Source::File {
                    path: "/c.toml".into(),
                    line: 3,
                },
            },
            serve_domains: Chosen {
                value: BTreeMap::from([("blog.example.org".to_string(), key)]),
                source: Source::Flag,
            },
            serve_mount: Some(Chosen {
                value: "/srv/sites".into(),
                source: Source::Flag,
            }),
            serve_max_storage: Some(Chosen {
                value: 3 << 29,
                source: Source::Flag,
            }),
            mount_mountpoint: None,
            mount_mirrors: Chosen {
                value: vec![PeerAddr::new(key, "10.0.0.2:7070".parse().unwrap())],
                source: Source::Default,
            },
            mount_listen: Chosen {
                value: DEFAULT_MOUNT_LISTEN,
                source: Source::Default,
            },
            network: ChosenNetwork {
                mdns: Chosen {
                    value: false,
                    source: Source::Env(ENV_NETWORK_MDNS),
                },
                dht: Chosen {
                    value: true,
                    source: Source::Default,
                },
                relay: Chosen {
                    value: "http://10.0.0.9:3340".parse().unwrap(),
                    source: Source::Flag,
                },
                dht_bootstrap: Chosen {
                    value: vec!["127.0.0.1:6881".into()],
                    source: Source::Flag,
                },
            },
        };
        let text = eff.render();
        assert!(text.contains("# $DAT_MIRROR_DATA"), "{text}");
        assert!(text.contains("# /c.toml:3"), "{text}");
        let back = p(&text).unwrap();
        assert_eq!(back.data.unwrap().value, eff.data.unwrap().value);
        assert_eq!(back.serve.http.unwrap().value, eff.serve_http.value);
        assert_eq!(back.serve.allow.unwrap().value, vec![key, key]);
        assert_eq!(back.serve.domains.unwrap().value, eff.serve_domains.value);
        assert_eq!(back.mount.mountpoint, None);
        assert_eq!(back.mount.mirrors.unwrap().value, eff.mount_mirrors.value);
        assert!(!back.network.mdns.unwrap().value);
        assert!(back.network.dht.unwrap().value);
        assert_eq!(back.network.relay.unwrap().value, eff.network.relay.value);
        assert_eq!(
            back.network.dht_bootstrap.unwrap().value,
            eff.network.dht_bootstrap.value
        );
    }

    #[test]
    fn network_section_parses_and_layers() {
        let f =
            p("[network]\nmdns = false\nrelay = \"off\"\ndht_bootstrap = [\"127.0.0.1:7000\"]\n")
                .unwrap();
        assert_eq!(f.network.mdns.as_ref().unwrap().line, 2);
        let n = ChosenNetwork::choose(
            Given::Absent,
            Given::Env(ENV_NETWORK_DHT, false),
            Given::Flag(RelayChoice::Default),
            Given::Absent,
            &f,
        );
        assert!(!n.mdns.value);
        assert!(matches!(n.mdns.source, Source::File { line: 2, .. }));
        assert_eq!(n.dht.source, Source::Env(ENV_NETWORK_DHT));
        assert_eq!(n.relay.value, RelayChoice::Default);
        assert_eq!(n.dht_bootstrap.value, vec!["127.0.0.1:7000".to_string()]);
        let defaults = ChosenNetwork::choose(
            Given::Absent,
            Given::Absent,
            Given::Absent,
            Given::Absent,
            &ConfigFile::default(),
        );
        assert_eq!(defaults.config(), NetworkConfig::public_defaults());

        let e = p("[network]\nrelay = \"relay.example.org\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("network.relay")));
        let e = p("[network]\ndht_bootstrap = [\"nohost\"]\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("network.dht_bootstrap"));
        let e = p("[network]\nmdns = \"maybe\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("network.mdns"), "{e}");
        assert!(parse_switch("FALSE") == Ok(false) && parse_switch("1") == Ok(true));
        assert!(parse_switch("maybe").is_err());
    }
}
