//! What makes commits durable, on the shared state of a store: the redb handle (reopened,
//! with the log replayed into it, after an I/O error), the fdatasyncs of data files, and
//! checkpoints (redb made durable, the write-ahead log emptied), also when the store closes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use redb::Database;

use super::{db_builder, db_err, guarded, wal, Shared};
use crate::error::{Error, Result};

impl Shared {
    pub(crate) fn writer_lock(&self) -> MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn wal(&self) -> MutexGuard<'_, wal::Wal> {
        self.wal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` with the database, reopening it first if an I/O error (e.g. a full disk)
    /// left redb refusing further use. A reopened redb is back at its last durable commit:
    /// the log's records since then are applied to it again before anyone uses it.
    pub(crate) fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        if self.db_broken.load(Ordering::Acquire) {
            let mut slot = self
                .db
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if self.db_broken.load(Ordering::Acquire) {
                slot.take();
                let db = db_builder()
                    .create(self.dir.join("engine.redb"))
                    .map_err(db_err)?;
                guarded(|| wal::replay(&self.dir, &db))?;
                *slot = Some(db);
                self.db_broken.store(false, Ordering::Release);
            }
        }
        let slot = self
            .db
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let db = slot
            .as_ref()
            .ok_or_else(|| Error::Db("database closed after an I/O error".into()))?;
        f(db)
    }

    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction> {
        self.with_db(|db| db.begin_read().map_err(db_err))
            .inspect_err(|e| self.note_failure(e))
    }

    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction> {
        self.with_db(|db| db.begin_write().map_err(db_err))
            .inspect_err(|e| self.note_failure(e))
    }

    /// After a database error from an I/O failure, redb refuses every later call until
    /// reopened: remember to reopen it.
    pub(crate) fn note_failure(&self, e: &Error) {
        if let Error::Db(msg) = e {
            if msg.contains("I/O") || msg.contains("os error") || msg.contains("space") {
                self.db_broken.store(true, Ordering::Release);
            }
        }
    }

    /// fdatasync of every data file holding bytes no log record holds (writer turn held).
    /// On failure the files stay listed, so the next durable commit tries again.
    pub(crate) fn sync_unsynced(&self) -> Result<()> {
        let files = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, (path, file)) in files.iter().enumerate() {
            if let Err(e) = file.sync_data() {
                let rest = files.get(i..).unwrap_or_default().to_vec();
                self.unsynced
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(rest);
                return Err(Error::io(path, e));
            }
            self.data_syncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// fdatasync of every data file written since the last checkpoint, once each: those with
    /// bytes only a log record holds, and those not synced yet.
    pub(crate) fn sync_data_files(&self, wal: &mut wal::Wal) -> Result<()> {
        {
            let mut unsynced = self.unsynced.lock().unwrap_or_else(|p| p.into_inner());
            for (path, file) in wal.dirty.drain(..) {
                add_once(&mut unsynced, &path, &file);
            }
        }
        self.sync_unsynced()
    }

    /// A checkpoint (writer turn held): data files synced, redb committed durably with the
    /// log's last sequence number, the log emptied. Nothing to do when the log is empty.
    pub(crate) fn checkpoint_locked(&self, wal: &mut wal::Wal) -> Result<()> {
        if wal.end == 0 {
            return Ok(());
        }
        self.checkpoint_with(wal, |_| Ok(()))
    }

    /// A checkpoint that also commits `f`'s changes to redb (writer turn held): for the rare
    /// changes outside the log, and for the checkpoint alone.
    pub(crate) fn checkpoint_with<T>(
        &self,
        wal: &mut wal::Wal,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T>,
    ) -> Result<T> {
        self.sync_data_files(wal)?;
        let wtx = self.begin_write()?;
        let out = f(&wtx)?;
        wal::set_checkpoint(&wtx, wal.seq)?;
        wtx.commit()
            .map_err(db_err)
            .inspect_err(|e| self.note_failure(e))?;
        self.db_syncs.fetch_add(1, Ordering::Relaxed);
        self.lazy_pending.store(false, Ordering::Release);
        // A failed cut only leaves records a replay skips (at or below the checkpoint);
        // the next record then overwrites them from offset 0.
        let _ = wal.reset();
        Ok(out)
    }
}

/// Adds a data file to a list of files to sync, once.
pub(crate) fn add_once(list: &mut Vec<(PathBuf, Arc<File>)>, path: &Path, file: &Arc<File>) {
    if !list.iter().any(|(p, _)| p == path) {
        list.push((path.to_path_buf(), file.clone()));
    }
}

impl Drop for Shared {
    /// A store closed cleanly leaves an empty log (a crash leaves it for the next open).
    fn drop(&mut self) {
        let _writer = self.writer_lock();
        let _ = guarded(|| self.checkpoint_locked(&mut self.wal()));
    }
}
