//! Writing a Hyperbee: a copy-on-write B-tree editor that produces db blocks exactly the
//! way hyperbee 2.x does for single (non-batched) `put`/`del` calls.
//!
//! Every operation yields one block `Node { index, key, value }` whose index holds the new
//! root at level 0 followed (in pre-order) by every tree node the operation changed;
//! unchanged subtrees are referenced by their old `(seq, offset)`. So every block is a
//! complete, readable version (hyperbee's `autoFlush` layout; in a hyperbee *batch* the
//! non-final blocks instead carry only the nodes last written there, minus the root, and
//! are not readable versions on their own). Node splitting (at 9 keys into 4 + 1 + 4) and
//! deletion (replace by the nearest leaf key, then borrow or merge below 4 keys) follow
//! hyperbee's algorithm, so Node's hyperbee can keep writing to the same tree.

use std::sync::Arc;

use super::messages::{encode_index, encode_node, Level};
use super::tree::{Tree, MAX_DEPTH};
use super::{BlockSource, CoreKind, DriveError};

/// Hyperbee's `T`: a node splits when it reaches `2 * T - 1 = 9` keys.
const MAX_KEYS_BEFORE_SPLIT: usize = 9;
/// Hyperbee's `MIN_KEYS = T - 1`: below this a non-root node borrows or merges.
const MIN_KEYS: usize = 4;

#[derive(Clone)]
struct Key {
    seq: u64,
    bytes: Arc<[u8]>,
}

struct Child {
    seq: u64,
    offset: u64,
    node: Option<usize>,
}

struct MemNode {
    keys: Vec<Key>,
    children: Vec<Child>,
    dirty: bool,
}

/// Appends `put`s and `del`s to a Hyperbee whose db core currently has `db.length()` blocks
/// (at least the header). Collect the encoded blocks with [`Editor::into_blocks`] and
/// append them, in order, to the same core.
pub struct Editor<'a, S> {
    tree: Tree<'a, S>,
    nodes: Vec<MemNode>,
    root: Option<usize>,
    next_seq: u64,
    blocks: Vec<Vec<u8>>,
}

impl<'a, S: BlockSource> Editor<'a, S> {
    /// Starts editing at the core's current length (the latest version).
    pub async fn open(db: &'a mut S) -> Result<Self, DriveError> {
        let version = db.length();
        let mut ed = Editor {
            tree: Tree::new(db, version)?,
            nodes: Vec::new(),
            root: None,
            next_seq: version.max(1),
            blocks: Vec::new(),
        };
        if version >= 2 {
            ed.root = Some(ed.materialize(version - 1, 0).await?);
        }
        Ok(ed)
    }

    /// The encoded blocks produced so far, to append in order.
    pub fn into_blocks(self) -> Vec<Vec<u8>> {
        self.blocks
    }

    /// Number of blocks produced so far.
    pub fn pending(&self) -> usize {
        self.blocks.len()
    }

    async fn materialize(&mut self, seq: u64, offset: u64) -> Result<usize, DriveError> {
        let level = self.tree.level(seq, offset).await?;
        let mut keys = Vec::with_capacity(level.keys.len());
        for k in level.keys {
            let node = self.tree.key(k).await?;
            keys.push(Key {
                seq: k,
                bytes: node.key.as_slice().into(),
            });
        }
        let children = level
            .children
            .into_iter()
            .map(|(seq, offset)| Child {
                seq,
                offset,
                node: None,
            })
            .collect();
        Ok(self.alloc(keys, children, false))
    }

    fn alloc(&mut self, keys: Vec<Key>, children: Vec<Child>, dirty: bool) -> usize {
        self.nodes.push(MemNode {
            keys,
            children,
            dirty,
        });
        self.nodes.len() - 1
    }

    async fn child(&mut self, id: usize, i: usize) -> Result<usize, DriveError> {
        let c = self.nodes[id]
            .children
            .get(i)
            .ok_or_else(|| self.bad("missing child"))?;
        if let Some(n) = c.node {
            return Ok(n);
        }
        let (seq, offset) = (c.seq, c.offset);
        let n = self.materialize(seq, offset).await?;
        self.nodes[id].children[i].node = Some(n);
        Ok(n)
    }

    fn bad(&self, reason: &str) -> DriveError {
        DriveError::corrupt(CoreKind::Db, self.tree.version().saturating_sub(1), reason)
    }

    fn search(&self, id: usize, key: &[u8]) -> (usize, bool) {
        let keys = &self.nodes[id].keys;
        match keys.binary_search_by(|k| k.bytes.as_ref().cmp(key)) {
            Ok(i) => (i, true),
            Err(i) => (i, false),
        }
    }

    /// Inserts or replaces `key` (hyperbee `put`; always writes a block).
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), DriveError> {
        let seq = self.next_seq;
        let target = Key {
            seq,
            bytes: key.into(),
        };
        let mut root = match self.root {
            Some(r) => r,
            None => self.alloc(Vec::new(), Vec::new(), true),
        };
        let mut stack = Vec::new();
        let mut node = root;
        while !self.nodes[node].children.is_empty() {
            if stack.len() >= MAX_DEPTH {
                return Err(self.bad("tree deeper than the limit"));
            }
            stack.push(node);
            self.nodes[node].dirty = true;
            let (i, found) = self.search(node, key);
            if found {
                self.nodes[node].keys[i] = target;
                self.root = Some(root);
                self.flush(seq, key, Some(value));
                return Ok(());
            }
            node = self.child(node, i).await?;
        }
        let (i, found) = self.search(node, key);
        let n = &mut self.nodes[node];
        n.dirty = true;
        let mut needs_split = if found {
            n.keys[i] = target;
            false
        } else {
            n.keys.insert(i, target);
            n.keys.len() >= MAX_KEYS_BEFORE_SPLIT
        };
        while needs_split {
            let (median, right) = self.split(node);
            if let Some(parent) = stack.pop() {
                let (i, _) = self.search(parent, &median.bytes);
                let p = &mut self.nodes[parent];
                p.keys.insert(i, median);
                p.children.insert(
                    i + 1,
                    Child {
                        seq: 0,
                        offset: 0,
                        node: Some(right),
                    },
                );
                p.dirty = true;
                needs_split = p.keys.len() >= MAX_KEYS_BEFORE_SPLIT;
                node = parent;
            } else {
                let children = [node, right]
                    .map(|n| Child {
                        seq: 0,
                        offset: 0,
                        node: Some(n),
                    })
                    .into();
                root = self.alloc(vec![median], children, true);
                needs_split = false;
            }
        }
        self.root = Some(root);
        self.flush(seq, key, Some(value));
        Ok(())
    }

    /// Splits a full node into `self` (left), a median key and a new right node.
    fn split(&mut self, id: usize) -> (Key, usize) {
        let n = &mut self.nodes[id];
        let len = n.keys.len() / 2;
        let right_keys = n.keys.split_off(n.keys.len() - len);
        let median = n.keys.pop().expect("a full node has a median");
        let right_children = if n.children.is_empty() {
            Vec::new()
        } else {
            n.children.split_off(n.children.len() - (len + 1))
        };
        n.dirty = true;
        let right = self.alloc(right_keys, right_children, true);
        (median, right)
    }

    /// Deletes `key` (hyperbee `del`). Returns false, writing nothing, if it is absent.
    pub async fn del(&mut self, key: &[u8]) -> Result<bool, DriveError> {
        let Some(root) = self.root else {
            return Ok(false);
        };
        let mut stack = Vec::new();
        let mut node = root;
        loop {
            if stack.len() >= MAX_DEPTH {
                return Err(self.bad("tree deeper than the limit"));
            }
            stack.push(node);
            let (i, found) = self.search(node, key);
            if found {
                if self.nodes[node].children.is_empty() {
                    self.remove_key(node, i);
                } else {
                    self.set_key_to_nearest_leaf(node, i, &mut stack).await?;
                }
                for &n in &stack {
                    self.nodes[n].dirty = true;
                }
                let root = self.rebalance(stack).await?;
                self.root = Some(root);
                let seq = self.next_seq;
                self.flush(seq, key, None);
                return Ok(true);
            }
            if self.nodes[node].children.is_empty() {
                return Ok(false);
            }
            node = self.child(node, i).await?;
        }
    }

    fn remove_key(&mut self, id: usize, i: usize) {
        let n = &mut self.nodes[id];
        n.keys.remove(i);
        if !n.children.is_empty() {
            n.children.remove(i + 1);
        }
        n.dirty = true;
    }

    async fn leaf_size(&mut self, mut id: usize, go_left: bool) -> Result<usize, DriveError> {
        for _ in 0..MAX_DEPTH {
            let len = self.nodes[id].children.len();
            if len == 0 {
                return Ok(self.nodes[id].keys.len());
            }
            id = self.child(id, if go_left { 0 } else { len - 1 }).await?;
        }
        Err(self.bad("tree deeper than the limit"))
    }

    async fn set_key_to_nearest_leaf(
        &mut self,
        id: usize,
        index: usize,
        stack: &mut Vec<usize>,
    ) -> Result<(), DriveError> {
        let left = self.child(id, index).await?;
        let right = self.child(id, index + 1).await?;
        let ls = self.leaf_size(left, false).await?;
        let rs = self.leaf_size(right, true).await?;
        let take_right = ls < rs;
        let mut cur = if take_right { right } else { left };
        stack.push(cur);
        while !self.nodes[cur].children.is_empty() {
            if stack.len() >= MAX_DEPTH {
                return Err(self.bad("tree deeper than the limit"));
            }
            let last = self.nodes[cur].children.len() - 1;
            cur = self.child(cur, if take_right { 0 } else { last }).await?;
            stack.push(cur);
        }
        let keys = &mut self.nodes[cur].keys;
        let k = if take_right {
            (!keys.is_empty()).then(|| keys.remove(0))
        } else {
            keys.pop()
        };
        let k = k.ok_or_else(|| self.bad("empty leaf"))?;
        self.nodes[id].keys[index] = k;
        Ok(())
    }

    async fn rebalance(&mut self, mut stack: Vec<usize>) -> Result<usize, DriveError> {
        let root = stack[0];
        while stack.len() > 1 {
            let node = stack.pop().expect("len > 1");
            let parent = *stack.last().expect("len > 0");
            if self.nodes[node].keys.len() >= MIN_KEYS {
                return Ok(root);
            }
            let index = self.nodes[parent]
                .children
                .iter()
                .position(|c| c.node == Some(node))
                .ok_or_else(|| self.bad("bad parent"))?;
            let nchildren = self.nodes[parent].children.len();
            let left = if index > 0 {
                Some(self.child(parent, index - 1).await?)
            } else {
                None
            };
            let right = if index + 1 < nchildren {
                Some(self.child(parent, index + 1).await?)
            } else {
                None
            };
            if let Some(l) = left.filter(|&l| self.nodes[l].keys.len() > MIN_KEYS) {
                self.nodes[l].dirty = true;
                let sep = self.nodes[parent].keys[index - 1].clone();
                self.nodes[node].keys.insert(0, sep);
                if let Some(c) = self.nodes[l].children.pop() {
                    self.nodes[node].children.insert(0, c);
                }
                let k = self.nodes[l].keys.pop().expect("more than MIN_KEYS");
                self.nodes[parent].keys[index - 1] = k;
                return Ok(root);
            }
            if let Some(r) = right.filter(|&r| self.nodes[r].keys.len() > MIN_KEYS) {
                self.nodes[r].dirty = true;
                let sep = self.nodes[parent].keys[index].clone();
                self.nodes[node].keys.push(sep);
                if !self.nodes[r].children.is_empty() {
                    let c = self.nodes[r].children.remove(0);
                    self.nodes[node].children.push(c);
                }
                let k = self.nodes[r].keys.remove(0);
                self.nodes[parent].keys[index] = k;
                return Ok(root);
            }
            let (l, r, i) = match (left, right) {
                (Some(l), _) => (l, node, index - 1),
                (None, Some(r)) => (node, r, index),
                (None, None) => return Err(self.bad("node without siblings")),
            };
            let median = self.nodes[parent]
                .keys
                .get(i)
                .cloned()
                .ok_or_else(|| self.bad("bad parent"))?;
            let moved_keys = std::mem::take(&mut self.nodes[r].keys);
            let moved_children = std::mem::take(&mut self.nodes[r].children);
            let ln = &mut self.nodes[l];
            ln.dirty = true;
            ln.keys.push(median);
            ln.keys.extend(moved_keys);
            ln.children.extend(moved_children);
            self.remove_key(parent, i);
        }
        if self.nodes[root].keys.is_empty() && !self.nodes[root].children.is_empty() {
            return self.child(root, 0).await;
        }
        Ok(root)
    }

    /// Serializes the current tree into block `seq` (root at level 0, then every dirty
    /// node in pre-order) and records the block.
    fn flush(&mut self, seq: u64, key: &[u8], value: Option<&[u8]>) {
        let root = self.root.expect("flush after an edit");
        let mut levels = Vec::new();
        self.index_changes(root, seq, &mut levels);
        let block = encode_node(&encode_index(&levels), key, value);
        self.blocks.push(block);
        self.next_seq += 1;
    }

    fn index_changes(&mut self, id: usize, seq: u64, levels: &mut Vec<Level>) -> u64 {
        let offset = levels.len();
        levels.push(Level::default());
        self.nodes[id].dirty = false;
        for ci in 0..self.nodes[id].children.len() {
            let Some(cid) = self.nodes[id].children[ci].node else {
                continue;
            };
            if !self.nodes[cid].dirty {
                continue;
            }
            let off = self.index_changes(cid, seq, levels);
            let c = &mut self.nodes[id].children[ci];
            c.seq = seq;
            c.offset = off;
        }
        let n = &self.nodes[id];
        levels[offset] = Level {
            keys: n.keys.iter().map(|k| k.seq).collect(),
            children: n.children.iter().map(|c| (c.seq, c.offset)).collect(),
        };
        offset as u64
    }
}
