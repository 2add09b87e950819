//! An allocator that aborts the process on any single allocation above a limit, so that a
//! decoder allocating from an unchecked length field is a crash under fuzzing (and in the
//! regression tests), even when the memory is never touched and so never shows up in the
//! resident set. The fuzz targets and `tests/fuzz_regressions.rs` install it with
//! `#[global_allocator]`; the product never does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The limit has not been read from the environment yet.
const UNREAD: usize = 0;
/// The limit is being read (allocations meanwhile are not limited).
const READING: usize = 1;

/// `System`, with a per-allocation size limit taken from an environment variable (in MiB)
/// or a default.
pub struct LimitedAlloc {
    env_var: &'static str,
    default_mb: usize,
    limit: AtomicUsize,
}

impl LimitedAlloc {
    pub const fn new(env_var: &'static str, default_mb: usize) -> LimitedAlloc {
        LimitedAlloc {
            env_var,
            default_mb,
            limit: AtomicUsize::new(UNREAD),
        }
    }

    fn limit(&self) -> usize {
        match self.limit.load(Ordering::Relaxed) {
            READING => usize::MAX,
            UNREAD => {
                if self
                    .limit
                    .compare_exchange(UNREAD, READING, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
                {
                    return usize::MAX;
                }
                let mb = std::env::var(self.env_var)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .filter(|&mb| mb > 0)
                    .unwrap_or(self.default_mb);
                let bytes = mb.saturating_mul(1024 * 1024).max(2);
                self.limit.store(bytes, Ordering::Relaxed);
                bytes
            }
            bytes => bytes,
        }
    }

    fn check(&self, size: usize) {
        let limit = self.limit();
        if size > limit {
            // Small allocations still succeed, so printing is fine here. (No backtrace:
            // its lock may be held by whoever is allocating.)
            eprintln!(
                "==ERROR: out-of-memory (malloc({size})): one allocation of {} MiB, more than \
                 the {} MiB limit (${}): an unchecked length field?",
                size >> 20,
                limit >> 20,
                self.env_var
            );
            std::process::abort();
        }
    }
}

unsafe impl GlobalAlloc for LimitedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.check(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}
