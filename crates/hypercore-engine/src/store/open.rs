//! Opening a data folder: load every core's committed state from redb, then reconcile each
//! data file with it — bytes past the committed end are cut, blocks whose bytes are missing
//! or (near the tail) fail their hash are dropped — and report what was dropped. A damaged
//! core record is reported and skipped; it never stops the other cores from opening.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableTable};

use super::records::{self, CoreMeta, BLOCKS, CORES, META, NODES};
use super::{data_path, db_err, Bitfield, CoreState, DbNodes, Shared, State};
use crate::crypto::KeyPair;
use crate::error::{Error, Result};
use crate::flat;
use crate::prove::NodeSource;
use crate::verifier::Verifier;

/// Blocks whose bytes end within this many bytes of the data file's end are re-hashed on open.
const TAIL_CHECK: u64 = 4 << 20;

/// What one core lost while opening.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repair {
    /// Core key (zeros when the record itself was unreadable).
    pub key: [u8; 32],
    /// Uncommitted bytes cut from the end of the data file.
    pub truncated_bytes: u64,
    /// Blocks dropped because their bytes were missing or damaged.
    pub dropped_blocks: Vec<u64>,
    /// A problem that made the whole core unusable (its record or tree is damaged).
    pub error: Option<String>,
}

/// What [`super::Store::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Cores opened.
    pub cores: usize,
    /// Cores that needed repair (only those).
    pub repairs: Vec<Repair>,
}

pub(crate) fn core_state(
    dir: &Path,
    id: u64,
    meta: CoreMeta,
    roots: Vec<crate::tree::Node>,
    bitfield: Bitfield,
) -> Result<CoreState> {
    let path = data_path(dir, &meta.key);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let key_pair = match &meta.secret_key {
        Some(s) => Some(KeyPair::from_secret_key(s)?),
        None => None,
    };
    let verifier = Verifier::new(&meta.key, meta.manifest.as_ref())?;
    Ok(CoreState {
        id,
        meta,
        roots,
        verifier,
        key_pair,
        bitfield,
        file: Arc::new(file),
        path,
    })
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(path, e))
}

pub(crate) fn open(dir: &Path) -> Result<(Shared, OpenReport)> {
    let data = dir.join("data");
    fs::create_dir_all(&data).map_err(|e| Error::io(&data, e))?;
    sync_dir(dir)?;
    let db = Database::builder()
        .create(dir.join("engine.redb"))
        .map_err(db_err)?;
    let wtx = db.begin_write().map_err(db_err)?;
    {
        wtx.open_table(CORES).map_err(db_err)?;
        wtx.open_table(META).map_err(db_err)?;
        wtx.open_table(NODES).map_err(db_err)?;
        wtx.open_table(BLOCKS).map_err(db_err)?;
    }
    wtx.commit().map_err(db_err)?;

    let mut report = OpenReport::default();
    let mut cores = std::collections::HashMap::new();
    let mut next_id = 0u64;
    let mut fixes: Vec<(u64, CoreMeta, Vec<u64>)> = Vec::new();
    {
        let rtx = db.begin_read().map_err(db_err)?;
        let metas = rtx.open_table(META).map_err(db_err)?;
        let nodes = rtx.open_table(NODES).map_err(db_err)?;
        let blocks = rtx.open_table(BLOCKS).map_err(db_err)?;
        for entry in metas.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let id = k.value();
            next_id = next_id.max(id.saturating_add(1));
            let mut repair = Repair::default();
            match load_core(dir, id, v.value(), &nodes, &blocks, &mut repair) {
                Ok((core, changed)) => {
                    if changed {
                        fixes.push((id, core.meta.clone(), repair.dropped_blocks.clone()));
                    }
                    if repair != Repair::default() {
                        repair.key = core.meta.key;
                        report.repairs.push(repair);
                    }
                    cores.insert(core.meta.key, core);
                }
                Err(e) => {
                    if let Ok(m) = CoreMeta::decode(v.value()) {
                        repair.key = m.key;
                    }
                    repair.error = Some(e.to_string());
                    report.repairs.push(repair);
                }
            }
        }
    }
    if !fixes.is_empty() {
        let wtx = db.begin_write().map_err(db_err)?;
        {
            let mut metas = wtx.open_table(META).map_err(db_err)?;
            let mut blocks = wtx.open_table(BLOCKS).map_err(db_err)?;
            for (id, meta, dropped) in &fixes {
                metas
                    .insert(*id, meta.encode()?.as_slice())
                    .map_err(db_err)?;
                for b in dropped {
                    blocks.remove((*id, *b)).map_err(db_err)?;
                }
            }
        }
        wtx.commit().map_err(db_err)?;
    }
    report.cores = cores.len();
    let shared = Shared {
        dir: dir.to_path_buf(),
        db,
        state: Mutex::new(State { cores, next_id }),
        commits: AtomicU64::new(0),
        data_syncs: AtomicU64::new(0),
    };
    Ok((shared, report))
}

type NodesTable = redb::ReadOnlyTable<(u64, u64), &'static [u8]>;

fn load_core(
    dir: &Path,
    id: u64,
    bytes: &[u8],
    nodes: &NodesTable,
    blocks: &NodesTable,
    repair: &mut Repair,
) -> Result<(CoreState, bool)> {
    let mut meta = CoreMeta::decode(bytes)?;
    let src = DbNodes { table: nodes, id };
    let mut roots = Vec::new();
    for r in flat::full_roots(meta.length)? {
        roots.push(
            src.node(r)?
                .ok_or_else(|| Error::Corrupt(format!("root {r} missing")))?,
        );
    }
    let mut core = core_state(dir, id, meta.clone(), roots, Bitfield::new())?;
    let file_len = core
        .file
        .metadata()
        .map_err(|e| Error::io(&core.path, e))?
        .len();
    let mut changed = false;
    if file_len > meta.data_end {
        core.file
            .set_len(meta.data_end)
            .map_err(|e| Error::io(&core.path, e))?;
        repair.truncated_bytes = file_len - meta.data_end;
    }
    let avail = file_len.min(meta.data_end);
    let tail_from = avail.saturating_sub(TAIL_CHECK);
    let mut bitfield = Bitfield::new();
    for entry in blocks.range((id, 0)..=(id, u64::MAX)).map_err(db_err)? {
        let (k, v) = entry.map_err(db_err)?;
        let (_, index) = k.value();
        let ok = match records::decode_location(v.value()) {
            Ok(loc) => match loc.offset.checked_add(loc.len) {
                Some(end) if end <= avail && index < meta.length => {
                    end <= tail_from
                        || super::read_verified(blocks, &src, &core.file, id, index).is_ok()
                }
                _ => false,
            },
            Err(_) => false,
        };
        if ok {
            bitfield.set(index);
        } else {
            repair.dropped_blocks.push(index);
        }
    }
    if avail < meta.data_end || !repair.dropped_blocks.is_empty() {
        meta.data_end = avail;
        changed = true;
    }
    core.meta = meta;
    core.bitfield = bitfield;
    Ok((core, changed))
}
