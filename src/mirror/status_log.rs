//! The mirror's status log: a hypercore signed by the mirror, read by its paired laptops.
//! This module appends entries and remembers which command-log entries were already
//! acknowledged, so a restarted mirror neither re-acknowledges nor forgets anything.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::keys::Key;
use crate::model::status::{StatusEntry, StatusEvent};
use crate::store::{Core, StoreError};
use crate::util::clock::now_ms;

pub struct StatusLog {
    core: Arc<Core>,
}

impl StatusLog {
    pub fn new(core: Arc<Core>) -> StatusLog {
        StatusLog { core }
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub async fn append(&self, event: StatusEvent) -> Result<u64, StoreError> {
        let entry = StatusEntry::new(now_ms(), event);
        let seq = self.core.append(&entry.encode()).await?;
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

    /// For each command log, the next sequence number that has not been acknowledged
    /// (or rejected) yet, read from the log itself.
    pub async fn next_unacked(&self) -> Result<HashMap<Key, u64>, StoreError> {
        let length = self.core.info().length;
        let mut next = HashMap::new();
        for seq in 0..length {
            let Some(bytes) = self.core.get(seq).await? else {
                continue;
            };
            match StatusEntry::decode(&bytes) {
                Ok(StatusEntry {
                    event: StatusEvent::Ack { log, seq } | StatusEvent::Rejected { log, seq, .. },
                    ..
                }) => {
                    let n = next.entry(log).or_insert(0);
                    *n = (*n).max(seq + 1);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("status entry {seq} is unreadable: {e}"),
            }
        }
        Ok(next)
    }
}
