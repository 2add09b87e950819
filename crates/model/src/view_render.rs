//! The status view's renderers: the text behind `cat <entry>`, `cat STATUS` and
//! `getfattr -d`, and the formatting helpers they share (sizes, UTC times, "3 min ago").
//! Pure: the caller passes `now`.

use super::{MirrorSiteState, SiteState, SiteView, StatusView};

pub use crate::units::{ago, format_rfc3339, format_utc, human_bytes};

fn when(now_ms: u64, at: Option<u64>, never: &str) -> String {
    match at {
        Some(t) => format!("{} ({})", format_utc(t), ago(now_ms, t)),
        None => never.to_string(),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// One screen about one site (`cat <entry>`). The first line is the site's link, so the
/// file also works as a link file.
pub fn render_site(site: &SiteView, now_ms: u64) -> String {
    let mut out = format!("link: {}\n", site.key.to_link());
    out += &format!("state: {}\n", site.state);
    if let SiteState::Syncing { .. } = site.state {
        let detail = site.state.detail();
        let inner = detail.split_once(" (").map_or("", |(_, d)| d);
        out += &format!("progress: {}\n", inner.trim_end_matches(')'));
    }
    out += &format!("key: {}\n", site.key.to_hex());
    out += &format!("key (z-base32): {}\n", site.key.to_z32());
    out += &format!("alias: {}\n", site.alias.as_deref().unwrap_or("(none)"));
    if site.per_mirror.is_empty() {
        out += "mirrors: none paired yet (pair one with `dat-mirror pair`)\n";
    } else {
        out += "mirrors:\n";
        for p in &site.per_mirror {
            out += &format!("  {}: {}\n", p.mirror.short(), mirror_line(p, now_ms));
        }
    }
    out += &format!("version: {}\n", opt(site.version));
    out += &format!("size: {} ({} bytes)\n", human_bytes(site.bytes), site.bytes);
    out += &format!("blocks: {}\n", opt(site.blocks));
    out += &format!("peers: {}\n", opt(site.peers));
    out += &format!(
        "http: {}\n",
        site.http
            .as_deref()
            .unwrap_or("(no mirror serves HTTP yet)")
    );
    out += &format!("last sync: {}\n", when(now_ms, site.last_sync_ms, "never"));
    match (&site.last_error, site.last_error_ms) {
        (Some(e), Some(at)) => out += &format!("last error: {e} ({})\n", ago(now_ms, at)),
        _ => out += "last error: none\n",
    }
    out
}

/// `mirrored v12 (7 blocks, 3.0 MiB); updated 60 s ago; online` and the like.
fn mirror_line(p: &MirrorSiteState, now_ms: u64) -> String {
    let mut out = match (&p.state, p.blocks, p.bytes) {
        (SiteState::Mirrored { .. }, Some(blocks), Some(bytes)) => {
            format!("{} ({blocks} blocks, {})", p.state, human_bytes(bytes))
        }
        _ => p.state.detail(),
    };
    if let Some(peers) = p.peers {
        out += &format!("; {peers} peer{}", if peers == 1 { "" } else { "s" });
    }
    if let Some(t) = p.updated_ms {
        out += &format!("; updated {}", ago(now_ms, t));
    }
    out += &match (p.online, p.last_seen_ms) {
        (true, _) => "; online".to_string(),
        (false, Some(t)) => format!("; offline, last seen {}", ago(now_ms, t)),
        (false, None) => "; offline, never seen".to_string(),
    };
    out
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

/// Every site and every paired mirror (`cat STATUS`).
pub fn render_status_table(view: &StatusView, now_ms: u64) -> String {
    let mut out = format!("dat-mirror status at {}\n\n", format_utc(now_ms));
    out += &format!("SITES ({})\n", view.sites.len());
    let mut rows = vec![[
        "NAME",
        "STATE",
        "VERSION",
        "SIZE",
        "PEERS",
        "LAST SYNC",
        "KEY",
    ]
    .map(String::from)
    .to_vec()];
    for s in &view.sites {
        rows.push(vec![
            s.alias.clone().unwrap_or_else(|| s.key.short()),
            s.state.compact(),
            opt(s.version),
            human_bytes(s.bytes),
            opt(s.peers),
            s.last_sync_ms
                .map_or_else(|| "never".into(), |t| ago(now_ms, t)),
            s.key.to_hex(),
        ]);
    }
    out += &table(&rows);
    if view.sites.is_empty() {
        out +=
            "(no sites: `touch <key>` or `echo hyper://<key> > <name>` in this folder adds one)\n";
    }
    out += &format!("\nMIRRORS ({})\n", view.mirrors.len());
    let mut rows = vec![[
        "MIRROR",
        "ONLINE",
        "LAST SEEN",
        "SITES HELD",
        "ACKED",
        "HTTP",
    ]
    .map(String::from)
    .to_vec()];
    for m in &view.mirrors {
        rows.push(vec![
            m.mirror.to_hex(),
            if m.online { "yes" } else { "no" }.into(),
            if m.online {
                "now".into()
            } else {
                m.last_seen_ms
                    .map_or_else(|| "never".into(), |t| ago(now_ms, t))
            },
            if m.sites_held_all > m.sites_held {
                format!("{} ({} in all)", m.sites_held, m.sites_held_all)
            } else {
                m.sites_held.to_string()
            },
            m.acked
                .map_or_else(|| "nothing".into(), |s| format!("up to #{s}")),
            m.http.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out += &table(&rows);
    for m in view.mirrors.iter().filter(|m| m.unreadable.is_some()) {
        out += &format!(
            "warning: mirror {}: {}\n",
            m.mirror.short(),
            m.unreadable.as_deref().unwrap_or_default()
        );
    }
    if view.mirrors.is_empty() {
        out += "(no mirror paired: run `dat-mirror serve` on the always-on machine and pair it)\n";
    }
    out
}

/// The namespace of a site's extended attributes.
pub const XATTR_PREFIX: &str = "user.dat-mirror.";

/// The `user.dat-mirror.*` attributes of a site; all nine always present, empty when unknown.
pub fn xattrs(site: &SiteView) -> Vec<(String, Vec<u8>)> {
    let fields = [
        ("key", site.key.to_hex()),
        ("alias", site.alias.clone().unwrap_or_default()),
        ("state", site.state.to_string()),
        (
            "version",
            site.version.map(|v| v.to_string()).unwrap_or_default(),
        ),
        ("bytes", site.bytes.to_string()),
        (
            "peers",
            site.peers.map(|v| v.to_string()).unwrap_or_default(),
        ),
        ("http", site.http.clone().unwrap_or_default()),
        ("error", site.last_error.clone().unwrap_or_default()),
        (
            "last_sync",
            site.last_sync_ms.map(format_rfc3339).unwrap_or_default(),
        ),
    ];
    fields
        .into_iter()
        .map(|(n, v)| (format!("{XATTR_PREFIX}{n}"), v.into_bytes()))
        .collect()
}
