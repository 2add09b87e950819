//! The gateway's memory of what it already worked out, so a repeated request for a small
//! file costs a few hash lookups instead of B-tree walks, database reads and blocking-pool
//! hops (measured with `perf` under `wrk`; see `scripts/bench/http.sh`):
//!
//! - [`Lookups`]: per site version (site key, db length shown), the file a request path
//!   resolved to (the entry, the path it was found at, its ETag and Content-Type header
//!   values). A version of a Hyperbee never changes (its blocks are signed), so an answer
//!   stays right for as long as that version is served; a site that moves to a new version
//!   is looked up afresh. Only lookups that found a file are kept.
//! - [`Bodies`]: the bytes of small files (one block, at most [`SMALL_BODY`] bytes), keyed by
//!   the blobs core and the entry's blob reference, read once through the checked content
//!   path ([`crate::site::FileContent`]: placement checked against the Merkle tree, only
//!   held blocks). Bytes of a verified block never change. Before a cached body is sent,
//!   the gateway still checks that the file's block is held.
//!
//! Both are bounded (entries, bytes) and start over or drop the least recently used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderValue;
use bytes::Bytes;

use crate::drive::{BlobRef, Entry};
use crate::model::keys::Key;

/// Largest file whose bytes are kept in memory (one hyperblobs block).
pub const SMALL_BODY: u64 = 64 * 1024;
/// Bytes of small files kept in memory at most.
pub const BODY_BUDGET: usize = 16 << 20;
/// Resolved paths kept at most (over all sites and versions); past that, the memory starts
/// over.
pub const MAX_LOOKUPS: usize = 16 * 1024;

/// A file a request path resolved to, with the header values every answer for it carries.
#[derive(Debug)]
pub struct Resolved {
    /// The path the file was found at (after following a link, or `…/index.html`).
    pub path: String,
    pub entry: Entry,
    pub etag: HeaderValue,
    pub content_type: HeaderValue,
}

impl Resolved {
    pub fn new(path: String, entry: Entry) -> Resolved {
        let etag = HeaderValue::from_str(&super::files::etag(&entry))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
        let content_type = HeaderValue::from_str(&super::files::content_type(&path))
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
        Resolved {
            path,
            entry,
            etag,
            content_type,
        }
    }
}

/// Per (site, version): request path (after `web_root`) → resolved file.
type ByVersion = HashMap<(Key, u64), HashMap<String, Arc<Resolved>>>;

/// Request path (after `web_root`) → resolved file, per (site, version), and how many
/// paths are kept.
#[derive(Default)]
pub struct Lookups {
    inner: Mutex<(ByVersion, usize)>,
}

impl Lookups {
    pub fn get(&self, site: &Key, version: u64, path: &str) -> Option<Arc<Resolved>> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(&(*site, version))?.get(path).cloned()
    }

    pub fn put(&self, site: Key, version: u64, path: &str, resolved: Arc<Resolved>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, count) = &mut *g;
        if *count >= MAX_LOOKUPS {
            map.clear();
            *count = 0;
        }
        if map
            .entry((site, version))
            .or_default()
            .insert(path.to_string(), resolved)
            .is_none()
        {
            *count += 1;
        }
    }
}

type BodyKey = (Key, u64, u64, u64, u64);

fn body_key(blobs: &Key, b: &BlobRef) -> BodyKey {
    (
        *blobs,
        b.block_offset,
        b.block_length,
        b.byte_offset,
        b.byte_length,
    )
}

/// Bytes of small files, least recently used dropped first.
pub struct Bodies {
    inner: Mutex<(lru::LruCache<BodyKey, Bytes>, usize)>,
    budget: usize,
}

impl Default for Bodies {
    fn default() -> Self {
        Bodies {
            inner: Mutex::new((lru::LruCache::unbounded(), 0)),
            budget: BODY_BUDGET,
        }
    }
}

impl Bodies {
    /// Is a file with this blob small enough to be kept?
    pub fn fits(blob: &BlobRef) -> bool {
        blob.byte_length <= SMALL_BODY && blob.block_length == 1
    }

    pub fn get(&self, blobs: &Key, blob: &BlobRef) -> Option<Bytes> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(&body_key(blobs, blob)).cloned()
    }

    /// Keeps `bytes`, the whole content of `blob` read through the checked content path.
    pub fn put(&self, blobs: &Key, blob: &BlobRef, bytes: Bytes) {
        if !Self::fits(blob) || bytes.len() as u64 != blob.byte_length {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (lru, total) = &mut *g;
        *total += bytes.len();
        if let Some(old) = lru.put(body_key(blobs, blob), bytes) {
            *total -= old.len();
        }
        while *total > self.budget {
            match lru.pop_lru() {
                Some((_, b)) => *total -= b.len(),
                None => break,
            }
        }
    }
}
