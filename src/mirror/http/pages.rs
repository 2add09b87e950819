//! Generated pages: directory listings (HTML, or JSON when asked with
//! `Accept: application/json`) and the mirror's status page at `/` (HTML, readable on a
//! phone) with the same data as JSON at `/.well-known/dat-mirror`, including what needs the
//! owner: problems found at start and the trash (site data moved aside). Who may see the status
//! pages is decided before they are built (`access`); their headers are set by the router.
//! Sums of author-controlled sizes saturate instead of overflowing.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::request::{subdomain_url, BaseHost};
use crate::mirror::leftovers::{trash_contents, TrashItem};
use crate::mirror::MirrorInner;
use crate::model::view::{ago, human_bytes};
use crate::site::lookup::{Kind, Listed};

pub fn wants_json(req: &HeaderMap) -> bool {
    req.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .any(|t| t.trim().starts_with("application/json"))
        })
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html(body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

const HEAD: &str = "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\">\
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:48em;margin:1em auto;padding:0 1em}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3em .5em;border-bottom:1px solid #ddd}\
code{font-size:.85em;word-break:break-all}.ok{color:#176f2c}.busy{color:#8a5a00}</style>";

#[derive(Serialize)]
struct ListingJson<'a> {
    path: &'a str,
    version: u64,
    entries: Vec<ListingEntry>,
}

#[derive(Serialize)]
struct ListingEntry {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: Option<u64>,
}

/// A directory's entries (from [`crate::site::lookup::list_dir`]).
pub fn listing(path: &str, version: u64, entries: &[Listed], req: &HeaderMap) -> Response {
    let items: Vec<ListingEntry> = entries
        .iter()
        .map(|e| {
            let (kind, size) = match &e.found.kind {
                Kind::Dir => ("directory", None),
                Kind::Symlink { .. } => ("symlink", Some(0)),
                Kind::File { blob, .. } => ("file", Some(blob.map_or(0, |b| b.byte_length))),
            };
            ListingEntry {
                name: e.name.clone(),
                kind,
                size,
            }
        })
        .collect();
    if wants_json(req) {
        return axum::Json(ListingJson {
            path,
            version,
            entries: items,
        })
        .into_response();
    }
    let mut out = format!(
        "{HEAD}<title>Index of {0}</title><h1>Index of {0}</h1><table>",
        html_escape(path)
    );
    if path != "/" {
        out.push_str("<tr><td><a href=\"../\">../</a><td>");
    }
    for e in items {
        let slash = if e.kind == "directory" { "/" } else { "" };
        let href: String =
            percent_encoding::utf8_percent_encode(&e.name, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        let size = e.size.map(human_bytes).unwrap_or_default();
        out.push_str(&format!(
            "<tr><td><a href=\"{href}{slash}\">{}{slash}</a><td>{size}",
            html_escape(&e.name)
        ));
    }
    out.push_str(&format!("</table><p><small>version {version}</small>"));
    html(out)
}

/// One site as the status page and JSON show it.
#[derive(Serialize)]
pub struct SiteStatus {
    pub key: String,
    pub alias: Option<String>,
    /// "mirrored", "syncing", "waiting" (nothing received yet).
    pub state: &'static str,
    pub version: u64,
    pub blocks: u64,
    pub total_blocks: u64,
    pub bytes: u64,
    pub total_bytes: u64,
    pub complete: bool,
    pub peers: u32,
    /// Unix ms when the current version was first seen.
    pub updated_ms: Option<u64>,
    pub url: String,
}

/// Every site of the mirror; links use the site's own origin when `base` is set.
pub fn site_statuses(mirror: &MirrorInner, base: Option<&BaseHost>) -> Vec<SiteStatus> {
    mirror
        .sites()
        .into_iter()
        .map(|s| {
            let d = s.db.info();
            let b = s.blobs.as_ref().map(|b| b.info()).unwrap_or_default();
            let complete = crate::mirror::site_mirrored(&d, &b, s.mirrored_version);
            SiteStatus {
                key: s.key.to_hex(),
                alias: s.alias,
                state: if complete {
                    "mirrored"
                } else if d.length == 0 {
                    "waiting"
                } else {
                    "syncing"
                },
                version: d.length,
                blocks: d.held_blocks.saturating_add(b.held_blocks),
                total_blocks: d.length.saturating_add(b.length),
                bytes: d.held_bytes().saturating_add(b.held_bytes()),
                total_bytes: d.byte_length.saturating_add(b.byte_length),
                complete,
                peers: mirror
                    .node
                    .peers_for(&s.key)
                    .saturating_add(mirror.hyper.peers(&s.key)),
                updated_ms: s.updated_ms,
                url: match base {
                    Some(b) => subdomain_url(b, &s.key, "/", None),
                    None => format!("/{}/", s.key.to_hex()),
                },
            }
        })
        .collect()
}

pub fn status_json(mirror: &MirrorInner, base: Option<&BaseHost>) -> Response {
    let body = serde_json::json!({
        "mirror": mirror.identity.key().to_hex(),
        "http": mirror.http_url,
        "laptops": mirror.allowed().iter().map(|k| serde_json::json!({
            "id": k.to_hex(),
            "online": mirror.node.is_connected(k),
            "last_seen_ms": mirror.node.last_seen(k),
        })).collect::<Vec<_>>(),
        "sites": site_statuses(mirror, base),
        "problems": mirror.problems(),
        "trash": trash_of(mirror),
        "trash_days": mirror.trash_days,
    });
    axum::Json(body).into_response()
}

fn trash_of(mirror: &MirrorInner) -> Vec<TrashItem> {
    trash_contents(&mirror.data).unwrap_or_else(|e| {
        tracing::warn!("cannot read the trash folder: {e}");
        vec![]
    })
}

/// The "needs you" part of the status page: problems, then the trash.
fn owner_notes(mirror: &MirrorInner, now: u64, out: &mut String) {
    let problems = mirror.problems();
    if !problems.is_empty() {
        out.push_str("<h2>Problems</h2><ul>");
        for p in &problems {
            out.push_str(&format!("<li>{}", html_escape(p)));
        }
        out.push_str("</ul>");
    }
    let trash = trash_of(mirror);
    if trash.is_empty() {
        return;
    }
    let total = trash.iter().fold(0u64, |a, i| a.saturating_add(i.bytes));
    let when = match mirror.trash_days {
        0 => "kept until emptied".to_string(),
        d => format!("deleted after {d} days"),
    };
    out.push_str(&format!(
        "<h2>Trash ({}, {})</h2><p>Site data no command asked for, moved aside at start \
         instead of deleted; {when}, or now with <code>dat-mirror trash empty</code>.</p>\
         <table><tr><th>core<th>size<th>moved",
        trash.len(),
        human_bytes(total)
    ));
    for i in &trash {
        out.push_str(&format!(
            "<tr><td><code>{}</code><td>{}<td>{}",
            html_escape(i.key.as_deref().unwrap_or(&i.name)),
            human_bytes(i.bytes),
            i.since_ms.map_or_else(|| "?".into(), |t| ago(now, t))
        ));
    }
    out.push_str("</table>");
}

/// Percent of `total` that `part` is (0–100), without overflow for any sizes.
pub fn percent(part: u64, total: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    let p = u128::from(part.min(total)) * 100 / u128::from(total);
    u64::try_from(p).unwrap_or(100)
}

/// The status page; `token_query` (`token=…`) is carried on to its own links.
pub fn status_page(
    mirror: &MirrorInner,
    base: Option<&BaseHost>,
    token_query: Option<&str>,
) -> Response {
    let now = crate::util::clock::now_ms();
    let sites = site_statuses(mirror, base);
    let mut out = format!(
        "{HEAD}<title>dat-mirror</title><h1>dat-mirror</h1><p>mirror key <code>{}</code></p><h2>Sites ({})</h2>",
        mirror.identity.key(),
        sites.len()
    );
    if sites.is_empty() {
        out.push_str("<p>No site is mirrored yet. On a paired laptop: <code>touch ~/dat-mirror/&lt;key&gt;</code></p>");
    } else {
        out.push_str("<table><tr><th>site<th>state<th>version<th>size<th>peers<th>last sync");
        for s in &sites {
            let short = s.key.get(..12).unwrap_or(&s.key);
            let name = html_escape(s.alias.as_deref().unwrap_or(short));
            let state = match s.state {
                "mirrored" => format!("<span class=ok>mirrored v{}</span>", s.version),
                "syncing" if s.total_bytes > 0 => {
                    format!(
                        "<span class=busy>syncing {}%</span>",
                        percent(s.bytes, s.total_bytes)
                    )
                }
                other => format!("<span class=busy>{other}</span>"),
            };
            out.push_str(&format!(
                "<tr><td><a href=\"{}\">{name}</a><br><code>{}</code><td>{state}<td>{}<td>{}<td>{}<td>{}",
                html_escape(&s.url),
                s.key,
                s.version,
                human_bytes(s.bytes),
                s.peers,
                s.updated_ms.map(|t| ago(now, t)).unwrap_or_else(|| "-".into())
            ));
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Laptops</h2><ul>");
    for k in mirror.allowed() {
        let online = if mirror.node.is_connected(&k) {
            "online"
        } else {
            "offline"
        };
        out.push_str(&format!("<li><code>{k}</code> — {online}"));
    }
    out.push_str("</ul>");
    owner_notes(mirror, now, &mut out);
    let q = token_query
        .map(|q| format!("?{}", html_escape(q)))
        .unwrap_or_default();
    out.push_str(&format!(
        "<p><a href=\"/.well-known/dat-mirror{q}\">JSON</a> · <a href=\"/metrics{q}\">metrics</a></p>"
    ));
    html(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_saturates() {
        assert_eq!(percent(0, 0), 0);
        assert_eq!(percent(1, 2), 50);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
        assert_eq!(percent(u64::MAX / 2, u64::MAX), 49);
        assert_eq!(percent(u64::MAX, 10), 100);
    }
}
