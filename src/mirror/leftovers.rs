//! What happens to site data on disk that the mirror set does not name. The rule (issue 14,
//! item 1): data is deleted only because an applied `Unmirror` removed its site, and that
//! deletion is journalled first (`DATA/deletions.json`) so a crash in the middle finishes it
//! at the next start. Anything else nobody asked for is moved aside to `DATA/trash/`, never
//! deleted; and when the replay at start met log entries it could not read, nothing is moved
//! at all (the owner is told instead).
//!
//! The trash is the owner's to see and empty: [`trash_contents`] (what, since when, how
//! large) is on the status page, in its JSON and in `dat-mirror trash`; `dat-mirror trash
//! empty` empties it through the control socket ([`empty_trash`]); and what has been there
//! longer than `[serve] trash_days` (default [`DEFAULT_TRASH_DAYS`]; 0: never) is deleted at
//! start and then every [`TRASH_SWEEP`] while the mirror runs.
//!
//! "Asked for" is generous on purpose: a site named by any held entry of any known laptop's
//! log (acknowledged or not) is kept, so a truncated status log or a replica whose tail is
//! missing never makes wanted data look unexplained.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{blobs_key_of, MirrorInner};
use crate::host::state::StateFile;
use crate::host::DataDir;
use crate::model::keys::Key;
use crate::model::mirror_set::MirrorSet;
use crate::util::clock::now_ms;

/// Default `[serve] trash_days`: trash older than this is deleted.
pub const DEFAULT_TRASH_DAYS: u64 = 7;
/// How often a running mirror looks for trash older than `trash_days`.
pub const TRASH_SWEEP: Duration = Duration::from_secs(3600);
/// Most files counted when sizing one trash entry (a core folder holds a handful).
const MAX_FILES_SIZED: usize = 10_000;

fn journal(data: &DataDir) -> StateFile {
    StateFile::new(
        data.deletions(),
        "the data of sites being removed is moved to trash/ at the next start instead",
        false,
    )
}

fn load_journal(data: &DataDir) -> BTreeSet<Key> {
    journal(data).load().unwrap_or_else(|e| {
        tracing::error!("{e}");
        BTreeSet::new()
    })
}

/// Deletes the cores of `site`, which an applied `Unmirror` removed from the set.
pub(super) fn delete_unmirrored(inner: &MirrorInner, site: &Key, cores: &[Key]) {
    let file = journal(&inner.data);
    let mut pending = load_journal(&inner.data);
    pending.extend(cores.iter().copied());
    if let Err(e) = file.save(&pending) {
        tracing::error!(site = %site.short(), "not deleting the site's data now: {e}");
        return;
    }
    for core in cores {
        match inner.store.delete(core) {
            Ok(()) => {
                pending.remove(core);
            }
            Err(e) => tracing::error!(site = %site.short(), "cannot delete {core}: {e}"),
        }
    }
    if let Err(e) = file.save(&pending) {
        tracing::warn!("{e}");
    }
}

/// At start, after the replay: finishes journalled deletions, then moves unexplained data
/// to the trash unless `damage` (unreadable entries) says the replay cannot be trusted.
pub(super) async fn settle(inner: &MirrorInner, asked: &MirrorSet, damage: &[String]) {
    let mut keep: HashSet<Key> = inner.laptops.known().into_iter().collect();
    keep.insert(inner.identity.key());
    let sites: Vec<Key> = asked.keys().copied().collect();
    for site in sites {
        keep.insert(site);
        if let Ok(Some(db)) = inner.store.open_existing(&site).await {
            keep.extend(blobs_key_of(&db).await);
        }
    }
    let pending = load_journal(&inner.data);
    if !pending.is_empty() {
        for key in pending.iter().filter(|k| !keep.contains(k)) {
            tracing::info!("finishing the removal of {key} (unmirrored before the last stop)");
            if let Err(e) = inner.store.delete(key) {
                tracing::error!("cannot delete {key}: {e}");
            }
        }
        if let Err(e) = journal(&inner.data).save(&BTreeSet::<Key>::new()) {
            tracing::warn!("{e}");
        }
    }
    if !damage.is_empty() {
        tracing::error!(
            "{} log entries cannot be read; no site data is moved or deleted until they can \
             (see the messages above)",
            damage.len()
        );
        return;
    }
    empty_old_trash(&inner.data, inner.trash_days);
    for key in inner.store.keys_on_disk() {
        if keep.contains(&key) {
            continue;
        }
        match inner.store.open_existing(&key).await {
            Ok(Some(core)) if core.info().writable => continue,
            _ => {}
        }
        match move_to_trash(inner, &key) {
            Ok(to) => tracing::warn!(
                "moved the data of {key} to {} (no command asks for it; {}; \
                 `dat-mirror trash empty` deletes it now)",
                to.display(),
                keep_note(inner.trash_days)
            ),
            Err(e) => tracing::error!("cannot move {key} to the trash: {e}"),
        }
    }
}

fn move_to_trash(inner: &MirrorInner, key: &Key) -> std::io::Result<std::path::PathBuf> {
    let trash = inner.data.trash();
    std::fs::create_dir_all(&trash)?;
    // The core moves into an engine store of its own, `trash/<hex key>.<ms>/`.
    let to = trash.join(format!("{}.{}", key.to_hex(), now_ms()));
    inner
        .store
        .move_out(key, &to)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    crate::util::atomic::sync_dir(&trash)?;
    Ok(to)
}

fn keep_note(days: u64) -> String {
    match days {
        0 => "it is kept until emptied by hand".into(),
        d => format!("it is deleted after {d} days"),
    }
}

/// Deletes trash older than `days` (0: nothing), saying so in the log.
fn empty_old_trash(data: &DataDir, days: u64) {
    if days == 0 {
        return;
    }
    let age = Duration::from_secs(days.saturating_mul(86_400));
    match empty_trash(data, Some(age)) {
        Ok(0) => {}
        Ok(n) => tracing::info!("deleted {n} trash entries older than {days} days"),
        Err(e) => tracing::warn!("cannot empty old trash: {e:#}"),
    }
}

/// While the mirror runs: deletes trash older than `trash_days` every [`TRASH_SWEEP`].
pub(super) fn spawn_sweeper(inner: &Arc<MirrorInner>) {
    if inner.trash_days == 0 {
        return;
    }
    let weak = Arc::downgrade(inner);
    inner.tasks.spawn(async move {
        loop {
            tokio::time::sleep(TRASH_SWEEP).await;
            let Some(inner) = weak.upgrade() else { return };
            let (data, days) = (inner.data.clone(), inner.trash_days);
            drop(inner);
            let _ = tokio::task::spawn_blocking(move || empty_old_trash(&data, days)).await;
        }
    });
}

/// One entry of `DATA/trash/`: a core's folder moved aside at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrashItem {
    /// The folder's name in `DATA/trash/` (`<hex key>.<unix ms>`).
    pub name: String,
    /// The core's key (hex), when the name says it.
    pub key: Option<String>,
    /// When it was moved there (unix ms), when the name says it.
    pub since_ms: Option<u64>,
    /// Bytes of its files.
    pub bytes: u64,
}

/// What is in the trash, oldest first (empty if there is no trash folder).
pub fn trash_contents(data: &DataDir) -> std::io::Result<Vec<TrashItem>> {
    let rd = match std::fs::read_dir(data.trash()) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut items: Vec<TrashItem> = rd
        .filter_map(|e| e.ok())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (key, since_ms) = match name.rsplit_once('.') {
                Some((k, t)) => (Some(k.to_string()), t.parse::<u64>().ok()),
                None => (None, None),
            };
            TrashItem {
                bytes: size_of(&e.path()),
                name,
                key,
                since_ms,
            }
        })
        .collect();
    items.sort_by(|a, b| (a.since_ms, &a.name).cmp(&(b.since_ms, &b.name)));
    Ok(items)
}

/// Bytes of the files under `path` (symlinks not followed; at most [`MAX_FILES_SIZED`]).
fn size_of(path: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        seen += 1;
        if seen > MAX_FILES_SIZED {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        } else {
            total = total.saturating_add(meta.len());
        }
    }
    total
}

/// Deletes what is in the trash (only what was put there more than `older_than` ago, if
/// given). Returns how many cores were deleted.
pub fn empty_trash(data: &DataDir, older_than: Option<Duration>) -> anyhow::Result<usize> {
    let rd = match std::fs::read_dir(data.trash()) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let now = now_ms();
    let mut n = 0;
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let at = name
            .rsplit_once('.')
            .and_then(|(_, t)| t.parse::<u64>().ok());
        let old_enough = match (older_than, at) {
            (None, _) => true,
            (Some(age), Some(at)) => now.saturating_sub(at) >= age.as_millis() as u64,
            (Some(_), None) => false,
        };
        if old_enough {
            std::fs::remove_dir_all(e.path())?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(data: &DataDir, name: &str, bytes: usize) {
        let dir = data.trash().join(name);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("data"), vec![1u8; bytes]).unwrap();
        std::fs::write(dir.join("sub/tree"), vec![2u8; 10]).unwrap();
    }

    #[test]
    fn the_trash_says_what_since_when_and_how_large_and_old_entries_go() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        assert_eq!(trash_contents(&data).unwrap(), vec![]);
        let now = now_ms();
        let old = now - 8 * 86_400_000;
        put(&data, &format!("{}.{old}", "ab".repeat(32)), 1000);
        put(&data, &format!("{}.{now}", "cd".repeat(32)), 5);
        let items = trash_contents(&data).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].key.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!((items[0].since_ms, items[0].bytes), (Some(old), 1010));
        assert_eq!((items[1].since_ms, items[1].bytes), (Some(now), 15));

        empty_old_trash(&data, 0);
        assert_eq!(trash_contents(&data).unwrap().len(), 2, "0 days: never");
        empty_old_trash(&data, 7);
        let left = trash_contents(&data).unwrap();
        assert_eq!(left.len(), 1, "only the 8-day-old entry goes");
        assert_eq!(left[0].since_ms, Some(now));
        assert_eq!(empty_trash(&data, None).unwrap(), 1);
        assert_eq!(trash_contents(&data).unwrap(), vec![]);
    }
}
