//! The value kinds settings are made of (addresses, paths, switches, key lists, custom
//! domains, sizes, relays, bootstrap nodes, status access), each read from a flag or variable,
//! read from the file, and written back as the file would say it; plus the small parsers
//! the command line also uses (`parse_domain_arg`, `parse_switch`, `expand_path`, ...).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::de::DeValue;
use toml::Spanned;

use super::setting::{Bad, FileCx, Kind, Shown};
use crate::model::keys::Key;
use crate::model::units::parse_size;
use crate::net::endpoint::{PeerAddr, RelayChoice};

type V<'a> = Spanned<DeValue<'a>>;

/// A TOML basic string for `s`.
pub fn quote(s: &str) -> String {
    // JSON string escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL,
    // which JSON leaves alone.
    serde_json::to_string(s)
        .unwrap_or_else(|_| "\"\"".into())
        .replace('\u{7f}', "\\u007f")
}

fn quote_list<T: fmt::Display>(items: &[T]) -> Shown {
    let items: Vec<String> = items.iter().map(|i| quote(&i.to_string())).collect();
    Shown::Inline(format!("[{}]", items.join(", ")))
}

/// The value a flag or variable gave last (a later flag wins over an earlier one).
fn last(v: &[String]) -> Result<&str, String> {
    v.last()
        .map(String::as_str)
        .ok_or_else(|| "no value given".to_string())
}

/// "integer `8080`", as serde says it in "invalid type" errors.
fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) => format!("integer `{}`", i.as_str()),
        DeValue::Float(x) => format!("floating point `{}`", x.as_str()),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        DeValue::Datetime(d) => format!("datetime `{d}`"),
        DeValue::Array(_) => "sequence".into(),
        DeValue::Table(_) => "map".into(),
    }
}

fn wrong_type(v: &V<'_>, expected: &str) -> Bad {
    Bad::at(
        v,
        format!(
            "invalid type: {}, expected {expected}",
            describe(v.get_ref())
        ),
    )
}

fn toml_str<'a>(v: &'a V<'_>) -> Result<&'a str, Bad> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s),
        _ => Err(wrong_type(v, "a string")),
    }
}

/// A string from the file, read by `one` (its error points at the value).
fn toml_one<T>(v: &V<'_>, one: impl Fn(&str) -> Result<T, String>) -> Result<T, Bad> {
    one(toml_str(v)?).map_err(|m| Bad::at(v, m))
}

/// An array of strings from the file, each read by `one` (an error points at the item).
fn toml_list<T>(v: &V<'_>, one: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, Bad> {
    let DeValue::Array(items) = v.get_ref() else {
        return Err(wrong_type(v, "a sequence"));
    };
    items.iter().map(|item| toml_one(item, &one)).collect()
}

fn args_list<T>(v: &[String], one: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    v.iter().map(|s| one(s.trim())).collect()
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse::<SocketAddr>()
        .map_err(|e| format!("{s:?} is not an IP:PORT address ({e})"))
}

/// `IP:PORT`.
pub const ADDR: Kind<SocketAddr> = Kind {
    from_args: |v| addr(last(v)?),
    from_toml: |v, _| toml_one(v, addr),
    to_toml: |a| Shown::Inline(quote(&a.to_string())),
    repeat: false,
};

/// A folder. From the file: absolute or `~/…`; from a flag or variable: as given.
pub const PATH: Kind<PathBuf> = Kind {
    from_args: |v| Ok(PathBuf::from(last(v)?)),
    from_toml: |v, cx| toml_one(v, |s| expand_path(s, cx.home)),
    to_toml: |p| Shown::Inline(quote(&p.to_string_lossy())),
    repeat: false,
};

/// `true` / `false`.
pub const SWITCH: Kind<bool> = Kind {
    from_args: |v| parse_switch(last(v)?),
    from_toml: |v, _: FileCx<'_>| match v.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(wrong_type(v, "a boolean")),
    },
    to_toml: |b| Shown::Inline(b.to_string()),
    repeat: false,
};

fn laptop_id(s: &str) -> Result<Key, String> {
    Key::parse_link(s).map_err(|e| format!("{s:?} is not a laptop id (64 hex characters): {e}"))
}

/// Laptop ids.
pub const LAPTOPS: Kind<Vec<Key>> = Kind {
    from_args: |v| args_list(v, laptop_id),
    from_toml: |v, _| toml_list(v, laptop_id),
    to_toml: |keys| quote_list(keys),
    repeat: true,
};

/// Peers as `ID` or `ID@IP:PORT`.
pub const PEERS: Kind<Vec<PeerAddr>> = Kind {
    from_args: |v| args_list(v, str::parse::<PeerAddr>),
    from_toml: |v, _| toml_list(v, str::parse::<PeerAddr>),
    to_toml: |peers| quote_list(peers),
    repeat: true,
};

/// Custom domains: host name → site. `HOST=KEY` on the command line, a table in the file.
pub const DOMAINS: Kind<BTreeMap<String, Key>> = Kind {
    from_args: |v| args_list(v, parse_domain_arg).map(|pairs| pairs.into_iter().collect()),
    from_toml: |v, _| {
        let DeValue::Table(table) = v.get_ref() else {
            return Err(wrong_type(v, "a table of \"HOST\" = \"KEY\""));
        };
        let mut out = BTreeMap::new();
        for (host, key) in table.iter() {
            let (h, k) = parse_domain_pair(host.get_ref(), toml_str(key)?).map_err(|m| Bad {
                key: Some(format!("serve.domains.{}", host.get_ref())),
                ..Bad::at(key, m)
            })?;
            out.insert(h, k);
        }
        Ok(out)
    },
    to_toml: |domains| {
        Shown::Table(
            domains
                .iter()
                .map(|(host, key)| (quote(host), quote(&key.to_string())))
                .collect(),
        )
    },
    repeat: true,
};

/// A size: `500M`, `2G`, `1.5GiB`, `100MB`, `123B`.
pub const SIZE: Kind<u64> = Kind {
    from_args: |v| parse_size(last(v)?),
    from_toml: |v, _| toml_one(v, parse_size),
    to_toml: |n| Shown::Inline(quote(&format!("{n}B"))),
    repeat: false,
};

fn days(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("{s:?} is not a number of days (a whole number, 0 for never)"))
}

/// A whole number of days (`[serve] trash_days`).
pub const DAYS: Kind<u64> = Kind {
    from_args: |v| days(last(v)?),
    from_toml: |v, _| match v.get_ref() {
        DeValue::Integer(i) => days(i.as_str()).map_err(|m| Bad::at(v, m)),
        DeValue::String(s) => days(s).map_err(|m| Bad::at(v, m)),
        _ => Err(wrong_type(v, "a number of days")),
    },
    to_toml: |n| Shown::Inline(n.to_string()),
    repeat: false,
};

/// `default`, `off` or relay URLs.
pub const RELAY: Kind<RelayChoice> = Kind {
    from_args: |v| last(v)?.parse(),
    from_toml: |v, _| toml_one(v, str::parse::<RelayChoice>),
    to_toml: |r| Shown::Inline(quote(&r.to_string())),
    repeat: false,
};

/// Mainline DHT bootstrap nodes, `HOST:PORT`.
pub const DHT_NODES: Kind<Vec<String>> = Kind {
    from_args: |v| args_list(v, parse_bootstrap),
    from_toml: |v, _| toml_list(v, parse_bootstrap),
    to_toml: |nodes| quote_list(nodes),
    repeat: true,
};

/// HyperDHT (hyperswarm) bootstrap nodes, `HOST:PORT`.
pub const HYPERSWARM_NODES: Kind<Vec<String>> = Kind {
    from_args: |v| args_list(v, parse_hyperswarm_bootstrap),
    from_toml: |v, _| toml_list(v, parse_hyperswarm_bootstrap),
    to_toml: |nodes| quote_list(nodes),
    repeat: true,
};

/// Who may see the mirror's status page, `/.well-known/dat-mirror` (and `/metrics`): the
/// gateway's own type ([`StatusAccess`]), so the setting and its use cannot drift.
pub const STATUS_ACCESS: Kind<StatusAccess> = Kind {
    from_args: |v| parse_status_access(last(v)?),
    from_toml: |v, _| toml_one(v, parse_status_access),
    to_toml: |s| Shown::Inline(quote(&s.to_string())),
    repeat: false,
};

pub use crate::mirror::http::access::StatusAccess;

fn parse_status_access(s: &str) -> Result<StatusAccess, String> {
    s.parse()
        .map_err(|e: crate::mirror::http::access::BadStatusAccess| e.to_string())
}

/// `[serve] base_host`: the gateway's host name, under which each site gets its own origin.
pub const BASE_HOST: Kind<BaseHost> = Kind {
    from_args: |v| parse_base_host(last(v)?),
    from_toml: |v, _| toml_one(v, parse_base_host),
    to_toml: |b| Shown::Inline(quote(&b.to_string())),
    repeat: false,
};

pub use crate::mirror::http::request::BaseHost;

fn parse_base_host(s: &str) -> Result<BaseHost, String> {
    s.parse()
        .map_err(|e: crate::mirror::http::request::BadBaseHost| e.to_string())
}

fn host_port(s: &str, what: &str, example: &str) -> Result<String, String> {
    let s = s.trim();
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_string()),
        _ => Err(format!(
            "{s:?} is not a {what} bootstrap node: use HOST:PORT, e.g. {example}"
        )),
    }
}

/// A DHT bootstrap node: `HOST:PORT`.
pub fn parse_bootstrap(s: &str) -> Result<String, String> {
    host_port(s, "DHT", "192.168.1.5:6881")
}

/// A HyperDHT bootstrap node (the hypercore network's DHT): `HOST:PORT`.
pub fn parse_hyperswarm_bootstrap(s: &str) -> Result<String, String> {
    host_port(s, "HyperDHT", "192.168.1.5:49737")
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), as the environment gives switches.
pub fn parse_switch(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// A site key or link (`hyper://…`, hex or z-base32), as the command line takes it.
pub fn parse_key(s: &str) -> Result<Key, String> {
    Key::parse_link(s).map_err(|e| e.to_string())
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
