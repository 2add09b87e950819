//! Entries whose placement [`super::content::check_placement`] accepted, so a file read
//! again (every GET of a large file, every FUSE open) is not checked again leaf by leaf
//! (a 1 GiB file is 16,384 tree-node reads).
//!
//! An acceptance depends only on tree nodes of blocks below the core's length on its fork,
//! which never change: verified nodes of one fork are fixed by the signed roots. So it is
//! kept per (blobs core, fork, entry), and only for the very `Core` it was checked on (a
//! core removed and mirrored again is checked afresh). The cheap checks (shape, length,
//! bytes) run on every open anyway. Bounded: past [`MAX_PLACED`] entries it starts over.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use crate::drive::BlobRef;
use crate::store::Core;

/// Accepted entries kept at most.
pub const MAX_PLACED: usize = 4096;

type Id = ([u8; 32], u64, [u64; 4]);

static PLACED: LazyLock<Mutex<HashMap<Id, Weak<Core>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn id(blobs: &Core, fork: u64, blob: &BlobRef) -> Id {
    (
        blobs.key().0,
        fork,
        [
            blob.block_offset,
            blob.block_length,
            blob.byte_offset,
            blob.byte_length,
        ],
    )
}

/// The fork of `blobs` now, if the store knows the core.
pub fn fork(blobs: &Core) -> Option<u64> {
    blobs.engine().info(&blobs.key().0).ok().map(|i| i.fork)
}

/// Was `blob` accepted on this very core at `fork`?
pub fn known(blobs: &Arc<Core>, fork: u64, blob: &BlobRef) -> bool {
    let map = PLACED.lock().unwrap_or_else(|e| e.into_inner());
    map.get(&id(blobs, fork, blob))
        .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(blobs)))
}

/// Remembers that `blob` was accepted on `blobs` at `fork`.
pub fn remember(blobs: &Arc<Core>, fork: u64, blob: &BlobRef) {
    let mut map = PLACED.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_PLACED {
        map.clear();
    }
    map.insert(id(blobs, fork, blob), Arc::downgrade(blobs));
}
