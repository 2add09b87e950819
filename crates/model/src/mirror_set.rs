//! The mirror set: the desired state of a mirror, a pure fold of every followed command log.
//! A site is in the set while at least one laptop's latest command for it is `Mirror`; its
//! alias is the one from the most recent `Mirror` applied. Folding one log never depends on
//! how its entries interleave with other logs' entries, so a mirror that restarts and
//! re-folds its logs in any order reaches the same set. No I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::command::Command;
use crate::keys::Key;

/// One wanted site.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SiteWant {
    pub alias: Option<String>,
    /// The laptops whose latest command for the site is `Mirror`.
    pub requested_by: BTreeSet<Key>,
}

/// What applying a command changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The site entered the set.
    Added(Key),
    /// The site left the set (no laptop wants it any more).
    Removed(Key),
    /// Nothing entered or left (an alias may have changed).
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MirrorSet {
    sites: BTreeMap<Key, SiteWant>,
}

impl MirrorSet {
    pub fn new() -> MirrorSet {
        MirrorSet::default()
    }

    /// Folds whole logs: `(laptop, commands in log order)`.
    pub fn fold<'a>(logs: impl IntoIterator<Item = (Key, &'a [Command])>) -> MirrorSet {
        let mut set = MirrorSet::new();
        for (log, commands) in logs {
            for c in commands {
                set.apply(log, c);
            }
        }
        set
    }

    /// Applies one command from `log`.
    pub fn apply(&mut self, log: Key, command: &Command) -> Change {
        match command {
            Command::Mirror { key, alias } => {
                let added = !self.sites.contains_key(key);
                let want = self.sites.entry(*key).or_default();
                want.requested_by.insert(log);
                if alias.is_some() {
                    want.alias = alias.clone();
                }
                if added {
                    Change::Added(*key)
                } else {
                    Change::Unchanged
                }
            }
            Command::Unmirror { key } => {
                let Some(want) = self.sites.get_mut(key) else {
                    return Change::Unchanged;
                };
                want.requested_by.remove(&log);
                if want.requested_by.is_empty() {
                    self.sites.remove(key);
                    Change::Removed(*key)
                } else {
                    Change::Unchanged
                }
            }
        }
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.sites.contains_key(key)
    }

    pub fn get(&self, key: &Key) -> Option<&SiteWant> {
        self.sites.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.sites.keys()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &SiteWant)> {
        self.sites.iter()
    }

    pub fn len(&self) -> usize {
        self.sites.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// The site an alias names (the most recently applied alias wins).
    pub fn by_alias(&self, alias: &str) -> Option<Key> {
        self.sites
            .iter()
            .find(|(_, w)| w.alias.as_deref() == Some(alias))
            .map(|(k, _)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Key = Key([1; 32]);
    const B: Key = Key([2; 32]);
    const S: Key = Key([10; 32]);
    const T: Key = Key([11; 32]);

    fn mirror(key: Key, alias: Option<&str>) -> Command {
        Command::Mirror {
            key,
            alias: alias.map(String::from),
        }
    }

    #[test]
    fn mirror_then_unmirror() {
        let mut set = MirrorSet::new();
        assert_eq!(set.apply(A, &mirror(S, Some("blog"))), Change::Added(S));
        assert_eq!(set.apply(A, &mirror(S, None)), Change::Unchanged);
        assert_eq!(set.get(&S).unwrap().alias.as_deref(), Some("blog"));
        assert_eq!(set.by_alias("blog"), Some(S));
        assert_eq!(
            set.apply(A, &Command::Unmirror { key: S }),
            Change::Removed(S)
        );
        assert!(set.is_empty());
        assert_eq!(
            set.apply(A, &Command::Unmirror { key: S }),
            Change::Unchanged
        );
    }

    #[test]
    fn a_site_stays_while_any_laptop_wants_it() {
        let mut set = MirrorSet::new();
        set.apply(A, &mirror(S, None));
        set.apply(B, &mirror(S, None));
        assert_eq!(
            set.apply(A, &Command::Unmirror { key: S }),
            Change::Unchanged
        );
        assert!(set.contains(&S));
        // B unmirroring something it never asked for changes nothing for A.
        set.apply(A, &mirror(T, None));
        assert_eq!(
            set.apply(B, &Command::Unmirror { key: T }),
            Change::Unchanged
        );
        assert!(set.contains(&T));
        assert_eq!(
            set.apply(B, &Command::Unmirror { key: S }),
            Change::Removed(S)
        );
    }

    #[test]
    fn fold_is_independent_of_log_order() {
        let a = [
            mirror(S, None),
            mirror(T, Some("t")),
            Command::Unmirror { key: S },
        ];
        let b = [mirror(S, None), Command::Unmirror { key: T }];
        let one = MirrorSet::fold([(A, &a[..]), (B, &b[..])]);
        let two = MirrorSet::fold([(B, &b[..]), (A, &a[..])]);
        assert_eq!(one, two);
        assert!(one.contains(&S) && one.contains(&T));
        assert_eq!(one.len(), 2);
    }

    #[test]
    fn re_mirror_after_removal() {
        let mut set = MirrorSet::new();
        set.apply(A, &mirror(S, None));
        set.apply(A, &Command::Unmirror { key: S });
        assert_eq!(set.apply(A, &mirror(S, Some("again"))), Change::Added(S));
        assert_eq!(set.get(&S).unwrap().alias.as_deref(), Some("again"));
    }
}
