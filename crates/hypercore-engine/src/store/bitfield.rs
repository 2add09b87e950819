//! Which blocks a core holds, in memory (rebuilt from the committed block table on open):
//! a sparse bit set (pages of 4,096 bits) with the queries replication needs. Sparse so a
//! hostile but validly signed core claiming 2^50 blocks cannot make us allocate for them.

use std::collections::BTreeMap;

const PAGE_BITS: u64 = 4096;
const WORDS: usize = (PAGE_BITS / 64) as usize;

/// A sparse set of block indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitfield {
    pages: BTreeMap<u64, Box<[u64; WORDS]>>,
    count: u64,
}

fn split(index: u64) -> (u64, usize, u64) {
    let page = index / PAGE_BITS;
    let within = index % PAGE_BITS;
    (page, (within / 64) as usize, 1u64 << (within % 64))
}

impl Bitfield {
    /// An empty bitfield.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether block `index` is held.
    pub fn get(&self, index: u64) -> bool {
        let (p, w, bit) = split(index);
        self.pages
            .get(&p)
            .and_then(|page| page.get(w))
            .is_some_and(|x| x & bit != 0)
    }

    /// Marks block `index` held.
    pub fn set(&mut self, index: u64) {
        let (p, w, bit) = split(index);
        let page = self.pages.entry(p).or_insert_with(|| Box::new([0; WORDS]));
        if let Some(x) = page.get_mut(w) {
            if *x & bit == 0 {
                *x |= bit;
                self.count += 1;
            }
        }
    }

    /// Marks block `index` not held.
    pub fn clear(&mut self, index: u64) {
        let (p, w, bit) = split(index);
        if let Some(x) = self.pages.get_mut(&p).and_then(|page| page.get_mut(w)) {
            if *x & bit != 0 {
                *x &= !bit;
                self.count -= 1;
            }
        }
    }

    /// Number of blocks held.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// First index at or after `from` that is not held.
    pub fn first_missing(&self, from: u64) -> u64 {
        let mut i = from;
        loop {
            let (p, w, _) = split(i);
            let Some(page) = self.pages.get(&p) else {
                return i;
            };
            let word = page.get(w).copied().unwrap_or(0);
            let shifted = !word >> (i % 64);
            if shifted != 0 {
                return i.saturating_add(u64::from(shifted.trailing_zeros()));
            }
            match (i / 64 + 1).checked_mul(64) {
                Some(n) => i = n,
                None => return u64::MAX,
            }
        }
    }

    /// First held index in `[from, end)`.
    pub fn first_held(&self, from: u64, end: u64) -> Option<u64> {
        let mut i = from;
        while i < end {
            let (p, w, _) = split(i);
            let Some(page) = self.pages.get(&p) else {
                // jump to the next allocated page
                let (&np, _) = self.pages.range(p + 1..).next()?;
                i = np.checked_mul(PAGE_BITS)?;
                continue;
            };
            let word = page.get(w).copied().unwrap_or(0);
            let shifted = word >> (i % 64);
            if shifted != 0 {
                let found = i + u64::from(shifted.trailing_zeros());
                return (found < end).then_some(found);
            }
            i = (i / 64 + 1).checked_mul(64)?;
        }
        None
    }

    /// Held ranges `[start, end)` below `end`.
    pub fn ranges(&self, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(s) = self.first_held(i, end) {
            let e = self.first_missing(s).min(end);
            out.push((s, e));
            i = e;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let mut b = Bitfield::new();
        for i in [0, 1, 2, 5, 64, 65, 200, 10_000] {
            b.set(i);
        }
        assert_eq!(b.count(), 8);
        assert_eq!(b.first_missing(0), 3);
        assert_eq!(b.first_missing(64), 66);
        assert_eq!(b.first_held(6, 300), Some(64));
        assert_eq!(b.first_held(201, 20_000), Some(10_000));
        assert_eq!(b.ranges(300), vec![(0, 3), (5, 6), (64, 66), (200, 201)]);
        b.clear(1);
        assert_eq!(b.first_missing(0), 1);
        assert!(!b.get(u64::MAX));
        b.set(u64::MAX - 1);
        assert!(b.get(u64::MAX - 1));
        assert_eq!(b.first_missing(u64::MAX - 1), u64::MAX);
    }
}
