//! A file's bytes, served only from blocks verified for that file — the one content reader
//! (and range computation) of the HTTP gateway and the site tree.
//!
//! An entry names its content twice: blocks `[blockOffset, blockOffset + blockLength)` of
//! the blobs core, and bytes `[byteOffset, byteOffset + byteLength)` of the core's byte
//! stream. Both come from the site's author. The fast path reads bytes straight from the
//! core's data file by byte offset, so before any byte is served [`FileContent::open`]
//! checks that the two agree with the blobs core's own Merkle tree: the tree's byte offset of
//! `blockOffset` is `byteOffset`, the file has the shape hyperblobs writes (64 KiB blocks,
//! the last one shorter), and each block's length in the tree is the length that shape
//! gives it. An entry that disagrees is refused ([`ContentError::Inconsistent`]: HTTP 502,
//! FUSE `EIO`, with the reason in the log); one whose blocks lie beyond the core is
//! [`DriveError::Missing`] (not synced yet). When the store does not hold the tree nodes the
//! check needs, the file is read block by block through the engine instead
//! ([`FileContent::straight`] is false): that path never uses the entry's byte offset, and
//! checks every block's length, so it too serves only the entry's own verified blocks.
//!
//! The tree comes from the engine: `Core::byte_offset_blocking` (the full roots left of a
//! block) and `Core::tree_node` (a leaf's byte length); an accepted entry is remembered per
//! core and fork ([`super::placed`]). The straight path looks up the locations of a run of
//! held blocks at once (the engine's `Store::block_run`: one read transaction, not one per
//! block), checks each block's stored length, and reads every stretch of blocks that lie back
//! to back in the core's data file with one `pread`, through the reader's own descriptor of
//! that file (checked to be the store's very file), so the kernel's readahead follows it.
//!
//! Sums of author-controlled numbers are checked or saturating: an entry near `u64::MAX`
//! is refused or clamped, never wraps.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::drive::{blob_blocks, read_range, BlobRef, CoreKind, DriveError, BLOCK_SIZE};
use crate::store::{Core, CoreReader};
use hypercore_engine::store::BlockRun;

/// Why a file's content cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A block or tree node is not held yet ([`DriveError::Missing`]: retry after syncing),
    /// or the drive cannot be read.
    #[error(transparent)]
    Drive(#[from] DriveError),
    /// The entry's offsets or lengths disagree with the blobs core's Merkle tree: the site's
    /// author wrote an inconsistent entry. Nothing of it is served.
    #[error(
        "the entry does not match the site's content ({0}); the site's author must republish it"
    )]
    Inconsistent(String),
    /// Reading the core's files failed.
    #[error("reading the site's content: {0}")]
    Io(#[from] std::io::Error),
}

impl ContentError {
    /// Not synced yet (a later try may succeed).
    pub fn is_missing(&self) -> bool {
        matches!(self, ContentError::Drive(DriveError::Missing { .. }))
    }
}

/// The bytes of one file entry whose placement was checked against the blobs core's tree.
#[derive(Clone)]
pub struct FileContent {
    blobs: Arc<Core>,
    blob: BlobRef,
    /// The placement was checked against the tree: bytes may be read straight from the
    /// data file ([`FileContent::read_held`]).
    straight: bool,
    /// This reader's own descriptor of the data file (shared by its clones: one response,
    /// one open FUSE file), so the kernel's readahead follows this reader alone.
    data: Arc<Mutex<Option<Arc<std::fs::File>>>>,
}

impl FileContent {
    /// Checks `blob` against `blobs` (see the module header) and returns its content.
    /// Reads the tree file on a blocking thread.
    pub async fn open(blobs: Arc<Core>, blob: BlobRef) -> Result<FileContent, ContentError> {
        let core = blobs.clone();
        let straight = tokio::task::spawn_blocking(move || check_placement(&core, &blob))
            .await
            .map_err(|e| ContentError::Io(std::io::Error::other(e.to_string())))??;
        Ok(FileContent {
            blobs,
            blob,
            straight,
            data: Arc::default(),
        })
    }

    /// May bytes be read straight from the data file ([`FileContent::read_held`])? Else
    /// only block by block ([`FileContent::read`]).
    pub fn straight(&self) -> bool {
        self.straight
    }

    /// Reads bytes `range` (clamped to the file) of held blocks the fastest safe way:
    /// straight from the data file when the placement was checked, else block by block.
    pub async fn read_any(&self, range: Range<u64>) -> std::io::Result<Vec<u8>> {
        if self.straight {
            let this = self.clone();
            return tokio::task::spawn_blocking(move || this.read_held(range))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        self.read(range).await.map_err(std::io::Error::other)
    }

    /// The blobs core the bytes are in.
    pub fn core(&self) -> &Arc<Core> {
        &self.blobs
    }

    pub fn blob(&self) -> &BlobRef {
        &self.blob
    }

    /// The file's size in bytes.
    pub fn len(&self) -> u64 {
        self.blob.byte_length
    }

    pub fn is_empty(&self) -> bool {
        self.blob.byte_length == 0
    }

    /// `range` clamped to the file (empty if it starts past the end).
    pub fn clamp(&self, range: Range<u64>) -> Range<u64> {
        clamp(&self.blob, range)
    }

    /// Is every block that holds bytes `range` of the file held (so verified)?
    pub async fn held(&self, range: Range<u64>) -> bool {
        let length = self.blobs.info().length;
        blob_blocks(&self.blob, range).all(|(index, _)| index < length && self.blobs.has(index))
    }

    /// Is every block of the file held?
    pub async fn all_held(&self) -> bool {
        self.held(0..self.blob.byte_length).await
    }

    /// Reads bytes `range` of the file (clamped to it) straight from the blobs core's data
    /// file, at each verified block's recorded location. Only for ranges
    /// [`FileContent::held`] accepted, of a file whose placement was checked
    /// ([`FileContent::straight`]; an error otherwise). Blocks the calling thread.
    pub fn read_held(&self, range: Range<u64>) -> std::io::Result<Vec<u8>> {
        if !self.straight {
            return Err(std::io::Error::other(
                "this file's placement is not checked yet; read it block by block",
            ));
        }
        let range = self.clamp(range);
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let len = usize::try_from(range.end - range.start)
            .map_err(|_| std::io::Error::other("range too large for memory"))?;
        // The placement check proved the file's blocks are 64 KiB each from `block_offset`
        // (the last one shorter), so bytes `range` lie in blocks `first..=last`.
        let first = range.start / BLOCK_SIZE;
        let last = (range.end - 1) / BLOCK_SIZE;
        let (from, to) = (
            self.blob.block_offset.saturating_add(first),
            self.blob
                .block_offset
                .saturating_add(last)
                .saturating_add(1),
        );
        let run = self
            .blobs
            .engine()
            .block_run(&self.blobs.key().0, from, to)
            .map_err(std::io::Error::other)?;
        // One pread per stretch of blocks that lie back to back in the data file.
        let mut stretches: Vec<(u64, usize)> = Vec::new(); // (file offset, bytes)
        for (rel, loc) in (first..=last).zip(run.locations.iter()) {
            let block_start = rel * BLOCK_SIZE;
            let want = (self.blob.byte_length - block_start).min(BLOCK_SIZE);
            if loc.len != want {
                return Err(std::io::Error::other(format!(
                    "block {} has {} bytes on disk, the checked entry needs {want}",
                    self.blob.block_offset + rel,
                    loc.len
                )));
            }
            let skip = range.start.saturating_sub(block_start);
            let take = (want.min(range.end - block_start) - skip) as usize;
            let at = loc.offset.saturating_add(skip);
            match stretches.last_mut() {
                Some((p, n)) if p.checked_add(*n as u64) == Some(at) => *n += take,
                _ => stretches.push((at, take)),
            }
        }
        if stretches.iter().map(|s| s.1).sum::<usize>() != len {
            return Err(std::io::Error::other(format!(
                "block {} is not held",
                from + run.locations.len() as u64
            )));
        }
        let own = self.own_file(&run);
        let mut out = Vec::with_capacity(len);
        for (at, n) in stretches {
            match &own {
                Some(f) => pread_append(f, &mut out, n, at)?,
                None => {
                    let from = out.len();
                    out.resize(from + n, 0);
                    run.read_exact_at(&mut out[from..], at)?;
                }
            }
        }
        Ok(out)
    }

    /// This reader's own descriptor of the data file `run` is in (opened on first use),
    /// or `None` (then the store's own is used) if it cannot be opened or is not that file
    /// (the core was removed and mirrored again since).
    fn own_file(&self, run: &BlockRun) -> Option<Arc<std::fs::File>> {
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let same = |f: &std::fs::File| run.is_file(f).unwrap_or(false);
        if let Some(f) = data.as_ref().filter(|f| same(f)) {
            return Some(f.clone());
        }
        *data = std::fs::File::open(&run.path)
            .ok()
            .filter(|f| same(f))
            .map(Arc::new);
        if let Some(f) = data.as_ref() {
            use std::os::fd::AsRawFd;
            // Readers here mostly read on (a GET, a `cat`): a larger readahead window.
            // SAFETY: a valid open descriptor; the call only sets a hint on it.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
        }
        data.clone()
    }

    /// Reads bytes `range` of the file (clamped to it) block by block through the engine; a
    /// block not held yet is [`DriveError::Missing`].
    pub async fn read(&self, range: Range<u64>) -> Result<Vec<u8>, DriveError> {
        let mut reader = CoreReader::new(self.blobs.clone());
        read_range(&mut reader, &self.blob, range).await
    }
}

/// Appends exactly `n` bytes read at `offset` of `file` to `out`, without zeroing them
/// first: a 1 MiB `memset` per chunk was 15% of the gateway's CPU time sending a large
/// file (perf, `scripts/bench/http.sh`).
fn pread_append(
    file: &std::fs::File,
    out: &mut Vec<u8>,
    n: usize,
    mut offset: u64,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    out.reserve(n);
    let mut left = n;
    while left > 0 {
        let at = libc::off_t::try_from(offset)
            .map_err(|_| std::io::Error::other("offset beyond the largest file offset"))?;
        let spare = out.spare_capacity_mut();
        // SAFETY: `spare` has room for at least `left` bytes (reserved above; the length
        // only grows by what was read since), and pread writes at most `left` bytes to it.
        let r = unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), left, at) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let r = r as usize; // 0 < r <= left
                            // SAFETY: pread initialized the `r` bytes after the current length.
        unsafe { out.set_len(out.len() + r) };
        left -= r;
        offset += r as u64;
    }
    Ok(())
}

/// `range` clamped to the file `blob` (empty, at the end, if it starts past it).
pub fn clamp(blob: &BlobRef, range: Range<u64>) -> Range<u64> {
    let end = range.end.min(blob.byte_length);
    range.start.min(end)..end
}

/// The checks of [`FileContent::open`], on the calling thread: `Ok(true)` when the entry
/// agrees with the tree, `Ok(false)` when the tree file lacks a node the check needs.
pub fn check_placement(blobs: &Arc<Core>, blob: &BlobRef) -> Result<bool, ContentError> {
    if blob.byte_length == 0 && blob.block_length == 0 {
        return Ok(true);
    }
    let inconsistent = |why: String| Err(ContentError::Inconsistent(why));
    if blob.block_length != blob.byte_length.div_ceil(BLOCK_SIZE) {
        return inconsistent(format!(
            "{} bytes cannot be {} blocks of 64 KiB",
            blob.byte_length, blob.block_length
        ));
    }
    let (Some(end_block), Some(end_byte)) = (
        blob.block_offset.checked_add(blob.block_length),
        blob.byte_offset.checked_add(blob.byte_length),
    ) else {
        return inconsistent("offsets beyond 2^64".into());
    };
    let info = blobs.info();
    if end_block > info.length {
        // The core may still grow to hold it.
        return Err(DriveError::Missing {
            core: CoreKind::Blobs,
            index: end_block - 1,
        }
        .into());
    }
    if end_byte > info.byte_length {
        return inconsistent(format!(
            "bytes up to {end_byte}, the content core has {}",
            info.byte_length
        ));
    }
    // Accepted before on this core and fork: the tree nodes below its length never change.
    let fork = super::placed::fork(blobs);
    if fork.is_some_and(|f| super::placed::known(blobs, f, blob)) {
        return Ok(true);
    }
    let unknown = |index| {
        tracing::debug!("blobs tree node for block {index} not stored; reading block by block");
        Ok(false)
    };
    let offset = blobs
        .byte_offset_blocking(blob.block_offset)
        .map_err(|e| ContentError::Io(std::io::Error::other(e.to_string())))?;
    let Some(offset) = offset else {
        return unknown(blob.block_offset);
    };
    if offset != blob.byte_offset {
        return inconsistent(format!(
            "byte offset {}, but block {} starts at byte {offset}",
            blob.byte_offset, blob.block_offset
        ));
    }
    for r in 0..blob.block_length {
        let index = blob.block_offset + r;
        let leaf = blobs
            .tree_node(index.saturating_mul(2))
            .map_err(|e| ContentError::Io(std::io::Error::other(e.to_string())))?;
        let Some(leaf) = leaf else {
            return unknown(index);
        };
        let want = (blob.byte_length - r * BLOCK_SIZE).min(BLOCK_SIZE);
        if leaf.size != want {
            return inconsistent(format!(
                "block {index} has {} bytes, the entry needs {want}",
                leaf.size
            ));
        }
    }
    if let Some(f) = fork {
        super::placed::remember(blobs, f, blob);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::full_roots;

    #[test]
    fn full_roots_match_flat_tree() {
        // flat-tree: fullRoots(0) = [], fullRoots(2) = [0], fullRoots(8) = [3],
        // fullRoots(16) = [7], fullRoots(18) = [7, 16], fullRoots(22) = [7, 17, 20]
        assert_eq!(full_roots(0), Vec::<u64>::new());
        assert_eq!(full_roots(2), vec![0]);
        assert_eq!(full_roots(8), vec![3]);
        assert_eq!(full_roots(16), vec![7]);
        assert_eq!(full_roots(18), vec![7, 16]);
        assert_eq!(full_roots(22), vec![7, 17, 20]);
        assert_eq!(full_roots(u64::MAX - 1).len(), 63);
    }

    #[test]
    fn clamp_near_u64_max() {
        let blob = BlobRef {
            block_offset: 0,
            block_length: u64::MAX.div_ceil(BLOCK_SIZE),
            byte_offset: u64::MAX - 1,
            byte_length: u64::MAX,
        };
        assert_eq!(clamp(&blob, u64::MAX - 5..u64::MAX), u64::MAX - 5..u64::MAX);
        #[allow(clippy::reversed_empty_ranges)]
        let inverted = 10..5;
        assert_eq!(clamp(&blob, inverted), 5..5);
    }

    /// A blobs core holding two files the way hyperblobs writes them: `a` (3 blocks,
    /// 64 KiB + 64 KiB + 10 bytes) then `b` (1 block, 7 bytes).
    async fn two_files() -> (tempfile::TempDir, Arc<Core>, BlobRef, BlobRef) {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::store::CoreStore::new(tmp.path()).unwrap();
        let core = store
            .open_or_create_writable(&hypercore_engine::KeyPair::generate().unwrap())
            .await
            .unwrap();
        let b = BLOCK_SIZE as usize;
        core.append_batch(&[vec![1; b], vec![2; b], vec![3; 10], b"bbbbbbb".to_vec()])
            .await
            .unwrap();
        let a = BlobRef {
            block_offset: 0,
            block_length: 3,
            byte_offset: 0,
            byte_length: 2 * BLOCK_SIZE + 10,
        };
        let bb = BlobRef {
            block_offset: 3,
            block_length: 1,
            byte_offset: 2 * BLOCK_SIZE + 10,
            byte_length: 7,
        };
        (tmp, core, a, bb)
    }

    #[tokio::test]
    async fn consistent_entries_are_served() {
        let (_t, core, a, b) = two_files().await;
        let ca = FileContent::open(core.clone(), a).await.unwrap();
        assert!(ca.straight(), "a writer's tree file holds every node");
        assert!(ca.all_held().await);
        let bytes = ca.read_held(2 * BLOCK_SIZE - 1..u64::MAX).unwrap();
        assert_eq!(bytes[0], 2);
        assert_eq!(&bytes[1..], &[3; 10]);
        assert_eq!(ca.read(0..3).await.unwrap(), vec![1; 3]);
        let cb = FileContent::open(core.clone(), b).await.unwrap();
        assert_eq!(cb.read_held(0..100).unwrap(), b"bbbbbbb");
        // An empty file needs nothing.
        FileContent::open(core.clone(), BlobRef::default())
            .await
            .unwrap();
        // Accepted entries are remembered for this core and fork; nothing else is.
        let fork = super::super::placed::fork(&core).unwrap();
        assert!(super::super::placed::known(&core, fork, &a));
        let lying = BlobRef {
            byte_offset: 0,
            ..b
        };
        assert!(FileContent::open(core.clone(), lying).await.is_err());
        assert!(!super::super::placed::known(&core, fork, &lying));
        // Reads that start and end inside blocks, across blocks, and a whole file.
        let all: Vec<u8> = [vec![1u8; BLOCK_SIZE as usize], vec![2; BLOCK_SIZE as usize]]
            .concat()
            .into_iter()
            .chain([3u8; 10])
            .collect();
        for (s, e) in [
            (0, 1),
            (5, BLOCK_SIZE + 3),
            (BLOCK_SIZE, 2 * BLOCK_SIZE + 10),
            (1, 200_000),
        ] {
            let got = ca.read_held(s..e).unwrap();
            let e = e.min(all.len() as u64);
            assert_eq!(got, all[s as usize..e as usize], "{s}..{e}");
        }
    }

    /// #14 item 8: an entry that names file b's block but a byte offset inside file a
    /// would have the straight reader serve a's bytes as b's. Refused, as are entries whose
    /// blocks do not have the lengths the entry's shape gives them.
    #[tokio::test]
    async fn inconsistent_entries_are_refused() {
        let (_t, core, a, b) = two_files().await;
        let refused = |r: Result<FileContent, ContentError>| match r {
            Err(ContentError::Inconsistent(why)) => why,
            Err(e) => panic!("refused for the wrong reason: {e}"),
            Ok(_) => panic!("an inconsistent entry was accepted"),
        };
        let lying_offset = BlobRef {
            byte_offset: 0,
            ..b
        };
        let why = refused(FileContent::open(core.clone(), lying_offset).await);
        assert!(why.contains("block 3 starts at byte 131082"), "{why}");
        // Right start, wrong block lengths: a's first 2 blocks claimed as 64 KiB + 10 bytes.
        let short = BlobRef {
            block_length: 2,
            byte_length: BLOCK_SIZE + 10,
            ..a
        };
        let why = refused(FileContent::open(core.clone(), short).await);
        assert!(why.contains("block 1 has 65536 bytes"), "{why}");
        // A shape hyperblobs never writes.
        let odd = BlobRef {
            block_length: 1,
            ..a
        };
        refused(FileContent::open(core.clone(), odd).await);
        // Past the core's bytes.
        let long = BlobRef {
            byte_length: 7 + 1,
            ..b
        };
        refused(FileContent::open(core.clone(), long).await);
        // The block path refuses a block of the wrong length too.
        let mut reader = CoreReader::new(core.clone());
        let r = read_range(&mut reader, &short, 0..BLOCK_SIZE + 10).await;
        assert!(matches!(r, Err(DriveError::Corrupt { .. })), "{r:?}");
        // Blocks beyond the core: not synced yet.
        let later = BlobRef {
            block_offset: 4,
            ..b
        };
        let e = FileContent::open(core, later).await.err().unwrap();
        assert!(e.is_missing(), "{e}");
    }

    /// #14 item 9: lengths near `u64::MAX` are refused without overflowing.
    #[tokio::test]
    async fn huge_entries_do_not_overflow() {
        let (_t, core, _, _) = two_files().await;
        for blob in [
            BlobRef {
                block_offset: u64::MAX - 3,
                block_length: u64::MAX,
                byte_offset: u64::MAX,
                byte_length: u64::MAX,
            },
            BlobRef {
                block_offset: 1,
                block_length: u64::MAX.div_ceil(BLOCK_SIZE),
                byte_offset: 5,
                byte_length: u64::MAX,
            },
            BlobRef {
                block_offset: u64::MAX,
                block_length: 1,
                byte_offset: u64::MAX - 2,
                byte_length: 3,
            },
        ] {
            let r = FileContent::open(core.clone(), blob).await;
            assert!(r.is_err(), "{blob:?}");
        }
        assert_eq!(
            crate::drive::blobs::block_len(u64::MAX, u64::MAX),
            0,
            "no overflow in the block length rule"
        );
    }
}
