//! Pushes changes to the kernel as they happen, so nothing waits for the [`TTL`] to run out:
//! every [`EVERY`], a watcher thread compares each site's shown version and the mirror set
//! with what it saw last, and tells the kernel (fuser's notifier) to forget what it caches:
//! for a site with a new version, every entry and the attributes of every inode of that
//! site the kernel holds (a removed file is gone at once, a changed one is looked up again);
//! for a site that left the set or an alias that changed, its entry in the root (and the
//! copies of a site that left are removed, [`super::checkout`]).
//!
//! The watcher never holds the table's lock while notifying (an entry invalidation waits for
//! the kernel's directory lock, which a lookup being answered by the session threads may
//! hold), and it stops when the mount ends. Page contents are not touched here: the
//! keep-cache rule at open ([`super::inodes`]) already never serves changed bytes.
//!
//! [`TTL`]: super::TTL

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use fuser::{INodeNo, Notifier};

use super::inodes::{NodeId, ROOT};
use super::{view, SiteTree};
use crate::model::keys::Key;

/// How often the watcher looks.
pub const EVERY: Duration = Duration::from_millis(100);

/// What the watcher saw of one site.
#[derive(PartialEq)]
struct Seen {
    version: u64,
    alias: Option<String>,
}

/// Runs until the tree is dropped (the session ended).
pub fn run(tree: Weak<SiteTree>, notifier: Notifier) {
    let mut seen: HashMap<Key, Seen> = HashMap::new();
    loop {
        std::thread::sleep(EVERY);
        let Some(tree) = tree.upgrade() else {
            return;
        };
        if !tick(&tree, &notifier, &mut seen) {
            return;
        }
    }
}

/// One look; `false` once the kernel no longer takes notifications (unmounted).
fn tick(tree: &Arc<SiteTree>, notifier: &Notifier, seen: &mut HashMap<Key, Seen>) -> bool {
    let sites = tree.sites.site_list();
    let mut now: HashMap<Key, Seen> = HashMap::new();
    let mut changed: Vec<Key> = Vec::new();
    let mut root_names: Vec<String> = Vec::new();
    for site in &sites {
        let version = {
            let mut st = tree.st();
            st.clocks
                .entry(site.key)
                .or_insert_with(|| view::SiteClock::new(&site.db))
                .observe(&site.db, SystemTime::now())
        };
        let s = Seen {
            version,
            alias: site.alias.clone(),
        };
        match seen.get(&site.key) {
            Some(old) if old.version != s.version => changed.push(site.key),
            _ => {}
        }
        if let Some(old) = seen.get(&site.key) {
            if old.alias != s.alias {
                root_names.extend(old.alias.clone());
            }
        }
        now.insert(site.key, s);
    }
    for (key, old) in seen.iter() {
        if !now.contains_key(key) {
            root_names.push(key.to_hex());
            root_names.extend(old.alias.clone());
            if let Some(copies) = &tree.checkouts {
                copies.remove_site(key);
            }
        }
    }
    *seen = now;
    if changed.is_empty() && root_names.is_empty() {
        return true;
    }

    // What to invalidate, collected under the lock, sent without it.
    let mut entries: Vec<(u64, String)> = root_names.into_iter().map(|n| (ROOT, n)).collect();
    let mut inodes: Vec<u64> = Vec::new();
    {
        let st = tree.st();
        for (ino, node) in st.inodes.iter() {
            let NodeId::Path(key, path) = &node.id else {
                continue;
            };
            if !changed.contains(key) {
                continue;
            }
            inodes.push(ino);
            if path != "/" {
                let name = path.rsplit('/').next().unwrap_or_default();
                let parent = NodeId::Path(*key, view::parent_path(path).to_string());
                entries.push((st.inodes.ino_of(&parent), name.to_string()));
            }
        }
    }
    tracing::debug!(
        "site tree: {} site(s) changed; invalidating {} entries, {} inodes",
        changed.len(),
        entries.len(),
        inodes.len()
    );
    for (parent, name) in entries {
        if let Err(e) = notifier.inval_entry(INodeNo(parent), OsStr::new(&name)) {
            if gone(&e) {
                return false;
            }
        }
    }
    for ino in inodes {
        // Offset -1: attributes only.
        if let Err(e) = notifier.inval_inode(INodeNo(ino), -1, 0) {
            if gone(&e) {
                return false;
            }
        }
    }
    true
}

/// The notification channel is closed: the mount is gone.
fn gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV) | Some(libc::EBADF) | Some(libc::ENOTCONN)
    )
}
