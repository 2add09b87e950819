//! The status view: what the laptop's control folder shows. A pure fold of the laptop's own
//! command log and every paired mirror's status log into one `SiteView` per site and one
//! `MirrorSummary` per mirror, plus the pure renderers behind `cat <entry>`, `cat STATUS`
//! and `getfattr -d`. No I/O, no clocks: the caller passes `now`.
//!
//! Rules (per mirror, per site; `s` = seq of my last command for the key):
//! - `Rejected { log: me, seq: s }` → `error: rejected: <reason>`.
//! - Mirror, no `Ack { log: me, seq >= s }` yet → `queued`; acked → the latest site event
//!   for the key after the first such ack, else the latest one before it unless that is
//!   `Removed`, else `delivered`. Progress → `syncing N%`, Mirrored → `mirrored vN`,
//!   Error → `error: <reason>`, Removed → `removed`.
//! - Unmirror: not acked → `removing`; acked → `removed`. The site leaves the view once
//!   every paired mirror has acked it (at once with no paired mirror).
//! - Overall state with several mirrors: the most advanced one wins, ranked
//!   mirrored (higher version first) > syncing (higher % first) > delivered > queued >
//!   removed > error; an error therefore shows only when no mirror does better (it is
//!   always in `last_error`). An Unmirror shows `removing` until every mirror acked.
//! - Data (version, blocks, bytes, peers, last sync, last error) come from each mirror's
//!   events for the key after its last `Removed`, maxed (or latest) over mirrors.

use std::fmt;

use super::command::{Command, CommandError};
use super::keys::Key;
use super::status::{StatusEntry, StatusEvent};

/// One paired mirror, as the laptop knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorInput {
    pub mirror: Key,
    /// Its status log, in order.
    pub status: Vec<StatusEntry>,
    /// Connected right now.
    pub online: bool,
    /// When it was last connected (unix ms), if ever.
    pub last_seen_ms: Option<u64>,
}

/// Where a site stands (on one mirror, or overall).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteState {
    Queued,
    Delivered,
    Syncing { percent: u8 },
    Mirrored { version: u64 },
    Error { reason: String },
    Removing,
    Removed,
}

impl SiteState {
    /// Higher is more advanced (see the module docs).
    fn rank(&self) -> (u8, u64) {
        match self {
            SiteState::Mirrored { version } => (6, *version),
            SiteState::Syncing { percent } => (5, *percent as u64),
            SiteState::Delivered => (4, 0),
            SiteState::Queued => (3, 0),
            SiteState::Removing => (3, 0),
            SiteState::Removed => (2, 0),
            SiteState::Error { .. } => (1, 0),
        }
    }
}

impl fmt::Display for SiteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteState::Queued => f.write_str("queued"),
            SiteState::Delivered => f.write_str("delivered"),
            SiteState::Syncing { percent } => write!(f, "syncing {percent}%"),
            SiteState::Mirrored { version } => write!(f, "mirrored v{version}"),
            SiteState::Error { reason } => write!(f, "error: {reason}"),
            SiteState::Removing => f.write_str("removing"),
            SiteState::Removed => f.write_str("removed"),
        }
    }
}

/// One mirror's state for one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSiteState {
    pub mirror: Key,
    pub state: SiteState,
}

/// Everything the folder shows about one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteView {
    pub key: Key,
    /// From my latest `Mirror` command for the key.
    pub alias: Option<String>,
    /// Seq of my last command for the key.
    pub seq: u64,
    /// My last command for the key is `Unmirror`.
    pub removing: bool,
    pub state: SiteState,
    /// One per paired mirror, in input order.
    pub per_mirror: Vec<MirrorSiteState>,
    pub version: Option<u64>,
    pub blocks: Option<u64>,
    /// Bytes the mirror holds (max over mirrors).
    pub bytes: u64,
    pub peers: Option<u32>,
    /// `at` of the latest Mirrored/Progress (unix ms).
    pub last_sync_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    /// `{http}/{hex key}/` from a mirror's latest `Online { http }`.
    pub http: Option<String>,
}

/// One paired mirror, for `STATUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSummary {
    pub mirror: Key,
    pub online: bool,
    pub last_seen_ms: Option<u64>,
    /// Base URL of its HTTP gateway, from its latest `Online`.
    pub http: Option<String>,
    /// Highest seq of my log it acknowledged.
    pub acked: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusView {
    pub sites: Vec<SiteView>,
    pub mirrors: Vec<MirrorSummary>,
    /// The `now_ms` the view was folded at.
    pub at_ms: u64,
}

impl StatusView {
    pub fn site(&self, key: &Key) -> Option<&SiteView> {
        self.sites.iter().find(|s| s.key == *key)
    }
}

/// Folds my command log (`commands[seq]`; malformed entries are ignored) and the paired
/// mirrors' status logs into the view.
pub fn fold(
    me: Key,
    commands: &[Result<Command, CommandError>],
    mirrors: &[MirrorInput],
    now_ms: u64,
) -> StatusView {
    // Last command per key, in order of the key's first appearance.
    let mut order: Vec<Key> = Vec::new();
    let mut last: std::collections::HashMap<Key, (u64, &Command)> = Default::default();
    let mut alias: std::collections::HashMap<Key, Option<String>> = Default::default();
    for (seq, entry) in commands.iter().enumerate() {
        let Ok(cmd) = entry else { continue };
        let key = cmd.key();
        if !last.contains_key(&key) {
            order.push(key);
        }
        last.insert(key, (seq as u64, cmd));
        if let Command::Mirror { alias: a, .. } = cmd {
            alias.insert(key, a.clone());
        }
    }
    let http_of: Vec<Option<String>> = mirrors.iter().map(latest_http).collect();
    let mut sites = Vec::new();
    for key in order {
        let (seq, cmd) = last[&key];
        let removing = matches!(cmd, Command::Unmirror { .. });
        let per_mirror: Vec<MirrorSiteState> = mirrors
            .iter()
            .map(|m| MirrorSiteState {
                mirror: m.mirror,
                state: mirror_state(me, key, seq, removing, m),
            })
            .collect();
        if removing && per_mirror.iter().all(|p| p.state == SiteState::Removed) {
            continue;
        }
        let best = per_mirror
            .iter()
            .enumerate()
            .max_by_key(|(i, p)| (p.state.rank(), usize::MAX - i));
        let best_http = best.and_then(|(i, _)| http_of[i].clone());
        let state = if removing {
            SiteState::Removing
        } else {
            best.map(|(_, p)| p.state.clone())
                .unwrap_or(SiteState::Queued)
        };
        let mut site = SiteView {
            key,
            alias: alias.get(&key).cloned().flatten(),
            seq,
            removing,
            state,
            per_mirror,
            version: None,
            blocks: None,
            bytes: 0,
            peers: None,
            last_sync_ms: None,
            last_error: None,
            last_error_ms: None,
            http: None,
        };
        for m in mirrors {
            add_data(&mut site, me, m);
        }
        site.http = best_http
            .or_else(|| http_of.iter().flatten().next().cloned())
            .map(|h| format!("{}/{}/", h.trim_end_matches('/'), key.to_hex()));
        sites.push(site);
    }
    let summaries = mirrors
        .iter()
        .zip(http_of)
        .map(|(m, http)| MirrorSummary {
            mirror: m.mirror,
            online: m.online,
            last_seen_ms: m.last_seen_ms,
            http,
            acked: m
                .status
                .iter()
                .filter_map(|e| match e.event {
                    StatusEvent::Ack { log, seq } if log == me => Some(seq),
                    _ => None,
                })
                .max(),
        })
        .collect();
    StatusView {
        sites,
        mirrors: summaries,
        at_ms: now_ms,
    }
}

fn latest_http(m: &MirrorInput) -> Option<String> {
    m.status.iter().rev().find_map(|e| match &e.event {
        StatusEvent::Online { http } => Some(http.clone()),
        _ => None,
    })?
}

fn mirror_state(me: Key, key: Key, seq: u64, removing: bool, m: &MirrorInput) -> SiteState {
    let rejected = m.status.iter().rev().find_map(|e| match &e.event {
        StatusEvent::Rejected {
            log,
            seq: s,
            reason,
        } if *log == me && *s == seq => Some(reason),
        _ => None,
    });
    if let Some(reason) = rejected {
        return SiteState::Error {
            reason: format!("rejected: {reason}"),
        };
    }
    let ack = m
        .status
        .iter()
        .position(|e| matches!(e.event, StatusEvent::Ack { log, seq: s } if log == me && s >= seq));
    match (removing, ack) {
        (true, None) => SiteState::Removing,
        (true, Some(_)) => SiteState::Removed,
        (false, None) => SiteState::Queued,
        (false, Some(pos)) => {
            let about = |e: &&StatusEntry| e.event.site() == Some(key);
            if let Some(e) = m.status[pos + 1..].iter().rev().find(about) {
                return event_state(&e.event);
            }
            match m.status[..pos].iter().rev().find(about) {
                Some(e) if !matches!(e.event, StatusEvent::Removed { .. }) => event_state(&e.event),
                _ => SiteState::Delivered,
            }
        }
    }
}

fn event_state(event: &StatusEvent) -> SiteState {
    match event {
        StatusEvent::Progress {
            blocks,
            total_blocks,
            bytes,
            total_bytes,
            ..
        } => {
            let (done, total) = if *total_bytes > 0 {
                (*bytes, *total_bytes)
            } else {
                (*blocks, *total_blocks)
            };
            let percent = if total == 0 {
                0
            } else {
                (done.min(total) as u128 * 100 / total as u128) as u8
            };
            SiteState::Syncing { percent }
        }
        StatusEvent::Mirrored { version, .. } => SiteState::Mirrored { version: *version },
        StatusEvent::Error { reason, .. } => SiteState::Error {
            reason: reason.clone(),
        },
        StatusEvent::Removed { .. } => SiteState::Removed,
        // Not site events; `mirror_state` only passes site events.
        StatusEvent::Online { .. } | StatusEvent::Ack { .. } | StatusEvent::Rejected { .. } => {
            SiteState::Delivered
        }
    }
}

/// Adds one mirror's data for the site: its events after its last `Removed` of the key,
/// plus a rejection of my last command for it.
fn add_data(site: &mut SiteView, me: Key, m: &MirrorInput) {
    let start = m
        .status
        .iter()
        .rposition(|e| matches!(e.event, StatusEvent::Removed { key } if key == site.key))
        .map_or(0, |p| p + 1);
    let max = |a: Option<u64>, b: u64| Some(a.map_or(b, |a| a.max(b)));
    for e in &m.status[start..] {
        let mut error = None;
        match &e.event {
            StatusEvent::Progress {
                key,
                version,
                blocks,
                bytes,
                peers,
                ..
            }
            | StatusEvent::Mirrored {
                key,
                version,
                blocks,
                bytes,
                peers,
            } if *key == site.key => {
                site.version = max(site.version, *version);
                site.blocks = max(site.blocks, *blocks);
                site.bytes = site.bytes.max(*bytes);
                site.peers = Some(site.peers.unwrap_or(0).max(*peers));
                site.last_sync_ms = max(site.last_sync_ms, e.at);
            }
            StatusEvent::Error { key, reason } if *key == site.key => error = Some(reason.clone()),
            StatusEvent::Rejected { log, seq, reason } if *log == me && *seq == site.seq => {
                error = Some(format!("rejected: {reason}"))
            }
            _ => {}
        }
        if let Some(reason) = error {
            if site.last_error_ms.is_none_or(|t| e.at >= t) {
                site.last_error = Some(reason);
                site.last_error_ms = Some(e.at);
            }
        }
    }
}

/// `1.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `2024-05-01 12:34:56 UTC`.
pub fn format_utc(ms: u64) -> String {
    let (date, time) = civil(ms);
    format!("{date} {time} UTC")
}

/// `2024-05-01T12:34:56Z`.
pub fn format_rfc3339(ms: u64) -> String {
    let (date, time) = civil(ms);
    format!("{date}T{time}Z")
}

fn civil(ms: u64) -> (String, String) {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let time = format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    (date, time)
}

/// `12 s ago`, `3 min ago`, `5 h ago`, `2 d ago`.
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    if then_ms > now_ms.saturating_add(1000) {
        return "in the future (check the clocks)".into();
    }
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

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
    out += &format!("key: {}\n", site.key.to_hex());
    out += &format!("key (z-base32): {}\n", site.key.to_z32());
    out += &format!("alias: {}\n", site.alias.as_deref().unwrap_or("(none)"));
    if site.per_mirror.is_empty() {
        out += "mirrors: none paired yet (pair one with `dat-mirror pair`)\n";
    } else {
        out += "mirrors:\n";
        for p in &site.per_mirror {
            out += &format!("  {}: {}\n", p.mirror.short(), p.state);
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
            s.state.to_string(),
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
    let mut rows = vec![["MIRROR", "ONLINE", "LAST SEEN", "ACKED", "HTTP"]
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
            m.acked
                .map_or_else(|| "nothing".into(), |s| format!("up to #{s}")),
            m.http.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out += &table(&rows);
    if view.mirrors.is_empty() {
        out += "(no mirror paired: run `dat-mirror serve` on the always-on machine and pair it)\n";
    }
    out
}

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
        .map(|(n, v)| (format!("user.dat-mirror.{n}"), v.into_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatusEvent as E;

    const ME: Key = Key([1; 32]);
    const M1: Key = Key([0xa1; 32]);
    const M2: Key = Key([0xa2; 32]);
    const A: Key = Key([0xaa; 32]);
    const B: Key = Key([0xbb; 32]);

    fn mirror(k: Key, alias: Option<&str>) -> Result<Command, CommandError> {
        Ok(Command::Mirror {
            key: k,
            alias: alias.map(String::from),
        })
    }
    fn unmirror(k: Key) -> Result<Command, CommandError> {
        Ok(Command::Unmirror { key: k })
    }
    fn ack(at: u64, seq: u64) -> StatusEntry {
        StatusEntry::new(at, E::Ack { log: ME, seq })
    }
    fn progress(at: u64, k: Key, bytes: u64, total: u64) -> StatusEntry {
        let event = E::Progress {
            key: k,
            version: 3,
            blocks: 1,
            total_blocks: 4,
            bytes,
            total_bytes: total,
            peers: 2,
        };
        StatusEntry::new(at, event)
    }
    fn mirrored(at: u64, k: Key, version: u64, bytes: u64) -> StatusEntry {
        StatusEntry::new(
            at,
            E::Mirrored {
                key: k,
                version,
                blocks: 7,
                bytes,
                peers: 3,
            },
        )
    }
    fn input(m: Key, status: Vec<StatusEntry>) -> MirrorInput {
        MirrorInput {
            mirror: m,
            status,
            online: true,
            last_seen_ms: Some(5),
        }
    }
    fn one(cmds: &[Result<Command, CommandError>], status: Vec<StatusEntry>) -> StatusView {
        fold(ME, cmds, &[input(M1, status)], 1_000_000)
    }
    fn state(v: &StatusView, k: Key) -> String {
        v.site(&k).expect("site shown").state.to_string()
    }

    #[test]
    fn queued_then_delivered_then_syncing_then_mirrored() {
        let cmds = [mirror(A, None)];
        assert_eq!(state(&one(&cmds, vec![]), A), "queued");
        assert_eq!(
            state(&fold(ME, &cmds, &[], 0), A),
            "queued",
            "no mirror paired"
        );
        assert_eq!(state(&one(&cmds, vec![ack(1, 0)]), A), "delivered");
        assert_eq!(
            state(&one(&cmds, vec![ack(1, 0), progress(2, A, 25, 100)]), A),
            "syncing 25%"
        );
        let v = one(
            &cmds,
            vec![ack(1, 0), progress(2, A, 25, 100), mirrored(3, A, 9, 100)],
        );
        assert_eq!(state(&v, A), "mirrored v9");
        let s = v.site(&A).unwrap();
        assert_eq!(
            (s.version, s.bytes, s.peers, s.blocks, s.last_sync_ms),
            (Some(9), 100, Some(3), Some(7), Some(3))
        );
    }

    #[test]
    fn progress_uses_blocks_when_bytes_total_is_zero() {
        let cmds = [mirror(A, None)];
        let p = StatusEntry::new(
            2,
            E::Progress {
                key: A,
                version: 1,
                blocks: 3,
                total_blocks: 4,
                bytes: 0,
                total_bytes: 0,
                peers: 0,
            },
        );
        assert_eq!(state(&one(&cmds, vec![ack(1, 0), p]), A), "syncing 75%");
        let p = StatusEntry::new(
            2,
            E::Progress {
                key: A,
                version: 1,
                blocks: 0,
                total_blocks: 0,
                bytes: 0,
                total_bytes: 0,
                peers: 0,
            },
        );
        assert_eq!(state(&one(&cmds, vec![ack(1, 0), p]), A), "syncing 0%");
    }

    #[test]
    fn errors_and_rejections() {
        let cmds = [mirror(A, None)];
        let err = StatusEntry::new(
            4,
            E::Error {
                key: A,
                reason: "disk full".into(),
            },
        );
        let v = one(&cmds, vec![ack(1, 0), err]);
        assert_eq!(state(&v, A), "error: disk full");
        assert_eq!(v.site(&A).unwrap().last_error.as_deref(), Some("disk full"));
        let rej = StatusEntry::new(
            2,
            E::Rejected {
                log: ME,
                seq: 0,
                reason: "bad alias".into(),
            },
        );
        let v = one(&cmds, vec![rej]);
        assert_eq!(state(&v, A), "error: rejected: bad alias");
        assert_eq!(
            v.site(&A).unwrap().last_error.as_deref(),
            Some("rejected: bad alias")
        );
        // A rejection of another seq or another log is not about this command.
        let other = StatusEntry::new(
            2,
            E::Rejected {
                log: M2,
                seq: 0,
                reason: "x".into(),
            },
        );
        assert_eq!(state(&one(&cmds, vec![other]), A), "queued");
    }

    #[test]
    fn malformed_commands_are_ignored_but_keep_their_seq() {
        let cmds = [
            Err(CommandError::NotJson("x".into())),
            mirror(A, Some("blog")),
            Err(CommandError::UnknownVersion(7)),
        ];
        let v = one(&cmds, vec![ack(1, 0)]);
        assert_eq!(v.sites.len(), 1);
        assert_eq!(
            state(&v, A),
            "queued",
            "ack of seq 0 is not an ack of seq 1"
        );
        assert_eq!(v.site(&A).unwrap().seq, 1);
        assert_eq!(state(&one(&cmds, vec![ack(1, 2)]), A), "delivered");
    }

    #[test]
    fn unmirror_is_removing_until_every_mirror_acked() {
        let cmds = [mirror(A, Some("blog")), unmirror(A)];
        let v = fold(
            ME,
            &cmds,
            &[
                input(M1, vec![ack(1, 0), mirrored(2, A, 4, 10)]),
                input(M2, vec![]),
            ],
            9,
        );
        let s = v.site(&A).unwrap();
        assert_eq!(s.state.to_string(), "removing");
        assert!(s.removing);
        assert_eq!(s.alias.as_deref(), Some("blog"));
        let v = fold(
            ME,
            &cmds,
            &[input(M1, vec![ack(1, 1)]), input(M2, vec![])],
            9,
        );
        let per: Vec<String> = v
            .site(&A)
            .unwrap()
            .per_mirror
            .iter()
            .map(|p| p.state.to_string())
            .collect();
        assert_eq!(per, ["removed", "removing"]);
        let v = fold(
            ME,
            &cmds,
            &[input(M1, vec![ack(1, 1)]), input(M2, vec![ack(3, 1)])],
            9,
        );
        assert!(v.sites.is_empty());
        let removed = StatusEntry::new(4, E::Removed { key: A });
        assert!(one(&cmds, vec![ack(1, 1), removed]).sites.is_empty());
        assert!(
            fold(ME, &cmds, &[], 0).sites.is_empty(),
            "nobody to wait for"
        );
    }

    #[test]
    fn out_of_order_acks() {
        // Mirror 1 acked seq 2 before it wrote an ack for seq 0: both count.
        let cmds = [mirror(A, None), mirror(B, None), unmirror(B)];
        let v = one(&cmds, vec![ack(1, 2), ack(2, 0)]);
        assert_eq!(state(&v, A), "delivered");
        assert!(v.site(&B).is_none());
        // Progress after the first qualifying ack is what counts.
        let v = one(&cmds, vec![ack(1, 2), progress(2, A, 5, 10), ack(3, 0)]);
        assert_eq!(state(&v, A), "syncing 50%");
        assert_eq!(v.mirrors[0].acked, Some(2));
    }

    #[test]
    fn remirror_after_removal_starts_fresh() {
        let cmds = [mirror(A, None), unmirror(A), mirror(A, Some("again"))];
        let old = vec![
            ack(1, 0),
            mirrored(2, A, 4, 10),
            ack(3, 1),
            StatusEntry::new(4, E::Removed { key: A }),
        ];
        let v = one(&cmds, old.clone());
        let s = v.site(&A).unwrap();
        assert_eq!(
            (s.state.to_string(), s.bytes, s.version),
            ("queued".into(), 0, None)
        );
        let mut acked = old;
        acked.push(ack(5, 2));
        assert_eq!(state(&one(&cmds, acked), A), "delivered");
    }

    #[test]
    fn earlier_progress_carries_over_an_alias_change() {
        let cmds = [mirror(A, None), mirror(A, Some("blog"))];
        let v = one(&cmds, vec![ack(1, 0), mirrored(2, A, 4, 10), ack(3, 1)]);
        assert_eq!(state(&v, A), "mirrored v4");
        assert_eq!(v.site(&A).unwrap().alias.as_deref(), Some("blog"));
        // Until acked, the re-sent command is queued but the data is still shown.
        let v = one(&cmds, vec![ack(1, 0), mirrored(2, A, 4, 10)]);
        assert_eq!(
            (state(&v, A), v.site(&A).unwrap().bytes),
            ("queued".into(), 10)
        );
    }

    #[test]
    fn alias_comes_from_the_latest_mirror_command() {
        let cmds = [mirror(A, Some("old")), mirror(A, Some("new"))];
        assert_eq!(
            one(&cmds, vec![]).site(&A).unwrap().alias.as_deref(),
            Some("new")
        );
        let cmds = [mirror(A, Some("old")), mirror(A, None)];
        assert_eq!(one(&cmds, vec![]).site(&A).unwrap().alias, None);
    }

    #[test]
    fn several_mirrors_show_the_most_advanced() {
        let cmds = [mirror(A, None)];
        let err = StatusEntry::new(
            3,
            E::Error {
                key: A,
                reason: "no peers".into(),
            },
        );
        let online = StatusEntry::new(
            0,
            E::Online {
                http: Some("http://pi:8080/".into()),
            },
        );
        let m1 = input(M1, vec![ack(1, 0), progress(2, A, 50, 100), err.clone()]);
        let m2 = input(M2, vec![online, ack(1, 0), mirrored(4, A, 6, 100)]);
        let v = fold(ME, &cmds, &[m1.clone(), m2], 0);
        let s = v.site(&A).unwrap();
        assert_eq!(s.state.to_string(), "mirrored v6");
        assert_eq!(s.per_mirror[0].state.to_string(), "error: no peers");
        assert_eq!(
            s.http.as_deref(),
            Some(format!("http://pi:8080/{}/", A.to_hex()).as_str())
        );
        assert_eq!(s.last_error.as_deref(), Some("no peers"));
        assert_eq!(
            (s.bytes, s.version, s.last_sync_ms),
            (100, Some(6), Some(4))
        );
        let v = fold(ME, &cmds, &[m1, input(M2, vec![])], 0);
        assert_eq!(state(&v, A), "queued", "queued beats an error");
        let v = fold(
            ME,
            &cmds,
            &[
                input(M1, vec![ack(1, 0), err]),
                input(M2, vec![ack(1, 0), progress(2, A, 1, 4)]),
            ],
            0,
        );
        assert_eq!(state(&v, A), "syncing 25%");
    }

    #[test]
    fn http_comes_from_the_latest_online() {
        let cmds = [mirror(A, None)];
        let on = |http: Option<&str>| {
            StatusEntry::new(
                0,
                E::Online {
                    http: http.map(String::from),
                },
            )
        };
        let v = one(&cmds, vec![on(Some("http://a")), on(Some("http://b"))]);
        assert_eq!(
            v.site(&A).unwrap().http,
            Some(format!("http://b/{}/", A.to_hex()))
        );
        assert_eq!(v.mirrors[0].http.as_deref(), Some("http://b"));
        assert_eq!(
            one(&cmds, vec![on(Some("http://a")), on(None)])
                .site(&A)
                .unwrap()
                .http,
            None
        );
    }

    #[test]
    fn removed_before_the_ack_means_delivered() {
        let cmds = [mirror(A, None)];
        let removed = StatusEntry::new(1, E::Removed { key: A });
        assert_eq!(state(&one(&cmds, vec![removed, ack(2, 0)]), A), "delivered");
    }

    #[test]
    fn renderers() {
        let cmds = [mirror(A, Some("blog"))];
        let online = StatusEntry::new(
            0,
            E::Online {
                http: Some("http://pi:8080".into()),
            },
        );
        let err = StatusEntry::new(
            990_000,
            E::Error {
                key: A,
                reason: "peer left".into(),
            },
        );
        let v = one(
            &cmds,
            vec![
                online,
                ack(1, 0),
                mirrored(940_000, A, 12, 3 * 1024 * 1024),
                err,
            ],
        );
        let s = v.site(&A).unwrap();
        let text = render_site(s, 1_000_000);
        assert!(
            text.lines().any(|l| l == "state: error: peer left"),
            "{text}"
        );
        for needle in [
            A.to_hex(),
            A.to_z32(),
            "alias: blog".into(),
            "version: 12".into(),
            "3.0 MiB (3145728 bytes)".into(),
            "peers: 3".into(),
            format!("http: http://pi:8080/{}/", A.to_hex()),
            "1970-01-01 00:15:40 UTC (60 s ago)".into(),
            "last error: peer left (10 s ago)".into(),
            format!("{}: error: peer left", M1.short()),
        ] {
            assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
        }
        assert_eq!(
            Key::find_in_text(&text),
            Some(A),
            "the screen is also a link file"
        );
        let table = render_status_table(&v, 1_000_000);
        for needle in [
            "blog",
            "error: peer left",
            "3.0 MiB",
            &M1.to_hex(),
            "yes",
            "up to #0",
            "http://pi:8080",
        ] {
            assert!(table.contains(needle), "missing {needle:?} in\n{table}");
        }
        let offline = StatusView {
            mirrors: vec![MirrorSummary {
                online: false,
                last_seen_ms: Some(880_000),
                ..v.mirrors[0].clone()
            }],
            ..v.clone()
        };
        assert!(render_status_table(&offline, 1_000_000).contains("2 min ago"));
        let x = xattrs(s);
        let names: Vec<&str> = x.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "key",
                "alias",
                "state",
                "version",
                "bytes",
                "peers",
                "http",
                "error",
                "last_sync"
            ]
            .map(|n| format!("user.dat-mirror.{n}"))
        );
        let get = |n: &str| {
            String::from_utf8(x.iter().find(|(k, _)| k.ends_with(n)).unwrap().1.clone()).unwrap()
        };
        assert_eq!(
            (get(".state"), get(".bytes"), get(".alias")),
            ("error: peer left".into(), "3145728".into(), "blog".into())
        );
        assert_eq!(get(".last_sync"), "1970-01-01T00:15:40Z");
        let empty = render_status_table(&fold(ME, &[], &[], 0), 0);
        assert!(
            empty.contains("no sites") && empty.contains("no mirror paired"),
            "{empty}"
        );
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(format_utc(1_714_566_896_000), "2024-05-01 12:34:56 UTC");
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(ago(10_000, 5_000), "5 s ago");
        assert_eq!(ago(10_000_000, 5_000_000), "83 min ago");
        assert_eq!(ago(0, 5_000), "in the future (check the clocks)");
        assert_eq!(ago(1_000_000_000, 0), "11 d ago");
    }
}
