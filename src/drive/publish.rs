//! Publishing a local folder as a new version of a drive: scanning the folder, diffing it
//! against the drive's latest version, streaming new content into the blobs core and
//! writing the db blocks for the differences.
//!
//! Regular files become entries with a blob; symlinks become entries with `linkname`
//! (never followed); directories are implicit; other file types (sockets, FIFOs, devices)
//! cannot be published and are listed in [`PublishReport::skipped`]. Unchanged files
//! (same kind, size, content and executable bit) keep their entry and write nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hypercore_engine::Batch;
use tokio::io::AsyncReadExt;

use super::bee::Editor;
use super::blobs::BLOCK_SIZE;
use super::messages::{decode_header, encode_entry, encode_header, file_key, BlobRef, Entry};
use super::tree::{list, DirEntry};
use super::{need_block, BlockSource, CoreKind, DriveError, EngineCore};

/// Content staged before it is committed on its own (a publish step): the last step
/// commits what is left of the content with the db blocks, in one atomic commit.
const STAGE_BYTES: u64 = 32 << 20;

/// What one [`publish`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishReport {
    /// The drive version (db core length) after publishing.
    pub version: u64,
    /// Entries (files and symlinks) in that version.
    pub files: u64,
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    /// Bytes of file content appended to the blobs core.
    pub bytes_appended: u64,
    /// Local paths that are neither regular files, symlinks nor directories.
    pub skipped: Vec<PathBuf>,
}

enum Local {
    File {
        abs: PathBuf,
        size: u64,
        executable: bool,
    },
    Symlink {
        target: String,
    },
}

/// Scans `dir` recursively into drive paths (`/a/b`), sorted.
fn scan(dir: &Path) -> Result<(BTreeMap<String, Local>, Vec<PathBuf>), DriveError> {
    let meta = std::fs::metadata(dir).map_err(|e| DriveError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(DriveError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut files = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs_dir, drive_dir)) = todo.pop() {
        let rd = std::fs::read_dir(&abs_dir).map_err(|e| DriveError::io(&abs_dir, e))?;
        for item in rd {
            let item = item.map_err(|e| DriveError::io(&abs_dir, e))?;
            let abs = item.path();
            let name = item.file_name();
            let name = name.to_str().ok_or_else(|| DriveError::BadPath {
                path: abs.clone(),
                reason: "file name is not UTF-8".into(),
            })?;
            let path = format!("{drive_dir}/{name}");
            let meta = std::fs::symlink_metadata(&abs).map_err(|e| DriveError::io(&abs, e))?;
            let ft = meta.file_type();
            if ft.is_dir() {
                todo.push((abs, path));
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&abs).map_err(|e| DriveError::io(&abs, e))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| DriveError::BadPath {
                        path: abs.clone(),
                        reason: "symlink target is not UTF-8".into(),
                    })?
                    .to_string();
                files.insert(path, Local::Symlink { target });
            } else if ft.is_file() {
                files.insert(
                    path,
                    Local::File {
                        abs,
                        size: meta.len(),
                        executable: is_executable(&meta),
                    },
                );
            } else {
                skipped.push(abs);
            }
        }
    }
    Ok((files, skipped))
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o100 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// Reads up to `buf.len()` bytes, stopping early only at end of file.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]).await? {
            0 => break,
            r => n += r,
        }
    }
    Ok(n)
}

/// Whether the local file has exactly the content of `blob` (false if a block is missing).
async fn same_content(
    blobs: &mut EngineCore,
    blob: &BlobRef,
    abs: &Path,
) -> Result<bool, DriveError> {
    let mut file = tokio::fs::File::open(abs)
        .await
        .map_err(|e| DriveError::io(abs, e))?;
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let mut remaining = blob.byte_length;
    for i in 0..blob.block_length {
        let block = match need_block(blobs, CoreKind::Blobs, blob.block_offset + i).await {
            Ok(b) => b,
            Err(DriveError::Missing { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let want = (block.len() as u64).min(remaining) as usize;
        let n = read_full(&mut file, &mut buf[..want])
            .await
            .map_err(|e| DriveError::io(abs, e))?;
        if n != want || buf[..n] != block[..n] {
            return Ok(false);
        }
        remaining -= n as u64;
    }
    let extra = read_full(&mut file, &mut buf[..1])
        .await
        .map_err(|e| DriveError::io(abs, e))?;
    Ok(remaining == 0 && extra == 0)
}

/// Content of one publish not committed yet, and the blobs core's length and byte length
/// once it is.
struct Staged {
    blocks: Vec<Vec<u8>>,
    bytes: u64,
    length: u64,
    byte_length: u64,
}

/// Commits `batch` (one durable, atomic engine commit) on the blocking pool.
async fn commit(store: &hypercore_engine::Store, batch: Batch) -> Result<(), DriveError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.commit(batch))
        .await
        .map_err(|e| DriveError::Storage(e.to_string().into()))??;
    Ok(())
}

/// Commits the staged content on its own when it has grown past [`STAGE_BYTES`].
async fn flush_if_full(blobs: &EngineCore, staged: &mut Staged) -> Result<(), DriveError> {
    if staged.bytes < STAGE_BYTES {
        return Ok(());
    }
    let mut batch = Batch::new();
    batch.append(blobs.key, std::mem::take(&mut staged.blocks));
    staged.bytes = 0;
    commit(&blobs.store, batch).await
}

/// Stages a local file for the blobs core in 64 KiB blocks.
async fn append_file(
    blobs: &EngineCore,
    staged: &mut Staged,
    abs: &Path,
) -> Result<BlobRef, DriveError> {
    let mut blob = BlobRef {
        block_offset: staged.length,
        block_length: 0,
        byte_offset: staged.byte_length,
        byte_length: 0,
    };
    let mut file = tokio::fs::File::open(abs)
        .await
        .map_err(|e| DriveError::io(abs, e))?;
    loop {
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        let n = read_full(&mut file, &mut buf)
            .await
            .map_err(|e| DriveError::io(abs, e))?;
        if n > 0 {
            buf.truncate(n);
            blob.block_length += 1;
            blob.byte_length += n as u64;
            staged.length += 1;
            staged.byte_length += n as u64;
            staged.bytes += n as u64;
            staged.blocks.push(buf);
            flush_if_full(blobs, staged).await?;
        }
        if n < BLOCK_SIZE as usize {
            return Ok(blob);
        }
    }
}

enum Op {
    /// Put an entry; `Some(path)` means its content must be appended first.
    Put(Entry, Option<PathBuf>),
    Del,
}

/// Publishes `dir` as the next version of the drive (`db`, `blobs`), both writable.
///
/// On an empty db this writes the header (`contentFeed` = the blobs core key) and every
/// file; otherwise it writes one db block per added, changed or removed entry (nothing at
/// all if nothing changed). Content is committed in steps of [`STAGE_BYTES`]; the last
/// step commits the rest of the content with the db blocks in one atomic commit, so a crash
/// leaves at worst unreferenced blob blocks, never an entry without its content.
pub async fn publish(
    db: &mut EngineCore,
    blobs: &mut EngineCore,
    dir: &Path,
) -> Result<PublishReport, DriveError> {
    let blobs_key = blobs.key;
    let owned = dir.to_path_buf();
    let (local, skipped) = tokio::task::spawn_blocking(move || scan(&owned))
        .await
        .map_err(|e| DriveError::io(dir, std::io::Error::other(e)))??;
    for path in &skipped {
        tracing::warn!(path = %path.display(), "not a regular file, symlink or directory; skipped");
    }

    let length = db.length();
    let mut old: BTreeMap<String, Entry> = BTreeMap::new();
    if length > 0 {
        let header = decode_header(&need_block(db, CoreKind::Db, 0).await?)?;
        if header.content_feed != Some(blobs_key) {
            return Err(DriveError::ContentFeedMismatch);
        }
        for item in list(db, length, "/", true).await? {
            if let DirEntry::File { path, entry } = item {
                old.insert(path, entry);
            }
        }
    }

    let mut report = PublishReport {
        files: local.len() as u64,
        skipped,
        ..Default::default()
    };
    let mut ops: BTreeMap<String, Op> = BTreeMap::new();
    for (path, loc) in &local {
        let prev = old.get(path);
        let metadata = prev.map(|e| e.metadata.clone()).unwrap_or_default();
        let op = match loc {
            Local::Symlink { target } => {
                if prev.is_some_and(|e| e.linkname.as_ref() == Some(target) && e.blob.is_none()) {
                    continue;
                }
                let entry = Entry {
                    executable: false,
                    linkname: Some(target.clone()),
                    blob: None,
                    metadata,
                };
                Op::Put(entry, None)
            }
            Local::File {
                abs,
                size,
                executable,
            } => {
                let reusable = match prev {
                    Some(Entry {
                        linkname: None,
                        blob: Some(b),
                        ..
                    }) if b.byte_length == *size && same_content(blobs, b, abs).await? => Some(*b),
                    _ => None,
                };
                match reusable {
                    Some(_) if prev.is_some_and(|e| e.executable == *executable) => continue,
                    Some(b) => Op::Put(
                        Entry {
                            executable: *executable,
                            linkname: None,
                            blob: Some(b),
                            metadata,
                        },
                        None,
                    ),
                    None => Op::Put(
                        Entry {
                            executable: *executable,
                            linkname: None,
                            blob: None,
                            metadata,
                        },
                        Some(abs.clone()),
                    ),
                }
            }
        };
        if prev.is_some() {
            report.changed += 1;
        } else {
            report.added += 1;
        }
        ops.insert(path.clone(), op);
    }
    for path in old.keys() {
        if !local.contains_key(path) {
            report.removed += 1;
            ops.insert(path.clone(), Op::Del);
        }
    }

    // Content first, in path order.
    let info = blobs.store.info(&blobs.key)?;
    let before = info.byte_length;
    let mut staged = Staged {
        blocks: Vec::new(),
        bytes: 0,
        length: info.length,
        byte_length: info.byte_length,
    };
    for op in ops.values_mut() {
        if let Op::Put(entry, Some(abs)) = op {
            entry.blob = Some(append_file(blobs, &mut staged, abs).await?);
        }
    }
    report.bytes_appended = staged.byte_length - before;

    let mut blocks = Vec::new();
    if length == 0 {
        blocks.push(encode_header(&blobs_key));
    }
    let mut editor = Editor::open(db).await?;
    for (path, op) in &ops {
        let key = file_key(path);
        match op {
            Op::Put(entry, _) => editor.put(&key, &encode_entry(entry)).await?,
            Op::Del => {
                editor.del(&key).await?;
            }
        }
    }
    blocks.extend(editor.into_blocks());
    let mut batch = Batch::new();
    if !staged.blocks.is_empty() {
        batch.append(blobs.key, staged.blocks);
    }
    if db.store.dir() != blobs.store.dir() {
        // Cores of two stores (tests): content first, then the db.
        if !batch.is_empty() {
            commit(&blobs.store, batch).await?;
        }
        batch = Batch::new();
    }
    if !blocks.is_empty() {
        batch.append(db.key, blocks);
    }
    if !batch.is_empty() {
        commit(&db.store, batch).await?;
    }
    report.version = db.length();
    Ok(report)
}
