//! What the tree shows of one site: the version it shows (the shared rule, [`pick_version`],
//! remembered per site with when each version was first seen: [`SiteClock`]). Entries are
//! looked up and directories listed by the lookup every site reader shares
//! ([`crate::site::lookup`], re-exported here); file bytes, names, path bounds and symlink
//! targets follow [`crate::site`] too.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

pub use crate::site::lookup::{list_dir, resolve, Found, Kind};
pub use crate::site::paths::{child_path, parent_path, valid_name, MAX_NAME};
use crate::site::pick_version;
use crate::store::Core;
/// Versions whose first-seen time is remembered per site.
const MAX_SEEN: usize = 4096;

/// Per-site memory of versions: which one is shown and when each was first seen.
///
/// Times: a file's mtime is the time the tree first saw the version that wrote its entry
/// (the entry's block index + 1; unchanged files keep their entry block across versions),
/// so it is stable while the file is unchanged and moves when it changes. Entries older
/// than the first version the tree saw get that first sighting's time. Directories show the
/// time their site's current version was first seen.
pub struct SiteClock {
    db: Weak<Core>,
    version: Option<u64>,
    seen: BTreeMap<u64, SystemTime>,
}

impl SiteClock {
    pub fn new(db: &Arc<Core>) -> SiteClock {
        SiteClock {
            db: Arc::downgrade(db),
            version: None,
            seen: BTreeMap::new(),
        }
    }

    /// The version to show now (see [`pick_version`]); remembers when it was first seen.
    /// A different core for the same key (the site was removed and mirrored again) starts
    /// over.
    pub fn observe(&mut self, db: &Arc<Core>, now: SystemTime) -> u64 {
        if !Weak::ptr_eq(&self.db, &Arc::downgrade(db)) {
            *self = SiteClock::new(db);
        }
        let v = pick_version(&db.info(), self.version);
        self.version = Some(v);
        self.seen.entry(v).or_insert(now);
        while self.seen.len() > MAX_SEEN {
            self.seen.pop_first();
        }
        v
    }

    /// When the version written by db block `seq` was first seen.
    pub fn time_of_seq(&self, seq: u64) -> SystemTime {
        self.seen
            .range(seq.saturating_add(1)..)
            .next()
            .or_else(|| self.seen.last_key_value())
            .map(|(_, t)| *t)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// When the current version was first seen.
    pub fn version_time(&self) -> SystemTime {
        self.version
            .and_then(|v| self.seen.get(&v).copied())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }
}
