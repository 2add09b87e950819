//! The HTTP gateway. Sites are reached by path, `http://HOST/<key>/<path>` (hex or z-base32
//! key), or by virtual host: `<key>.HOST`, `<alias>.HOST` (the laptop's link-file name) and
//! custom domains mapped in the mirror's config. GET and HEAD only; everything comes from
//! verified blocks. Per site, an optional `/dat.json` sets `web_root` (serve a sub-folder),
//! `fallback_page` (a custom 404 page) and `spa` (unknown extension-less paths serve the
//! fallback page, or `/index.html`, with 200 — for single-page apps).
//!
//! This file owns the listener and connections, the routing of the gateway's own paths and
//! the headers every response gets:
//! - the mirror's own pages (`/`, `/.well-known/dat-mirror`, `/metrics`) follow
//!   [`GatewayConfig::status`] and the owner's secret link ([`access`]);
//! - origin isolation: with a [`GatewayConfig::base_host`], `/<key>/…` redirects to the
//!   site's own origin `<z32-key>.<host>`; without one, path-routed sites are sandboxed
//!   (`Content-Security-Policy: sandbox …`, no same-origin). Site responses carry
//!   `Access-Control-Allow-Origin: *` (the gateway's own pages never do), every response
//!   `X-Content-Type-Options: nosniff`, and local redirects never leave the host;
//! - connection limits ([`limits`]): header, write-progress and idle deadlines, a per-address
//!   cap, and shedding of the stalest connection instead of blocking `accept()`.

pub mod access;
mod files;
mod hot;
pub mod limits;
pub mod metrics;
pub(crate) mod pages;
pub mod request;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;

use super::MirrorInner;
use crate::drive::{self, DriveError, Entry};
use crate::model::keys::Key;
use crate::site::lookup;
use crate::site::version::Shown;
use crate::site::SiteSource;
use crate::store::CoreReader;
use access::{StatusAccess, StatusLink};
use files::{reply, unavailable, FileReply};
use hot::Resolved;
pub use limits::{Limits, HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_PER_ADDRESS};
use metrics::HttpCounters;
use request::{clean_path, parse_target, site_for_host, version_param, BaseHost, Target};

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Largest `/dat.json` read.
const MAX_SITE_CONFIG: u64 = 64 * 1024;
/// The sandbox a path-routed site runs in: scripts, forms and popups, but an opaque origin,
/// so it can read neither other sites nor the mirror's pages.
pub const PATH_FORM_CSP: &str = "sandbox allow-scripts allow-forms allow-popups";
/// The mirror's own pages: no scripts, no framing, nothing loaded from elsewhere.
const STATUS_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// How the gateway behaves (the settings of `[serve]` that concern HTTP).
#[derive(Debug, Clone, Default)]
pub struct GatewayConfig {
    /// `[serve] status`: who sees `/`, `/.well-known/dat-mirror` and `/metrics`.
    pub status: StatusAccess,
    /// The owner's secret link (`?token=…`), rotatable while serving; `None`: no link.
    pub status_link: Option<StatusLink>,
    /// `[serve] base_host`: give each site its own origin `<z32-key>.<base_host>`.
    pub base_host: Option<BaseHost>,
    pub limits: Limits,
}

impl GatewayConfig {
    /// The defaults, with the secret link's token kept in the data folder `data`.
    pub fn with_token_in(data: &std::path::Path) -> Result<GatewayConfig, access::TokenError> {
        Ok(GatewayConfig {
            status_link: Some(StatusLink::load_or_create(data)?),
            ..GatewayConfig::default()
        })
    }
}

/// Per-site settings from the site's own `/dat.json`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct SiteConfig {
    #[serde(default)]
    pub web_root: Option<String>,
    #[serde(default)]
    pub fallback_page: Option<String>,
    #[serde(default)]
    pub spa: bool,
}

struct Gateway {
    mirror: Arc<MirrorInner>,
    /// The sites, as every site reader sees them ([`crate::site`]).
    sites: Arc<dyn SiteSource>,
    /// The version shown of each site ([`crate::site::version`]).
    shown: Shown,
    configs: Mutex<HashMap<(Key, u64), Arc<SiteConfig>>>,
    /// Files that request paths resolved to, per site version ([`hot`]).
    lookups: hot::Lookups,
    /// Bytes of small files ([`hot`]).
    bodies: hot::Bodies,
    config: GatewayConfig,
    counters: Arc<HttpCounters>,
}

/// The two ends of one connection.
#[derive(Debug, Clone, Copy)]
struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
}

/// Serves HTTP on `listener` until the task is aborted (which also closes its connections).
pub async fn serve(
    mirror: Arc<MirrorInner>,
    listener: tokio::net::TcpListener,
    config: GatewayConfig,
) {
    announce(&listener, &config);
    let counters = Arc::new(HttpCounters::default());
    let registry = limits::Registry::new(config.limits.clone(), counters.clone());
    let gateway = Arc::new(Gateway {
        sites: mirror.clone(),
        mirror,
        shown: Shown::default(),
        configs: Mutex::new(HashMap::new()),
        lookups: hot::Lookups::default(),
        bodies: hot::Bodies::default(),
        config,
        counters: counters.clone(),
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    tokio::spawn(registry.clone().sweep_until(stop.clone()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, usually: wait for connections to end.
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        // Headers and body go out in separate writes: without NODELAY, Nagle's algorithm
        // and delayed ACKs add ~40 ms to every small response.
        let _ = stream.set_nodelay(true);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let admitted = registry.admit(peer.ip());
        let conn = Conn { peer, local };
        let gw = gateway.clone();
        let limits = registry.limits().clone();
        let counters = counters.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let limits::Admitted {
                progress,
                cancel,
                guard: _registered,
            } = admitted;
            let service = hyper::service::service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(handle(gw, req, conn).await) }
            });
            let io = limits::Tracked::new(stream, progress, counters);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(io), service);
            let mut served = std::pin::pin!(served);
            tokio::select! {
                r = served.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("HTTP connection ended: {e}");
                    }
                }
                _ = cancel.cancelled() => {
                    limits::reset_on_close(fd); // `served` still owns the socket here
                    tracing::debug!(%peer, "HTTP connection shed");
                }
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// Logs where the gateway listens, who sees the status pages, and the owner's secret link.
fn announce(listener: &tokio::net::TcpListener, config: &GatewayConfig) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let host = if addr.ip().is_unspecified() {
        format!("<this machine>:{}", addr.port())
    } else {
        addr.to_string()
    };
    match (&config.status, &config.status_link) {
        (StatusAccess::Local, Some(link)) => tracing::info!(
            "status page: http://{host}/ from this machine; from elsewhere, the owner's secret \
             link http://{host}/?{}={} (rotate it: `dat-mirror status-link --rotate`)",
            access::TOKEN_PARAM,
            link.current().as_str(),
        ),
        (mode, _) => tracing::info!("status page: http://{host}/ (status = \"{mode}\")"),
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut r = (status, body.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A 301 to `to`; a target on this host keeps a single leading slash (no open redirect).
fn redirect(to: &str) -> Response {
    let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
    if let Ok(v) = HeaderValue::from_str(&request::local_location(to)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn drive_error(e: DriveError) -> Response {
    match e {
        DriveError::Missing { .. } => unavailable("this part of the site"),
        DriveError::VersionOutOfRange { .. } => {
            text(StatusCode::NOT_FOUND, "this site has no such version yet\n")
        }
        other => {
            tracing::warn!("cannot serve: {other}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the site cannot be read: {other}\n"),
            )
        }
    }
}

async fn handle<B>(gw: Arc<Gateway>, req: Request<B>, conn: Conn) -> Response {
    let mut response = if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are supported\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    } else {
        let head = req.method() == Method::HEAD;
        let (parts, _body) = req.into_parts();
        let mut r = route(&gw, &parts, conn).await;
        if head {
            *r.body_mut() = Body::empty();
        }
        r
    };
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    gw.counters.response(response.status().as_u16());
    response
}

/// How a site response was reached, for its headers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// `<key>.host`, an alias or a custom domain: the site has an origin of its own.
    Own,
    /// `/<key>/…` on the gateway's origin, shared with other sites and the mirror's pages.
    Shared,
}

fn site_headers(mut r: Response, origin: Origin) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if origin == Origin::Shared {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PATH_FORM_CSP),
        );
    }
    r
}

async fn route(gw: &Gateway, req: &axum::http::request::Parts, conn: Conn) -> Response {
    let raw_path = req.uri.path();
    let query = req.uri.query();
    let version = match version_param(query) {
        Ok(v) => v,
        Err(why) => return text(StatusCode::BAD_REQUEST, format!("bad request: {why}\n")),
    };
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let base = gw.config.base_host.as_ref();
    let domains = gw.sites.custom_domains();
    let vhost = match base {
        Some(b) if request::is_base_host(host, b) => None,
        _ => site_for_host(host, &domains, |a| gw.sites.key_for_alias(a)),
    };
    if let Some(key) = vhost {
        let r = match clean_path(raw_path) {
            Ok(path) => serve_site(gw, key, &path, raw_path, version, &req.headers).await,
            Err(why) => text(StatusCode::BAD_REQUEST, format!("bad request: {why}\n")),
        };
        return site_headers(r, Origin::Own);
    }
    match parse_target(raw_path) {
        Err(why) => text(StatusCode::BAD_REQUEST, format!("bad request: {why}\n")),
        Ok(None) => not_found(),
        Ok(Some(t @ (Target::Root | Target::WellKnown | Target::Metrics))) => {
            own_page(gw, t, query, conn)
        }
        Ok(Some(Target::SiteNoSlash(key))) => match base {
            Some(b) => redirect(&request::subdomain_url(b, &key, "/", query)),
            None => {
                let q = query.map(|q| format!("?{q}")).unwrap_or_default();
                redirect(&format!("{raw_path}/{q}"))
            }
        },
        Ok(Some(Target::Site(key, path))) => match base {
            Some(b) => redirect(&request::subdomain_url(b, &key, &path, query)),
            None => site_headers(
                serve_site(gw, key, &path, raw_path, version, &req.headers).await,
                Origin::Shared,
            ),
        },
    }
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "no such site on this mirror\n")
}

/// `/`, `/.well-known/dat-mirror` or `/metrics`, if this client may see them; else the same
/// 404 as any unknown path.
fn own_page(gw: &Gateway, target: Target, query: Option<&str>, conn: Conn) -> Response {
    let presented = access::token_param(query);
    let current = gw.config.status_link.as_ref().map(StatusLink::current);
    let token = current.as_ref();
    let local = access::is_local(conn.peer, conn.local);
    if !access::may_see_status(gw.config.status, local, token, presented) {
        return not_found();
    }
    // Carry a valid token on to the page's own links.
    let token_query = match (token, presented) {
        (Some(t), Some(p)) if t.matches(p) => {
            Some(format!("{}={}", access::TOKEN_PARAM, t.as_str()))
        }
        _ => None,
    };
    let base = gw.config.base_host.as_ref();
    let mut r = match target {
        Target::Root => pages::status_page(&gw.mirror, base, token_query.as_deref()),
        Target::WellKnown => pages::status_json(&gw.mirror, base),
        _ => {
            let mut r = metrics::render(&gw.mirror, &gw.counters).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
    };
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The secret link must not leak to a site through Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(STATUS_CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// Resolves `path` in the site (index.html, listings, web_root, fallbacks) and answers.
async fn serve_site(
    gw: &Gateway,
    key: Key,
    path: &str,
    raw_path: &str,
    version: Option<u64>,
    req: &HeaderMap,
) -> Response {
    let Some(site) = gw.sites.site_handle(&key) else {
        return text(StatusCode::NOT_FOUND, "this site is not mirrored here\n");
    };
    let mut db = CoreReader::new(site.db.clone());
    let length = site.db.info().length;
    let shown = gw.shown.pick(&key, &site.db);
    if shown == 0 {
        return unavailable("this site");
    }
    let at = version.unwrap_or(shown);
    if at > length {
        return text(
            StatusCode::NOT_FOUND,
            format!("this site has no version {at} yet (latest: {shown})\n"),
        );
    }
    let last_modified_ms = if at == length { site.updated_ms } else { None };
    let config = match gw.site_config(key, &mut db, at, site.blobs.clone()).await {
        Ok(c) => c,
        Err(e) => return drive_error(e),
    };
    let root = config
        .web_root
        .as_deref()
        .map(|r| r.trim_end_matches('/'))
        .unwrap_or("");
    let full = format!("{root}{path}");
    let immutable = version.is_some();
    let file = |resolved, status| FileReply::new(resolved, status, last_modified_ms, immutable);
    let blobs = site.blobs.clone();
    let bodies = &gw.bodies;

    // Resolved before, at this version: the same file again.
    if let Some(hit) = gw.lookups.get(&key, at, &full) {
        return reply(blobs, file(&hit, StatusCode::OK), req, bodies).await;
    }
    // A file?
    if !full.ends_with('/') {
        match lookup::file_following_link(&mut db, at, &full).await {
            Ok(Some((p, entry))) => {
                let hit = Arc::new(Resolved::new(p, entry));
                gw.lookups.put(key, at, &full, hit.clone());
                return reply(blobs, file(&hit, StatusCode::OK), req, bodies).await;
            }
            Ok(None) => {}
            Err(e) => return drive_error(e),
        }
    }
    // A folder: its index.html, else a listing.
    let dir = full.trim_end_matches('/');
    let index = format!("{dir}/index.html");
    match drive::get_entry(&mut db, at, &index).await {
        Ok(Some(entry)) => {
            if !full.ends_with('/') {
                return redirect(&with_slash(raw_path, version));
            }
            let hit = Arc::new(Resolved::new(index, entry));
            gw.lookups.put(key, at, &full, hit.clone());
            return reply(blobs, file(&hit, StatusCode::OK), req, bodies).await;
        }
        Ok(None) => {}
        Err(e) => return drive_error(e),
    }
    match lookup::list_dir(&mut db, at, &drive::normalize_path(dir)).await {
        Ok(entries) if !entries.is_empty() || dir.is_empty() => {
            if !full.ends_with('/') {
                return redirect(&with_slash(raw_path, version));
            }
            return pages::listing(path, at, &entries, req);
        }
        Ok(_) => {}
        Err(e) => return drive_error(e),
    }
    // Not found: the site's own fallback, if it has one.
    let has_extension = path
        .rsplit('/')
        .next()
        .is_some_and(|name| name.contains('.'));
    let fallback = config
        .fallback_page
        .clone()
        .or_else(|| config.spa.then(|| "/index.html".to_string()));
    if let Some(page) = fallback {
        let page = format!("{root}/{}", page.trim_start_matches('/'));
        let status = if config.spa && !has_extension {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        match drive::get_entry(&mut db, at, &page).await {
            Ok(Some(entry)) => {
                let page = Resolved::new(page, entry);
                return reply(blobs, file(&page, status), req, bodies).await;
            }
            Ok(None) => {}
            Err(e) => return drive_error(e),
        }
    }
    text(
        StatusCode::NOT_FOUND,
        format!("{path}: no such file in this site\n"),
    )
}

fn with_slash(raw_path: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("{raw_path}/?version={v}"),
        None => format!("{raw_path}/"),
    }
}

impl Gateway {
    /// The site's `/dat.json` at `version` (cached per version; missing or invalid: defaults).
    async fn site_config(
        &self,
        key: Key,
        db: &mut CoreReader,
        version: u64,
        blobs: Option<Arc<crate::store::Core>>,
    ) -> Result<Arc<SiteConfig>, DriveError> {
        if let Some(c) = self.configs.lock().unwrap().get(&(key, version)) {
            return Ok(c.clone());
        }
        let config = match drive::get_entry(db, version, "/dat.json").await? {
            Some(Entry {
                blob: Some(blob), ..
            }) if blob.byte_length <= MAX_SITE_CONFIG => {
                let Some(blobs) = blobs else {
                    return Err(DriveError::Missing {
                        core: drive::CoreKind::Blobs,
                        index: blob.block_offset,
                    });
                };
                let mut reader = CoreReader::new(blobs);
                let bytes = drive::read_file(&mut reader, &blob).await?;
                serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    tracing::info!(site = %key.short(), "ignoring dat.json: {e}");
                    SiteConfig::default()
                })
            }
            _ => SiteConfig::default(),
        };
        let config = Arc::new(config);
        let mut configs = self.configs.lock().unwrap();
        if configs.len() > 4096 {
            configs.clear();
        }
        configs.insert((key, version), config.clone());
        Ok(config)
    }
}
