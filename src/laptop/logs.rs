//! The laptop's two kinds of log, as the status view needs them: its own command log
//! ([`CommandLog`], the twin of the mirror's `StatusLog`) and the status logs of its paired
//! mirrors, each kept in a cache the view folds. Both are read through
//! [`crate::store::log::TypedLog`]; an entry that cannot be read or decoded is said (in the
//! log and as a note on the view), never skipped in silence.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use futures::StreamExt;

use super::backend::Changes;
use crate::model::command::{Command, CommandError};
use crate::model::keys::Key;
use crate::model::status::StatusEntry;
use crate::store::log::{EntryError, TypedLog};
use crate::store::{Core, StoreError};

/// This laptop's command log.
#[derive(Clone)]
pub struct CommandLog {
    log: TypedLog<Command>,
}

impl CommandLog {
    pub fn new(core: Arc<Core>) -> CommandLog {
        CommandLog {
            log: TypedLog::new(core),
        }
    }

    pub fn typed(&self) -> &TypedLog<Command> {
        &self.log
    }

    pub async fn append(&self, command: &Command) -> Result<u64, StoreError> {
        self.log.append(command).await
    }

    /// [`CommandLog::append`] on the calling thread (a FUSE thread: it may block).
    pub fn append_in_place(&self, command: &Command) -> Result<u64, StoreError> {
        self.log.append_in_place(command)
    }
}

/// What the view is folded from.
#[derive(Default)]
pub struct ViewCache {
    pub commands: Vec<Result<Command, CommandError>>,
    pub status: BTreeMap<Key, Vec<StatusEntry>>,
    /// Per mirror: the last problem met reading its status log.
    pub notes: BTreeMap<Key, String>,
    /// Set when the command log has an entry that cannot be read.
    pub command_note: Option<String>,
}

/// The view's inputs as the laptop shares them: the cache behind a lock, written only
/// through [`ViewInputs::update`], which counts every change in [`Changes`] (the control
/// folder's watcher waits on it to tell the kernel which cached attributes to forget).
#[derive(Default)]
pub struct ViewInputs {
    cache: RwLock<ViewCache>,
    changes: Arc<Changes>,
}

impl ViewInputs {
    pub fn read(&self) -> RwLockReadGuard<'_, ViewCache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the cache, then says so to whoever waits on [`ViewInputs::changes`].
    pub fn update<R>(&self, f: impl FnOnce(&mut ViewCache) -> R) -> R {
        let out = f(&mut self.cache.write().unwrap_or_else(|p| p.into_inner()));
        self.changes.bump();
        tracing::debug!(target: "latency", "view inputs updated");
        out
    }

    pub fn changes(&self) -> Arc<Changes> {
        self.changes.clone()
    }

    pub fn into_cache(self) -> ViewCache {
        self.cache.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps `cache.commands` up to date with the command log, from what it holds on.
pub async fn watch_commands(inputs: Arc<ViewInputs>, log: TypedLog<Command>) {
    let from = inputs.read().commands.len() as u64;
    let mut entries = Box::pin(log.follow(from));
    while let Some((seq, entry)) = entries.next().await {
        inputs.update(|cache| match entry {
            Err(EntryError::Unreadable(e)) => {
                let note = format!("command {seq} of this laptop's log cannot be read: {e}");
                tracing::error!("{note}");
                cache.command_note = Some(note);
            }
            Ok(cmd) => push_command(cache, seq, Ok(cmd)),
            Err(EntryError::Undecodable(e)) => push_command(cache, seq, Err(e)),
        });
    }
}

/// Adds command `seq` unless it is there already (appends show up at once).
pub fn push_command(cache: &mut ViewCache, seq: u64, entry: Result<Command, CommandError>) {
    if cache.commands.len() as u64 == seq {
        cache.commands.push(entry);
        cache.command_note = None;
    }
}

/// The command log's entries up to what it holds now (into the cache before the folder is
/// mounted, so a listing right after a restart shows every command written).
pub async fn load_commands(inputs: &ViewInputs, log: &TypedLog<Command>) {
    let from = inputs.read().commands.len() as u64;
    for (seq, entry) in log.entries(from..log.len()).await {
        let entry = match entry {
            Ok(cmd) => Ok(cmd),
            Err(EntryError::Undecodable(e)) => Err(e),
            Err(EntryError::Unreadable(_)) => break,
        };
        inputs.update(|cache| push_command(cache, seq, entry));
    }
}

/// What a problem reading mirror `m`'s status entry `seq` is called in the log and view.
fn status_note(seq: u64, e: &EntryError<crate::model::status::StatusError>) -> String {
    match e {
        EntryError::Unreadable(r) => format!(
            "status entry {seq} cannot be read ({r}); what this mirror reported after it is \
             not shown until it can be"
        ),
        EntryError::Undecodable(r) => {
            format!("status entry {seq} was skipped: {r}")
        }
    }
}

/// Keeps the cached status entries of one mirror up to date with its (replicated) log.
pub async fn watch_status(inputs: Arc<ViewInputs>, log: TypedLog<StatusEntry>) {
    let mirror = log.key();
    let mut entries = Box::pin(log.follow(0));
    while let Some((seq, entry)) = entries.next().await {
        inputs.update(|cache| match entry {
            Ok(e) => {
                cache.status.entry(mirror).or_default().push(e);
                if cache
                    .notes
                    .get(&mirror)
                    .is_some_and(|n| n.contains("cannot be read"))
                {
                    cache.notes.remove(&mirror);
                }
            }
            Err(e) => {
                let note = status_note(seq, &e);
                tracing::warn!(mirror = %mirror.short(), "{note}");
                cache.notes.insert(mirror, note);
            }
        });
    }
}

/// Reads a whole status log (for the offline view): its entries, and the note of the
/// first problem met (reading stops at an unreadable entry, as the live view does).
pub async fn read_status(log: &TypedLog<StatusEntry>) -> (Vec<StatusEntry>, Option<String>) {
    let mut out = Vec::new();
    let mut note = None;
    for (seq, entry) in log.entries(0..log.len()).await {
        match entry {
            Ok(e) => out.push(e),
            Err(e) => {
                note = Some(status_note(seq, &e));
                if e.is_unreadable() {
                    break;
                }
            }
        }
    }
    (out, note)
}
