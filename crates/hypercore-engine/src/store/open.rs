//! Opening a data folder: load every core's committed state from redb, then reconcile each
//! data file with it — bytes past the committed end are cut, blocks whose bytes are missing
//! or (near the tail) fail their hash are dropped — and report what was dropped. A damaged
//! core record is reported and skipped; it never stops the other cores from opening.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableTable};

use super::records::{self, CoreMeta, BLOCKS, CORES, JOURNAL, META, NODES};
use super::{data_path, db_err, wal, Bitfield, CoreState, DbNodes, Shared, State};
use crate::crypto::KeyPair;
use crate::error::{Error, Result};
use crate::flat;
use crate::prove::NodeSource;
use crate::verifier::Verifier;

/// Blocks whose bytes end within this many bytes of the data file's end are re-hashed on open.
const TAIL_CHECK: u64 = 1 << 20;

/// redb's page size.
const PAGE: u64 = 4096;

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
    /// What was done to get the database itself open (None: it opened as it was).
    pub database: Option<String>,
    /// Cores that needed repair (only those).
    pub repairs: Vec<Repair>,
    /// Write-ahead log records that could not be applied, and why (None: every record was
    /// read). Commits in them are lost; after a power loss that is normal for a torn last
    /// record, which was never acknowledged as durable.
    pub log: Option<String>,
}

/// Opens a file of the data folder to read and write, creating it if missing.
pub(crate) fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

pub(crate) fn core_state(
    dir: &Path,
    id: u64,
    meta: CoreMeta,
    roots: Vec<crate::tree::Node>,
    bitfield: Bitfield,
) -> Result<CoreState> {
    let path = data_path(dir, &meta.key);
    let file = open_rw(&path)?;
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

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Opens redb without letting a damaged file panic us: redb asserts on a file shorter than
/// its header says, so a short file is padded with zeros (redb then recovers to its last
/// intact commit). A file redb still refuses is moved aside and a fresh one started: the
/// cores it held are lost (their data files stay on disk), and the report says so.
fn open_db(path: &Path) -> Result<(Database, Option<String>)> {
    let attempt = |p: &Path| -> std::result::Result<Database, String> {
        match std::panic::catch_unwind(|| super::db_builder().create(p)) {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(e)) => Err(e.to_string()),
            Err(panic) => Err(panic_text(panic)),
        }
    };
    // Open elsewhere (another store of this process, or another process): not damage.
    // Repairing it would pad and move aside a live database.
    let first_try = std::panic::catch_unwind(|| super::db_builder().create(path));
    if let Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) = first_try {
        return Err(Error::Db(format!(
            "{} is already open (by another store of this process or another process)",
            path.display()
        )));
    }
    let first_try = match first_try {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic_text(panic)),
    };
    let check = |db: &mut Database| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.check_integrity()))
    };
    let first = match first_try {
        Ok(mut db) => match check(&mut db) {
            Ok(Ok(true)) => return Ok((db, None)),
            Ok(Ok(false)) => return Ok((db, Some("redb repaired its file on open".into()))),
            Ok(Err(e)) => e.to_string(),
            Err(p) => panic_text(p),
        },
        Err(e) => e,
    };
    // redb needs the exact length its header records: a cut tail is restored with zeros,
    // trying each page-aligned length up to 4 MiB past the current end.
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let base = len.div_ceil(PAGE) * PAGE;
    for k in 0..=(4 << 20) / PAGE {
        let target = base + k * PAGE;
        if target == len {
            continue;
        }
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        f.set_len(target).map_err(|e| Error::io(path, e))?;
        drop(f);
        if let Ok(mut db) = attempt(path) {
            if matches!(check(&mut db), Ok(Ok(_))) {
                return Ok((db, Some(format!("database was damaged ({first}); its tail was restored with {} zero bytes and redb recovered its last intact commit", target - len))));
            }
        }
    }
    let aside = move_aside(path)?;
    let db = attempt(path).map_err(Error::Db)?;
    Ok((
        db,
        Some(format!(
            "database unreadable ({first}); moved to {} and started empty",
            aside.display()
        )),
    ))
}

struct Loaded {
    cores: std::collections::HashMap<[u8; 32], CoreState>,
    next_id: u64,
    report: OpenReport,
    /// redb's checkpoint after the replay.
    log_seq: u64,
}

fn load(dir: &Path, db: &Database) -> Result<Loaded> {
    let wtx = db.begin_write().map_err(db_err)?;
    {
        wtx.open_table(CORES).map_err(db_err)?;
        wtx.open_table(META).map_err(db_err)?;
        wtx.open_table(NODES).map_err(db_err)?;
        wtx.open_table(BLOCKS).map_err(db_err)?;
        wtx.open_table(JOURNAL).map_err(db_err)?;
        wtx.open_table(wal::SETTINGS).map_err(db_err)?;
    }
    wtx.commit().map_err(db_err)?;

    let mut report = OpenReport::default();
    let (log_seq, replayed) = wal::replay(dir, db)?;
    report.log = replayed
        .stopped
        .map(|why| format!("write-ahead log read up to record {log_seq}: {why}"));
    let mut cores = std::collections::HashMap::new();
    let mut next_id = 0u64;
    let mut fixes: Vec<(u64, CoreMeta, Vec<u64>)> = Vec::new();
    {
        let rtx = db.begin_read().map_err(db_err)?;
        let metas = rtx.open_table(META).map_err(db_err)?;
        let nodes = rtx.open_table(NODES).map_err(db_err)?;
        let blocks = rtx.open_table(BLOCKS).map_err(db_err)?;
        let journal = rtx.open_table(JOURNAL).map_err(db_err)?;
        for entry in metas.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let id = k.value();
            next_id = next_id.max(id.saturating_add(1));
            let mut repair = Repair::default();
            match load_core(dir, id, v.value(), [&nodes, &blocks, &journal], &mut repair) {
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
            let mut journal = wtx.open_table(JOURNAL).map_err(db_err)?;
            for (id, meta, dropped) in &fixes {
                metas
                    .insert(*id, meta.encode()?.as_slice())
                    .map_err(db_err)?;
                for b in dropped {
                    blocks.remove((*id, *b)).map_err(db_err)?;
                }
                journal
                    .retain_in((*id, 0)..=(*id, u64::MAX), |_, _| false)
                    .map_err(db_err)?;
            }
        }
        wtx.commit().map_err(db_err)?;
    }
    report.cores = cores.len();
    Ok(Loaded {
        cores,
        next_id,
        report,
        log_seq,
    })
}

fn move_aside(path: &Path) -> Result<PathBuf> {
    let mut n = 0;
    loop {
        let p = path.with_extension(format!("redb.damaged.{n}"));
        if !p.exists() {
            fs::rename(path, &p).map_err(|e| Error::io(path, e))?;
            return Ok(p);
        }
        n += 1;
    }
}

pub(crate) fn open(dir: &Path, options: super::StoreOptions) -> Result<(Shared, OpenReport)> {
    let data = dir.join("data");
    fs::create_dir_all(&data).map_err(|e| Error::io(&data, e))?;
    sync_dir(dir)?;
    let path = dir.join("engine.redb");
    let (mut db, mut database) = open_db(&path)?;
    let loaded = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(dir, &db))) {
        Ok(Ok(l)) => l,
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                Err(p) => panic_text(p),
                Ok(Ok(_)) => String::new(),
            };
            drop(db);
            let aside = move_aside(&path)?;
            database = Some(format!(
                "database unreadable ({why}); moved to {} and started empty",
                aside.display()
            ));
            db = super::db_builder().create(&path).map_err(db_err)?;
            load(dir, &db)?
        }
    };
    let Loaded {
        cores,
        next_id,
        mut report,
        log_seq,
    } = loaded;
    if database
        .as_deref()
        .is_some_and(|d| d.contains("started empty"))
    {
        for e in fs::read_dir(&data)
            .map_err(|e| Error::io(&data, e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(hex) = name.strip_suffix(".blocks") else {
                continue;
            };
            let mut key = [0u8; 32];
            let ok = hex.len() == 64
                && key.iter_mut().enumerate().all(|(i, b)| {
                    hex.get(2 * i..2 * i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .map(|v| *b = v)
                        .is_some()
                });
            if ok {
                report.repairs.push(Repair {
                    key,
                    error: Some("the database was unreadable and reset: this core's tree and signature are lost (its data file is kept)".into()),
                    ..Repair::default()
                });
            }
        }
    }
    report.database = database;
    let shared = Shared {
        dir: dir.to_path_buf(),
        db: std::sync::RwLock::new(Some(db)),
        db_broken: std::sync::atomic::AtomicBool::new(false),
        state: Mutex::new(State { cores, next_id }),
        options,
        writer: Mutex::new(()),
        commits: AtomicU64::new(0),
        data_syncs: AtomicU64::new(0),
        log_syncs: AtomicU64::new(0),
        db_syncs: AtomicU64::new(0),
        unsynced: Mutex::new(Vec::new()),
        lazy_pending: std::sync::atomic::AtomicBool::new(false),
        wal: Mutex::new(wal::open(dir, log_seq)?),
    };
    Ok((shared, report))
}

type NodesTable = redb::ReadOnlyTable<(u64, u64), &'static [u8]>;

fn load_core(
    dir: &Path,
    id: u64,
    bytes: &[u8],
    [nodes, blocks, journal]: [&NodesTable; 3],
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
    // small batches' bytes may not have reached the data file: put them back from the journal
    let mut replayed = false;
    for entry in journal.range((id, 0)..=(id, u64::MAX)).map_err(db_err)? {
        let (k, v) = entry.map_err(db_err)?;
        let (_, offset) = k.value();
        let end = offset.checked_add(v.value().len() as u64);
        if end.is_some_and(|e| e <= meta.data_end) {
            core.file
                .write_all_at(v.value(), offset)
                .map_err(|e| Error::io(&core.path, e))?;
            replayed = true;
        }
    }
    if replayed || meta.journal_bytes > 0 {
        core.file
            .sync_data()
            .map_err(|e| Error::io(&core.path, e))?;
        meta.journal_bytes = 0;
        changed = true;
    }
    let file_len = if replayed {
        core.file
            .metadata()
            .map_err(|e| Error::io(&core.path, e))?
            .len()
    } else {
        file_len
    };
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
