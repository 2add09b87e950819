//! What the tree shows of one site, read straight from its cores: the version it shows
//! ([`pick_version`]), entries looked up ([`resolve`]) and directories listed ([`list_dir`])
//! at that version through the drive's tree reader, file bytes read block by block from the
//! blobs core ([`read_file_range`]), plus the rules that keep hostile site content harmless:
//! only valid single path components become names ([`valid_name`]), paths are bounded
//! ([`MAX_PATH`]), and symlink targets never leave the site ([`link_target`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use crate::drive::tree::Tree;
use crate::drive::{
    file_key, normalize_path, read_range, BlobRef, CoreKind, DriveError, Entry, BLOCK_SIZE,
};
use crate::store::{Core, CoreInfo, CoreReader};

/// Longest name shown (Linux's `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// Longest site path shown (bytes, like `PATH_MAX`); deeper entries are left out, which
/// bounds the memory a hostile, very deep site can make the tree use.
pub const MAX_PATH: usize = 4096;
/// Most keys one directory listing visits (hostile sites cannot make `ls` run forever).
pub const MAX_LISTING: usize = 1 << 20;
/// Versions whose first-seen time is remembered per site.
const MAX_SEEN: usize = 4096;

/// Is `name` (bytes from a site or from the kernel) a valid single path component?
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// `dir` + `/` + `name` (site paths are absolute, `"/"` is the site root), or `None` when
/// the result would be longer than [`MAX_PATH`].
pub fn child_path(dir: &str, name: &str) -> Option<String> {
    let path = if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    };
    (path.len() <= MAX_PATH).then_some(path)
}

/// The parent of a site path (`"/"` for top-level entries and for the root itself).
pub fn parent_path(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The version of a site the tree shows, given what its db core holds and what was shown
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
/// or making the path longer than [`MAX_PATH`]) are left out, as are entries whose value
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

/// Reads bytes `[offset, offset + size)` of a file (clamped to it) from the blobs core,
/// only the blocks that range covers. A block not held yet is [`DriveError::Missing`].
pub async fn read_file_range(
    blobs: &Arc<Core>,
    blob: &BlobRef,
    offset: u64,
    size: u32,
) -> Result<Vec<u8>, DriveError> {
    let mut reader = CoreReader::new(blobs.clone());
    read_range(
        &mut reader,
        blob,
        offset..offset.saturating_add(u64::from(size)),
    )
    .await
}

/// Whether every block of `blob` is held by `blobs` (so verified), and the blob has the
/// shape hyperblobs writes (64 KiB blocks) and lies inside the core's bytes: then its bytes
/// can be read straight from the core's data file ([`read_held`]). Blocks are never dropped
/// once held, so the answer stays true.
pub async fn all_held(blobs: &Arc<Core>, blob: &BlobRef) -> bool {
    if blob.block_length == 0 || blob.block_length != blob.byte_length.div_ceil(BLOCK_SIZE) {
        return false;
    }
    let (Some(end_block), Some(end_byte)) = (
        blob.block_offset.checked_add(blob.block_length),
        blob.byte_offset.checked_add(blob.byte_length),
    ) else {
        return false;
    };
    let hc = blobs.lock().await;
    let info = hc.info();
    if end_block > info.length || end_byte > info.byte_length {
        return false;
    }
    end_block <= info.contiguous_length || (blob.block_offset..end_block).all(|i| hc.has(i))
}

/// Reads bytes `[offset, offset + size)` of a file (clamped to it) straight from the blobs
/// core's data file, where hypercore keeps each verified block at its byte offset. Only for
/// blobs [`all_held`] accepted. Blocks the calling thread (FUSE threads may).
///
/// The byte range comes from the entry's `byteOffset`: a site whose entries lie about it
/// reads other bytes of its own verified content, never anything else (the HTTP gateway
/// reads the same way).
pub fn read_held(blobs: &Core, blob: &BlobRef, offset: u64, size: u32) -> std::io::Result<Vec<u8>> {
    let end = offset.saturating_add(u64::from(size)).min(blob.byte_length);
    if offset >= end {
        return Ok(Vec::new());
    }
    let start = blob
        .byte_offset
        .checked_add(offset)
        .ok_or_else(|| std::io::Error::other("byte offset overflows"))?;
    blobs.read_bytes_blocking(start, (end - offset) as usize)
}

/// The symlink target to show for an entry at site path `link` whose `linkname` is
/// `linkname`, as a path relative to the link's directory that stays inside the site.
///
/// Hyperdrive resolves a linkname against the link's directory, and an absolute linkname
/// against the drive root, never above it (`unix-path-resolve`); the target shown is that
/// same place, so `/etc/passwd` in a site means `<site>/etc/passwd`, and `../../..` stops at
/// the site root. `None` for an empty linkname, one with a NUL, or a result too long.
pub fn link_target(link: &str, linkname: &str) -> Option<String> {
    if linkname.is_empty() || linkname.contains('\0') || linkname.len() > MAX_PATH {
        return None;
    }
    let dir = parent_path(link);
    let absolute = if linkname.starts_with('/') {
        normalize_path(linkname)
    } else {
        normalize_path(&format!("{dir}/{linkname}"))
    };
    let from: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    let to: Vec<&str> = absolute.split('/').filter(|s| !s.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend_from_slice(&to[common..]);
    let target = if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    };
    (target.len() <= MAX_PATH).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "index.html", "with space", "ünïcode", "..a", "a\nb"] {
            assert!(valid_name(ok.as_bytes()), "{ok:?}");
        }
        for bad in ["", ".", "..", "a/b", "/", "a\0b"] {
            assert!(!valid_name(bad.as_bytes()), "{bad:?}");
        }
        assert!(valid_name(&[b'x'; 255]));
        assert!(!valid_name(&[b'x'; 256]));
        assert_eq!(child_path("/", "a").as_deref(), Some("/a"));
        assert_eq!(child_path("/a", "b").as_deref(), Some("/a/b"));
        assert_eq!(child_path(&"/x".repeat(2048), "b"), None);
        assert_eq!(parent_path("/a"), "/");
        assert_eq!(parent_path("/a/b/c"), "/a/b");
        assert_eq!(parent_path("/"), "/");
    }

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

    #[test]
    fn symlink_targets_stay_in_the_site() {
        assert_eq!(link_target("/a/l", "b").as_deref(), Some("b"));
        assert_eq!(link_target("/a/l", "../b").as_deref(), Some("../b"));
        assert_eq!(
            link_target("/a/l", "../../../../etc/passwd").as_deref(),
            Some("../etc/passwd")
        );
        assert_eq!(
            link_target("/a/b/l", "/etc/passwd").as_deref(),
            Some("../../etc/passwd")
        );
        assert_eq!(link_target("/l", "/").as_deref(), Some("."));
        assert_eq!(link_target("/a/l", "/a/x/./y/").as_deref(), Some("x/y"));
        assert_eq!(link_target("/a/l", ""), None);
        assert_eq!(link_target("/a/l", "x\0y"), None);
        assert_eq!(link_target("/l", &"y".repeat(MAX_PATH + 1)), None);
    }
}
