//! Flat-tree index math (the layout of hypercore's Merkle tree): leaves at even indices,
//! parents at odd ones. Every operation is checked: a hostile index gives an error, never an
//! overflow panic.

use crate::error::{Error, Result};

/// The largest flat-tree index the engine accepts (2^60): far beyond any real core, and
/// small enough that the arithmetic below never wraps for accepted inputs.
pub const MAX_INDEX: u64 = 1 << 60;

fn ovf() -> Error {
    Error::OutOfRange("flat-tree arithmetic overflow")
}

fn add(a: u64, b: u64) -> Result<u64> {
    a.checked_add(b).ok_or_else(ovf)
}

fn sub(a: u64, b: u64) -> Result<u64> {
    a.checked_sub(b).ok_or_else(ovf)
}

fn pow2(n: u32) -> Result<u64> {
    1u64.checked_shl(n).filter(|v| *v != 0).ok_or_else(ovf)
}

/// Depth of a node (0 for leaves): the number of trailing one bits.
pub fn depth(index: u64) -> u32 {
    (!index).trailing_zeros()
}

/// Offset of a node within its depth.
pub fn offset(index: u64) -> Result<u64> {
    index.checked_shr(depth(index) + 1).ok_or_else(ovf)
}

/// The index of the node at `depth` and `offset`.
pub fn index(depth: u32, offset: u64) -> Result<u64> {
    let a = offset.checked_mul(2).ok_or_else(ovf)?;
    let a = add(a, 1)?;
    let a = a.checked_mul(pow2(depth)?).ok_or_else(ovf)?;
    sub(a, 1)
}

/// Parent of a node.
pub fn parent(i: u64) -> Result<u64> {
    index(depth(i) + 1, offset(i)? >> 1)
}

/// Sibling of a node.
pub fn sibling(i: u64) -> Result<u64> {
    index(depth(i), offset(i)? ^ 1)
}

/// Left-most leaf under a node.
pub fn left_span(i: u64) -> Result<u64> {
    let d = depth(i);
    if d == 0 {
        return Ok(i);
    }
    offset(i)?.checked_mul(pow2(d + 1)?).ok_or_else(ovf)
}

/// Right-most leaf under a node.
pub fn right_span(i: u64) -> Result<u64> {
    let d = depth(i);
    if d == 0 {
        return Ok(i);
    }
    let o = add(offset(i)?, 1)?;
    sub(o.checked_mul(pow2(d + 1)?).ok_or_else(ovf)?, 2)
}

/// Number of leaves under a node.
pub fn count_leaves(i: u64) -> Result<u64> {
    pow2(depth(i))
}

/// The roots of a tree of `length` leaves, left to right.
pub fn full_roots(length: u64) -> Result<Vec<u64>> {
    if length > MAX_INDEX / 2 {
        return Err(Error::OutOfRange("length too large"));
    }
    let mut out = Vec::new();
    let mut rest = length;
    let mut offset = 0u64;
    while rest > 0 {
        let factor = 1u64 << (63 - rest.leading_zeros());
        out.push(sub(add(offset, factor)?, 1)?);
        offset = add(offset, 2 * factor)?;
        rest -= factor;
    }
    Ok(out)
}

/// A cursor over the tree, moving between related nodes in O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iter {
    /// Current index.
    pub index: u64,
    /// Offset of the current node within its depth.
    pub offset: u64,
    /// Twice the number of leaves under the current node.
    pub factor: u64,
}

impl Iter {
    /// A cursor at `index`.
    pub fn new(index: u64) -> Result<Self> {
        let mut it = Iter {
            index: 0,
            offset: 0,
            factor: 2,
        };
        it.seek(index)?;
        Ok(it)
    }

    /// Moves to `index`.
    pub fn seek(&mut self, index: u64) -> Result<()> {
        if index > MAX_INDEX {
            return Err(Error::OutOfRange("index too large"));
        }
        self.index = index;
        if index & 1 == 1 {
            self.offset = offset(index)?;
            self.factor = pow2(depth(index) + 1)?;
        } else {
            self.offset = index / 2;
            self.factor = 2;
        }
        Ok(())
    }

    /// Whether the current node is a left child.
    pub fn is_left(&self) -> bool {
        self.offset & 1 == 0
    }

    /// Moves to the next node at the same depth.
    pub fn next_node(&mut self) -> Result<u64> {
        self.offset = add(self.offset, 1)?;
        self.index = add(self.index, self.factor)?;
        Ok(self.index)
    }

    /// Moves to the previous node at the same depth (stays at offset 0).
    pub fn prev(&mut self) -> Result<u64> {
        if self.offset == 0 {
            return Ok(self.index);
        }
        self.offset -= 1;
        self.index = sub(self.index, self.factor)?;
        Ok(self.index)
    }

    /// Moves to the sibling.
    pub fn sibling(&mut self) -> Result<u64> {
        if self.is_left() {
            self.next_node()
        } else {
            self.prev()
        }
    }

    /// Moves to the parent.
    pub fn parent(&mut self) -> Result<u64> {
        let half = self.factor / 2;
        if self.offset & 1 == 1 {
            self.index = sub(self.index, half)?;
            self.offset = (self.offset - 1) / 2;
        } else {
            self.index = add(self.index, half)?;
            self.offset /= 2;
        }
        self.factor = self.factor.checked_mul(2).ok_or_else(ovf)?;
        if self.index > MAX_INDEX {
            return Err(Error::OutOfRange("index too large"));
        }
        Ok(self.index)
    }

    /// Moves to the left child (stays on a leaf).
    pub fn left_child(&mut self) -> Result<u64> {
        if self.factor == 2 {
            return Ok(self.index);
        }
        self.factor /= 2;
        self.index = sub(self.index, self.factor / 2)?;
        self.offset = self.offset.checked_mul(2).ok_or_else(ovf)?;
        Ok(self.index)
    }

    /// Moves to the first leaf after the current subtree.
    pub fn next_tree(&mut self) -> Result<u64> {
        self.index = add(add(self.index, self.factor / 2)?, 1)?;
        self.offset = self.index / 2;
        self.factor = 2;
        Ok(self.index)
    }

    /// Grows the current leaf into the largest full root that fits below `to` (a leaf
    /// index bound); false when no root starts here.
    pub fn full_root(&mut self, to: u64) -> Result<bool> {
        if to <= self.index || self.index & 1 == 1 {
            return Ok(false);
        }
        loop {
            let reach = add(add(self.index, self.factor)?, self.factor / 2)?;
            if to <= reach {
                break;
            }
            self.index = add(self.index, self.factor / 2)?;
            self.factor = self.factor.checked_mul(2).ok_or_else(ovf)?;
            self.offset /= 2;
        }
        Ok(true)
    }

    /// Whether `index` lies in the current subtree.
    pub fn contains(&self, index: u64) -> bool {
        let half = self.factor / 2;
        if index > self.index {
            index - self.index < half
        } else if index < self.index {
            self.index - index < half
        } else {
            true
        }
    }

    /// Number of leaves under the current node.
    pub fn count_leaves(&self) -> u64 {
        self.factor / 2
    }

    /// Right-most leaf of the current subtree (without moving).
    pub fn right_span(&self) -> Result<u64> {
        sub(add(self.index, self.factor / 2)?, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        assert_eq!(depth(0), 0);
        assert_eq!(depth(1), 1);
        assert_eq!(depth(3), 2);
        assert_eq!(parent(0).unwrap(), 1);
        assert_eq!(parent(2).unwrap(), 1);
        assert_eq!(parent(1).unwrap(), 3);
        assert_eq!(sibling(0).unwrap(), 2);
        assert_eq!(sibling(5).unwrap(), 1);
        assert_eq!(left_span(3).unwrap(), 0);
        assert_eq!(right_span(3).unwrap(), 6);
        assert_eq!(right_span(23).unwrap(), 30);
        assert_eq!(full_roots(0).unwrap(), Vec::<u64>::new());
        assert_eq!(full_roots(1).unwrap(), vec![0]);
        assert_eq!(full_roots(5).unwrap(), vec![3, 8]);
        assert_eq!(full_roots(13).unwrap(), vec![7, 19, 24]);
        assert_eq!(index(2, 1).unwrap(), 11);
    }

    #[test]
    fn hostile_indices_error() {
        for i in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1] {
            let _ = parent(i);
            let _ = sibling(i);
            let _ = left_span(i);
            let _ = right_span(i);
            let _ = offset(i);
            let _ = count_leaves(i);
            assert!(Iter::new(i).is_err());
        }
        assert!(full_roots(u64::MAX).is_err());
        let mut it = Iter::new(MAX_INDEX - 1).unwrap();
        for _ in 0..70 {
            if it.parent().is_err() {
                return;
            }
        }
        panic!("parent never failed");
    }

    #[test]
    fn iterator_walk() {
        let mut it = Iter::new(0).unwrap();
        assert_eq!(it.parent().unwrap(), 1);
        assert_eq!(it.parent().unwrap(), 3);
        assert_eq!(it.sibling().unwrap(), 11);
        assert_eq!(it.left_child().unwrap(), 9);
        let mut it = Iter::new(0).unwrap();
        assert!(it.full_root(26).unwrap());
        assert_eq!(it.index, 7);
        it.next_tree().unwrap();
        assert!(it.full_root(26).unwrap());
        assert_eq!(it.index, 19);
    }
}
