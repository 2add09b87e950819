//! One mirrored site: replicate its db core, learn the blobs core from the db header,
//! replicate that too, and report progress to the status log (at most about once a second)
//! until every file of the latest version is held and verified, which is reported as
//! `Mirrored { version }`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::drive::{self, DirEntry};
use crate::sync::keys::Key;
use crate::sync::status::StatusEvent;
use crate::sync::store::Core;

use super::MirrorInner;
use crate::sync::store::CoreReader;

/// Smallest interval between two `Progress` entries of one site.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until aborted (when the site leaves the mirror set).
pub async fn run_site(mirror: Arc<MirrorInner>, key: Key, db: Arc<Core>) {
    mirror.node.want(db.clone());
    let mut db_rx = db.subscribe();

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
        if db_rx.changed().await.is_err() {
            return;
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

    let mut last_progress: Option<(Instant, StatusEvent)> = None;
    let mut mirrored_version: Option<u64> = None;
    loop {
        let d = db.info();
        let b = blobs.info();
        let peers = mirror.node.peers_for(&key);
        let version = d.length;
        mirror.note_version(&key, version);
        let in_sync = super::cores_in_sync(&d, &b);
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
            } else if changed {
                let at = last_progress
                    .as_ref()
                    .map(|(at, _)| *at)
                    .unwrap_or_else(Instant::now);
                wake_in = Some(PROGRESS_INTERVAL.saturating_sub(at.elapsed()));
            }
        }
        tokio::select! {
            r = db_rx.changed() => if r.is_err() { return },
            r = blobs_rx.changed() => if r.is_err() { return },
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
