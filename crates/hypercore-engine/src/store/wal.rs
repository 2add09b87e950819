//! The write-ahead log, `engine.wal`: one fsync per durable commit.
//!
//! Every commit appends one record to this file: what the commit changes in redb (each
//! core's record, new tree nodes, block locations, a cut after a truncation) and, for small
//! batches, the block bytes themselves. A durable commit fdatasyncs this one file, where it
//! would otherwise sync each data file and redb; redb gets the same changes in a non-durable
//! commit. A checkpoint (every [`super::StoreOptions::checkpoint_bytes`] of log or
//! [`super::StoreOptions::checkpoint_commits`] commits, at a flush of lazy commits, at each
//! core creation or removal, and when the store closes) syncs the data files, commits redb
//! durably with the sequence number of the last record it now holds, and empties the log.
//!
//! On open, records past redb's checkpoint are applied again (they are idempotent: rows are
//! put, ranges cut). The log is read up to the first record that is torn, fails its hash or
//! does not follow its predecessor; nothing after that point was ever acknowledged as durable,
//! because a durable commit returns only after syncing the whole file. A record whose block
//! bytes were not embedded is applied only if those bytes, read from the data file, match
//! their leaf hashes: a record can reach the disk by the kernel's writeback before the data
//! file bytes it points at.
//!
//! Why our own log and not redb's bytes: small batches in redb's transaction (the journal
//! this replaced) put live pages at redb's tail, where damage lost every core. Damage here
//! loses at most the records since the last checkpoint, and the open report says so.
//!
//! Frame: payload length (u32 LE), BLAKE2b-256 of the payload, payload. Payload: sequence
//! number, then per core: id, cut + 1 (0: none), core record, nodes (index, size, hash),
//! block locations (index, offset, length), embedded bytes (0, or 1 + offset + bytes).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};

use super::records::{self, BlockLocation, CoreMeta, BLOCKS, META, NODES};
use super::{data_path, db_err, DbNodes, Overlay};
use crate::crypto;
use crate::encoding::{Reader, Writer};
use crate::error::{Error, Result};
use crate::tree::Node;

/// Settings of the store: `wal_seq` → sequence number of the last log record in redb.
pub const SETTINGS: TableDefinition<&str, u64> = TableDefinition::new("settings");
const WAL_SEQ: &str = "wal_seq";
const FRAME_HEAD: usize = 4 + 32;

/// The log's file name in the data folder.
pub const FILE_NAME: &str = "engine.wal";

/// One core's part of a commit, as logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Change {
    pub id: u64,
    /// Stored nodes and blocks at or past this length are deleted first (a truncation).
    pub cut: Option<u64>,
    /// The core's record after the commit ([`CoreMeta::encode`]).
    pub meta: Vec<u8>,
    pub nodes: Vec<Node>,
    pub blocks: Vec<(u64, BlockLocation)>,
    /// The block bytes, when embedded: offset in the data file and the bytes written there.
    pub bytes: Option<(u64, Vec<u8>)>,
}

/// Puts one core's change into redb's tables (shared by commits and replay).
pub(crate) fn write_rows(
    nodes: &mut redb::Table<(u64, u64), &'static [u8]>,
    blocks: &mut redb::Table<(u64, u64), &'static [u8]>,
    metas: &mut redb::Table<u64, &'static [u8]>,
    c: &ChangeRef<'_>,
) -> Result<()> {
    let id = c.id;
    if let Some(cut) = c.cut {
        let head = cut.saturating_mul(2);
        nodes
            .retain_in((id, 0)..=(id, u64::MAX), |(_, i), _| {
                crate::flat::right_span(i).is_ok_and(|r| r < head)
            })
            .map_err(db_err)?;
        blocks
            .retain_in((id, cut)..=(id, u64::MAX), |_, _| false)
            .map_err(db_err)?;
    }
    for n in c.nodes {
        nodes
            .insert((id, n.index), records::encode_node(n).as_slice())
            .map_err(db_err)?;
    }
    for (i, loc) in c.blocks {
        blocks
            .insert((id, *i), records::encode_location(loc).as_slice())
            .map_err(db_err)?;
    }
    metas.insert(id, c.meta).map_err(db_err)?;
    Ok(())
}

/// A borrowed [`Change`]: what a commit logs without copying its staged bytes.
pub(crate) struct ChangeRef<'a> {
    pub id: u64,
    pub cut: Option<u64>,
    pub meta: &'a [u8],
    pub nodes: &'a [Node],
    pub blocks: &'a [(u64, BlockLocation)],
    pub bytes: Option<(u64, &'a [u8])>,
}

impl Change {
    fn as_ref(&self) -> ChangeRef<'_> {
        ChangeRef {
            id: self.id,
            cut: self.cut,
            meta: &self.meta,
            nodes: &self.nodes,
            blocks: &self.blocks,
            bytes: self.bytes.as_ref().map(|(o, b)| (*o, b.as_slice())),
        }
    }
}

/// Encodes one framed record.
pub(crate) fn encode(seq: u64, changes: &[ChangeRef<'_>]) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.uint(seq);
    w.uint(changes.len() as u64);
    for c in changes {
        w.uint(c.id);
        w.uint(c.cut.map_or(0, |c| c.saturating_add(1)));
        w.buffer(c.meta);
        w.uint(c.nodes.len() as u64);
        for n in c.nodes {
            w.uint(n.index);
            w.uint(n.size);
            w.raw(&n.hash);
        }
        w.uint(c.blocks.len() as u64);
        for (i, loc) in c.blocks {
            w.uint(*i);
            w.uint(loc.offset);
            w.uint(loc.len);
        }
        match c.bytes {
            Some((offset, bytes)) => {
                w.uint(1);
                w.uint(offset);
                w.buffer(bytes);
            }
            None => w.uint(0),
        }
    }
    let payload = w.buf;
    let len = u32::try_from(payload.len()).map_err(|_| Error::OutOfRange("log record"))?;
    let mut out = Vec::with_capacity(FRAME_HEAD + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crypto::hash(&[&payload]));
    out.extend_from_slice(&payload);
    Ok(out)
}

fn decode_payload(payload: &[u8]) -> Result<(u64, Vec<Change>)> {
    let mut r = Reader::new(payload);
    let seq = r.uint()?;
    let n = r.array_len(1)?;
    let mut changes = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.uint()?;
        let cut = r.uint()?.checked_sub(1);
        let meta = r.buffer()?.to_vec();
        let nodes = (0..r.array_len(34)?)
            .map(|_| {
                Ok(Node {
                    index: r.uint()?,
                    size: r.uint()?,
                    hash: r.fixed32()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let blocks = (0..r.array_len(3)?)
            .map(|_| {
                let i = r.uint()?;
                let offset = r.uint()?;
                let len = r.uint()?;
                Ok((i, BlockLocation { offset, len }))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = match r.uint()? {
            0 => None,
            1 => Some((r.uint()?, r.buffer()?.to_vec())),
            _ => return Err(Error::Decode("log record: bad bytes flag")),
        };
        changes.push(Change {
            id,
            cut,
            meta,
            nodes,
            blocks,
            bytes,
        });
    }
    r.finish()?;
    Ok((seq, changes))
}

/// Splits `buf` into records: (end offset, seq, changes) of each intact one, in order, up
/// to the first frame that is short or fails its hash or decoding; plus that frame's offset
/// (None when the whole buffer was read).
pub(crate) fn decode_all(buf: &[u8]) -> (Vec<(u64, Vec<Change>)>, Option<usize>) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(rest) = buf.get(at..).filter(|r| !r.is_empty()) {
        let Some((len, rest)) = rest.split_first_chunk::<4>() else {
            return (out, Some(at));
        };
        let Some((hash, rest)) = rest.split_first_chunk::<32>() else {
            return (out, Some(at));
        };
        let len = u32::from_le_bytes(*len) as usize;
        let Some(payload) = rest.get(..len) else {
            return (out, Some(at));
        };
        if crypto::hash(&[payload]) != *hash {
            return (out, Some(at));
        }
        match decode_payload(payload) {
            Ok(rec) => out.push(rec),
            Err(_) => return (out, Some(at)),
        }
        at += FRAME_HEAD + len;
    }
    (out, None)
}

/// The open log (only touched with the store's writer turn held).
pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    /// Where the next record goes: the bytes of records since the checkpoint.
    pub end: u64,
    /// Sequence number of the last record written (redb's checkpoint when none since).
    pub seq: u64,
    /// Records written since the checkpoint.
    pub records: u64,
    /// Data files holding bytes that only records since the checkpoint hold (fdatasync'ed at
    /// the next checkpoint).
    pub dirty: Vec<(PathBuf, Arc<File>)>,
}

impl Wal {
    /// Writes one record at the end; with `sync`, fdatasyncs the log. On failure the log is
    /// cut back to where it was (best effort) and nothing counts as written.
    pub fn append(&mut self, seq: u64, changes: &[ChangeRef<'_>], sync: bool) -> Result<()> {
        let frame = encode(seq, changes)?;
        let written = self.file.write_all_at(&frame, self.end).and_then(|()| {
            if sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            let _ = self.file.set_len(self.end);
            return Err(Error::io(&self.path, e));
        }
        self.end += frame.len() as u64;
        self.seq = seq;
        self.records += 1;
        Ok(())
    }

    /// Takes back the last record (its redb commit failed after it was written): cut and
    /// synced, so a replay cannot apply a commit its caller was told failed.
    pub fn retract(&mut self, end: u64, seq: u64) -> Result<()> {
        self.end = end;
        self.seq = seq;
        self.records = self.records.saturating_sub(1);
        self.file
            .set_len(end)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Empties the log after a checkpoint holds every record of it. Not synced: if the
    /// cut is lost, replay skips records at or below the checkpoint.
    pub fn reset(&mut self) -> Result<()> {
        self.end = 0;
        self.records = 0;
        self.dirty.clear();
        self.file.set_len(0).map_err(|e| Error::io(&self.path, e))
    }

    /// Notes a data file whose new bytes are in a record (for the next checkpoint's sync).
    pub fn wrote(&mut self, path: &Path, file: &Arc<File>) {
        super::durability::add_once(&mut self.dirty, path, file);
    }
}

/// redb's checkpoint: the sequence number of the last log record it holds.
pub(crate) fn checkpoint_seq(db: &Database) -> Result<u64> {
    let rtx = db.begin_read().map_err(db_err)?;
    match rtx.open_table(SETTINGS) {
        Ok(t) => Ok(t.get(WAL_SEQ).map_err(db_err)?.map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(db_err(e)),
    }
}

/// Records `seq` as redb's checkpoint in `wtx`.
pub(crate) fn set_checkpoint(wtx: &redb::WriteTransaction, seq: u64) -> Result<()> {
    wtx.open_table(SETTINGS)
        .map_err(db_err)?
        .insert(WAL_SEQ, seq)
        .map_err(db_err)?;
    Ok(())
}

/// What replaying the log did.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// Records applied to redb.
    pub applied: usize,
    /// Why the log was not read to its end (records from there on were dropped).
    pub stopped: Option<String>,
}

/// Applies the records of the log file in `dir` that redb does not hold yet, in one durable
/// commit (data files synced first). Leaves the file as it is.
pub(crate) fn replay(dir: &Path, db: &Database) -> Result<(u64, Replayed)> {
    let path = dir.join(FILE_NAME);
    let buf = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let checkpoint = checkpoint_seq(db)?;
    let (records, torn) = decode_all(&buf);
    let mut out = Replayed::default();
    if let Some(at) = torn {
        out.stopped = Some(format!(
            "{} bytes from offset {at} were torn or damaged",
            buf.len() - at
        ));
    }
    let mut seq = checkpoint;
    let mut files: HashMap<u64, (PathBuf, File)> = HashMap::new();
    let wtx = db.begin_write().map_err(db_err)?;
    {
        let mut nodes = wtx.open_table(NODES).map_err(db_err)?;
        let mut blocks = wtx.open_table(BLOCKS).map_err(db_err)?;
        let mut metas = wtx.open_table(META).map_err(db_err)?;
        for (rseq, changes) in records {
            if rseq <= seq && out.applied == 0 {
                continue; // held by redb since the checkpoint (the log's cut was lost)
            }
            if rseq != seq + 1 {
                out.stopped = Some(format!("record {rseq} does not follow {seq}"));
                break;
            }
            if let Err(why) = check(dir, &mut files, &metas, &nodes, &changes) {
                out.stopped = Some(format!("record {rseq}: {why}"));
                break;
            }
            for c in &changes {
                if let Some((offset, bytes)) = &c.bytes {
                    let (p, f) = files
                        .get(&c.id)
                        .ok_or_else(|| Error::Corrupt("replay: file not open".into()))?;
                    f.write_all_at(bytes, *offset)
                        .map_err(|e| Error::io(p, e))?;
                }
                write_rows(&mut nodes, &mut blocks, &mut metas, &c.as_ref())?;
            }
            seq = rseq;
            out.applied += 1;
        }
    }
    if out.applied == 0 {
        wtx.abort().map_err(db_err)?;
        return Ok((checkpoint, out));
    }
    for (p, f) in files.values() {
        f.sync_data().map_err(|e| Error::io(p, e))?;
    }
    set_checkpoint(&wtx, seq)?;
    wtx.commit().map_err(db_err)?;
    Ok((seq, out))
}

/// Whether a record can be applied: every core it names exists, and blocks whose bytes are
/// not embedded match their leaf hashes in the data file.
fn check(
    dir: &Path,
    files: &mut HashMap<u64, (PathBuf, File)>,
    metas: &redb::Table<u64, &'static [u8]>,
    nodes: &redb::Table<(u64, u64), &'static [u8]>,
    changes: &[Change],
) -> std::result::Result<(), String> {
    for c in changes {
        let file = match files.entry(c.id) {
            std::collections::hash_map::Entry::Occupied(e) => &e.into_mut().1,
            std::collections::hash_map::Entry::Vacant(v) => {
                let meta = metas
                    .get(c.id)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("core {} is not in the database", c.id))?;
                let key = CoreMeta::decode(meta.value())
                    .map_err(|e| e.to_string())?
                    .key;
                let path = data_path(dir, &key);
                let f = super::open::open_rw(&path).map_err(|e| e.to_string())?;
                &v.insert((path, f)).1
            }
        };
        CoreMeta::decode(&c.meta).map_err(|e| e.to_string())?;
        if c.bytes.is_some() {
            continue;
        }
        let staged: HashMap<u64, Node> = c.nodes.iter().map(|n| (n.index, *n)).collect();
        let src = Overlay {
            staged: &staged,
            db: DbNodes {
                table: nodes,
                id: c.id,
            },
        };
        for (i, loc) in &c.blocks {
            if let Err(e) = super::read_at(&src, file, *i, loc) {
                return Err(format!(
                    "block {i}'s bytes never reached the data file ({e})"
                ));
            }
        }
    }
    Ok(())
}

/// Opens (creating) the log for appending after a replay that left redb at `seq`.
pub(crate) fn open(dir: &Path, seq: u64) -> Result<Wal> {
    let path = dir.join(FILE_NAME);
    let file = super::open::open_rw(&path)?;
    // everything in it is in redb now (or was dropped by the replay): start over
    file.set_len(0)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(&path, e))?;
    Ok(Wal {
        file,
        path,
        end: 0,
        seq,
        records: 0,
        dirty: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: u64, bytes: bool) -> Change {
        Change {
            id,
            cut: Some(3),
            meta: vec![1, 2, 3],
            nodes: vec![Node {
                index: 4,
                size: 10,
                hash: [7; 32],
            }],
            blocks: vec![(2, BlockLocation { offset: 5, len: 10 })],
            bytes: bytes.then(|| (5, vec![9; 10])),
        }
    }

    fn refs(v: &[Change]) -> Vec<ChangeRef<'_>> {
        v.iter().map(|c| c.as_ref()).collect()
    }

    #[test]
    fn records_round_trip_and_stop_at_the_first_damage() {
        let a = vec![change(1, true), change(2, false)];
        let b = vec![change(3, false)];
        let mut buf = encode(7, &refs(&a)).unwrap();
        let first = buf.len();
        buf.extend(encode(8, &refs(&b)).unwrap());
        let (recs, torn) = decode_all(&buf);
        assert_eq!(torn, None);
        assert_eq!(recs, vec![(7, a.clone()), (8, b.clone())]);
        // a cut anywhere in the second record keeps the first, and says where it stopped
        for cut in first..buf.len() {
            let (recs, torn) = decode_all(&buf[..cut]);
            assert_eq!(recs, vec![(7, a.clone())], "cut at {cut}");
            assert_eq!(torn, (cut > first).then_some(first));
        }
        // any flipped byte in the first record stops the read before it
        for i in 0..first {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            let (recs, torn) = decode_all(&bad);
            assert!(recs.is_empty(), "flip at {i}");
            assert_eq!(torn, Some(0));
        }
    }
}
