//! Room on the disk: how much is free ([`available_bytes`]), what a full disk looks like in
//! the errors the OS returns, the space a replica always leaves ([`MIN_FREE_BYTES`]), and the
//! [`SpaceReserve`] that keeps the status log writable when the disk fills up.

use std::path::{Path, PathBuf};

/// Space a replica leaves free on its file system: blocks are not applied below this, so the
/// status log (which reports `disk full`) and the engine's database still have room to
/// write. (The engine's commits are atomic, so this is about reporting, not about damage.)
pub const MIN_FREE_BYTES: u64 = 2 * 1024 * 1024;

/// Bytes available to unprivileged writers on the file system holding `path` (None if the
/// file system cannot tell).
pub fn available_bytes(path: &Path) -> Option<u64> {
    disk_bytes(path).map(|(available, _)| available)
}

/// Bytes available to unprivileged writers and the file system's size, for the file system
/// holding `path` (None if it cannot tell).
pub fn disk_bytes(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((
        (st.f_bavail as u64).saturating_mul(frsize),
        (st.f_blocks as u64).saturating_mul(frsize),
    ))
}

/// ENOSPC or EDQUOT.
pub fn io_error_is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// A file of `SpaceReserve::BYTES` kept in the data folder and deleted the moment a write
/// fails because the disk is full, so that the few small writes that report the problem
/// (a status-log entry saying `disk full`) still fit. Re-created once writes succeed again.
#[derive(Debug)]
pub struct SpaceReserve {
    path: PathBuf,
}

impl SpaceReserve {
    pub const BYTES: usize = 512 * 1024;

    /// The reserve file at `path` (not created until [`SpaceReserve::ensure`]).
    pub fn new(path: PathBuf) -> SpaceReserve {
        SpaceReserve { path }
    }

    /// Creates the reserve file if it is missing (best effort: no space, no reserve).
    pub fn ensure(&self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() == Self::BYTES as u64) {
            return;
        }
        let tmp = self.path.with_extension("tmp");
        let written = std::fs::write(&tmp, vec![0xa5u8; Self::BYTES])
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!("no space reserve at {}: {e}", self.path.display());
        }
    }

    /// Deletes the reserve file; true if there was one.
    pub fn release(&self) -> bool {
        let released = std::fs::remove_file(&self.path).is_ok();
        if released {
            tracing::warn!(
                "disk full: released the {} KiB space reserve so status can still be written",
                Self::BYTES / 1024
            );
        }
        released
    }
}
