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
//!   events for the key after its last `Removed`, maxed (or latest) over mirrors; the same
//!   data per mirror (`MirrorSiteState`) come from that mirror's events alone.
//! - A mirror's "sites held" counts the sites whose latest event in its log is `Mirrored`:
//!   mine (sites in this view) and all (every site its log mentions, other laptops' too).
//!
//! Every view type is serde-serializable: `dat-mirror status --json` prints it and the
//! laptop's control socket sends it.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SiteState {
    Queued,
    Delivered,
    /// `blocks`/`bytes` held of `total_*` the site has (both cores).
    Syncing {
        percent: u8,
        blocks: u64,
        total_blocks: u64,
        bytes: u64,
        total_bytes: u64,
    },
    Mirrored {
        version: u64,
    },
    Error {
        reason: String,
    },
    Removing,
    Removed,
}

impl SiteState {
    /// Higher is more advanced (see the module docs).
    fn rank(&self) -> (u8, u64) {
        match self {
            SiteState::Mirrored { version } => (6, *version),
            SiteState::Syncing { percent, .. } => (5, *percent as u64),
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
            SiteState::Syncing { percent, .. } => write!(f, "syncing {percent}%"),
            SiteState::Mirrored { version } => write!(f, "mirrored v{version}"),
            SiteState::Error { reason } => write!(f, "error: {reason}"),
            SiteState::Removing => f.write_str("removing"),
            SiteState::Removed => f.write_str("removed"),
        }
    }
}

impl SiteState {
    /// The long form: `syncing 42% (120/300 blocks, 1.2 MiB of 3.0 MiB)`; other states as
    /// [`Display`](fmt::Display).
    pub fn detail(&self) -> String {
        match self {
            SiteState::Syncing {
                blocks,
                total_blocks,
                bytes,
                total_bytes,
                ..
            } => format!(
                "{self} ({blocks}/{total_blocks} blocks, {} of {})",
                human_bytes(*bytes),
                human_bytes(*total_bytes)
            ),
            _ => self.to_string(),
        }
    }

    /// The short form for the `STATUS` table: `syncing 42% of 3.0 MiB`.
    pub fn compact(&self) -> String {
        match self {
            SiteState::Syncing { total_bytes, .. } if *total_bytes > 0 => {
                format!("{self} of {}", human_bytes(*total_bytes))
            }
            _ => self.to_string(),
        }
    }
}

/// One mirror's state for one site, with what that mirror last reported about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorSiteState {
    pub mirror: Key,
    pub state: SiteState,
    /// The mirror is connected right now / when it last was (unix ms).
    pub online: bool,
    pub last_seen_ms: Option<u64>,
    /// From its latest Progress/Mirrored for the site (after its last `Removed`).
    pub version: Option<u64>,
    pub blocks: Option<u64>,
    pub bytes: Option<u64>,
    pub peers: Option<u32>,
    /// `at` of its latest event about the site (unix ms).
    pub updated_ms: Option<u64>,
}

/// Everything the folder shows about one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorSummary {
    pub mirror: Key,
    pub online: bool,
    pub last_seen_ms: Option<u64>,
    /// Base URL of its HTTP gateway, from its latest `Online`.
    pub http: Option<String>,
    /// Highest seq of my log it acknowledged.
    pub acked: Option<u64>,
    /// How many of my sites (those in the view) it reports mirrored.
    pub sites_held: usize,
    /// How many sites it reports mirrored in all (other laptops' sites too).
    pub sites_held_all: usize,
    /// Why this view of the mirror may be incomplete: a status entry that could not be
    /// read or decoded (set by [`note_unreadable`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub sites: Vec<SiteView>,
    pub mirrors: Vec<MirrorSummary>,
    /// The `now_ms` the view was folded at.
    pub at_ms: u64,
    /// Where each site is in `sites`, for [`StatusView::site`] (the folder looks a site up
    /// on every callback). Built by `fold`; empty in a view built otherwise (deserialized).
    #[serde(skip)]
    pub(crate) index: SiteIndex,
}

/// Positions of the sites by key. Derived data, not part of the view's value: always equal,
/// never serialized.
#[derive(Debug, Clone, Default)]
pub(crate) struct SiteIndex(HashMap<Key, usize>);

impl PartialEq for SiteIndex {
    fn eq(&self, _: &SiteIndex) -> bool {
        true
    }
}

impl Eq for SiteIndex {}

/// Notes on `mirror`'s summary that its status log has an entry the laptop cannot use
/// (the fold itself only sees the readable entries).
pub fn note_unreadable(view: &mut StatusView, mirror: Key, note: String) {
    if let Some(m) = view.mirrors.iter_mut().find(|m| m.mirror == mirror) {
        m.unreadable = Some(note);
    }
}

impl StatusView {
    pub fn site(&self, key: &Key) -> Option<&SiteView> {
        if self.index.0.len() == self.sites.len() {
            let site = self.sites.get(*self.index.0.get(key)?)?;
            return (site.key == *key).then_some(site);
        }
        self.sites.iter().find(|s| s.key == *key)
    }

    /// The site a user names: a key or link, else an alias.
    pub fn find(&self, name: &str) -> Option<&SiteView> {
        match Key::parse_link(name.trim()) {
            Ok(key) => self.site(&key),
            Err(_) => self
                .sites
                .iter()
                .find(|s| s.alias.as_deref() == Some(name.trim())),
        }
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
    let indexes: Vec<MirrorIndex> = mirrors.iter().map(|m| MirrorIndex::new(me, m)).collect();
    let mut sites = Vec::new();
    for key in order {
        let (seq, cmd) = last[&key];
        let removing = matches!(cmd, Command::Unmirror { .. });
        let per_mirror: Vec<MirrorSiteState> = indexes
            .iter()
            .map(|ix| mirror_site_state(key, mirror_state(key, seq, removing, ix), ix))
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
        for ix in &indexes {
            add_data(&mut site, ix);
        }
        site.http = best_http
            .or_else(|| http_of.iter().flatten().next().cloned())
            .map(|h| format!("{}/{}/", h.trim_end_matches('/'), key.to_hex()));
        sites.push(site);
    }
    let summaries = mirrors
        .iter()
        .zip(http_of)
        .enumerate()
        .map(|(i, (m, http))| MirrorSummary {
            mirror: m.mirror,
            online: m.online,
            last_seen_ms: m.last_seen_ms,
            http,
            acked: indexes[i].acks.last().map(|(seq, _)| *seq),
            sites_held: sites
                .iter()
                .filter(|s| {
                    !s.removing
                        && matches!(
                            s.per_mirror.get(i).map(|p| &p.state),
                            Some(SiteState::Mirrored { .. })
                        )
                })
                .count(),
            sites_held_all: sites_held_all(m),
            unreadable: None,
        })
        .collect();
    let index = SiteIndex(sites.iter().enumerate().map(|(i, s)| (s.key, i)).collect());
    StatusView {
        sites,
        mirrors: summaries,
        at_ms: now_ms,
        index,
    }
}

/// One mirror's status log, indexed once per fold. Each site's questions are answered from
/// its own events; scanning the whole log once per site made the fold quadratic (1,000
/// sites with their ~3,000 events: milliseconds per fold, paid by folder callbacks).
struct MirrorIndex<'a> {
    m: &'a MirrorInput,
    /// Positions of each site's events, in log order.
    events: HashMap<Key, Vec<usize>>,
    /// Positions of the rejections of my commands, by seq, in log order.
    rejections: HashMap<u64, Vec<usize>>,
    /// `(seq, position)` of each `Ack` of my log that acknowledged more than every earlier
    /// one: both columns increase, so the first ack covering seq `s` is the first row with
    /// a seq `>= s`.
    acks: Vec<(u64, usize)>,
}

impl<'a> MirrorIndex<'a> {
    fn new(me: Key, m: &'a MirrorInput) -> MirrorIndex<'a> {
        let mut ix = MirrorIndex {
            m,
            events: HashMap::new(),
            rejections: HashMap::new(),
            acks: Vec::new(),
        };
        for (pos, e) in m.status.iter().enumerate() {
            match &e.event {
                StatusEvent::Ack { log, seq } if *log == me => {
                    if ix.acks.last().is_none_or(|(acked, _)| seq > acked) {
                        ix.acks.push((*seq, pos));
                    }
                }
                StatusEvent::Rejected { log, seq, .. } if *log == me => {
                    ix.rejections.entry(*seq).or_default().push(pos)
                }
                event => {
                    if let Some(key) = event.site() {
                        ix.events.entry(key).or_default().push(pos);
                    }
                }
            }
        }
        ix
    }

    fn event(&self, pos: usize) -> &'a StatusEntry {
        &self.m.status[pos]
    }

    /// Positions of every event about `key`.
    fn site_events(&self, key: &Key) -> &[usize] {
        self.events.get(key).map_or(&[], Vec::as_slice)
    }

    /// The log position after the last `Removed` of `key` (0 if none), and the positions of
    /// the events about `key` from there on.
    fn since_removed(&self, key: &Key) -> (usize, &[usize]) {
        let all = self.site_events(key);
        let removed = all
            .iter()
            .rposition(|&p| matches!(self.event(p).event, StatusEvent::Removed { .. }));
        match removed {
            Some(i) => (all[i] + 1, &all[i + 1..]),
            None => (0, all),
        }
    }

    /// Where my command `seq` was first acknowledged (by an ack of it or of a later one).
    fn first_ack(&self, seq: u64) -> Option<usize> {
        let i = self.acks.partition_point(|(acked, _)| *acked < seq);
        self.acks.get(i).map(|(_, pos)| *pos)
    }

    /// Positions of the rejections of my command `seq`.
    fn rejections_of(&self, seq: u64) -> &[usize] {
        self.rejections.get(&seq).map_or(&[], Vec::as_slice)
    }
}

/// Sites whose latest event in the mirror's log is `Mirrored`.
fn sites_held_all(m: &MirrorInput) -> usize {
    let mut latest: std::collections::HashMap<Key, bool> = Default::default();
    for e in &m.status {
        if let Some(key) = e.event.site() {
            latest.insert(key, matches!(e.event, StatusEvent::Mirrored { .. }));
        }
    }
    latest.values().filter(|held| **held).count()
}

/// One mirror's state and data for the site (its events after its last `Removed` of it).
fn mirror_site_state(key: Key, state: SiteState, ix: &MirrorIndex) -> MirrorSiteState {
    let m = ix.m;
    let mut out = MirrorSiteState {
        mirror: m.mirror,
        state,
        online: m.online,
        last_seen_ms: m.last_seen_ms,
        version: None,
        blocks: None,
        bytes: None,
        peers: None,
        updated_ms: None,
    };
    for e in ix.since_removed(&key).1.iter().map(|&p| ix.event(p)) {
        out.updated_ms = Some(e.at);
        if let StatusEvent::Progress {
            version,
            blocks,
            bytes,
            peers,
            ..
        }
        | StatusEvent::Mirrored {
            version,
            blocks,
            bytes,
            peers,
            ..
        } = &e.event
        {
            out.version = Some(*version);
            out.blocks = Some(*blocks);
            out.bytes = Some(*bytes);
            out.peers = Some(*peers);
        }
    }
    out
}

fn latest_http(m: &MirrorInput) -> Option<String> {
    m.status.iter().rev().find_map(|e| match &e.event {
        StatusEvent::Online { http } => Some(http.clone()),
        _ => None,
    })?
}

fn mirror_state(key: Key, seq: u64, removing: bool, ix: &MirrorIndex) -> SiteState {
    if let Some(&pos) = ix.rejections_of(seq).last() {
        if let StatusEvent::Rejected { reason, .. } = &ix.event(pos).event {
            return SiteState::Error {
                reason: format!("rejected: {reason}"),
            };
        }
    }
    match (removing, ix.first_ack(seq)) {
        (true, None) => SiteState::Removing,
        (true, Some(_)) => SiteState::Removed,
        (false, None) => SiteState::Queued,
        (false, Some(ack)) => match ix.site_events(&key).last() {
            // The latest event about the key counts if it came after the ack; before it,
            // unless it ended an earlier mirroring of the key.
            Some(&last) => {
                let event = &ix.event(last).event;
                if last > ack || !matches!(event, StatusEvent::Removed { .. }) {
                    event_state(event)
                } else {
                    SiteState::Delivered
                }
            }
            None => SiteState::Delivered,
        },
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
            SiteState::Syncing {
                percent,
                blocks: *blocks,
                total_blocks: *total_blocks,
                bytes: *bytes,
                total_bytes: *total_bytes,
            }
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
fn add_data(site: &mut SiteView, ix: &MirrorIndex) {
    let (start, events) = ix.since_removed(&site.key);
    let max = |a: Option<u64>, b: u64| Some(a.map_or(b, |a| a.max(b)));
    // Errors and rejections, in log order: the latest wins.
    let mut errors: Vec<usize> = Vec::new();
    for &pos in events {
        let e = ix.event(pos);
        match &e.event {
            StatusEvent::Progress {
                version,
                blocks,
                bytes,
                peers,
                ..
            }
            | StatusEvent::Mirrored {
                version,
                blocks,
                bytes,
                peers,
                ..
            } => {
                site.version = max(site.version, *version);
                site.blocks = max(site.blocks, *blocks);
                site.bytes = site.bytes.max(*bytes);
                site.peers = Some(site.peers.unwrap_or(0).max(*peers));
                site.last_sync_ms = max(site.last_sync_ms, e.at);
            }
            StatusEvent::Error { .. } => errors.push(pos),
            _ => {}
        }
    }
    errors.extend(ix.rejections_of(site.seq).iter().filter(|&&p| p >= start));
    errors.sort_unstable();
    for pos in errors {
        let e = ix.event(pos);
        let reason = match &e.event {
            StatusEvent::Error { reason, .. } => reason.clone(),
            StatusEvent::Rejected { reason, .. } => format!("rejected: {reason}"),
            _ => continue,
        };
        if site.last_error_ms.is_none_or(|t| e.at >= t) {
            site.last_error = Some(reason);
            site.last_error_ms = Some(e.at);
        }
    }
}

#[path = "view_render.rs"]
mod render;
pub use render::*;

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
