//! The HTTP gateway: `http://HOST/<key>/<path>` serves the file at `<path>` of the mirrored
//! site `<key>` (hex or z-base32), from verified blocks only. Directories serve their
//! `index.html`; `/<key>` redirects to `/<key>/`. A block that is not held yet answers 503
//! with `Retry-After`; anything outside the mirrored sites is 404; malformed paths are 400.
//! `/` is a status page and `/.well-known/dat-mirror` the same as JSON.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;

use crate::sync::drive::{self, DirEntry, DriveError, Entry};
use crate::sync::keys::Key;
use crate::sync::store::CoreReader;

use super::{MirrorInner, SiteSnapshot};

/// Longest URL path accepted.
const MAX_PATH: usize = 4096;

pub async fn serve(mirror: Arc<MirrorInner>, listener: tokio::net::TcpListener) {
    let app = Router::new().fallback(move |req: Request<Body>| {
        let mirror = mirror.clone();
        async move { handle(mirror, req).await }
    });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("HTTP gateway stopped: {e}");
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

/// A request path split into the site key and the path inside the site.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Root,
    WellKnown,
    /// `/<key>` without the trailing slash.
    SiteNoSlash(Key),
    Site(Key, String),
}

/// Parses and checks a raw (percent-encoded) request path. Pure.
pub fn parse_target(raw: &str) -> Result<Option<Target>, &'static str> {
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
    if decoded == "/" || decoded.is_empty() {
        return Ok(Some(Target::Root));
    }
    if decoded == "/.well-known/dat-mirror" {
        return Ok(Some(Target::WellKnown));
    }
    let rest = decoded
        .strip_prefix('/')
        .ok_or("path must start with '/'")?;
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

async fn handle(mirror: Arc<MirrorInner>, req: Request<Body>) -> Response {
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
    let mut response = match parse_target(req.uri().path()) {
        Err(why) => text(StatusCode::BAD_REQUEST, format!("bad request: {why}\n")),
        Ok(None) => text(StatusCode::NOT_FOUND, "no such site on this mirror\n"),
        Ok(Some(Target::Root)) => status_page(&mirror).await,
        Ok(Some(Target::WellKnown)) => status_json(&mirror).await,
        Ok(Some(Target::SiteNoSlash(key))) => redirect(&format!("/{}/", key.to_hex())),
        Ok(Some(Target::Site(key, path))) => {
            serve_site(&mirror, key, &path, req.uri().path()).await
        }
    };
    if head {
        *response.body_mut() = Body::empty();
    }
    response
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn unavailable(what: &str) -> Response {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{what} is still syncing; try again shortly\n"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn drive_error(e: DriveError) -> Response {
    match e {
        DriveError::Missing { .. } => unavailable("this part of the site"),
        other => {
            tracing::warn!("cannot serve: {other}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the site cannot be read: {other}\n"),
            )
        }
    }
}

async fn serve_site(mirror: &MirrorInner, key: Key, path: &str, raw_path: &str) -> Response {
    let Some((db, blobs)) = mirror.site(&key) else {
        return text(StatusCode::NOT_FOUND, "this site is not mirrored here\n");
    };
    let mut reader = CoreReader::new(db);
    let version = drive::BlockSource::length(&reader);
    if version == 0 {
        return unavailable("this site");
    }
    let entry = match drive::get_entry(&mut reader, version, path).await {
        Ok(e) => e,
        Err(e) => return drive_error(e),
    };
    let (file_path, entry) = match entry {
        Some(e) if !path.ends_with('/') => (path.to_string(), e),
        _ => {
            // A directory: `index.html`, after making sure the URL ends with '/'.
            let dir = path.trim_end_matches('/');
            let index = format!("{dir}/index.html");
            match drive::get_entry(&mut reader, version, &index).await {
                Ok(Some(e)) => {
                    if !path.ends_with('/') {
                        return redirect(&format!("{raw_path}/"));
                    }
                    (index, e)
                }
                Ok(None) => {
                    let listing =
                        match drive::list(&mut reader, version, &format!("{dir}/"), false).await {
                            Ok(l) => l,
                            Err(e) => return drive_error(e),
                        };
                    if listing.is_empty() {
                        return text(
                            StatusCode::NOT_FOUND,
                            format!("{path}: no such file in this site\n"),
                        );
                    }
                    if !path.ends_with('/') {
                        return redirect(&format!("{raw_path}/"));
                    }
                    return directory_listing(path, &listing);
                }
                Err(e) => return drive_error(e),
            }
        }
    };
    let Some(blobs) = blobs else {
        return unavailable("this site");
    };
    file_response(blobs, &file_path, &entry, version)
}

fn file_response(
    blobs: Arc<crate::sync::store::Core>,
    path: &str,
    entry: &Entry,
    version: u64,
) -> Response {
    let Some(blob) = entry.blob else {
        // Symlinks and empty entries without a blob.
        return match &entry.linkname {
            Some(target) => redirect(target),
            None => body_response(path, 0, Body::empty(), version),
        };
    };
    // Check the first block before promising a 200; later gaps end the stream with an error.
    let blocks: Vec<(u64, std::ops::Range<usize>)> =
        drive::blob_blocks(&blob, 0..blob.byte_length).collect();
    let length = blob.byte_length;
    let stream = futures::stream::iter(blocks).then(move |(index, range)| {
        let blobs = blobs.clone();
        async move {
            let result = match blobs.get(index).await {
                Ok(Some(block)) if range.end <= block.len() => {
                    Ok(bytes::Bytes::from(block).slice(range))
                }
                Ok(Some(block)) => Err(format!(
                    "blobs block {index} has {} bytes, the entry needs {range:?}",
                    block.len()
                )),
                Ok(None) => Err(format!("blobs block {index} is not held yet")),
                Err(e) => Err(format!("blobs block {index}: {e}")),
            };
            result.map_err(|e| {
                tracing::warn!("response body cut short: {e}");
                std::io::Error::other(e)
            })
        }
    });
    body_response(path, length, Body::from_stream(stream), version)
}

fn body_response(path: &str, length: u64, body: Body, version: u64) -> Response {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let content_type = if mime.type_() == mime_guess::mime::TEXT
        || mime.essence_str() == "application/javascript"
        || mime.essence_str() == "application/json"
    {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(v) = HeaderValue::from_str(&format!("\"v{version}\"")) {
        h.insert(header::ETAG, v);
    }
    r
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn directory_listing(path: &str, entries: &[DirEntry]) -> Response {
    let mut html = format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>Index of {0}</title><h1>Index of {0}</h1><ul>",
        html_escape(path)
    );
    for e in entries {
        let name = e
            .path()
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or_default();
        let suffix = if matches!(e, DirEntry::Dir { .. }) {
            "/"
        } else {
            ""
        };
        let href: String =
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        html.push_str(&format!(
            "<li><a href=\"{href}{suffix}\">{}{suffix}</a>",
            html_escape(name)
        ));
    }
    html.push_str("</ul>");
    let mut r = Response::new(Body::from(html));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

#[derive(serde::Serialize)]
struct SiteJson {
    key: String,
    alias: Option<String>,
    version: u64,
    blocks: u64,
    total_blocks: u64,
    bytes: u64,
    complete: bool,
    peers: u32,
    url: String,
}

fn site_summaries(mirror: &MirrorInner) -> Vec<SiteJson> {
    mirror
        .sites()
        .into_iter()
        .map(
            |SiteSnapshot {
                 key,
                 alias,
                 db,
                 blobs,
             }| {
                let d = db.info();
                let b = blobs.map(|b| b.info()).unwrap_or_default();
                SiteJson {
                    key: key.to_hex(),
                    alias,
                    version: d.length,
                    blocks: d.held_blocks + b.held_blocks,
                    total_blocks: d.length + b.length,
                    bytes: d.held_bytes() + b.held_bytes(),
                    complete: d.synced() && b.synced() && d.length > 0,
                    peers: mirror.node.peers_for(&key),
                    url: format!("/{}/", key.to_hex()),
                }
            },
        )
        .collect()
}

async fn status_json(mirror: &MirrorInner) -> Response {
    let body = serde_json::json!({
        "mirror": mirror.identity.key().to_hex(),
        "sites": site_summaries(mirror),
    });
    axum::Json(body).into_response()
}

async fn status_page(mirror: &MirrorInner) -> Response {
    let mut html = format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>dat-mirror</title><h1>dat-mirror</h1><p>mirror key <code>{}</code></p><ul>",
        mirror.identity.key()
    );
    for s in site_summaries(mirror) {
        html.push_str(&format!(
            "<li><a href=\"{}\">{}</a> — version {}, {} bytes, {}",
            s.url,
            html_escape(s.alias.as_deref().unwrap_or(&s.key)),
            s.version,
            s.bytes,
            if s.complete { "mirrored" } else { "syncing" }
        ));
    }
    html.push_str("</ul>");
    let mut r = Response::new(Body::from(html));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

#[cfg(test)]
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
            format!("/{hex}/a%5cb"),
            format!("/{hex}/a%00"),
            format!("/{hex}/%ff"),
            format!("/{hex}/{}", "a".repeat(MAX_PATH)),
        ] {
            assert!(parse_target(&bad).is_err(), "{bad}");
        }
    }
}
