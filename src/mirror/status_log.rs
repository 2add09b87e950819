//! The mirror's status log: a hypercore signed by the mirror, read by its paired laptops
//! (a [`TypedLog`] of [`StatusEntry`]). This module appends entries and reads back which
//! command-log entries were already acknowledged or rejected, so a restarted mirror neither
//! re-acknowledges nor forgets anything, and says which of its own entries it could not read.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::model::keys::Key;
use crate::model::status::{StatusEntry, StatusEvent};
use crate::store::log::TypedLog;
use crate::store::{Core, StoreError};
use crate::util::clock::now_ms;

#[derive(Clone)]
pub struct StatusLog {
    log: TypedLog<StatusEntry>,
}

/// What the status log says was done with the command logs.
#[derive(Debug, Default)]
pub struct Acknowledged {
    /// Per command log, the next sequence number neither acknowledged nor rejected.
    pub next: HashMap<Key, u64>,
    /// Command entries the mirror rejected (they do not decode): skipping them is right.
    pub rejected: BTreeSet<(Key, u64)>,
    /// Status entries that could not be read or decoded, with why.
    pub unreadable: Vec<(u64, String)>,
    /// Sites whose last entry says they were mirrored, at which version: a restarted mirror
    /// does not say so again (a thousand sites wrote a thousand entries at every start, one
    /// durable append each, and the sites started last waited for them to be served).
    pub mirrored: HashMap<Key, u64>,
}

impl StatusLog {
    pub fn new(core: Arc<Core>) -> StatusLog {
        StatusLog {
            log: TypedLog::new(core),
        }
    }

    pub fn core(&self) -> &Arc<Core> {
        self.log.core()
    }

    pub async fn append(&self, event: StatusEvent) -> Result<u64, StoreError> {
        let entry = StatusEntry::new(now_ms(), event);
        let seq = self.log.append(&entry).await?;
        tracing::debug!(seq, "status: {:?}", entry.event);
        Ok(seq)
    }

    /// Appends, logging (not returning) a failure: status is advisory, and a mirror whose
    /// disk is full must keep serving what it has.
    pub async fn record(&self, event: StatusEvent) {
        if let Err(e) = self.append(event).await {
            tracing::error!(
                "cannot write to the status log: {e}; free disk space in the data folder"
            );
        }
    }

    /// Reads the whole log back (see [`Acknowledged`]).
    pub async fn acknowledged(&self) -> Acknowledged {
        let mut out = Acknowledged::default();
        let length = self.log.core().info().length;
        for (seq, entry) in self.log.entries(0..length).await {
            match entry {
                Ok(StatusEntry { event, .. }) => match event {
                    StatusEvent::Ack { log, seq } | StatusEvent::Rejected { log, seq, .. } => {
                        if matches!(event, StatusEvent::Rejected { .. }) {
                            out.rejected.insert((log, seq));
                        }
                        let n = out.next.entry(log).or_insert(0);
                        *n = (*n).max(seq + 1);
                    }
                    StatusEvent::Mirrored { key, version, .. } => {
                        out.mirrored.insert(key, version);
                    }
                    other => {
                        if let Some(site) = other.site() {
                            out.mirrored.remove(&site);
                        }
                    }
                },
                Err(e) => {
                    tracing::error!("status entry {seq} of this mirror is unreadable: {e}");
                    out.unreadable.push((seq, e.to_string()));
                }
            }
        }
        // Entries past the readable part (a damaged tail) are unreadable too.
        let held = self.log.len();
        if held < length {
            out.unreadable
                .push((held, format!("entries {held}..{length} are missing")));
        }
        out
    }
}
