//! The blobs core (Hyperblobs layout): byte-range → block math and reading file content.
//!
//! Hyperblobs 2.x (as hyperdrive 11 uses it) appends each file as consecutive blocks of
//! [`BLOCK_SIZE`] bytes, starting at a fresh block, the last block possibly shorter; an
//! empty file has a [`BlobRef`] with zero blocks and zero bytes. `byteOffset` counts bytes
//! from the start of the whole blobs core.

use std::ops::Range;

use super::messages::BlobRef;
use super::{need_block, BlockSource, CoreKind, DriveError};

/// Hyperblobs' default block size (64 KiB).
pub const BLOCK_SIZE: u64 = 64 * 1024;

/// The blocks (absolute indexes in the blobs core) and the slices within them that hold
/// bytes `byte_range` of the file `blob` (relative to the file's start). The range is
/// clamped to the file; an empty or out-of-file range yields nothing; blocks beyond the
/// blob's declared `block_length` are never yielded. Assumes 64 KiB blocks, so callers
/// must still check each slice against the block they actually get ([`read_range`] does).
pub fn blob_blocks(
    blob: &BlobRef,
    byte_range: Range<u64>,
) -> impl Iterator<Item = (u64, Range<usize>)> {
    let end = byte_range.end.min(blob.byte_length);
    let start = byte_range.start.min(end);
    let (first, last) = if start < end {
        (start / BLOCK_SIZE, (end - 1) / BLOCK_SIZE + 1)
    } else {
        (0, 0)
    };
    let last = last.min(blob.block_length);
    let block_offset = blob.block_offset;
    (first..last).map_while(move |rel| {
        let block = block_offset.checked_add(rel)?;
        let block_start = rel * BLOCK_SIZE;
        let from = start.max(block_start) - block_start;
        let to = end.min(block_start.saturating_add(BLOCK_SIZE)) - block_start;
        Some((block, from as usize..to as usize))
    })
}

/// The length hyperblobs gives block `rel` (counted from the file's first block) of a file
/// of `byte_length` bytes: [`BLOCK_SIZE`], the last one the rest.
pub fn block_len(byte_length: u64, rel: u64) -> u64 {
    byte_length
        .saturating_sub(rel.saturating_mul(BLOCK_SIZE))
        .min(BLOCK_SIZE)
}

/// Reads bytes `byte_range` of `blob` (clamped to the file). Errors with
/// [`DriveError::Missing`] if a block is not held locally and [`DriveError::Corrupt`] if a
/// block's length is not the one the blob's shape gives it ([`block_len`]): only bytes of
/// the blob's own blocks, at their places, are ever returned.
pub async fn read_range<S: BlockSource>(
    blobs: &mut S,
    blob: &BlobRef,
    byte_range: Range<u64>,
) -> Result<Vec<u8>, DriveError> {
    let mut out = Vec::new();
    for (index, slice) in blob_blocks(blob, byte_range) {
        let block = need_block(blobs, CoreKind::Blobs, index).await?;
        let want = block_len(blob.byte_length, index - blob.block_offset);
        let bytes = block
            .get(slice.clone())
            .filter(|_| block.len() as u64 == want)
            .ok_or_else(|| {
                DriveError::corrupt(
                    CoreKind::Blobs,
                    index,
                    format!("block has {} bytes, the file needs {want}", block.len()),
                )
            })?;
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

/// Reads a whole file (for tests and small files; stream big ones with [`blob_blocks`]).
pub async fn read_file<S: BlockSource>(
    blobs: &mut S,
    blob: &BlobRef,
) -> Result<Vec<u8>, DriveError> {
    let data = read_range(blobs, blob, 0..blob.byte_length).await?;
    if data.len() as u64 != blob.byte_length {
        return Err(DriveError::corrupt(
            CoreKind::Blobs,
            blob.block_offset,
            format!(
                "blob declares {} bytes in {} blocks but holds {}",
                blob.byte_length,
                blob.block_length,
                data.len()
            ),
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(byte_length: u64) -> BlobRef {
        BlobRef {
            block_offset: 10,
            block_length: byte_length.div_ceil(BLOCK_SIZE),
            byte_offset: 12345,
            byte_length,
        }
    }

    fn blocks(b: &BlobRef, r: Range<u64>) -> Vec<(u64, Range<usize>)> {
        blob_blocks(b, r).collect()
    }

    #[test]
    fn range_math() {
        const B: usize = BLOCK_SIZE as usize;
        let b = blob(200 * 1024); // 3 full blocks + 8 KiB
        assert_eq!(blocks(&b, 0..200 * 1024).len(), 4);
        assert_eq!(blocks(&b, 0..200 * 1024)[3], (13, 0..8 * 1024));
        // inside one block
        assert_eq!(blocks(&b, 5..10), vec![(10, 5..10)]);
        assert_eq!(
            blocks(&b, 70_000..70_001),
            vec![(11, 70_000 - B..70_001 - B)]
        );
        // across a boundary
        assert_eq!(
            blocks(&b, (B as u64 - 2)..(B as u64 + 3)),
            vec![(10, B - 2..B), (11, 0..3)]
        );
        // exactly one block, ending on the boundary
        assert_eq!(blocks(&b, B as u64..2 * B as u64), vec![(11, 0..B)]);
        // empty and inverted ranges
        assert!(blocks(&b, 7..7).is_empty());
        #[allow(clippy::reversed_empty_ranges)]
        let inverted = 9..3;
        assert!(blocks(&b, inverted).is_empty());
        // clamped to the file
        assert_eq!(
            blocks(&b, 200 * 1024 - 1..u64::MAX),
            vec![(13, 8 * 1024 - 1..8 * 1024)]
        );
        assert!(blocks(&b, 200 * 1024..300 * 1024).is_empty());
        // empty file, exactly-64-KiB file
        assert!(blocks(&blob(0), 0..10).is_empty());
        assert_eq!(blocks(&blob(BLOCK_SIZE), 0..u64::MAX), vec![(10, 0..B)]);
    }

    #[test]
    fn hostile_refs_do_not_overflow() {
        let b = BlobRef {
            block_offset: u64::MAX - 1,
            block_length: 5,
            byte_offset: u64::MAX,
            byte_length: u64::MAX,
        };
        let v: Vec<_> = blob_blocks(&b, 0..u64::MAX).collect();
        assert_eq!(v.len(), 2);
        // declared block_length bounds the blocks even if byte_length says more
        let short = BlobRef {
            block_length: 1,
            ..blob(300 * 1024)
        };
        assert_eq!(blob_blocks(&short, 0..u64::MAX).count(), 1);
    }
}
