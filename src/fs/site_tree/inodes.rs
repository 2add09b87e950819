//! The inode table of the site tree and the page-cache rule.
//!
//! Inode numbers: the root is 1; every other node gets a number derived from what it names
//! (BLAKE2b of the site key and path, or of the alias), so a path keeps its inode number as
//! long as it exists — across versions, remounts and restarts — and a directory listing can
//! name its children's inodes without allocating anything. The table holds only the nodes
//! the kernel has looked up (reference-counted with its `forget`s), so walking a huge site
//! does not grow memory beyond what the kernel itself caches. Two names hashing to the same
//! number (about 2⁻⁶⁴ per pair) are told apart by probing the next free number.
//!
//! Page cache: the kernel keeps one page cache per inode, and an inode is a path, whose
//! content changes with new versions. [`Node::open`] decides per open: `FOPEN_KEEP_CACHE`
//! only if every page the kernel may hold for the inode was read from exactly the content
//! being opened, where content = (blobs core, blob reference). A blob reference names
//! immutable bytes (the blobs core is append-only and every block is verified), so unchanged
//! files stay cached across versions and a changed one (a new blob reference, same size or
//! not) is never served from old pages: opening without `KEEP_CACHE` makes the kernel drop
//! them. Reads through an older handle (opened before a change) mark the cache unknown, so
//! the next open drops those pages too. When the size last told to the kernel differs from
//! the content's size, the open uses `FOPEN_DIRECT_IO`, so reads are not cut at the stale
//! size the kernel may still hold (its attributes are cached for up to a second).

use std::collections::HashMap;

use blake2::digest::{consts::U8, Digest};

use super::view::Found;
use crate::drive::BlobRef;
use crate::model::keys::Key;

/// The root directory's inode.
pub const ROOT: u64 = 1;
/// Hashed inode numbers start here (below: reserved).
const FIRST_HASHED: u64 = 16;

/// What an inode names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeId {
    /// The mount's root: one directory per site, one symlink per alias.
    Root,
    /// `<alias>` in the root: a symlink to the site's hex key.
    Alias(String),
    /// A site path: `"/"` is the site's directory `<hex key>`.
    Path(Key, String),
}

/// The inode number `id` hashes to (before probing).
pub fn hash_ino(id: &NodeId) -> u64 {
    let mut h = blake2::Blake2b::<U8>::new();
    match id {
        NodeId::Root => return ROOT,
        NodeId::Alias(name) => {
            h.update(b"alias\0");
            h.update(name.as_bytes());
        }
        NodeId::Path(key, path) => {
            h.update(b"path\0");
            h.update(key.0);
            h.update(path.as_bytes());
        }
    }
    let n = u64::from_le_bytes(h.finalize().into());
    if n < FIRST_HASHED {
        n + FIRST_HASHED
    } else {
        n
    }
}

/// Identity of a file's bytes: which blobs core, which blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentId {
    pub blobs: Option<Key>,
    pub blob: BlobRef,
}

/// What the kernel's page cache may hold for an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCache {
    /// Nothing (never opened, or dropped on the last open).
    Empty,
    /// Only pages of this content.
    Holds(ContentId),
    /// Possibly pages of different contents.
    Unknown,
}

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// `FOPEN_KEEP_CACHE`: the cached pages are this content's.
    KeepCache,
    /// Plain open: the kernel drops the inode's pages and reads through the page cache.
    Fresh,
    /// `FOPEN_DIRECT_IO`: bypass the page cache (the kernel's size may be stale).
    Direct,
}

/// One inode the kernel knows.
#[derive(Debug)]
pub struct Node {
    pub id: NodeId,
    /// Lookups the kernel has not forgotten yet.
    pub nlookup: u64,
    pub cache: PageCache,
    /// The size in the last attributes given to the kernel.
    pub told_size: Option<u64>,
    /// The last resolution, valid at that version of the node's site.
    pub resolved: Option<(u64, Found)>,
}

impl Node {
    fn new(id: NodeId) -> Node {
        Node {
            id,
            nlookup: 0,
            cache: PageCache::Empty,
            told_size: None,
            resolved: None,
        }
    }

    /// The page-cache rule for opening `content` of `size` bytes (see the module docs).
    pub fn open(&mut self, content: ContentId, size: u64) -> OpenMode {
        if self.told_size != Some(size) {
            // Any open without KEEP_CACHE drops the pages; direct reads add none.
            self.cache = PageCache::Empty;
            return OpenMode::Direct;
        }
        if self.cache == PageCache::Holds(content) {
            return OpenMode::KeepCache;
        }
        self.cache = PageCache::Holds(content);
        OpenMode::Fresh
    }

    /// A read through a handle of `content` (opened with `mode`) is about to fill pages.
    pub fn note_read(&mut self, content: ContentId, mode: OpenMode) {
        if mode != OpenMode::Direct && self.cache != PageCache::Holds(content) {
            self.cache = PageCache::Unknown;
        }
    }
}

/// The inodes the kernel holds, by number.
#[derive(Debug)]
pub struct Inodes {
    nodes: HashMap<u64, Node>,
}

impl Default for Inodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Inodes {
    pub fn new() -> Inodes {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(NodeId::Root));
        Inodes { nodes }
    }

    /// The inode number of `id`: its node's if the kernel holds it, else the number a
    /// lookup would give it now.
    pub fn ino_of(&self, id: &NodeId) -> u64 {
        let mut ino = hash_ino(id);
        // Bounded: the table is finite, so some number in a row of len+1 is free.
        for _ in 0..=self.nodes.len() {
            match self.nodes.get(&ino) {
                Some(n) if n.id != *id => {
                    ino = ino.wrapping_add(1).max(FIRST_HASHED);
                }
                _ => return ino,
            }
        }
        ino
    }

    /// Records a lookup the kernel will hold (one more `forget` to come): returns the node.
    pub fn lookup(&mut self, id: NodeId) -> (u64, &mut Node) {
        let ino = self.ino_of(&id);
        let node = self.nodes.entry(ino).or_insert_with(|| Node::new(id));
        if ino != ROOT {
            node.nlookup = node.nlookup.saturating_add(1);
        }
        (ino, node)
    }

    /// The kernel forgot `n` lookups of `ino`; the node goes when none are left.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.nlookup = node.nlookup.saturating_sub(n);
            if node.nlookup == 0 {
                self.nodes.remove(&ino);
            }
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    /// Every node the kernel holds, with its number.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Node)> {
        self.nodes.iter().map(|(ino, n)| (*ino, n))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> NodeId {
        NodeId::Path(Key([3; 32]), p.to_string())
    }

    fn content(block_offset: u64, byte_length: u64) -> ContentId {
        ContentId {
            blobs: Some(Key([4; 32])),
            blob: BlobRef {
                block_offset,
                block_length: byte_length.div_ceil(65536),
                byte_offset: block_offset * 65536,
                byte_length,
            },
        }
    }

    #[test]
    fn numbers_are_stable_and_refcounted() {
        let mut t = Inodes::new();
        assert_eq!(t.ino_of(&NodeId::Root), ROOT);
        let a = t.ino_of(&path("/a"));
        assert!(a >= FIRST_HASHED);
        assert_ne!(a, t.ino_of(&path("/b")));
        assert_ne!(a, t.ino_of(&NodeId::Path(Key([9; 32]), "/a".into())));
        assert_eq!(t.lookup(path("/a")).0, a);
        assert_eq!(t.lookup(path("/a")).0, a);
        t.forget(a, 1);
        assert!(t.get(a).is_some());
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        assert_eq!(
            t.lookup(path("/a")).0,
            a,
            "same number after being forgotten"
        );
        t.forget(ROOT, 5);
        assert!(t.get(ROOT).is_some());
    }

    #[test]
    fn collisions_probe() {
        let mut t = Inodes::new();
        let a = t.ino_of(&path("/a"));
        // Pretend another name took /a's number.
        t.nodes.insert(a, Node::new(path("/other")));
        let (ino, _) = t.lookup(path("/a"));
        assert_ne!(ino, a);
        assert_eq!(t.ino_of(&path("/a")), ino);
        assert_eq!(t.get(ino).unwrap().id, path("/a"));
    }

    #[test]
    fn keep_cache_only_for_the_content_cached() {
        let mut n = Node::new(path("/f"));
        let (v1, v2, same_size) = (content(1, 10), content(5, 20), content(9, 10));
        // Size as told: plain open, then keep.
        n.told_size = Some(10);
        assert_eq!(n.open(v1, 10), OpenMode::Fresh);
        n.note_read(v1, OpenMode::Fresh);
        assert_eq!(n.open(v1, 10), OpenMode::KeepCache);
        // Same size, new bytes: the pages must go.
        assert_eq!(n.open(same_size, 10), OpenMode::Fresh);
        assert_eq!(n.open(same_size, 10), OpenMode::KeepCache);
        // An old handle reading v1 again taints the cache.
        n.note_read(v1, OpenMode::KeepCache);
        assert_eq!(n.cache, PageCache::Unknown);
        assert_eq!(n.open(same_size, 10), OpenMode::Fresh);
        // The kernel still thinks 10 bytes: direct I/O for the 20-byte content.
        assert_eq!(n.open(v2, 20), OpenMode::Direct);
        n.note_read(v2, OpenMode::Direct);
        assert_eq!(n.cache, PageCache::Empty);
        n.told_size = Some(20);
        assert_eq!(n.open(v2, 20), OpenMode::Fresh);
        assert_eq!(n.open(v2, 20), OpenMode::KeepCache);
    }
}
