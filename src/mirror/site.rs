//! One mirrored site: replicate its db core, learn the blobs core from the db header,
//! replicate that too, and report progress to the status log (at most about once a second)
//! until every file of the latest version is held and verified, which is reported as
//! `Mirrored { version }`.
//!
//! Two things stop a site from fetching, each reported as `Error { key, reason }` and lifted
//! by itself: a storage fault (`disk full: …`; replication retries every few seconds and the
//! site reports progress again once a write succeeds), and the storage cap
//! (`storage cap reached …`: a new site does not start, a running one stops fetching, until
//! stored data is under the cap again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::drive::{self, DirEntry};
use crate::model::keys::Key;
use crate::model::status::StatusEvent;
use crate::store::Core;

use super::MirrorInner;
use crate::store::CoreReader;

/// Smallest interval between two `Progress` entries of one site.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How often a site stopped by the storage cap checks whether there is room again.
pub const CAP_POLL: Duration = Duration::from_secs(2);

/// Records `Error { key, reason }` unless it is the error last recorded by this site.
async fn report(mirror: &MirrorInner, key: Key, reason: String, last: &mut Option<String>) {
    if last.as_deref() == Some(reason.as_str()) {
        return;
    }
    tracing::warn!(site = %key.short(), "{reason}");
    mirror
        .status
        .record(StatusEvent::Error {
            key,
            reason: reason.clone(),
        })
        .await;
    *last = Some(reason);
}

/// Waits until the mirror is under its storage cap, reporting the cap once if it is not.
async fn wait_for_room(mirror: &MirrorInner, key: Key, last_error: &mut Option<String>) {
    while let Err(reason) = mirror.storage_check() {
        report(mirror, key, reason, last_error).await;
        tokio::time::sleep(CAP_POLL).await;
    }
}

/// Runs until aborted (when the site leaves the mirror set).
pub async fn run_site(mirror: Arc<MirrorInner>, key: Key, db: Arc<Core>) {
    let mut last_error: Option<String> = None;
    // A new site does not start while the mirror is over its storage cap.
    if db.info().length == 0 {
        wait_for_room(&mirror, key, &mut last_error).await;
    }
    mirror.node.want(db.clone());
    let mut db_rx = db.subscribe();
    let mut db_fault = db.subscribe_fault();

    // The db header names the blobs core.
    let blobs_key = loop {
        match db.get(0).await {
            Ok(Some(block0)) => match drive::decode_header(&block0) {
                Ok(header) => match header.content_feed {
                    Some(k) => break Key(k),
                    None => {
                        let reason = "this drive has no contentFeed in its header (a newer \
                                      manifest-keyed drive); dat-mirror can only verify compat-key drives"
                            .to_string();
                        mirror
                            .status
                            .record(StatusEvent::Error { key, reason })
                            .await;
                        return;
                    }
                },
                Err(e) => {
                    mirror
                        .status
                        .record(StatusEvent::Error {
                            key,
                            reason: e.to_string(),
                        })
                        .await;
                    return;
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(site = %key.short(), "cannot read the db header: {e}"),
        }
        let fault = db_fault.borrow_and_update().clone();
        if let Some(reason) = fault {
            report(&mirror, key, reason, &mut last_error).await;
        }
        tokio::select! {
            r = db_rx.changed() => if r.is_err() { return },
            r = db_fault.changed() => if r.is_err() { return },
        }
    };
    let blobs = match mirror.store.open_or_create_replica(&blobs_key).await {
        Ok(b) => b,
        Err(e) => {
            mirror
                .status
                .record(StatusEvent::Error {
                    key,
                    reason: format!("cannot store the site: {e}"),
                })
                .await;
            return;
        }
    };
    mirror.set_blobs(&key, blobs.clone());
    mirror.node.want(blobs.clone());
    let mut blobs_rx = blobs.subscribe();
    let mut blobs_fault = blobs.subscribe_fault();

    let mut last_progress: Option<(Instant, StatusEvent)> = None;
    let mut mirrored_version: Option<u64> = None;
    loop {
        let d = db.info();
        let b = blobs.info();
        let peers = mirror.node.peers_for(&key);
        let version = d.length;
        mirror.note_version(&key, version);
        let in_sync = super::cores_in_sync(&d, &b);

        // A storage fault (disk full): report it; replication retries by itself, and the
        // fault clears with the first write that succeeds.
        let fault = db_fault
            .borrow_and_update()
            .clone()
            .or_else(|| blobs_fault.borrow_and_update().clone());
        if let Some(reason) = fault {
            report(&mirror, key, reason, &mut last_error).await;
            last_progress = None;
            tokio::select! {
                r = db_fault.changed() => if r.is_err() { return },
                r = blobs_fault.changed() => if r.is_err() { return },
            }
            continue;
        }
        // Over the storage cap: stop fetching until there is room again.
        if !in_sync && mirror.storage_check().is_err() {
            mirror.node.unwant(&key);
            mirror.node.unwant(&blobs.key());
            wait_for_room(&mirror, key, &mut last_error).await;
            mirror.node.want(db.clone());
            mirror.node.want(blobs.clone());
            last_progress = None;
            continue;
        }
        let complete = in_sync
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
            mirror.status.record(event).await;
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
                mirror.status.record(event.clone()).await;
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
        if wake_in.is_none() && !in_sync && mirror.max_storage().is_some() {
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
    let hc = blobs.lock().await;
    for e in entries {
        if let DirEntry::File { entry, .. } = e {
            if let Some(blob) = entry.blob {
                let end = blob.block_offset.saturating_add(blob.block_length);
                if end > hc.info().length || (blob.block_offset..end).any(|i| !hc.has(i)) {
                    return false;
                }
            }
        }
    }
    true
}
