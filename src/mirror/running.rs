//! The running sites: one task per site of the mirror set ([`site`](super::site)), what
//! those tasks report (blobs core known, version seen, mirrored), and the snapshots the HTTP
//! gateway, the status page and the control socket read. [`MirrorInner::reconcile`] decides
//! which sites run; this module starts and stops them.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::site::{self, SiteCx, SiteEvent, SiteMessage};
use super::{leftovers, MirrorInner};
use crate::host::Tasks;
use crate::model::keys::Key;
use crate::model::mirror_set::MirrorSet;
use crate::model::status::StatusEvent;
use crate::store::{Core, CoreInfo};

/// A running site.
pub(super) struct SiteRuntime {
    pub(super) alias: Option<String>,
    db: Arc<Core>,
    blobs: Option<Arc<Core>>,
    /// (db length, unix ms when the mirror first saw that length).
    seen: (u64, u64),
    /// The version the site task last found every file of ([`SiteEvent::Mirrored`]).
    mirrored: Option<u64>,
    /// Which start of this site (its events carry it).
    run: u64,
    tasks: Tasks,
    task: JoinHandle<()>,
}

/// One running site, as seen from outside its task.
#[derive(Clone)]
pub struct SiteSnapshot {
    pub key: Key,
    pub alias: Option<String>,
    pub db: Arc<Core>,
    /// Known once the db header has arrived.
    pub blobs: Option<Arc<Core>>,
    /// Unix ms when the mirror first saw the site's current version.
    pub updated_ms: Option<u64>,
    /// The version the site task last found every file of.
    pub mirrored_version: Option<u64>,
}

/// Both cores of a site hold every block any peer has announced, and the db has at least
/// its header. (Whether every file of that version is held is checked by the site task.)
pub(crate) fn cores_in_sync(db: &CoreInfo, blobs: &CoreInfo) -> bool {
    db.synced() && blobs.synced() && db.length > 0
}

/// Whether a site is shown as mirrored (status page, JSON, metrics): in sync with what its
/// peers announced, or, when no peer has announced anything (a mirror restarted while its
/// laptop is closed), still complete at the version its task last found every file of.
/// Before, such a site showed "syncing" until a peer came online.
pub(crate) fn site_mirrored(db: &CoreInfo, blobs: &CoreInfo, mirrored: Option<u64>) -> bool {
    cores_in_sync(db, blobs)
        || (db.length > 0
            && mirrored == Some(db.length)
            && db.complete()
            && blobs.complete()
            && db.remote_length.is_none()
            && blobs.remote_length.is_none())
}

pub(super) fn snapshot(key: &Key, s: &SiteRuntime) -> SiteSnapshot {
    SiteSnapshot {
        key: *key,
        alias: s.alias.clone(),
        db: s.db.clone(),
        blobs: s.blobs.clone(),
        updated_ms: Some(s.seen.1),
        mirrored_version: s.mirrored,
    }
}

/// The desired and the running sites.
pub(super) struct Sites {
    pub(super) set: MirrorSet,
    pub(super) running: BTreeMap<Key, SiteRuntime>,
    pub(super) next_run: u64,
}

impl MirrorInner {
    /// Applies what site tasks report.
    pub(super) async fn site_events(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<SiteMessage>) {
        while let Some(SiteMessage { key, run, event }) = rx.recv().await {
            let current = {
                let mut sites = self.sites.lock().unwrap();
                match sites.running.get_mut(&key) {
                    Some(s) if s.run == run => {
                        match &event {
                            SiteEvent::Blobs(b) => s.blobs = Some(b.clone()),
                            SiteEvent::Version(length) if s.seen.0 != *length => {
                                s.seen = (*length, crate::util::clock::now_ms());
                            }
                            SiteEvent::Mirrored(version) => s.mirrored = Some(*version),
                            _ => {}
                        }
                        true
                    }
                    _ => false,
                }
            };
            if !current {
                continue;
            }
            match event {
                SiteEvent::Blobs(b) => {
                    self.served.write().unwrap().insert(b.key());
                }
                SiteEvent::Status(e) => self.status.record(e).await,
                SiteEvent::Version(_) | SiteEvent::Mirrored(_) => {}
            }
        }
    }

    pub(super) async fn start_site(self: &Arc<Self>, key: Key, alias: Option<String>) {
        let db = match self.store.open_or_create_replica(&key).await {
            Ok(db) => db,
            Err(e) => {
                self.status
                    .record(StatusEvent::Error {
                        key,
                        reason: format!("cannot store the site: {e}"),
                    })
                    .await;
                return;
            }
        };
        tracing::info!(site = %key.short(), "mirroring {}", alias.as_deref().unwrap_or(""));
        self.served.write().unwrap().insert(key);
        self.providers.announce(key.discovery_key());
        let mut sites = self.sites.lock().unwrap();
        sites.next_run += 1;
        let run = sites.next_run;
        let tasks = self.tasks.child();
        // Not awaited here: joining the site's topic returns once the HyperDHT announce is
        // flushed (measured: 1.7 s per site with the DHT unreachable), and a mirror holding
        // 1,000 sites served the last one over HTTP 28 minutes after it started.
        let hyper = self.hyper.clone();
        tasks.spawn(async move { hyper.add_site(key).await });
        let task = tasks.spawn(site::run_site(SiteCx {
            key,
            run,
            db: db.clone(),
            store: self.store.clone(),
            node: self.node.clone(),
            hyper: self.hyper.clone(),
            cap: self.cap.clone(),
            events: self.site_events.clone(),
            recorded_mirrored: self.recorded_mirrored.lock().unwrap().remove(&key),
        }));
        sites.running.insert(
            key,
            SiteRuntime {
                alias,
                seen: (db.info().length, crate::util::clock::now_ms()),
                mirrored: None,
                db,
                blobs: None,
                run,
                tasks,
                task,
            },
        );
    }

    /// Stops a site that an applied `Unmirror` removed from the set and deletes its data
    /// (journalled first, so a crash in between finishes the deletion at the next start).
    pub(super) async fn stop_site(&self, key: &Key) {
        let Some(site) = self.sites.lock().unwrap().running.remove(key) else {
            return;
        };
        let SiteRuntime {
            db,
            blobs,
            tasks,
            task,
            ..
        } = site;
        // First, so a join of the hypercore network still under way ends before the leave.
        tasks.cancel();
        self.providers.withdraw(&key.discovery_key());
        self.hyper.remove_site(*key).await;
        let _ = task.await;
        let mut cores = vec![db.key()];
        // The task may have been stopped after it created the blobs core but before it
        // reported it (even in the middle of creating it, leaving files that cannot be
        // opened): the db header names it, so it is deleted too.
        let blobs = match blobs {
            Some(b) => Some(b.key()),
            None => blobs_key_of(&db).await,
        };
        cores.extend(blobs);
        for core in &cores {
            self.served.write().unwrap().remove(core);
            self.node.unwant(core);
        }
        // Peers being served the site stop being served it.
        self.node.policy_changed();
        drop(db);
        leftovers::delete_unmirrored(self, key, &cores);
        tracing::info!(site = %key.short(), "removed");
        self.status.record(StatusEvent::Removed { key: *key }).await;
    }

    /// A snapshot of the running sites.
    pub fn sites(&self) -> Vec<SiteSnapshot> {
        let sites = self.sites.lock().unwrap();
        sites.running.iter().map(|(k, s)| snapshot(k, s)).collect()
    }

    /// The running site `key`.
    pub fn site_snapshot(&self, key: &Key) -> Option<SiteSnapshot> {
        let sites = self.sites.lock().unwrap();
        sites.running.get(key).map(|s| snapshot(key, s))
    }

    /// The site an alias names.
    pub fn site_by_alias(&self, alias: &str) -> Option<Key> {
        let sites = self.sites.lock().unwrap();
        sites
            .running
            .iter()
            .find(|(_, s)| s.alias.as_deref() == Some(alias))
            .map(|(k, _)| *k)
    }

    /// The running site named by `key`.
    pub fn site(&self, key: &Key) -> Option<(Arc<Core>, Option<Arc<Core>>)> {
        self.site_snapshot(key).map(|s| (s.db, s.blobs))
    }
}

/// The blobs key of a site, if known and readable.
pub(super) async fn blobs_key_of(db: &Arc<Core>) -> Option<Key> {
    crate::site::blobs_key::blobs_key(db).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(length: u64, remote: Option<u64>) -> CoreInfo {
        CoreInfo {
            length,
            held_blocks: length,
            remote_length: remote,
            ..CoreInfo::default()
        }
    }

    #[test]
    fn a_site_is_mirrored_when_in_sync_or_complete_at_its_mirrored_version_with_no_peer() {
        let (db, blobs) = (held(5, None), held(9, None));
        // Restarted, no peer online: the task's word decides.
        assert!(site_mirrored(&db, &blobs, Some(5)));
        assert!(!site_mirrored(&db, &blobs, None));
        assert!(!site_mirrored(&db, &blobs, Some(4)));
        // A block missing.
        let gap = CoreInfo {
            held_blocks: 8,
            ..blobs
        };
        assert!(!site_mirrored(&db, &gap, Some(5)));
        // A peer announced a newer version: not mirrored, whatever the task said before.
        assert!(!site_mirrored(&held(5, Some(6)), &blobs, Some(5)));
        // In sync with what peers announced.
        assert!(site_mirrored(&held(5, Some(5)), &held(9, Some(9)), None));
        // Nothing yet.
        assert!(!site_mirrored(&held(0, None), &held(0, None), Some(0)));
    }
}
