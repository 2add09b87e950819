//! Reading a Hyperbee tree at a version: point lookups ([`get_entry`]), range scans and
//! seeks, and hyperdrive-style directory listings ([`list`]).
//!
//! The root of version `V` is level 0 of block `V - 1`'s index. Every pointer read from a
//! block is checked (key and child seqs must lie in `1..V`, offsets inside the index),
//! descents stop at [`MAX_DEPTH`], full scans refuse to visit a node twice and check that
//! keys come out strictly increasing, so hostile blocks give errors, never panics or hangs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::messages::{decode_entry, decode_index, decode_node, file_key, key_path, Entry};
use super::messages::{Level, NodeBlock};
use super::{need_block, BlockSource, CoreKind, DriveError};

/// Deepest tree accepted (a real hyperbee with fan-out ≥ 5 below the root never gets
/// near this).
pub const MAX_DEPTH: usize = 64;

/// A block cache over a db core, bounded to one version.
pub(crate) struct Tree<'a, S> {
    src: &'a mut S,
    version: u64,
    nodes: HashMap<u64, Arc<NodeBlock>>,
    indexes: HashMap<u64, Arc<Vec<Level>>>,
}

impl<'a, S: BlockSource> Tree<'a, S> {
    pub(crate) fn new(src: &'a mut S, version: u64) -> Result<Self, DriveError> {
        let length = src.length();
        if version > length {
            return Err(DriveError::VersionOutOfRange { version, length });
        }
        Ok(Tree {
            src,
            version,
            nodes: HashMap::new(),
            indexes: HashMap::new(),
        })
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Checks that `seq` is a node block of this version.
    fn check_seq(&self, seq: u64, what: &str) -> Result<(), DriveError> {
        if seq == 0 || seq >= self.version {
            return Err(DriveError::corrupt(
                CoreKind::Db,
                seq,
                format!("{what} points outside version {}", self.version),
            ));
        }
        Ok(())
    }

    /// Decoded node block `seq` (must be in `1..version`).
    pub(crate) async fn node(&mut self, seq: u64) -> Result<Arc<NodeBlock>, DriveError> {
        self.check_seq(seq, "tree")?;
        if let Some(n) = self.nodes.get(&seq) {
            return Ok(n.clone());
        }
        let raw = need_block(self.src, CoreKind::Db, seq).await?;
        let node = Arc::new(decode_node(seq, &raw)?);
        self.nodes.insert(seq, node.clone());
        Ok(node)
    }

    /// All levels of block `seq`'s index.
    pub(crate) async fn index(&mut self, seq: u64) -> Result<Arc<Vec<Level>>, DriveError> {
        if let Some(i) = self.indexes.get(&seq) {
            return Ok(i.clone());
        }
        let node = self.node(seq).await?;
        let levels = Arc::new(decode_index(seq, &node.index)?);
        self.indexes.insert(seq, levels.clone());
        Ok(levels)
    }

    /// Tree node `offset` of block `seq`, checked for shape and pointer ranges.
    pub(crate) async fn level(&mut self, seq: u64, offset: u64) -> Result<Level, DriveError> {
        let index = self.index(seq).await?;
        let level = usize::try_from(offset)
            .ok()
            .and_then(|o| index.get(o))
            .ok_or_else(|| {
                DriveError::corrupt(CoreKind::Db, seq, format!("no index level {offset}"))
            })?;
        if !level.children.is_empty() && level.children.len() != level.keys.len() + 1 {
            return Err(DriveError::corrupt(
                CoreKind::Db,
                seq,
                format!(
                    "level {offset} has {} keys but {} children",
                    level.keys.len(),
                    level.children.len()
                ),
            ));
        }
        for &k in &level.keys {
            self.check_seq(k, "key")?;
        }
        for &(c, _) in &level.children {
            self.check_seq(c, "child")?;
        }
        Ok(level.clone())
    }

    /// The key stored in block `seq`.
    pub(crate) async fn key(&mut self, seq: u64) -> Result<Arc<NodeBlock>, DriveError> {
        self.node(seq).await
    }

    /// The root node of this version, `None` for the empty drive (version < 2).
    pub(crate) async fn root(&mut self) -> Result<Option<Level>, DriveError> {
        if self.version < 2 {
            return Ok(None);
        }
        Ok(Some(self.level(self.version - 1, 0).await?))
    }

    /// Index of the first key of `level` that is `>= target` (binary search, as hyperbee),
    /// and whether it is equal.
    async fn search(&mut self, level: &Level, target: &[u8]) -> Result<(usize, bool), DriveError> {
        let (mut s, mut e) = (0, level.keys.len());
        while s < e {
            let mid = (s + e) / 2;
            let k = self.key(level.keys[mid]).await?;
            match target.cmp(&k.key) {
                std::cmp::Ordering::Equal => return Ok((mid, true)),
                std::cmp::Ordering::Less => e = mid,
                std::cmp::Ordering::Greater => s = mid + 1,
            }
        }
        Ok((s, false))
    }

    /// The block seq holding `key` in this version's tree (hyperbee `get`, including its
    /// shortcut for the root block's own key), `None` if absent or deleted.
    pub(crate) async fn get(&mut self, key: &[u8]) -> Result<Option<u64>, DriveError> {
        if self.version < 2 {
            return Ok(None);
        }
        let top = self.version - 1;
        let top_block = self.node(top).await?;
        if top_block.key == key {
            if top_block.value.is_some() {
                return Ok(Some(top));
            }
            let index = self.index(top).await?;
            let present = index.iter().any(|l| l.keys.contains(&top));
            return Ok(present.then_some(top));
        }
        let mut node = self.level(top, 0).await?;
        for _ in 0..MAX_DEPTH {
            let (i, found) = self.search(&node, key).await?;
            if found {
                return Ok(Some(node.keys[i]));
            }
            if node.children.is_empty() {
                return Ok(None);
            }
            let (seq, off) = node.children[i];
            node = self.level(seq, off).await?;
        }
        Err(DriveError::corrupt(
            CoreKind::Db,
            top,
            "tree deeper than the limit",
        ))
    }

    /// The smallest key `>= lo` and its seq.
    pub(crate) async fn seek(&mut self, lo: &[u8]) -> Result<Option<(Vec<u8>, u64)>, DriveError> {
        let Some(mut node) = self.root().await? else {
            return Ok(None);
        };
        let mut best = None;
        for _ in 0..MAX_DEPTH {
            let (i, found) = self.search(&node, lo).await?;
            if i < node.keys.len() {
                let seq = node.keys[i];
                let k = self.key(seq).await?;
                if found {
                    return Ok(Some((k.key.clone(), seq)));
                }
                best = Some((k.key.clone(), seq));
            }
            if node.children.is_empty() {
                return Ok(best);
            }
            let (seq, off) = node.children[i];
            node = self.level(seq, off).await?;
        }
        Err(DriveError::corrupt(
            CoreKind::Db,
            self.version - 1,
            "tree deeper than the limit",
        ))
    }

    /// Every `(key, seq)` with `lo <= key < hi`, in order.
    pub(crate) async fn scan(
        &mut self,
        lo: &[u8],
        hi: &[u8],
    ) -> Result<Vec<(Vec<u8>, u64)>, DriveError> {
        struct Frame {
            level: Level,
            at: usize,
        }
        let mut out: Vec<(Vec<u8>, u64)> = Vec::new();
        let Some(root) = self.root().await? else {
            return Ok(out);
        };
        let top = self.version - 1;
        let mut visited = HashSet::new();
        visited.insert((top, 0));
        let mut stack = vec![Frame { level: root, at: 0 }];
        while let Some(frame) = stack.last_mut() {
            let n = frame.level.keys.len();
            let at = frame.at;
            frame.at += 1;
            if at > 2 * n {
                stack.pop();
                continue;
            }
            let level = &frame.level;
            let j = at / 2;
            if at % 2 == 1 {
                let seq = level.keys[j];
                let k = self.key(seq).await?;
                if k.key.as_slice() >= hi {
                    stack.pop();
                    continue;
                }
                if k.key.as_slice() >= lo {
                    if let Some((prev, _)) = out.last() {
                        if prev >= &k.key {
                            return Err(DriveError::corrupt(
                                CoreKind::Db,
                                seq,
                                "keys out of order",
                            ));
                        }
                    }
                    out.push((k.key.clone(), seq));
                }
                continue;
            }
            if level.children.is_empty() {
                continue;
            }
            let (child_seq, child_off) = level.children[j];
            let right_ok = j == n || self.key(level.keys[j]).await?.key.as_slice() > lo;
            let left_ok = j == 0 || self.key(level.keys[j - 1]).await?.key.as_slice() < hi;
            if !(right_ok && left_ok) {
                continue;
            }
            if !visited.insert((child_seq, child_off)) {
                return Err(DriveError::corrupt(
                    CoreKind::Db,
                    child_seq,
                    format!("tree node {child_seq}/{child_off} is reachable twice"),
                ));
            }
            if stack.len() >= MAX_DEPTH {
                return Err(DriveError::corrupt(
                    CoreKind::Db,
                    top,
                    "tree deeper than the limit",
                ));
            }
            let child = self.level(child_seq, child_off).await?;
            stack.push(Frame {
                level: child,
                at: 0,
            });
        }
        Ok(out)
    }

    /// The entry stored in block `seq` (a key found in the tree).
    pub(crate) async fn entry(&mut self, seq: u64) -> Result<Entry, DriveError> {
        let node = self.node(seq).await?;
        match &node.value {
            Some(v) => decode_entry(seq, v),
            None => Err(DriveError::corrupt(CoreKind::Db, seq, "entry has no value")),
        }
    }
}

/// Resolves a drive path like `unix-path-resolve('/', p)` does: always absolute, `.` and
/// empty segments dropped, `..` pops (never above `/`), no trailing slash.
pub fn normalize_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The entry at `path` (e.g. `"/a/b.html"`, normalized with [`normalize_path`]) in
/// `version` of the drive whose db core is `db`; `None` if there is no such file.
pub async fn get_entry<S: BlockSource>(
    db: &mut S,
    version: u64,
    path: &str,
) -> Result<Option<Entry>, DriveError> {
    Ok(find_entry(db, version, path).await?.map(|(_, entry)| entry))
}

/// [`get_entry`], with the db block (`seq`) the entry was written in: the one point lookup.
pub async fn find_entry<S: BlockSource>(
    db: &mut S,
    version: u64,
    path: &str,
) -> Result<Option<(u64, Entry)>, DriveError> {
    let path = normalize_path(path);
    if path == "/" {
        return Ok(None);
    }
    let mut tree = Tree::new(db, version)?;
    match tree.get(&file_key(&path)).await? {
        Some(seq) => Ok(Some((seq, tree.entry(seq).await?))),
        None => Ok(None),
    }
}

/// One item of a directory listing; paths are absolute drive paths.
#[derive(Debug, Clone, PartialEq)]
pub enum DirEntry {
    File {
        path: String,
        entry: Entry,
    },
    /// An implicit directory (only in non-recursive listings).
    Dir {
        path: String,
    },
}

impl DirEntry {
    pub fn path(&self) -> &str {
        match self {
            DirEntry::File { path, .. } | DirEntry::Dir { path } => path,
        }
    }
}

/// Lists `folder` (`"/"`, `"/dir"` or `"/dir/"`) at `version`, in key (byte) order.
/// Recursive: every file below `folder`. Non-recursive: the files directly in it and its
/// immediate subdirectories (each once, ordered as if its name ended in `/`), found by
/// seeking past each subdirectory rather than walking it.
pub async fn list<S: BlockSource>(
    db: &mut S,
    version: u64,
    folder: &str,
    recursive: bool,
) -> Result<Vec<DirEntry>, DriveError> {
    let folder = normalize_path(folder);
    let prefix = if folder == "/" { folder } else { folder + "/" };
    let lo = file_key(&prefix);
    let mut hi = lo.clone();
    *hi.last_mut().expect("prefix ends with /") += 1; // '/' + 1 = '0'
    let mut tree = Tree::new(db, version)?;
    let mut out = Vec::new();
    let path_of = |key: &[u8], seq: u64| -> Result<String, DriveError> {
        key_path(key)
            .map(str::to_string)
            .ok_or_else(|| DriveError::corrupt(CoreKind::Db, seq, "key is not a UTF-8 file path"))
    };
    if recursive {
        for (key, seq) in tree.scan(&lo, &hi).await? {
            if key.len() == lo.len() {
                continue; // the folder key itself ("/dir/"), as hyperdrive's gt range
            }
            let path = path_of(&key, seq)?;
            let entry = tree.entry(seq).await?;
            out.push(DirEntry::File { path, entry });
        }
        return Ok(out);
    }
    let mut cursor = lo.clone();
    cursor.push(0); // strictly after the folder key itself
    while let Some((key, seq)) = tree.seek(&cursor).await? {
        if key < cursor {
            return Err(DriveError::corrupt(CoreKind::Db, seq, "keys out of order"));
        }
        if key >= hi {
            break;
        }
        let path = path_of(&key, seq)?;
        let rest = &path[prefix.len()..];
        match rest.find('/') {
            Some(i) => {
                let dir = format!("{prefix}{}", &rest[..i]);
                cursor = file_key(&dir);
                cursor.push(b'0'); // past every key under "dir/"
                if i > 0 {
                    // (A key with `//` would otherwise list a folder with no name.)
                    out.push(DirEntry::Dir { path: dir });
                }
            }
            None => {
                let entry = tree.entry(seq).await?;
                cursor = key;
                cursor.push(0);
                out.push(DirEntry::File { path, entry });
            }
        }
    }
    Ok(out)
}
