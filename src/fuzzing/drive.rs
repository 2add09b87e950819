//! Fuzz entry points for the site drive formats, which come from whoever publishes a site:
//! the Hyperbee header and node blocks, the JSON entries, whole trees of blocks read
//! through the tree reader, and blob pointers read from the blobs core.

use std::ops::Range;

use futures::executor::block_on;

use super::take_u64;
use crate::drive::messages::{decode_index, decode_node, encode_index, encode_node};
use crate::drive::{
    blob_blocks, decode_entry, decode_header, encode_entry, encode_header, get_entry, key_path,
    list, read_range, BlobRef, BlockSource, DirEntry, DriveError, BLOCK_SIZE,
};

/// Block 0 of a db core.
pub fn drive_header(data: &[u8]) {
    if let Ok(h) = decode_header(data) {
        if let Some(feed) = h.content_feed {
            let again = decode_header(&encode_header(&feed)).expect("encoded header decodes");
            assert_eq!(again.content_feed, Some(feed));
        }
    }
}

/// A db node block and the `YoloIndex` inside it.
pub fn drive_node(data: &[u8]) {
    if let Ok(n) = decode_node(1, data) {
        let again = encode_node(&n.index, &n.key, n.value.as_deref());
        assert_eq!(decode_node(1, &again).expect("encoded node decodes"), n);
        let _ = key_path(&n.key);
        check_index(&n.index);
    }
    check_index(data);
}

fn check_index(bytes: &[u8]) {
    if let Ok(levels) = decode_index(1, bytes) {
        let again = decode_index(1, &encode_index(&levels)).expect("encoded index decodes");
        assert_eq!(again, levels);
    }
}

/// A hyperdrive entry (the JSON value of a file's key).
pub fn drive_entry(data: &[u8]) {
    if let Ok(e) = decode_entry(1, data) {
        let again = decode_entry(1, &encode_entry(&e)).expect("encoded entry decodes");
        assert_eq!(again.blob, e.blob);
        assert_eq!(again.linkname, e.linkname);
    }
}

/// An in-memory core: `None` blocks are "not held yet". Counts reads.
struct MemCore {
    blocks: Vec<Option<Vec<u8>>>,
    reads: u64,
}

impl BlockSource for MemCore {
    fn length(&self) -> u64 {
        self.blocks.len() as u64
    }

    async fn block(&mut self, index: u64) -> Result<Option<Vec<u8>>, DriveError> {
        self.reads += 1;
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        Ok(self.blocks.get(i).cloned().flatten())
    }
}

/// Splits fuzz input into blocks: a little-endian `u16` length, then that many bytes;
/// length `0xffff` is a block that is not held.
fn blocks_of(mut data: &[u8]) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = u16::from_le_bytes([data[0], data[1]]);
        data = &data[2..];
        if len == u16::MAX {
            out.push(None);
            continue;
        }
        let n = (len as usize).min(data.len());
        out.push(Some(data[..n].to_vec()));
        data = &data[n..];
    }
    out
}

/// Encodes blocks as [`drive_tree`] reads them (used to write its seed inputs).
pub fn drive_tree_input(blocks: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in blocks {
        match b {
            None => out.extend_from_slice(&u16::MAX.to_le_bytes()),
            Some(b) => {
                let b = &b[..b.len().min(u16::MAX as usize - 1)];
                out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    out
}

/// A whole db core (a header, then the fuzzed blocks) read the way the gateway and the
/// site tree read it: point lookups and listings at every version, then the files found,
/// read from a blobs core made of the same blocks. Each call may read each block at most
/// once (the reader caches), listings come out in order and inside their folder.
pub fn drive_tree(data: &[u8]) {
    let mut blocks = vec![Some(encode_header(&[9; 32]))];
    blocks.extend(blocks_of(data));
    let mut db = MemCore {
        blocks: blocks.clone(),
        reads: 0,
    };
    let mut blobs = MemCore { blocks, reads: 0 };
    let length = db.length();
    for version in (0..=length).rev().take(4) {
        for path in ["/index.html", "/a/b", "/", "/dat.json"] {
            let before = db.reads;
            let _ = block_on(get_entry(&mut db, version, path));
            assert!(db.reads - before <= version, "re-read blocks");
        }
        for (folder, recursive) in [("/", true), ("/", false), ("/a", false), ("/a/", true)] {
            let before = db.reads;
            let Ok(items) = block_on(list(&mut db, version, folder, recursive)) else {
                continue;
            };
            assert!(db.reads - before <= version, "re-read blocks");
            check_listing(folder, recursive, &items);
            for item in items.iter().take(8) {
                if let DirEntry::File {
                    entry: crate::drive::Entry { blob: Some(b), .. },
                    ..
                } = item
                {
                    read_blob(&mut blobs, b, 0..b.byte_length);
                }
            }
        }
    }
}

fn check_listing(folder: &str, recursive: bool, items: &[DirEntry]) {
    let prefix = format!("{}/", folder.trim_end_matches('/'));
    let prefix = if prefix == "//" {
        "/".to_string()
    } else {
        prefix
    };
    // Key order, a folder sorting as if its name ended in `/`.
    let order = |d: &DirEntry| match d {
        DirEntry::Dir { path } => format!("{path}/"),
        DirEntry::File { path, .. } => path.clone(),
    };
    for w in items.windows(2) {
        assert!(order(&w[0]) < order(&w[1]), "listing out of order");
    }
    for item in items {
        let p = item.path();
        assert!(p.starts_with(&prefix) && p.len() > prefix.len(), "{p:?}");
        if !recursive {
            assert!(
                !p[prefix.len()..].contains('/'),
                "{p:?} is not directly in {prefix}"
            );
        }
    }
}

fn read_blob(blobs: &mut MemCore, blob: &BlobRef, range: Range<u64>) {
    let want = range.end.min(blob.byte_length).saturating_sub(range.start);
    if let Ok(bytes) = block_on(read_range(blobs, blob, range)) {
        assert!(bytes.len() as u64 <= want, "read more than the range");
    }
}

/// A blob pointer (first 32 bytes) and a byte range of it (next 16), read from a blobs
/// core made of the rest (64 KiB blocks, the last one shorter).
pub fn blob_pointer(data: &[u8]) {
    let (block_offset, data) = take_u64(data);
    let (block_length, data) = take_u64(data);
    let (byte_offset, data) = take_u64(data);
    let (byte_length, data) = take_u64(data);
    let (start, data) = take_u64(data);
    let (end, data) = take_u64(data);
    let blob = BlobRef {
        block_offset: block_offset % 1024,
        block_length,
        byte_offset,
        byte_length,
    };
    let mut prev = None;
    let mut total = 0u64;
    for (block, slice) in blob_blocks(&blob, start..end).take(1024) {
        assert!(
            prev.is_none_or(|p| block == p + 1),
            "blocks not consecutive"
        );
        assert!(block >= blob.block_offset && block - blob.block_offset < blob.block_length);
        assert!(
            slice.start < slice.end && slice.end as u64 <= BLOCK_SIZE,
            "{slice:?}"
        );
        total += (slice.end - slice.start) as u64;
        prev = Some(block);
    }
    assert!(total <= end.saturating_sub(start));
    let mut blocks: Vec<Option<Vec<u8>>> = vec![None; blob.block_offset as usize];
    blocks.extend(data.chunks(BLOCK_SIZE as usize).map(|c| Some(c.to_vec())));
    let mut blobs = MemCore { blocks, reads: 0 };
    read_blob(&mut blobs, &blob, start..end);
}

/// A real little drive (written by the product's Hyperbee editor), as [`drive_tree`]
/// input: a seed for the fuzzer, which rarely builds a valid tree from nothing.
pub fn drive_tree_seed() -> Vec<u8> {
    use crate::drive::bee::Editor;
    use crate::drive::{file_key, Entry};
    let mut db = MemCore {
        blocks: vec![Some(encode_header(&[9; 32]))],
        reads: 0,
    };
    let files = [
        "/index.html",
        "/a/b",
        "/a/c.txt",
        "/a/d/e",
        "/dat.json",
        "/z",
    ];
    let blocks = block_on(async {
        let mut ed = Editor::open(&mut db).await.expect("empty drive opens");
        for (i, path) in files.iter().enumerate() {
            let entry = Entry {
                blob: Some(BlobRef {
                    block_offset: i as u64 + 1,
                    block_length: 1,
                    byte_offset: 0,
                    byte_length: 3,
                }),
                ..Entry::default()
            };
            ed.put(&file_key(path), &encode_entry(&entry))
                .await
                .expect("put");
        }
        ed.del(&file_key("/z")).await.expect("del");
        ed.into_blocks()
    });
    drive_tree_input(&blocks.into_iter().map(Some).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed is a real drive: every file it put (not the deleted one) is listed.
    #[test]
    fn the_tree_seed_is_a_readable_drive() {
        let mut blocks = vec![Some(encode_header(&[9; 32]))];
        blocks.extend(blocks_of(&drive_tree_seed()));
        let mut db = MemCore { blocks, reads: 0 };
        let v = db.length();
        let all = block_on(list(&mut db, v, "/", true)).unwrap();
        let paths: Vec<&str> = all.iter().map(DirEntry::path).collect();
        assert_eq!(
            paths,
            ["/a/b", "/a/c.txt", "/a/d/e", "/dat.json", "/index.html"]
        );
        let top = block_on(list(&mut db, v, "/", false)).unwrap();
        assert_eq!(top.len(), 3, "{top:?}");
        assert!(block_on(get_entry(&mut db, v, "/a/b")).unwrap().is_some());
        drive_tree(&drive_tree_seed());
    }
}
