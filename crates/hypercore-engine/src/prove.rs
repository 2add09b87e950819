//! Proof creation: which tree nodes answer a request (block/hash/seek/upgrade), read from any
//! [`NodeSource`]. Hostile requests (out-of-range indices, absurd node counts, seeks past
//! the end) give errors, never panics or unbounded loops.

use crate::error::{Error, Result};
use crate::flat::{self, Iter};
use crate::proof::{DataBlock, DataHash, DataSeek, DataUpgrade, Proof, Request};
use crate::tree::Node;

/// Reads trusted tree nodes.
pub trait NodeSource {
    /// The node at a flat-tree index, if stored.
    fn node(&self, index: u64) -> Result<Option<Node>>;
}

/// The head of the tree a proof is made from.
#[derive(Debug, Clone)]
pub struct TreeView<'a> {
    /// Roots at `length`.
    pub roots: &'a [Node],
    /// Number of blocks.
    pub length: u64,
    /// Bytes in all blocks.
    pub byte_length: u64,
    /// Fork id.
    pub fork: u64,
    /// Signature over this head.
    pub signature: Option<&'a [u8]>,
}

const MAX_STEPS: u32 = 1024;

fn need<S: NodeSource + ?Sized>(src: &S, index: u64) -> Result<Node> {
    src.node(index)?
        .ok_or(Error::InvalidRequest("tree node not stored"))
}

struct Indexed {
    value: bool,
    index: u64,
    nodes: u64,
    last_index: u64,
}

#[derive(Default)]
struct Pending {
    node: Option<Vec<Node>>,
    seek: Option<Vec<Node>>,
    upgrade: Option<Vec<Node>>,
    additional: Option<Vec<Node>>,
}

struct Ctx<'a, S: ?Sized> {
    tree: &'a TreeView<'a>,
    src: &'a S,
}

impl<S: NodeSource + ?Sized> Ctx<'_, S> {
    fn seek_proof(&self, seek_root: u64, root: u64, p: &mut Pending) -> Result<()> {
        let mut it = Iter::new(seek_root)?;
        let mut out = vec![need(self.src, it.index)?];
        let mut cnt = 0;
        while it.index != root {
            cnt += 1;
            if cnt >= MAX_STEPS {
                return Err(Error::InvalidRequest("bad seek proof"));
            }
            it.sibling()?;
            out.push(need(self.src, it.index)?);
            it.parent()?;
        }
        p.seek = Some(out);
        Ok(())
    }

    fn block_and_seek_proof(
        &self,
        node: Option<&Indexed>,
        seek: bool,
        seek_root: u64,
        root: u64,
        p: &mut Pending,
    ) -> Result<()> {
        let Some(node) = node else {
            return self.seek_proof(seek_root, root, p);
        };
        let mut it = Iter::new(node.index)?;
        let mut out = Vec::new();
        if !node.value {
            out.push(need(self.src, it.index)?);
        }
        let mut cnt = 0;
        while it.index != root {
            cnt += 1;
            if cnt >= MAX_STEPS {
                return Err(Error::InvalidRequest("bad block proof"));
            }
            it.sibling()?;
            if seek && it.contains(seek_root) && it.index != seek_root {
                self.seek_proof(seek_root, it.index, p)?;
            } else {
                out.push(need(self.src, it.index)?);
            }
            it.parent()?;
        }
        p.node = Some(out);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn upgrade_proof(
        &self,
        node: Option<&Indexed>,
        seek: bool,
        from: u64,
        to: u64,
        sub_tree: u64,
        p: &mut Pending,
    ) -> Result<()> {
        if from == 0 {
            p.upgrade = Some(Vec::new());
        }
        let mut it = Iter::new(0)?;
        let mut guard = 0;
        while it.full_root(to)? {
            guard += 1;
            if guard > 256 {
                return Err(Error::InvalidRequest("upgrade too long"));
            }
            if it.index + it.factor / 2 < from {
                it.next_tree()?;
                continue;
            }
            if p.upgrade.is_none() && from >= 2 && it.contains(from - 2) {
                p.upgrade = Some(Vec::new());
                let root = it.index;
                let target = from - 2;
                it.seek(target)?;
                let mut cnt = 0;
                while it.index != root {
                    cnt += 1;
                    if cnt >= MAX_STEPS {
                        return Err(Error::InvalidRequest("bad upgrade proof"));
                    }
                    it.sibling()?;
                    if it.index > target {
                        if p.node.is_none() && p.seek.is_none() && it.contains(sub_tree) {
                            self.block_and_seek_proof(node, seek, sub_tree, it.index, p)?;
                        } else {
                            let n = need(self.src, it.index)?;
                            p.upgrade.get_or_insert_with(Vec::new).push(n);
                        }
                    }
                    it.parent()?;
                }
                it.next_tree()?;
                continue;
            }
            if p.upgrade.is_none() {
                p.upgrade = Some(Vec::new());
            }
            if p.node.is_none() && p.seek.is_none() && it.contains(sub_tree) {
                self.block_and_seek_proof(node, seek, sub_tree, it.index, p)?;
                it.next_tree()?;
                continue;
            }
            let n = need(self.src, it.index)?;
            p.upgrade.get_or_insert_with(Vec::new).push(n);
            it.next_tree()?;
        }
        Ok(())
    }

    fn additional_upgrade_proof(&self, from: u64, to: u64, p: &mut Pending) -> Result<()> {
        let mut out: Option<Vec<Node>> = if from == 0 { Some(Vec::new()) } else { None };
        let mut it = Iter::new(0)?;
        let mut guard = 0;
        while it.full_root(to)? {
            guard += 1;
            if guard > 256 {
                return Err(Error::InvalidRequest("upgrade too long"));
            }
            if it.index + it.factor / 2 < from {
                it.next_tree()?;
                continue;
            }
            if out.is_none() && from >= 2 && it.contains(from - 2) {
                let mut v = Vec::new();
                let root = it.index;
                let target = from - 2;
                it.seek(target)?;
                let mut cnt = 0;
                while it.index != root {
                    cnt += 1;
                    if cnt >= MAX_STEPS {
                        return Err(Error::InvalidRequest("bad upgrade proof"));
                    }
                    it.sibling()?;
                    if it.index > target {
                        v.push(need(self.src, it.index)?);
                    }
                    it.parent()?;
                }
                out = Some(v);
                it.next_tree()?;
                continue;
            }
            out.get_or_insert_with(Vec::new)
                .push(need(self.src, it.index)?);
            it.next_tree()?;
        }
        p.additional = out;
        Ok(())
    }

    fn unpadded(&self, node: &Node, padding: u64, leaves: u64) -> Result<u64> {
        if padding == 0 {
            return Ok(node.size);
        }
        padding
            .checked_mul(leaves)
            .and_then(|pad| node.size.checked_sub(pad))
            .ok_or(Error::InvalidRequest("bad padding"))
    }

    fn byte_offset(&self, index: u64) -> Result<u64> {
        let t = self.tree;
        if Some(index) == t.length.checked_mul(2) {
            return Ok(t.byte_length);
        }
        let index = if index & 1 == 1 {
            flat::left_span(index)?
        } else {
            index
        };
        let mut head = 0u64;
        let mut offset = 0u64;
        let add = |a: u64, b: u64| a.checked_add(b).ok_or(Error::OutOfRange("offset overflow"));
        for root in t.roots {
            let span = root
                .index
                .checked_sub(head)
                .and_then(|d| d.checked_add(1))
                .and_then(|d| d.checked_mul(2))
                .ok_or(Error::Corrupt("roots out of order".into()))?;
            head = add(head, span)?;
            if index >= head {
                offset = add(offset, root.size)?;
                continue;
            }
            let mut it = Iter::new(root.index)?;
            let mut cnt = 0;
            while it.index != index {
                cnt += 1;
                if cnt >= MAX_STEPS || it.factor == 2 {
                    return Err(Error::InvalidRequest("bad byte offset"));
                }
                if index < it.index {
                    it.left_child()?;
                } else {
                    let l = need(self.src, it.left_child()?)?;
                    offset = add(offset, l.size)?;
                    it.sibling()?;
                }
            }
            return Ok(offset);
        }
        Err(Error::InvalidRequest("offset past the end"))
    }

    fn seek_trusted_tree(&self, root: u64, mut bytes: u64, padding: u64) -> Result<u64> {
        if bytes == 0 {
            return Ok(root);
        }
        let mut it = Iter::new(root)?;
        let mut cnt = 0;
        while it.index & 1 == 1 {
            cnt += 1;
            if cnt >= MAX_STEPS {
                return Err(Error::InvalidRequest("bad seek"));
            }
            let li = it.left_child()?;
            match self.src.node(li)? {
                Some(l) => {
                    let size = self.unpadded(&l, padding, it.count_leaves())?;
                    if size == bytes {
                        return Ok(it.index);
                    }
                    if size > bytes {
                        continue;
                    }
                    bytes -= size;
                    it.sibling()?;
                }
                None => {
                    it.parent()?;
                    return Ok(it.index);
                }
            }
        }
        Ok(it.index)
    }

    fn seek_untrusted_tree(&self, root: u64, bytes: u64, padding: u64) -> Result<u64> {
        let mut offset = self.byte_offset(root)?;
        if padding > 0 {
            let pad = padding
                .checked_mul(flat::left_span(root)? / 2)
                .ok_or(Error::InvalidRequest("bad padding"))?;
            offset = offset
                .checked_sub(pad)
                .ok_or(Error::InvalidRequest("bad padding"))?;
        }
        if offset > bytes {
            return Err(Error::InvalidRequest("invalid seek"));
        }
        if offset == bytes {
            return Ok(root);
        }
        let rest = bytes - offset;
        let node = need(self.src, root)?;
        if self.unpadded(&node, padding, flat::count_leaves(root)?)? <= rest {
            return Err(Error::InvalidRequest("invalid seek"));
        }
        self.seek_trusted_tree(root, rest, padding)
    }

    fn seek_from_head(&self, head: u64, mut bytes: u64, padding: u64) -> Result<u64> {
        for root in flat::full_roots(head / 2)? {
            let node = need(self.src, root)?;
            let size = self.unpadded(&node, padding, flat::count_leaves(root)?)?;
            if bytes == size {
                return Ok(root);
            }
            if bytes > size {
                bytes -= size;
                continue;
            }
            return self.seek_trusted_tree(root, bytes, padding);
        }
        Ok(head)
    }
}

fn nodes_to_root(index: u64, nodes: u64, head: u64) -> Result<u64> {
    let mut it = Iter::new(index)?;
    for _ in 0..nodes.min(64) {
        it.parent()?;
        if it.contains(head) {
            return Err(Error::InvalidRequest("nodes is out of bounds"));
        }
    }
    if nodes > 64 {
        return Err(Error::InvalidRequest("nodes is out of bounds"));
    }
    Ok(it.index)
}

/// Builds the proof answering `req` from `tree` (block values left empty: the caller fills
/// `block.value` from its data). Mirrors Node hypercore 11's choice of nodes exactly.
pub fn create_proof<S: NodeSource + ?Sized>(
    tree: &TreeView<'_>,
    src: &S,
    req: &Request,
) -> Result<Proof> {
    let ctx = Ctx { tree, src };
    let mut proof = Proof {
        fork: tree.fork,
        ..Proof::default()
    };
    let head = tree
        .length
        .checked_mul(2)
        .ok_or(Error::OutOfRange("length"))?;
    let (from, to) = match req.upgrade {
        Some(u) => {
            let from = u
                .start
                .checked_mul(2)
                .ok_or(Error::InvalidRequest("upgrade"))?;
            let to = u
                .length
                .checked_mul(2)
                .and_then(|l| l.checked_add(from))
                .ok_or(Error::InvalidRequest("upgrade"))?;
            (from, to)
        }
        None => (0, head),
    };
    let node = match (&req.block, &req.hash) {
        (Some(b), _) => {
            if b.index >= tree.length {
                return Err(Error::InvalidRequest("block out of range"));
            }
            Some(Indexed {
                value: true,
                index: b.index * 2,
                nodes: b.nodes,
                last_index: b.index,
            })
        }
        (None, Some(h)) => {
            let rs = flat::right_span(h.index)?;
            if rs >= head {
                return Err(Error::InvalidRequest("hash out of range"));
            }
            Some(Indexed {
                value: false,
                index: h.index,
                nodes: h.nodes,
                last_index: rs / 2,
            })
        }
        (None, None) => None,
    };
    if head == 0 {
        return Ok(proof);
    }
    if from >= to || to > head {
        return Err(Error::InvalidRequest("invalid upgrade"));
    }
    if let (Some(_), Some(_), Some(n)) = (&req.seek, &req.upgrade, &node) {
        if n.index >= from {
            return Err(Error::InvalidRequest(
                "cannot seek and fetch a block while upgrading",
            ));
        }
    }
    let mut p = Pending::default();
    let mut sub_tree = head;
    let seek = req.seek.is_some();
    match (&node, &req.upgrade) {
        (Some(n), u) if u.is_none_or(|u| n.last_index < u.start) => {
            sub_tree = nodes_to_root(n.index, n.nodes, to)?;
            let seek_root = match req.seek {
                Some(s) => ctx.seek_untrusted_tree(sub_tree, s.bytes, s.padding)?,
                None => head,
            };
            ctx.block_and_seek_proof(Some(n), seek, seek_root, sub_tree, &mut p)?;
        }
        (n, Some(_)) if n.is_some() || seek => {
            sub_tree = match (req.seek, n) {
                (Some(s), _) => ctx.seek_from_head(to, s.bytes, s.padding)?,
                (None, Some(n)) => n.index,
                (None, None) => head,
            };
        }
        _ => {}
    }
    if req.upgrade.is_some() {
        ctx.upgrade_proof(node.as_ref(), seek, from, to, sub_tree, &mut p)?;
        if head > to {
            ctx.additional_upgrade_proof(to, head, &mut p)?;
        }
    }
    if let Some(b) = &req.block {
        let nodes = p
            .node
            .take()
            .ok_or(Error::InvalidRequest("invalid block request"))?;
        proof.block = Some(DataBlock {
            index: b.index,
            value: Vec::new(),
            nodes,
        });
    } else if let Some(h) = &req.hash {
        let nodes = p
            .node
            .take()
            .ok_or(Error::InvalidRequest("invalid hash request"))?;
        proof.hash = Some(DataHash {
            index: h.index,
            nodes,
        });
    }
    if let (Some(s), Some(nodes)) = (&req.seek, p.seek.take()) {
        proof.seek = Some(DataSeek {
            bytes: s.bytes,
            nodes,
        });
    }
    if let Some(u) = &req.upgrade {
        proof.upgrade = Some(DataUpgrade {
            start: u.start,
            length: u.length,
            nodes: p.upgrade.take().unwrap_or_default(),
            additional_nodes: p.additional.take().unwrap_or_default(),
            signature: tree.signature.map(|s| s.to_vec()),
        });
    }
    Ok(proof)
}
