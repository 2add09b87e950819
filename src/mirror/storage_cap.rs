//! The mirror's storage cap (`serve --max-storage SIZE`): deciding whether a site may fetch
//! more. [`may_fetch`] is the pure rule; [`StorageCap`] is the handle site tasks hold (the
//! store's measured size against the cap, which the owner may change while running). Sizes
//! are parsed and shown by [`crate::model::units`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::model::units::format_size;
use crate::store::CoreStore;

/// The message shown when the cap stops a site. Starts with `storage cap reached`.
pub fn cap_reason(used: u64, cap: u64) -> String {
    format!(
        "storage cap reached ({} of {} used); raise --max-storage or remove sites",
        format_size(used),
        format_size(cap)
    )
}

/// May a site fetch more data, with `used` bytes stored and a cap of `cap` (None: no cap)?
/// `Err` carries the reason to show.
pub fn may_fetch(used: u64, cap: Option<u64>) -> Result<(), String> {
    match cap {
        Some(cap) if used >= cap => Err(cap_reason(used, cap)),
        _ => Ok(()),
    }
}

/// The cap as site tasks see it: shared, changeable at run time (0 stored: no cap).
#[derive(Clone)]
pub struct StorageCap {
    store: Arc<CoreStore>,
    max: Arc<AtomicU64>,
}

impl StorageCap {
    pub fn new(store: Arc<CoreStore>, max: Option<u64>) -> StorageCap {
        StorageCap {
            store,
            max: Arc::new(AtomicU64::new(max.unwrap_or(0))),
        }
    }

    pub fn set(&self, max: Option<u64>) {
        self.max.store(max.unwrap_or(0), Ordering::SeqCst);
    }

    pub fn get(&self) -> Option<u64> {
        match self.max.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// May sites fetch more? `Err` says why not.
    pub fn check(&self) -> Result<(), String> {
        may_fetch(self.store.held_bytes(), self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_decides() {
        assert_eq!(may_fetch(u64::MAX, None), Ok(()));
        assert_eq!(may_fetch(0, Some(1)), Ok(()));
        assert_eq!(may_fetch((2 << 30) - 1, Some(2 << 30)), Ok(()));
        let e = may_fetch((2.1 * (1u64 << 30) as f64) as u64, Some(2 << 30)).unwrap_err();
        assert_eq!(
            e,
            "storage cap reached (2.1 GiB of 2 GiB used); raise --max-storage or remove sites"
        );
        assert!(may_fetch(2 << 30, Some(2 << 30)).is_err());
    }
}
