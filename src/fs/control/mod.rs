//! The laptop's control folder as a FUSE filesystem: `ControlFs` (one table behind one lock,
//! and the `ControlBackend` it talks to), the `mount` entry point, and the rooms it is made
//! of. Arrows point one way: `callbacks` (the `fuser::Filesystem` glue: callback → one
//! [`ops::FolderOp`] → reply through `fs::fuse`) → `ops` (what names do: which become
//! `Mirror`/`Unmirror` commands) and `handles` (open files, setattr, listings, xattrs) →
//! `table` (inodes, handles, name → site) → `names` (what a name means; pure).
//!
//! Mount: `fsname=dat-mirror` plus the common options of `fs::fuse`; ACL `Owner`; one
//! session thread.
//!
//! Shell commands → callbacks (measured, kernel 6.18): `touch new` = lookup, create,
//! flush, setattr(times), flush, release; `touch existing` = lookup, open(O_WRONLY), flush,
//! setattr(times), flush, release; `echo x > new` (bash) = lookup, create(O_TRUNC), flush
//! (empty: bash dup2s and closes the first fd), write, flush, release; `cp a dir/` =
//! lookup, create(O_EXCL), write, flush, release; `cp a existing` = lookup, open(O_WRONLY,
//! no O_TRUNC), setattr(size 0, no fh), write, flush, release; vim saving in place =
//! `.x.swp` create/write/fsync, open(O_WRONLY), setattr(size 0, fh), write, fsync,
//! setattr(mode), flush, release, setxattr(posix_acl); `mv` = rename; `rm` = unlink;
//! `mkdir` = lookup, mkdir; `rmdir` = rmdir (only while the directory returned by mkdir is
//! cached and not yet listed; later the kernel answers ENOTDIR itself, since entries are
//! files);
//! `getfattr -d` = listxattr(0), listxattr(n), then getxattr(0)/getxattr(n) per name.
//! Hence commands are decided on flush (release is asynchronous) and an empty flush is a
//! no-op — except that a name touched or created means "mirror it", decided in `create`
//! and `setattr(times)` (see `ops.rs`).
//!
//! Caching: entries are cached for 1 s, and so are the attributes of the root and of site
//! entries, which `watch` makes the kernel forget as soon as the view changes them;
//! listings are answered with READDIRPLUS (names with their attributes, ~18 per round
//! trip), so `ls -l` needs no lookup or getattr per entry. `STATUS` and in-memory files are
//! never cached. Generated text is opened with `direct_io` so `cat` reads all of it
//! whatever size `ls -l` shows (the bytes the mirror holds).

mod callbacks;
mod handles;
pub mod names;
mod ops;
mod table;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_edit;
#[cfg(test)]
mod tests_race;
mod watch;

use std::path::Path;
use std::sync::{Arc, Mutex};

use table::Table;

pub use crate::laptop::backend::{AppendError, ControlBackend};

/// What the user's system call gets when appending failed.
pub(crate) fn errno(e: &AppendError) -> fuser::Errno {
    match e {
        AppendError::DiskFull(_) => fuser::Errno::ENOSPC,
        AppendError::Write(_) => fuser::Errno::EIO,
    }
}

/// The filesystem: one table behind one lock (shared with the watcher), and the backend.
pub struct ControlFs {
    table: Arc<Mutex<Table>>,
    backend: Arc<dyn ControlBackend>,
}

impl ControlFs {
    pub fn new(backend: Arc<dyn ControlBackend>) -> ControlFs {
        ControlFs {
            table: Arc::new(Mutex::new(Table::new())),
            backend,
        }
    }
}

/// Mounts the control folder at `mountpoint` and serves it on a background thread until
/// the returned session is dropped (or `umount_and_join`ed). A stale mount left by a
/// crashed run ("Transport endpoint is not connected") is detached first.
pub fn mount(
    mountpoint: &Path,
    backend: Arc<dyn ControlBackend>,
) -> std::io::Result<fuser::BackgroundSession> {
    let spec = super::fuse::MountSpec {
        what: "the dat-mirror folder",
        fsname: "dat-mirror",
        read_only: false,
        threads: 1,
    };
    let fs = ControlFs::new(backend.clone());
    let table = Arc::downgrade(&fs.table);
    let changes = backend.changes();
    let backend = Arc::downgrade(&backend);
    let session = super::fuse::spawn_mount(fs, mountpoint, &spec)?;
    let notifier = session.notifier();
    std::thread::Builder::new()
        .name("control-folder-watch".into())
        .spawn(move || watch::run(table, backend, changes, notifier))?;
    Ok(session)
}
