//! The Merkle tree in memory: nodes, roots, and a batch that grows a tree by appending
//! leaves or verified roots (the common ground of local appends and proof verification).

use crate::crypto;
use crate::error::{Error, Result};
use crate::flat::{self, Iter};

/// One tree node: a leaf (even index) or a parent (odd index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Flat-tree index.
    pub index: u64,
    /// Bytes under this node.
    pub size: u64,
    /// BLAKE2b-256 hash.
    pub hash: [u8; 32],
}

impl Node {
    /// The leaf node for block `block_index` holding `data`.
    pub fn leaf(block_index: u64, data: &[u8]) -> Result<Node> {
        let index = block_index
            .checked_mul(2)
            .filter(|i| *i <= flat::MAX_INDEX)
            .ok_or(Error::OutOfRange("block index too large"))?;
        Ok(Node {
            index,
            size: data.len() as u64,
            hash: crypto::leaf_hash(data),
        })
    }

    /// The parent node at `index` of `a` and `b`.
    pub fn parent(index: u64, a: &Node, b: &Node) -> Result<Node> {
        Ok(Node {
            index,
            size: a
                .size
                .checked_add(b.size)
                .ok_or(Error::OutOfRange("node size overflow"))?,
            hash: crypto::parent_hash(a, b)?,
        })
    }
}

/// The signed head of a tree: what a signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// Tree hash of the roots.
    pub hash: [u8; 32],
    /// Number of blocks.
    pub length: u64,
    /// Fork id.
    pub fork: u64,
}

/// A tree being grown: the roots, length and byte length after the appended nodes, and the
/// new nodes to store.
#[derive(Debug, Clone, Default)]
pub struct TreeBatch {
    /// Roots, left to right.
    pub roots: Vec<Node>,
    /// Number of blocks.
    pub length: u64,
    /// Bytes in all blocks.
    pub byte_length: u64,
    /// Fork id.
    pub fork: u64,
    /// Signature over the head, once known.
    pub signature: Option<Vec<u8>>,
    /// Nodes added by this batch (to be stored).
    pub nodes: Vec<Node>,
    /// Whether the length grew.
    pub upgraded: bool,
}

impl TreeBatch {
    /// A batch continuing a tree with these roots.
    pub fn new(roots: Vec<Node>, length: u64, fork: u64) -> Result<Self> {
        let mut byte_length = 0u64;
        for r in &roots {
            byte_length = byte_length
                .checked_add(r.size)
                .ok_or(Error::OutOfRange("byte length overflow"))?;
        }
        Ok(TreeBatch {
            roots,
            length,
            byte_length,
            fork,
            signature: None,
            nodes: Vec::new(),
            upgraded: false,
        })
    }

    /// The tree hash of the current roots.
    pub fn hash(&self) -> [u8; 32] {
        crypto::tree_hash(&self.roots)
    }

    /// The head to sign or verify.
    pub fn head(&self) -> TreeHead {
        TreeHead {
            hash: self.hash(),
            length: self.length,
            fork: self.fork,
        }
    }

    /// Appends one block.
    pub fn append(&mut self, data: &[u8]) -> Result<()> {
        let node = Node::leaf(self.length, data)?;
        let mut it = Iter::new(node.index)?;
        self.append_root(node, &mut it)
    }

    /// Appends a root node covering the leaves right after the current tree; `it` must sit
    /// on that node. Merges equal-sized roots into parents as it goes.
    pub fn append_root(&mut self, node: Node, it: &mut Iter) -> Result<()> {
        if node.index != it.index {
            return Err(Error::InvalidProof("node does not continue the tree"));
        }
        self.upgraded = true;
        self.length = self
            .length
            .checked_add(it.count_leaves())
            .filter(|l| *l <= flat::MAX_INDEX / 2)
            .ok_or(Error::OutOfRange("length overflow"))?;
        self.byte_length = self
            .byte_length
            .checked_add(node.size)
            .ok_or(Error::OutOfRange("byte length overflow"))?;
        self.roots.push(node);
        self.nodes.push(node);
        while self.roots.len() > 1 {
            let n = self.roots.len();
            let (Some(a), Some(b)) = (
                self.roots.get(n - 1).copied(),
                self.roots.get(n - 2).copied(),
            ) else {
                break;
            };
            if it.sibling()? != b.index {
                it.sibling()?;
                break;
            }
            let p = Node::parent(it.parent()?, &a, &b)?;
            self.nodes.push(p);
            self.roots.truncate(n - 2);
            self.roots.push(p);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_follow_full_roots() {
        let mut b = TreeBatch::default();
        for i in 0..13u64 {
            b.append(format!("block {i}").as_bytes()).unwrap();
            let idx: Vec<u64> = b.roots.iter().map(|r| r.index).collect();
            assert_eq!(idx, flat::full_roots(i + 1).unwrap());
        }
        assert_eq!(b.length, 13);
    }
}
