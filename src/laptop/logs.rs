//! The laptop's two kinds of log, as the status view needs them: its own command log
//! ([`CommandLog`], the twin of the mirror's `StatusLog`) and the status logs of its paired
//! mirrors, each kept in a cache the view folds. Both are read through
//! [`crate::store::log::TypedLog`]; an entry that cannot be read or decoded is said (in the
//! log and as a note on the view), never skipped in silence.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;

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

/// Keeps `cache.commands` up to date with the command log, from what it holds on.
pub async fn watch_commands(cache: Arc<RwLock<ViewCache>>, log: TypedLog<Command>) {
    let from = cache.read().unwrap().commands.len() as u64;
    let mut entries = Box::pin(log.follow(from));
    while let Some((seq, entry)) = entries.next().await {
        let mut cache = cache.write().unwrap();
        match entry {
            Err(EntryError::Unreadable(e)) => {
                let note = format!("command {seq} of this laptop's log cannot be read: {e}");
                tracing::error!("{note}");
                cache.command_note = Some(note);
            }
            Ok(cmd) => push_command(&mut cache, seq, Ok(cmd)),
            Err(EntryError::Undecodable(e)) => push_command(&mut cache, seq, Err(e)),
        }
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
pub async fn load_commands(cache: &RwLock<ViewCache>, log: &TypedLog<Command>) {
    let from = cache.read().unwrap().commands.len() as u64;
    for (seq, entry) in log.entries(from..log.len()).await {
        let mut cache = cache.write().unwrap();
        match entry {
            Ok(cmd) => push_command(&mut cache, seq, Ok(cmd)),
            Err(EntryError::Undecodable(e)) => push_command(&mut cache, seq, Err(e)),
            Err(EntryError::Unreadable(_)) => break,
        }
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
pub async fn watch_status(cache: Arc<RwLock<ViewCache>>, log: TypedLog<StatusEntry>) {
    let mirror = log.key();
    let mut entries = Box::pin(log.follow(0));
    while let Some((seq, entry)) = entries.next().await {
        let mut cache = cache.write().unwrap();
        match entry {
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
        }
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
