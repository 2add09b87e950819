//! The laptop's port for the control folder: what the FUSE adapter (`crate::fs::control`)
//! needs from the laptop daemon, defined here so the adapter depends on the daemon and not
//! the other way round. The daemon implements it ([`super::LaptopInner`]); tests implement
//! it with a fake that acknowledges on cue.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::model::command::Command;
use crate::model::view::StatusView;

/// What the control folder needs from the rest of the laptop side.
pub trait ControlBackend: Send + Sync + 'static {
    /// The current status view, shared (called on every lookup/readdir/getattr/read: a
    /// view of 1,000 sites must not be copied for each).
    fn view(&self) -> Arc<StatusView>;
    /// Appends to the laptop's command log (blocking) and returns the entry's seq. After it
    /// returns, `view()` must show the command.
    fn append(&self, command: Command) -> Result<u64, AppendError>;
    /// Counts the changes of what `view()` is folded from (the folder waits on it to tell
    /// the kernel which cached attributes to forget).
    fn changes(&self) -> Arc<Changes>;
}

/// A counter of changes that a thread can wait on: bumped by whoever changes the view's
/// inputs, awaited (with a time-out) by the control folder's watcher thread. A `Condvar`
/// and not a tokio channel: the waiter is a plain thread beside the FUSE session.
#[derive(Default)]
pub struct Changes {
    count: Mutex<u64>,
    bumped: Condvar,
}

impl Changes {
    /// One more change; wakes every waiter.
    pub fn bump(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.bumped.notify_all();
    }

    /// The count now.
    pub fn count(&self) -> u64 {
        *self.count.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the count differs from `seen`, or `timeout` passed; returns the count.
    pub fn wait_past(&self, seen: u64, timeout: Duration) -> u64 {
        let count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        let (count, _) = self
            .bumped
            .wait_timeout_while(count, timeout, |c| *c == seen)
            .unwrap_or_else(|p| p.into_inner());
        *count
    }
}

/// Why a command could not be appended to the command log. Nothing was appended; the user
/// sees `ENOSPC` or `EIO` and the log line says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The disk holding the data folder is full.
    #[error("the disk is full ({0}); free some space and try again")]
    DiskFull(String),
    /// Any other failure to write the log.
    #[error("{0}; try again once the command log is writable")]
    Write(String),
}

impl AppendError {
    /// Classifies an error from writing the log: `DiskFull` if any cause in its chain is
    /// an I/O error saying so, else `Write`; the message is the whole chain.
    pub fn from_chain(err: &(dyn std::error::Error + 'static), message: String) -> AppendError {
        let mut cause = Some(err);
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::StorageFull
                    || io.raw_os_error() == Some(libc::ENOSPC)
                {
                    return AppendError::DiskFull(message);
                }
            }
            cause = e.source();
        }
        AppendError::Write(message)
    }
}
