//! Pure request parsing for the gateway: which site and path a request names (by path,
//! `<key>.<host>` / `<alias>.<host>` virtual host or a configured domain), `?version=N`, byte
//! ranges, conditional headers, and the gateway's redirect targets (the subdomain form of a
//! path-routed site, local redirects that cannot leave the host). No I/O, so every rule is
//! unit-tested directly.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::model::keys::Key;

/// Longest URL path accepted (bytes, percent-encoded).
pub const MAX_PATH: usize = 4096;
/// Most ranges honoured in one `Range` header (more is treated as unsatisfiable).
pub const MAX_RANGES: usize = 32;

/// What a request path names, when no virtual host applies.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// `/`: the status page.
    Root,
    /// `/.well-known/dat-mirror`: status JSON.
    WellKnown,
    /// `/metrics`: Prometheus text.
    Metrics,
    /// `/<key>` without the trailing slash (redirected).
    SiteNoSlash(Key),
    /// `/<key>/<path>`.
    Site(Key, String),
}

/// Decodes and checks a raw (percent-encoded) request path: refuses `..` segments (also
/// encoded), backslashes, NULs, invalid UTF-8 and over-long paths. Returns the decoded path.
pub fn clean_path(raw: &str) -> Result<String, &'static str> {
    if raw.len() > MAX_PATH {
        return Err("path too long");
    }
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "path is not UTF-8")?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return Err("path contains a NUL or a backslash");
    }
    if decoded.split('/').any(|seg| seg == "..") {
        return Err("path contains '..'");
    }
    if !decoded.starts_with('/') {
        return Err("path must start with '/'");
    }
    Ok(decoded.into_owned())
}

/// Parses a path routed by key: `/<key>/<path>`. `Ok(None)`: not a site path (404).
pub fn parse_target(raw: &str) -> Result<Option<Target>, &'static str> {
    let decoded = clean_path(raw)?;
    if decoded == "/" {
        return Ok(Some(Target::Root));
    }
    if decoded == "/.well-known/dat-mirror" {
        return Ok(Some(Target::WellKnown));
    }
    if decoded == "/metrics" {
        return Ok(Some(Target::Metrics));
    }
    let rest = &decoded[1..];
    let (first, path) = match rest.split_once('/') {
        Some((k, p)) => (k, Some(p)),
        None => (rest, None),
    };
    let Ok(key) = Key::parse(first) else {
        return Ok(None);
    };
    Ok(Some(match path {
        None => Target::SiteNoSlash(key),
        Some(p) => Target::Site(key, format!("/{p}")),
    }))
}

/// The site a `Host` header names: a configured domain (exact), else a first label that is a
/// key (`<z32 key>.<host>`; hex keys are 64 chars, longer than a DNS label, but accepted),
/// else a first label that is a site alias (`blog.<host>`). `None`: route by path.
pub fn site_for_host(
    host: &str,
    domains: &BTreeMap<String, Key>,
    alias: impl Fn(&str) -> Option<Key>,
) -> Option<Key> {
    let host = host_without_port(host)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if let Some(k) = domains.get(&host) {
        return Some(*k);
    }
    let (first, rest) = host.split_once('.')?;
    if rest.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    Key::parse(first).ok().or_else(|| alias(first))
}

/// Is the `Host` header the gateway's base host itself (any port)? Then it names the
/// gateway, not a site, even if its first label looks like an alias.
pub fn is_base_host(host: &str, base: &BaseHost) -> bool {
    host_without_port(host)
        .trim_end_matches('.')
        .eq_ignore_ascii_case(&base.name)
}

/// `[serve] base_host`: the host name the gateway is reached by, under which every site gets
/// its own origin `<z32-key>.<host>`. Written `host`, `host:port` or with `http://`/`https://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseHost {
    /// `http` or `https` (behind a TLS proxy).
    pub scheme: &'static str,
    /// Lower-case host name, no port.
    pub name: String,
    /// `:port`, or empty.
    pub port: String,
}

/// A base host that is not a host name (with an optional scheme and port).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a base host: write a host name with an optional port, like \"pi.lan:8080\" or \"https://mirror.example.org\" (an IP address cannot have site subdomains)")]
pub struct BadBaseHost(pub String);

impl std::str::FromStr for BaseHost {
    type Err = BadBaseHost;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadBaseHost(s.to_string());
        let t = s.trim().trim_end_matches('/');
        let (scheme, rest) = if let Some(r) = t.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = t.strip_prefix("http://") {
            ("http", r)
        } else {
            ("http", t)
        };
        let (name, port) = match rest.rsplit_once(':') {
            Some((n, p)) if !p.is_empty() && p.parse::<u16>().is_ok() => (n, format!(":{p}")),
            Some(_) => return Err(bad()),
            None => (rest, String::new()),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253 - 53
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            && name.parse::<std::net::Ipv4Addr>().is_err();
        if !valid {
            return Err(bad());
        }
        Ok(BaseHost { scheme, name, port })
    }
}

impl std::fmt::Display for BaseHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.name, self.port)
    }
}

/// Characters escaped when a decoded path goes back into a URL.
const PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// The site's own origin for a path-routed request: `/<key>/<path>?q` →
/// `<scheme>://<z32-key>.<base><path>?q` (`path` decoded, as from [`parse_target`]).
pub fn subdomain_url(base: &BaseHost, key: &Key, path: &str, query: Option<&str>) -> String {
    let path: String = percent_encoding::utf8_percent_encode(path, PATH).collect();
    let path = local_location(if path.is_empty() { "/" } else { &path });
    let q = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!(
        "{}://{}.{}{}{path}{q}",
        base.scheme,
        key.to_z32(),
        base.name,
        base.port
    )
}

/// A redirect target on this host: leading slashes collapse to one, so a request for
/// `//docs` is sent to `/docs/`, never to the host `docs` (`//docs/` is a network-path
/// reference). Targets that do not start with `/` are returned as they are.
pub fn local_location(to: &str) -> std::borrow::Cow<'_, str> {
    if to.starts_with("//") || to.starts_with("/\\") {
        let rest = to.trim_start_matches(['/', '\\']);
        std::borrow::Cow::Owned(format!("/{rest}"))
    } else {
        std::borrow::Cow::Borrowed(to)
    }
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.split(']').next().map(|h| &h[1..]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `?version=N` from a query string. `Err` when present but not a positive integer.
pub fn version_param(query: Option<&str>) -> Result<Option<u64>, &'static str> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "version" {
            return v
                .parse::<u64>()
                .ok()
                .filter(|v| *v > 0)
                .map(Some)
                .ok_or("version must be a positive integer");
        }
    }
    Ok(None)
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranges {
    /// No (usable) Range header: the whole file, 200.
    Full,
    /// One or more satisfiable ranges (half-open), 206.
    Parts(Vec<Range<u64>>),
    /// Syntactically fine but not satisfiable, 416.
    Unsatisfiable,
}

/// Interprets a `Range` header (RFC 9110 §14): a malformed header is ignored (full
/// response), an unsatisfiable one is 416; overlapping or too many ranges are 416 too.
pub fn ranges(header: Option<&str>, size: u64) -> Ranges {
    let Some(h) = header else { return Ranges::Full };
    let Ok(parsed) = http_range_header::parse_range_header(h) else {
        return Ranges::Full;
    };
    if parsed.ranges.len() > MAX_RANGES || size == 0 {
        return Ranges::Unsatisfiable;
    }
    match parsed.validate(size) {
        Ok(v) => {
            let parts: Vec<Range<u64>> = v.into_iter().map(|r| *r.start()..r.end() + 1).collect();
            if parts.iter().any(|r| r.start >= size || r.is_empty()) {
                Ranges::Unsatisfiable
            } else {
                Ranges::Parts(parts)
            }
        }
        Err(_) => Ranges::Unsatisfiable,
    }
}

/// Does `If-None-Match` match `etag` (weak comparison, `*` matches anything)?
pub fn none_match(header: &str, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let etag = strip(etag);
    header
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == etag)
}

/// Is the resource unchanged since `If-Modified-Since` (both in whole seconds)?
pub fn not_modified_since(header: &str, last_modified_ms: u64) -> bool {
    let Ok(since) = httpdate::parse_http_date(header) else {
        return false;
    };
    let since = since
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    last_modified_ms / 1000 <= since
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let k = Key([4; 32]);
        let hex = k.to_hex();
        assert_eq!(parse_target("/").unwrap(), Some(Target::Root));
        assert_eq!(
            parse_target("/.well-known/dat-mirror").unwrap(),
            Some(Target::WellKnown)
        );
        assert_eq!(
            parse_target(&format!("/{hex}")).unwrap(),
            Some(Target::SiteNoSlash(k))
        );
        assert_eq!(
            parse_target(&format!("/{hex}/")).unwrap(),
            Some(Target::Site(k, "/".into()))
        );
        assert_eq!(
            parse_target(&format!("/{}/a%20b/c.html", k.to_z32())).unwrap(),
            Some(Target::Site(k, "/a b/c.html".into()))
        );
        assert_eq!(parse_target("/favicon.ico").unwrap(), None);
        for bad in [
            format!("/{hex}/../x"),
            format!("/{hex}/%2e%2e/x"),
            format!("/{hex}/%2E%2E/x"),
            format!("/{hex}/a%5cb"),
            format!("/{hex}/a\\b"),
            format!("/{hex}/a%00"),
            format!("/{hex}/%ff"),
            format!("/{hex}/{}", "a".repeat(MAX_PATH)),
            "relative".to_string(),
        ] {
            assert!(parse_target(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        let k = Key([7; 32]);
        let blog = Key([8; 32]);
        let mut domains = BTreeMap::new();
        domains.insert("www.example.org".to_string(), blog);
        let alias = |a: &str| (a == "blog").then_some(blog);
        assert_eq!(
            site_for_host(&format!("{}.pi.local:8080", k.to_z32()), &domains, alias),
            Some(k)
        );
        assert_eq!(
            site_for_host(&format!("{}.localhost", k.to_hex()), &domains, alias),
            Some(k)
        );
        assert_eq!(site_for_host("blog.pi.local", &domains, alias), Some(blog));
        assert_eq!(
            site_for_host("WWW.Example.org.", &domains, alias),
            Some(blog)
        );
        assert_eq!(
            site_for_host("www.example.org:443", &domains, alias),
            Some(blog)
        );
        for none in [
            "pi.local",
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "other.pi.local",
            "",
        ] {
            assert_eq!(site_for_host(none, &domains, alias), None, "{none}");
        }
    }

    #[test]
    fn base_hosts_and_subdomain_redirects() {
        let b: BaseHost = "pi.lan:8080".parse().unwrap();
        assert_eq!(b.to_string(), "http://pi.lan:8080");
        let s: BaseHost = "https://Mirror.Example.org/".parse().unwrap();
        assert_eq!(s.to_string(), "https://mirror.example.org");
        for bad in [
            "",
            "pi.lan:x",
            "http://",
            "10.0.0.1:8080",
            "[::1]:80",
            "a b",
            "-x.lan",
        ] {
            assert!(bad.parse::<BaseHost>().is_err(), "{bad}");
        }
        let k = Key([3; 32]);
        let z = k.to_z32();
        assert_eq!(
            subdomain_url(&b, &k, "/a b/c#d.html", Some("version=2")),
            format!("http://{z}.pi.lan:8080/a%20b/c%23d.html?version=2")
        );
        assert_eq!(
            subdomain_url(&b, &k, "", None),
            format!("http://{z}.pi.lan:8080/")
        );
        assert_eq!(
            subdomain_url(&b, &k, "//evil.example/x", None),
            format!("http://{z}.pi.lan:8080/evil.example/x")
        );
        assert!(is_base_host("PI.lan:8080", &b));
        assert!(is_base_host("pi.lan", &b));
        assert!(!is_base_host("blog.pi.lan", &b));
    }

    #[test]
    fn redirects_stay_on_this_host() {
        assert_eq!(local_location("//docs/"), "/docs/");
        assert_eq!(local_location("///docs/?version=2"), "/docs/?version=2");
        assert_eq!(local_location("/\\docs/"), "/docs/");
        assert_eq!(local_location("/docs/"), "/docs/");
        assert_eq!(local_location("http://x/"), "http://x/");
    }

    #[test]
    fn versions() {
        assert_eq!(version_param(None), Ok(None));
        assert_eq!(version_param(Some("a=1")), Ok(None));
        assert_eq!(version_param(Some("a=1&version=3")), Ok(Some(3)));
        assert!(version_param(Some("version=0")).is_err());
        assert!(version_param(Some("version=x")).is_err());
        assert!(version_param(Some("version=")).is_err());
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(ranges(None, 100), Ranges::Full);
        assert_eq!(ranges(Some("bytes=0-9"), 100), Ranges::Parts(vec![0..10]));
        assert_eq!(ranges(Some("bytes=90-"), 100), Ranges::Parts(vec![90..100]));
        assert_eq!(ranges(Some("bytes=-10"), 100), Ranges::Parts(vec![90..100]));
        assert_eq!(
            ranges(Some("bytes=95-200"), 100),
            Ranges::Parts(vec![95..100])
        );
        assert_eq!(
            ranges(Some("bytes=0-1,5-6"), 100),
            Ranges::Parts(vec![0..2, 5..7])
        );
        assert_eq!(ranges(Some("bytes=100-"), 100), Ranges::Unsatisfiable);
        assert_eq!(ranges(Some("bytes=0-5,3-8"), 100), Ranges::Unsatisfiable);
        assert_eq!(ranges(Some("bytes=0-0"), 0), Ranges::Unsatisfiable);
        let many = format!(
            "bytes={}",
            (0..40)
                .map(|i| format!("{}-{}", i * 2, i * 2))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(ranges(Some(&many), 1000), Ranges::Unsatisfiable);
        // Malformed: ignored.
        for junk in ["items=0-1", "bytes=a-b", "bytes= 0-1", "", "bytes=--1"] {
            assert_eq!(ranges(Some(junk), 100), Ranges::Full, "{junk}");
        }
    }

    #[test]
    fn conditionals() {
        assert!(none_match("\"abc\"", "\"abc\""));
        assert!(none_match("W/\"abc\", \"x\"", "\"abc\""));
        assert!(none_match("*", "\"abc\""));
        assert!(!none_match("\"abd\"", "\"abc\""));
        let t = 1_700_000_000_000u64;
        let date =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(t));
        assert!(not_modified_since(&date, t));
        assert!(not_modified_since(&date, t + 999));
        assert!(!not_modified_since(&date, t + 1000));
        assert!(!not_modified_since("yesterday", t));
    }
}
