//! An oracle for the fold: the first, plainly quadratic version of it (each site scans each
//! mirror's whole status log), kept to check the indexed fold against on random logs.

use super::super::{
    event_state, latest_http, sites_held_all, Command, CommandError, Key, MirrorInput,
    MirrorSiteState, MirrorSummary, SiteIndex, SiteState, SiteView, StatusEntry, StatusEvent,
    StatusView,
};

pub(super) fn fold(
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
            .map(|m| mirror_site_state(key, mirror_state(me, key, seq, removing, m), m))
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
        .enumerate()
        .map(|(i, (m, http))| MirrorSummary {
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
    StatusView {
        sites,
        mirrors: summaries,
        at_ms: now_ms,
        index: SiteIndex::default(),
    }
}

fn mirror_site_state(key: Key, state: SiteState, m: &MirrorInput) -> MirrorSiteState {
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
    let start = m
        .status
        .iter()
        .rposition(|e| matches!(e.event, StatusEvent::Removed { key: k } if k == key))
        .map_or(0, |p| p + 1);
    for e in m.status[start..]
        .iter()
        .filter(|e| e.event.site() == Some(key))
    {
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
