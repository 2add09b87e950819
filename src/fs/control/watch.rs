//! Lets the kernel cache the attributes of site entries (so `ls -l` of a thousand sites is
//! answered mostly from the kernel's cache) without ever showing stale ones for long: a
//! watcher thread waits on the backend's [`Changes`] and, after each change of the view's
//! inputs, compares every site inode's attributes (size = bytes held, times = last sync)
//! with what it saw last and tells the kernel (fuser's notifier) to forget those that
//! changed or that it had not seen yet. Nothing waits for the [`ATTR_TTL`] to run out.
//! Likewise for names: when a site leaves the view (its removal was acknowledged) or its
//! alias or listed name changes, the kernel forgets the entries of the names it no longer
//! answers to (hex, z-base32, alias, each with or without `.url`), so a `stat` by an old
//! name says `ENOENT` at once instead of up to a second later.
//!
//! Ordering: a callback takes the table lock before its view and answers while holding
//! it, and the watcher reads the view and the table under the same lock after the change
//! is counted; so an answer built from an older view is sent before the invalidation that
//! supersedes it (the kernel drops attributes older than an invalidation it has seen).
//!
//! The watcher never notifies while holding the table lock (a notification may wait for
//! the kernel's inode locks, which a callback being answered may hold), and it stops once
//! the filesystem is dropped (unmounted) or the kernel refuses notifications.
//!
//! [`ATTR_TTL`]: super::callbacks::ATTR_TTL

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use fuser::{INodeNo, Notifier};

use super::table::{display_names, Node, Table, ROOT};
use super::ControlBackend;
use crate::laptop::backend::Changes;
use crate::model::keys::Key;
use crate::model::view::StatusView;

/// How long the watcher waits for a change before looking whether the mount is gone.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// What a site entry shows that the kernel may cache.
type Shown = (u64, SystemTime, SystemTime);

/// Runs until the filesystem is dropped or the kernel stops taking notifications.
pub(super) fn run(
    table: Weak<Mutex<Table>>,
    backend: Weak<dyn ControlBackend>,
    changes: Arc<Changes>,
    notifier: Notifier,
) {
    let mut count = changes.count();
    let mut shown: HashMap<u64, Shown> = HashMap::new();
    let mut named: HashMap<Key, BTreeSet<String>> = HashMap::new();
    loop {
        let now = changes.wait_past(count, IDLE_WAIT);
        let (Some(table), Some(backend)) = (table.upgrade(), backend.upgrade()) else {
            return;
        };
        if now == count {
            continue;
        }
        count = now;
        let (stale, old_names) = {
            let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
            let view = backend.view();
            (
                stale_sites(&mut t, &view, &mut shown),
                old_names(&view, &mut named),
            )
        };
        let forgotten = old_names
            .iter()
            .map(|name| notifier.inval_entry(INodeNo(ROOT), OsStr::new(name)))
            .chain(
                stale
                    .into_iter()
                    .map(|ino| notifier.inval_inode(INodeNo(ino), -1, 0)),
            );
        for result in forgotten {
            match result {
                Ok(()) => {}
                // The kernel holds no such inode or entry (never looked up, or forgotten).
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => {
                    tracing::debug!("control folder watcher stops: {e}");
                    return;
                }
            }
        }
    }
}

/// The names each site of `view` answers to.
fn site_names(view: &StatusView) -> HashMap<Key, BTreeSet<String>> {
    view.sites
        .iter()
        .zip(display_names(view))
        .map(|(site, listed)| {
            let mut names: BTreeSet<String> = [site.key.to_hex(), site.key.to_z32(), listed]
                .into_iter()
                .chain(site.alias.clone())
                .collect();
            let with_url: Vec<String> = names.iter().map(|n| format!("{n}.url")).collect();
            names.extend(with_url);
            (site.key, names)
        })
        .collect()
}

/// The names sites answered to in `named` and no longer do in `view` (a site gone, an
/// alias changed); `named` becomes what they answer to now.
fn old_names(view: &StatusView, named: &mut HashMap<Key, BTreeSet<String>>) -> Vec<String> {
    let now = site_names(view);
    let mut old = Vec::new();
    for (key, names) in named.iter() {
        let kept = now.get(key);
        old.extend(
            names
                .iter()
                .filter(|n| !kept.is_some_and(|k| k.contains(*n)))
                .cloned(),
        );
    }
    *named = now;
    old
}

/// The site inodes whose attributes differ from `shown` (or are not in it yet); `shown`
/// becomes what they are now.
fn stale_sites(t: &mut Table, view: &StatusView, shown: &mut HashMap<u64, Shown>) -> Vec<u64> {
    let sites: Vec<(u64, Key, bool)> = t
        .nodes
        .iter()
        .filter_map(|(&ino, node)| match node {
            Node::Site(k) => Some((ino, *k, false)),
            Node::SiteDir(k) => Some((ino, *k, true)),
            Node::Mem(_) => None,
        })
        .collect();
    let mut stale = Vec::new();
    let mut now = HashMap::with_capacity(sites.len());
    for (ino, key, dir) in sites {
        let attr = t.site_attr(ino, view.site(&key), key, dir);
        let s = (attr.size, attr.mtime, attr.ctime);
        if shown.get(&ino) != Some(&s) {
            stale.push(ino);
        }
        now.insert(ino, s);
    }
    *shown = now;
    stale
}
