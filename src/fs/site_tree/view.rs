//! What the tree shows of one site, read straight from its cores: the version it shows (the
//! shared rule, [`pick_version`], remembered per site with when each version was first seen:
//! [`SiteClock`]), entries looked up ([`resolve`]) and directories listed ([`list_dir`]) at
//! that version through the drive's tree reader. File bytes, names, path bounds and symlink
//! targets follow the rules every site reader shares ([`crate::site`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use crate::drive::tree::Tree;
use crate::drive::{file_key, BlobRef, CoreKind, DriveError, Entry};
pub use crate::site::paths::{child_path, link_target, parent_path, valid_name, MAX_NAME};
use crate::site::pick_version;
use crate::store::{Core, CoreReader};

/// Most keys one directory listing visits (hostile sites cannot make `ls` run forever).
pub const MAX_LISTING: usize = 1 << 20;
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

/// What a site path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An implicit directory (some key lies below it) or the site root.
    Dir,
    /// A file; `blob` is `None` for an entry without content (shown as an empty file).
    File {
        blob: Option<BlobRef>,
        executable: bool,
    },
    /// A symlink; `target` is `None` when the entry's `linkname` cannot be shown.
    Symlink { target: Option<String> },
}

/// A resolved site path: its kind, and the db block that holds its entry (for its mtime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: Kind,
    pub seq: Option<u64>,
}

impl Found {
    pub fn dir() -> Found {
        Found {
            kind: Kind::Dir,
            seq: None,
        }
    }

    fn entry(path: &str, seq: u64, entry: &Entry) -> Found {
        let kind = match &entry.linkname {
            Some(l) => Kind::Symlink {
                target: link_target(path, l),
            },
            None => Kind::File {
                blob: entry.blob,
                executable: entry.executable,
            },
        };
        Found {
            kind,
            seq: Some(seq),
        }
    }
}

/// Resolves the site path `path` (absolute, made of valid names) at `version` of the site
/// whose db core is `db`. An entry at the path wins over a directory of the same name (as
/// hyperdrive's `entry()` does); `None` if neither exists.
pub async fn resolve(
    db: &Arc<Core>,
    version: u64,
    path: &str,
) -> Result<Option<Found>, DriveError> {
    if path == "/" {
        return Ok(Some(Found::dir()));
    }
    let mut reader = CoreReader::new(db.clone());
    let mut tree = Tree::new(&mut reader, version)?;
    let key = file_key(path);
    if let Some(seq) = tree.get(&key).await? {
        let entry = tree.entry(seq).await?;
        return Ok(Some(Found::entry(path, seq, &entry)));
    }
    let mut prefix = key;
    prefix.push(b'/');
    Ok(match tree.seek(&prefix).await? {
        Some((k, _)) if k.starts_with(&prefix) => Some(Found::dir()),
        _ => None,
    })
}

/// One item of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub found: Found,
}

/// The directory `dir` at `version`: its files and immediate subdirectories, in key order.
/// Names that are not valid single path components (empty, `.`, `..`, too long, not UTF-8,
/// or making the path longer than [`MAX_PATH`](crate::site::paths::MAX_PATH)) are left out, as are entries whose value
/// does not decode (with a warning); a name that is both a file and a directory is shown as
/// the file (as [`resolve`] does).
pub async fn list_dir(db: &Arc<Core>, version: u64, dir: &str) -> Result<Vec<Listed>, DriveError> {
    let prefix = if dir == "/" {
        "/".to_string()
    } else {
        format!("{dir}/")
    };
    let lo = file_key(&prefix);
    let mut hi = lo.clone();
    if let Some(last) = hi.last_mut() {
        *last += 1; // '/' + 1 = '0': just past every key below the directory
    }
    let mut reader = CoreReader::new(db.clone());
    let mut tree = Tree::new(&mut reader, version)?;
    let mut cursor = lo.clone();
    cursor.push(0); // strictly after the directory's own key
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for _ in 0..MAX_LISTING {
        let Some((key, seq)) = tree.seek(&cursor).await? else {
            return Ok(out);
        };
        if key < cursor {
            return Err(DriveError::Corrupt {
                core: CoreKind::Db,
                index: seq,
                reason: "keys out of order".into(),
            });
        }
        if key >= hi {
            return Ok(out);
        }
        let rest = &key[lo.len()..];
        if let Some(i) = rest.iter().position(|&b| b == b'/') {
            // Everything below `<dir>/<name>/` is one subdirectory: seek past all of it.
            let name = &rest[..i];
            cursor = lo.clone();
            cursor.extend_from_slice(name);
            cursor.push(b'0');
            if let Some(name) = shown_name(dir, name) {
                if names.insert(name.clone()) {
                    out.push(Listed {
                        name,
                        found: Found::dir(),
                    });
                }
            }
        } else {
            cursor = key.clone();
            cursor.push(0);
            let Some(name) = shown_name(dir, rest) else {
                continue;
            };
            if names.contains(&name) {
                continue;
            }
            match tree.entry(seq).await {
                Ok(entry) => {
                    let path = format!("{prefix}{name}");
                    names.insert(name.clone());
                    out.push(Listed {
                        found: Found::entry(&path, seq, &entry),
                        name,
                    });
                }
                Err(e) => tracing::warn!("site tree: leaving {prefix}{name} out of ls: {e}"),
            }
        }
    }
    tracing::warn!("site tree: {dir} lists more than {MAX_LISTING} keys; showing the first ones");
    Ok(out)
}

/// `name` as a directory entry of `dir`, if it can be one.
fn shown_name(dir: &str, name: &[u8]) -> Option<String> {
    if !valid_name(name) {
        return None;
    }
    let name = std::str::from_utf8(name).ok()?;
    child_path(dir, name)?;
    Some(name.to_string())
}
