//! Proofs: the request and reply shapes of hypercore's wire `Request`/`Data` messages as
//! plain structs, and pure verification of a reply (block/hash/seek chains and upgrades)
//! into a [`TreeBatch`] of verified nodes. Nothing here touches storage.

use crate::error::{Error, Result};
use crate::flat::Iter;
use crate::manifest::{Manifest, Prologue};
use crate::tree::{Node, TreeBatch};

/// Most nodes a single proof part may carry (a path through a 2^60-leaf tree is < 64).
pub const MAX_PROOF_NODES: usize = 256;

/// A block or hash request: the node, and how many levels of parents the requester lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBlock {
    /// Block index (for `block`) or flat-tree index (for `hash`).
    pub index: u64,
    /// Levels of proof nodes wanted above it.
    pub nodes: u64,
}

/// A byte seek request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSeek {
    /// Byte offset to find.
    pub bytes: u64,
    /// Per-block padding (encryption); 0 for plain cores.
    pub padding: u64,
}

/// An upgrade request: prove the tree from `start` blocks to `start + length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestUpgrade {
    /// The length the requester has.
    pub start: u64,
    /// How many blocks to prove past it.
    pub length: u64,
}

/// What a peer asks for (wire `Request` without id and priority).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Fork the requester is on.
    pub fork: u64,
    /// A block with its proof.
    pub block: Option<RequestBlock>,
    /// A tree node with its proof.
    pub hash: Option<RequestBlock>,
    /// A byte seek.
    pub seek: Option<RequestSeek>,
    /// A signed upgrade.
    pub upgrade: Option<RequestUpgrade>,
    /// Whether to include the manifest.
    pub manifest: bool,
}

/// A block with the nodes proving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataBlock {
    /// Block index.
    pub index: u64,
    /// Block bytes.
    pub value: Vec<u8>,
    /// Sibling nodes up to a node the receiver trusts.
    pub nodes: Vec<Node>,
}

/// A tree node with the nodes proving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataHash {
    /// Flat-tree index.
    pub index: u64,
    /// The node itself, then siblings up.
    pub nodes: Vec<Node>,
}

/// A seek answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSeek {
    /// The byte offset sought.
    pub bytes: u64,
    /// Nodes from the seek target up.
    pub nodes: Vec<Node>,
}

/// A signed upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUpgrade {
    /// Length the receiver had.
    pub start: u64,
    /// Blocks added.
    pub length: u64,
    /// Nodes connecting the old tree to the new roots.
    pub nodes: Vec<Node>,
    /// Roots past `start + length` up to the sender's length.
    pub additional_nodes: Vec<Node>,
    /// Signature over the new head.
    pub signature: Option<Vec<u8>>,
}

/// A proof (wire `Data` without the request id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proof {
    /// Fork the sender is on.
    pub fork: u64,
    /// Block part.
    pub block: Option<DataBlock>,
    /// Hash part.
    pub hash: Option<DataHash>,
    /// Seek part.
    pub seek: Option<DataSeek>,
    /// Upgrade part.
    pub upgrade: Option<DataUpgrade>,
    /// Manifest, when asked for.
    pub manifest: Option<Manifest>,
}

impl DataUpgrade {
    /// The length the sender's tree has after this upgrade (with additional nodes).
    pub fn upgrade_length(&self) -> Result<u64> {
        if let Some(last) = self.additional_nodes.last() {
            return Ok(crate::flat::right_span(last.index)? / 2 + 1);
        }
        self.start
            .checked_add(self.length)
            .ok_or(Error::OutOfRange("upgrade length overflow"))
    }
}

struct Queue<'a> {
    nodes: &'a [Node],
    i: usize,
    extra: Option<Node>,
}

impl<'a> Queue<'a> {
    fn new(nodes: &'a [Node], extra: Option<Node>) -> Self {
        Queue { nodes, i: 0, extra }
    }

    fn len(&self) -> usize {
        self.nodes.len().saturating_sub(self.i) + usize::from(self.extra.is_some())
    }

    fn shift(&mut self, index: u64) -> Result<Node> {
        if let Some(e) = self.extra {
            if e.index == index {
                self.extra = None;
                return Ok(e);
            }
        }
        let n = self
            .nodes
            .get(self.i)
            .copied()
            .ok_or(Error::InvalidProof("missing proof node"))?;
        if n.index != index {
            return Err(Error::InvalidProof("unexpected proof node"));
        }
        self.i += 1;
        Ok(n)
    }
}

fn check_sizes(p: &Proof) -> Result<()> {
    let too_many = |n: &Vec<Node>| n.len() > MAX_PROOF_NODES;
    if p.block.as_ref().is_some_and(|b| too_many(&b.nodes))
        || p.hash.as_ref().is_some_and(|b| too_many(&b.nodes))
        || p.seek.as_ref().is_some_and(|b| too_many(&b.nodes))
        || p.upgrade
            .as_ref()
            .is_some_and(|u| too_many(&u.nodes) || too_many(&u.additional_nodes))
    {
        return Err(Error::InvalidProof("too many nodes"));
    }
    Ok(())
}

fn climb(root: &mut Node, it: &mut Iter, q: &mut Queue<'_>, out: &mut Vec<Node>) -> Result<()> {
    while q.len() > 0 {
        let sib = q.shift(it.sibling()?)?;
        let parent = it.parent()?;
        *root = Node::parent(parent, root, &sib)?;
        out.push(sib);
        out.push(*root);
    }
    Ok(())
}

/// Verifies the block/hash/seek chains of a proof: returns the node they hash up to (still
/// to be matched against a trusted node or an upgrade) and every node computed on the way.
pub fn verify_tree(p: &Proof, out: &mut Vec<Node>) -> Result<Option<Node>> {
    check_sizes(p)?;
    let untrusted = match (&p.block, &p.hash) {
        (Some(b), _) => Some((
            b.index
                .checked_mul(2)
                .ok_or(Error::OutOfRange("block index"))?,
            Some(&b.value),
            &b.nodes,
        )),
        (None, Some(h)) => Some((h.index, None, &h.nodes)),
        (None, None) => None,
    };
    let mut root: Option<Node> = None;
    if let Some(seek) = p.seek.as_ref().filter(|s| !s.nodes.is_empty()) {
        let first = seek
            .nodes
            .first()
            .ok_or(Error::InvalidProof("empty seek"))?;
        let mut it = Iter::new(first.index)?;
        let mut q = Queue::new(&seek.nodes, None);
        let mut r = q.shift(it.index)?;
        out.push(r);
        climb(&mut r, &mut it, &mut q, out)?;
        root = Some(r);
    }
    let Some((index, value, nodes)) = untrusted else {
        return Ok(root);
    };
    let mut it = Iter::new(index)?;
    let mut q = Queue::new(nodes, root);
    let mut r = match value {
        Some(v) => Node::leaf(index / 2, v)?,
        None => q.shift(it.index)?,
    };
    out.push(r);
    climb(&mut r, &mut it, &mut q, out)?;
    Ok(Some(r))
}

/// Applies the upgrade part of `p` to `batch` (which holds the receiver's roots). Returns
/// whether `block_root` (from [`verify_tree`]) was consumed by the upgrade, i.e. is now
/// covered by the signature to be checked over `batch.head()`.
pub fn verify_upgrade(
    p: &Proof,
    block_root: Option<Node>,
    batch: &mut TreeBatch,
    prologue: Option<&Prologue>,
) -> Result<bool> {
    check_sizes(p)?;
    let u = p
        .upgrade
        .as_ref()
        .ok_or(Error::InvalidProof("expected an upgrade"))?;
    if let Some(pr) = prologue {
        if u.start < pr.length && (u.start != 0 || u.length < pr.length) {
            return Err(Error::InvalidProof("upgrade does not satisfy the prologue"));
        }
    }
    let mut q = Queue::new(&u.nodes, block_root);
    let mut grow = !batch.roots.is_empty();
    let mut i = 0usize;
    let to = u
        .start
        .checked_add(u.length)
        .and_then(|l| l.checked_mul(2))
        .ok_or(Error::OutOfRange("upgrade length"))?;
    let mut it = Iter::new(0)?;
    let mut guard = 0u32;
    while it.full_root(to)? {
        guard += 1;
        if guard > 256 {
            return Err(Error::InvalidProof("upgrade too long"));
        }
        if batch.roots.get(i).is_some_and(|r| r.index == it.index) {
            i += 1;
            it.next_tree()?;
            continue;
        }
        if grow {
            grow = false;
            let root = it.index;
            if i < batch.roots.len() {
                let last = batch.roots.last().map(|r| r.index).unwrap_or(0);
                it.seek(last)?;
                let mut steps = 0u32;
                while it.index != root {
                    steps += 1;
                    if steps > 128 {
                        return Err(Error::InvalidProof("upgrade does not connect"));
                    }
                    let n = q.shift(it.sibling()?)?;
                    batch.append_root(n, &mut it)?;
                }
                it.next_tree()?;
                continue;
            }
        }
        let n = q.shift(it.index)?;
        batch.append_root(n, &mut it)?;
        it.next_tree()?;
    }
    if let Some(pr) = prologue {
        if batch.length == pr.length && batch.hash() != pr.hash {
            return Err(Error::InvalidProof("prologue hash mismatch"));
        }
    }
    let last = batch
        .roots
        .last()
        .map(|r| r.index)
        .ok_or(Error::InvalidProof("empty upgrade"))?;
    it.seek(last)?;
    let extra = &u.additional_nodes;
    let mut k = 0usize;
    while let Some(n) = extra.get(k) {
        if n.index != it.sibling()? {
            break;
        }
        batch.append_root(*n, &mut it)?;
        k += 1;
    }
    while let Some(n) = extra.get(k) {
        k += 1;
        while n.index != it.index {
            if it.factor == 2 {
                return Err(Error::InvalidProof("unexpected additional node"));
            }
            it.left_child()?;
        }
        batch.append_root(*n, &mut it)?;
        it.sibling()?;
    }
    batch.signature = u.signature.clone();
    batch.fork = p.fork;
    Ok(q.extra.is_none())
}
