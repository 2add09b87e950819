//! One mirrored site: replicate its db core, learn the blobs core from the db header,
//! replicate that too, and report progress (at most about once a second) until every file
//! of the latest version is held and verified, which is reported as `Mirrored { version }`.
//!
//! The task owns nothing of the daemon: it gets its cores, the node and the storage cap in a
//! [`SiteCx`], and tells the daemon what happened by [`SiteEvent`]s on a channel (status to
//! record, blobs core known, version seen). The daemon stops it by cancelling its tasks.
//!
//! Two things stop a site from fetching, each reported as `Error { key, reason }` and lifted
//! by itself: a storage fault (`disk full: …`; replication retries every few seconds and the
//! site reports progress again once a write succeeds), and the storage cap
//! (`storage cap reached …`: a new site does not start, a running one stops fetching, until
//! stored data is under the cap again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::storage_cap::StorageCap;
use crate::drive::{self, DirEntry};
use crate::model::keys::Key;
use crate::model::status::StatusEvent;
use crate::net::node::Node;
use crate::store::{Core, CoreReader, CoreStore};

/// What a site task tells the daemon.
#[derive(Debug)]
pub enum SiteEvent {
    /// Record this in the status log (progress, mirrored, error).
    Status(StatusEvent),
    /// The blobs core is known (and open): serve it.
    Blobs(Arc<Core>),
    /// The db has this many blocks (for Last-Modified and "last sync").
    Version(u64),
    /// Every file of this version is held: the site is mirrored at it (also when that was
    /// found again after a restart, with no peer online to say there is nothing newer).
    Mirrored(u64),
}

/// A [`SiteEvent`] with the site (and the run of it) it comes from.
#[derive(Debug)]
pub struct SiteMessage {
    pub key: Key,
    /// Which start of the site sent it (events of a stopped run are dropped).
    pub run: u64,
    pub event: SiteEvent,
}

/// What a site task needs.
pub struct SiteCx {
    pub key: Key,
    pub run: u64,
    pub db: Arc<Core>,
    pub store: Arc<CoreStore>,
    pub node: Arc<Node>,
    /// The hypercore network plane (announces, fetches and serves the site there too).
    pub hyper: super::hyperplane::HyperPlane,
    pub cap: StorageCap,
    pub events: UnboundedSender<SiteMessage>,
    /// The version the status log last said this site was mirrored at (first run after a
    /// start): not said again while the site is still complete at it.
    pub recorded_mirrored: Option<u64>,
}

impl SiteCx {
    fn send(&self, event: SiteEvent) {
        // The daemon is stopping if nobody listens; the task is cancelled right after.
        let _ = self.events.send(SiteMessage {
            key: self.key,
            run: self.run,
            event,
        });
    }

    fn status(&self, event: StatusEvent) {
        self.send(SiteEvent::Status(event));
    }
}

/// Smallest interval between two `Progress` entries of one site.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How often a site stopped by the storage cap checks whether there is room again.
pub const CAP_POLL: Duration = Duration::from_secs(2);

/// Records `Error { key, reason }` unless it is the error last recorded by this site.
fn report(cx: &SiteCx, reason: String, last: &mut Option<String>) {
    if last.as_deref() == Some(reason.as_str()) {
        return;
    }
    tracing::warn!(site = %cx.key.short(), "{reason}");
    cx.status(StatusEvent::Error {
        key: cx.key,
        reason: reason.clone(),
    });
    *last = Some(reason);
}

/// Waits until the mirror is under its storage cap, reporting the cap once if it is not.
async fn wait_for_room(cx: &SiteCx, last_error: &mut Option<String>) {
    while let Err(reason) = cx.cap.check() {
        report(cx, reason, last_error);
        tokio::time::sleep(CAP_POLL).await;
    }
}

/// Runs until cancelled (when the site leaves the mirror set).
pub async fn run_site(cx: SiteCx) {
    let key = cx.key;
    let db = cx.db.clone();
    let mut last_error: Option<String> = None;
    // A new site does not start while the mirror is over its storage cap.
    if db.info().length == 0 {
        wait_for_room(&cx, &mut last_error).await;
    }
    cx.node.want(db.clone());
    let mut db_rx = db.subscribe();
    let mut db_fault = db.subscribe_fault();

    // The db header names the blobs core.
    let blobs_key = loop {
        match crate::site::blobs_key::blobs_key(&db).await {
            Ok(Some(k)) => break k,
            Ok(None) => {}
            Err(reason) => {
                cx.status(StatusEvent::Error { key, reason });
                return;
            }
        }
        let fault = db_fault.borrow_and_update().clone();
        if let Some(reason) = fault {
            report(&cx, reason, &mut last_error);
        }
        tokio::select! {
            r = db_rx.changed() => if r.is_err() { return },
            r = db_fault.changed() => if r.is_err() { return },
        }
    };
    let blobs = match cx.store.open_or_create_replica(&blobs_key).await {
        Ok(b) => b,
        Err(e) => {
            cx.status(StatusEvent::Error {
                key,
                reason: format!("cannot store the site: {e}"),
            });
            return;
        }
    };
    cx.send(SiteEvent::Blobs(blobs.clone()));
    cx.node.want(blobs.clone());
    let mut blobs_rx = blobs.subscribe();
    let mut blobs_fault = blobs.subscribe_fault();

    let mut last_progress: Option<(Instant, StatusEvent)> = None;
    let mut mirrored_version: Option<u64> = None;
    // What the status log said last, trusted only on the first look, when nothing went
    // wrong before it: the site is complete at that version, so saying it again adds nothing.
    let mut said_at_start = cx.recorded_mirrored;
    let mut seen_version: Option<u64> = None;
    let mut told_plane = (None, None);
    loop {
        let said_before = said_at_start.take().filter(|_| last_error.is_none());
        let d = db.info();
        let b = blobs.info();
        let peers = cx.node.peers_for(&key).saturating_add(cx.hyper.peers(&key));
        // Blocks that came from a laptop: the hypercore network's peers hear of them.
        let now_held = (
            Some((d.length, d.contiguous_length)),
            Some((b.length, b.contiguous_length)),
        );
        if now_held.0 != told_plane.0 {
            cx.hyper.core_updated(&key);
        }
        if now_held.1 != told_plane.1 {
            cx.hyper.core_updated(&blobs.key());
        }
        told_plane = now_held;
        let version = d.length;
        if Some(version) != seen_version {
            cx.send(SiteEvent::Version(version));
            seen_version = Some(version);
        }
        let in_sync = super::cores_in_sync(&d, &b);

        // A storage fault (disk full): report it; replication retries by itself, and the
        // fault clears with the first write that succeeds.
        let fault = db_fault
            .borrow_and_update()
            .clone()
            .or_else(|| blobs_fault.borrow_and_update().clone());
        if let Some(reason) = fault {
            report(&cx, reason, &mut last_error);
            last_progress = None;
            tokio::select! {
                r = db_fault.changed() => if r.is_err() { return },
                r = blobs_fault.changed() => if r.is_err() { return },
            }
            continue;
        }
        // Over the storage cap: stop fetching until there is room again.
        if !in_sync && cx.cap.check().is_err() {
            cx.node.unwant(&key);
            cx.node.unwant(&blobs.key());
            wait_for_room(&cx, &mut last_error).await;
            cx.node.want(db.clone());
            cx.node.want(blobs.clone());
            last_progress = None;
            continue;
        }
        // Restarted with no peer online yet (a Pi rebooting while the laptop is closed): the
        // site holds every block of the version the log says it mirrored, so it still is.
        let as_said = said_before == Some(version) && d.complete() && b.complete();
        let complete = (in_sync || as_said)
            && mirrored_version != Some(version)
            && all_files_held(&db, &blobs, version).await;
        let mut wake_in = None;
        if complete {
            let event = StatusEvent::Mirrored {
                key,
                version,
                blocks: d.length + b.length,
                bytes: d.byte_length + b.byte_length,
                peers,
            };
            if said_before != Some(version) {
                cx.status(event);
            }
            cx.send(SiteEvent::Mirrored(version));
            mirrored_version = Some(version);
            last_progress = None;
            last_error = None;
        } else if mirrored_version != Some(version) {
            let event = StatusEvent::Progress {
                key,
                version,
                blocks: d.held_blocks + b.held_blocks,
                total_blocks: d.length + b.length,
                bytes: d.held_bytes() + b.held_bytes(),
                total_bytes: d.byte_length + b.byte_length,
                peers,
            };
            let due = last_progress
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() >= PROGRESS_INTERVAL);
            let changed = last_progress.as_ref().is_none_or(|(_, e)| *e != event);
            if changed && due {
                cx.status(event.clone());
                last_progress = Some((Instant::now(), event));
                last_error = None;
            } else if changed {
                let at = last_progress
                    .as_ref()
                    .map(|(at, _)| *at)
                    .unwrap_or_else(Instant::now);
                wake_in = Some(PROGRESS_INTERVAL.saturating_sub(at.elapsed()));
            }
        }
        // While fetching under a cap, look again now and then (stored data grows with
        // every block, which wakes this loop anyway; the poll covers other sites' growth).
        if wake_in.is_none() && !in_sync && cx.cap.get().is_some() {
            wake_in = Some(CAP_POLL);
        }
        tokio::select! {
            r = db_rx.changed() => if r.is_err() { return },
            r = blobs_rx.changed() => if r.is_err() { return },
            r = db_fault.changed() => if r.is_err() { return },
            r = blobs_fault.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(wake_in.unwrap_or(Duration::from_secs(3600))), if wake_in.is_some() => {}
        }
    }
}

/// Every file of `version` has all its blobs blocks held (so it can be served verified).
async fn all_files_held(db: &Arc<Core>, blobs: &Arc<Core>, version: u64) -> bool {
    let mut reader = CoreReader::new(db.clone());
    let entries = match drive::list(&mut reader, version, "/", true).await {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(site = %db.key().short(), "not complete yet: {e}");
            return false;
        }
    };
    let length = blobs.info().length;
    for e in entries {
        if let DirEntry::File { entry, .. } = e {
            if let Some(blob) = entry.blob {
                let end = blob.block_offset.saturating_add(blob.block_length);
                if end > length || (blob.block_offset..end).any(|i| !blobs.has(i)) {
                    return false;
                }
            }
        }
    }
    true
}
