//! What happens to site data on disk that the mirror set does not name. The rule (issue 14,
//! item 1): data is deleted only because an applied `Unmirror` removed its site, and that
//! deletion is journalled first (`DATA/deletions.json`) so a crash in the middle finishes it
//! at the next start. Anything else nobody asked for is moved aside to `DATA/trash/` (emptied
//! after [`TRASH_DAYS`] or by `empty_trash`), never deleted; and when the replay at start met
//! log entries it could not read, nothing is moved at all (the owner is told instead).
//!
//! "Asked for" is generous on purpose: a site named by any held entry of any known laptop's
//! log (acknowledged or not) is kept, so a truncated status log or a replica whose tail is
//! missing never makes wanted data look unexplained.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use super::{blobs_key_of, MirrorInner};
use crate::host::state::StateFile;
use crate::host::DataDir;
use crate::model::keys::Key;
use crate::model::mirror_set::MirrorSet;
use crate::util::clock::now_ms;

/// Trash older than this is emptied at start.
pub const TRASH_DAYS: u64 = 7;

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
    if let Err(e) = empty_trash(&inner.data, Some(Duration::from_secs(TRASH_DAYS * 86_400))) {
        tracing::warn!("cannot empty old trash: {e:#}");
    }
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
                "moved the data of {key} to {} (no command asks for it; it is deleted after \
                 {TRASH_DAYS} days)",
                to.display()
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
