//! The HTTP gateway. Sites are reached by path, `http://HOST/<key>/<path>` (hex or z-base32
//! key), or by virtual host: `<key>.HOST`, `<alias>.HOST` (the laptop's link-file name) and
//! custom domains mapped in the mirror's config. GET and HEAD only; everything comes from
//! verified blocks. Per site, an optional `/dat.json` sets `web_root` (serve a sub-folder),
//! `fallback_page` (a custom 404 page) and `spa` (unknown extension-less paths serve the
//! fallback page, or `/index.html`, with 200 — for single-page apps).
//!
//! The server is hyper's, with limits so slow or idle clients cannot starve others: a
//! header read timeout, a cap on header size, and a cap on concurrent connections.

mod files;
mod pages;
pub mod request;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::MirrorInner;
use crate::drive::{self, DriveError, Entry};
use crate::model::keys::Key;
use crate::site::paths::link_destination;
use crate::site::version::Shown;
use crate::site::SiteSource;
use crate::store::CoreReader;
use files::{reply, unavailable, FileReply};
use request::{clean_path, parse_target, site_for_host, version_param, Target};

/// Most connections served at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 1024;
/// A client must send a request's headers within this long.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Largest `/dat.json` read.
const MAX_SITE_CONFIG: u64 = 64 * 1024;

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
    configs: Mutex<HashMap<(Key, u64), SiteConfig>>,
}

/// Serves HTTP on `listener` until the task is aborted.
pub async fn serve(mirror: Arc<MirrorInner>, listener: tokio::net::TcpListener) {
    let gateway = Arc::new(Gateway {
        sites: mirror.clone(),
        mirror,
        shown: Shown::default(),
        configs: Mutex::new(HashMap::new()),
    });
    let app = Router::new().fallback(move |req: Request<Body>| {
        let gw = gateway.clone();
        async move { handle(gw, req).await }
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Headers and body go out in separate writes: without NODELAY, Nagle's algorithm
        // and delayed ACKs add ~40 ms to every small response.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("HTTP connection ended: {e}");
            }
            drop(permit);
        });
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

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
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

async fn handle(gw: Arc<Gateway>, req: Request<Body>) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are supported\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let head = req.method() == Method::HEAD;
    let (parts, _body) = req.into_parts();
    let mut response = route(&gw, &parts).await;
    if head {
        *response.body_mut() = Body::empty();
    }
    response
}

async fn route(gw: &Gateway, req: &axum::http::request::Parts) -> Response {
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
    let domains = gw.sites.custom_domains();
    if let Some(key) = site_for_host(host, &domains, |a| gw.sites.key_for_alias(a)) {
        return match clean_path(raw_path) {
            Ok(path) => serve_site(gw, key, &path, raw_path, version, &req.headers).await,
            Err(why) => text(StatusCode::BAD_REQUEST, format!("bad request: {why}\n")),
        };
    }
    match parse_target(raw_path) {
        Err(why) => text(StatusCode::BAD_REQUEST, format!("bad request: {why}\n")),
        Ok(None) => text(StatusCode::NOT_FOUND, "no such site on this mirror\n"),
        Ok(Some(Target::Root)) => pages::status_page(&gw.mirror),
        Ok(Some(Target::WellKnown)) => pages::status_json(&gw.mirror),
        Ok(Some(Target::SiteNoSlash(_))) => {
            let q = query.map(|q| format!("?{q}")).unwrap_or_default();
            redirect(&format!("{raw_path}/{q}"))
        }
        Ok(Some(Target::Site(key, path))) => {
            serve_site(gw, key, &path, raw_path, version, &req.headers).await
        }
    }
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
    let file = |path, entry, status| FileReply {
        path,
        entry,
        status,
        last_modified_ms,
        immutable,
    };

    // A file?
    if !full.ends_with('/') {
        match resolve_file(&mut db, at, &full).await {
            Ok(Some((p, entry))) => {
                return reply(site.blobs.clone(), file(&p, &entry, StatusCode::OK), req).await
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
            return reply(
                site.blobs.clone(),
                file(&index, &entry, StatusCode::OK),
                req,
            )
            .await;
        }
        Ok(None) => {}
        Err(e) => return drive_error(e),
    }
    match drive::list(&mut db, at, &format!("{dir}/"), false).await {
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
                return reply(site.blobs.clone(), file(&page, &entry, status), req).await
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

/// The entry at `path`, following one symlink (hyperdrive `linkname`) inside the site.
async fn resolve_file(
    db: &mut CoreReader,
    at: u64,
    path: &str,
) -> Result<Option<(String, Entry)>, DriveError> {
    let Some(entry) = drive::get_entry(db, at, path).await? else {
        return Ok(None);
    };
    let Some(link) = entry.linkname.clone() else {
        return Ok(Some((path.to_string(), entry)));
    };
    let Some(target) = link_destination(path, &link) else {
        return Ok(None);
    };
    match drive::get_entry(db, at, &target).await? {
        Some(e) if e.linkname.is_none() => Ok(Some((target, e))),
        _ => Ok(None),
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
    ) -> Result<SiteConfig, DriveError> {
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
        let mut configs = self.configs.lock().unwrap();
        if configs.len() > 4096 {
            configs.clear();
        }
        configs.insert((key, version), config.clone());
        Ok(config)
    }
}
