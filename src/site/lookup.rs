//! Looking up a site's files at one version — the one way every site reader does it (the
//! HTTP gateway's site path and the FUSE site tree): an entry by path ([`resolve`], with
//! [`file_following_link`] for readers that serve a symlink's target), and a directory's
//! files and immediate subdirectories ([`list_dir`]). Both go through the drive's tree
//! reader ([`crate::drive::find_entry`]); names, path bounds and symlink targets follow
//! [`super::paths`].

use std::collections::HashSet;

use super::paths::{child_path, link_destination, link_target, valid_name};
use crate::drive::tree::Tree;
use crate::drive::{file_key, find_entry, BlobRef, BlockSource, CoreKind, DriveError, Entry};

/// Most keys one directory listing visits (hostile sites cannot make a listing run forever).
pub const MAX_LISTING: usize = 1 << 20;

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
pub async fn resolve<S: BlockSource>(
    db: &mut S,
    version: u64,
    path: &str,
) -> Result<Option<Found>, DriveError> {
    if path == "/" {
        return Ok(Some(Found::dir()));
    }
    if let Some((seq, entry)) = find_entry(db, version, path).await? {
        return Ok(Some(Found::entry(path, seq, &entry)));
    }
    let mut tree = Tree::new(db, version)?;
    let mut prefix = file_key(path);
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
pub async fn list_dir<S: BlockSource>(
    db: &mut S,
    version: u64,
    dir: &str,
) -> Result<Vec<Listed>, DriveError> {
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
    let mut tree = Tree::new(db, version)?;
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
                Err(e) => tracing::warn!("leaving {prefix}{name} out of the listing: {e}"),
            }
        }
    }
    tracing::warn!("{dir} lists more than {MAX_LISTING} keys; showing the first ones");
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

/// The file at `path`, following one symlink (hyperdrive `linkname`) inside the site, with
/// the path it was found at: what a reader that serves bytes (HTTP) shows for `path`. None:
/// no such file, a link out of the site, or a link to a link.
pub async fn file_following_link<S: BlockSource>(
    db: &mut S,
    version: u64,
    path: &str,
) -> Result<Option<(String, Entry)>, DriveError> {
    let Some((_, entry)) = find_entry(db, version, path).await? else {
        return Ok(None);
    };
    let Some(link) = entry.linkname.clone() else {
        return Ok(Some((path.to_string(), entry)));
    };
    let Some(target) = link_destination(path, &link) else {
        return Ok(None);
    };
    match find_entry(db, version, &target).await? {
        Some((_, e)) if e.linkname.is_none() => Ok(Some((target, e))),
        _ => Ok(None),
    }
}
