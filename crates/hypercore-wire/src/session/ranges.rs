//! A bounded set of block ranges: what a remote peer said it holds (from `range` and
//! `bitfield` messages). Beyond its cap new ranges are forgotten (we then just do not ask that
//! peer for those blocks) so a peer cannot make it grow without bound.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent half-open ranges `start..end`.
#[derive(Debug, Clone)]
pub struct RangeSet {
    ranges: BTreeMap<u64, u64>,
    cap: usize,
}

impl RangeSet {
    /// An empty set holding at most `cap` ranges.
    pub fn new(cap: usize) -> Self {
        Self {
            ranges: BTreeMap::new(),
            cap,
        }
    }

    /// Number of ranges held.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True if no range is held.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// True if `index` is in a range.
    pub fn contains(&self, index: u64) -> bool {
        self.ranges
            .range(..=index)
            .next_back()
            .is_some_and(|(_, end)| index < *end)
    }

    /// The first index `>= from` in the set.
    pub fn next_at_or_after(&self, from: u64) -> Option<u64> {
        if self.contains(from) {
            return Some(from);
        }
        self.ranges.range(from..).next().map(|(s, _)| *s)
    }

    /// Adds `start..end`, merging neighbours. Forgotten if the set is full.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut start = start;
        let mut end = end;
        if let Some((s, e)) = self
            .ranges
            .range(..=start)
            .next_back()
            .map(|(s, e)| (*s, *e))
        {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        let overlapping: Vec<(u64, u64)> = self
            .ranges
            .range(start..=end)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in overlapping {
            self.ranges.remove(&s);
            end = end.max(e);
        }
        if self.ranges.len() >= self.cap {
            return;
        }
        self.ranges.insert(start, end);
    }

    /// Removes `start..end`.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let touched: Vec<(u64, u64)> = self
            .ranges
            .range(..end)
            .rev()
            .take_while(|(_, e)| **e > start)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in touched {
            self.ranges.remove(&s);
            if s < start {
                self.ranges.insert(s, start);
            }
            if e > end {
                self.ranges.insert(end, e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RangeSet;

    #[test]
    fn insert_merge_remove() {
        let mut r = RangeSet::new(100);
        r.insert(10, 20);
        r.insert(30, 40);
        r.insert(20, 30);
        assert_eq!(r.len(), 1);
        assert!(r.contains(10) && r.contains(39) && !r.contains(40) && !r.contains(9));
        r.remove(15, 35);
        assert_eq!(r.len(), 2);
        assert!(r.contains(14) && !r.contains(15) && !r.contains(34) && r.contains(35));
        assert_eq!(r.next_at_or_after(15), Some(35));
        assert_eq!(r.next_at_or_after(12), Some(12));
        assert_eq!(r.next_at_or_after(40), None);
        r.insert(0, u64::MAX);
        assert_eq!(r.len(), 1);
        assert!(r.contains(u64::MAX - 1));
    }

    #[test]
    fn cap_is_respected() {
        let mut r = RangeSet::new(3);
        for i in 0..10 {
            r.insert(i * 10, i * 10 + 1);
        }
        assert_eq!(r.len(), 3);
    }
}
