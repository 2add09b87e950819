//! The one version rule of every site reader (HTTP gateway and site tree alike).
//!
//! A reader shows a site at the newest version whose db blocks are all held: the whole db
//! core once every block of it is held (so every lookup at that version finds its blocks);
//! while a newer version is still arriving, the version it showed before (as long as that is
//! still fully held), else the longest fully held prefix (any prefix of a Hyperbee is a
//! complete earlier version). File content is never part of the rule: a file of the shown
//! version whose blobs blocks are not held yet answers "not synced yet" (HTTP 503 with
//! `Retry-After`, FUSE `EIO`), and the rest of the site is served meanwhile. A reader that
//! keeps no memory of what it showed (`prev = None`) gets the longest fully held prefix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::model::keys::Key;
use crate::store::{Core, CoreInfo};

/// What a reader showed of each site last, for [`pick_version`]'s `prev` (the site tree keeps
/// its own, with times, in its `SiteClock`). A site mirrored anew (another db core) starts
/// over.
#[derive(Default)]
pub struct Shown {
    sites: Mutex<HashMap<Key, (Weak<Core>, u64)>>,
}

/// Sites remembered at most; past that the memory starts over (a reader then shows the
/// longest held prefix once, which for a fully held site is the same version).
const MAX_SHOWN: usize = 4096;

impl Shown {
    /// The version of site `key` (db core `db`) to show now; remembers it.
    pub fn pick(&self, key: &Key, db: &Arc<Core>) -> u64 {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let prev = sites
            .get(key)
            .filter(|(d, _)| Weak::ptr_eq(d, &Arc::downgrade(db)))
            .map(|(_, v)| *v);
        let v = pick_version(&db.info(), prev);
        if sites.len() >= MAX_SHOWN && !sites.contains_key(key) {
            sites.clear();
        }
        sites.insert(*key, (Arc::downgrade(db), v));
        v
    }
}

/// The version of a site to show, given what its db core holds and what was shown
/// before: the whole core once every block of it is held (so every lookup at that version
/// finds its blocks), else the previous version while it is still fully held, else the
/// longest fully held prefix (any prefix of a Hyperbee is a complete earlier version).
pub fn pick_version(info: &CoreInfo, prev: Option<u64>) -> u64 {
    let held = info.contiguous_length.min(info.length);
    if held == info.length {
        return info.length;
    }
    match prev {
        Some(p) if p <= held => p,
        _ => held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let info = |length, contiguous_length| CoreInfo {
            length,
            contiguous_length,
            ..CoreInfo::default()
        };
        assert_eq!(pick_version(&info(0, 0), None), 0);
        assert_eq!(pick_version(&info(5, 5), Some(3)), 5);
        // a new version whose blocks are still arriving: keep showing the old one
        assert_eq!(pick_version(&info(9, 6), Some(5)), 5);
        // nothing shown yet: the longest held prefix
        assert_eq!(pick_version(&info(9, 6), None), 6);
        // a re-created core shorter than what was shown
        assert_eq!(pick_version(&info(9, 2), Some(5)), 2);
        // hostile info never shows more than the length
        assert_eq!(pick_version(&info(3, 7), None), 3);
    }
}
