//! Opening and reading a site's files: at open, the entry's offsets are checked against the
//! blobs core ([`crate::site::content`]) and the way its bytes will be read is decided
//! ([`Reading`]: straight from the data file, block by block, or passed through to a copy,
//! [`super::passthrough`]); reads then follow that decision for the open's whole life, so a
//! later version never changes what an open file shows.

use std::sync::Arc;

use fuser::{BackingId, Errno, FopenFlags};

use super::inodes::{ContentId, NodeId, OpenMode};
use super::passthrough::Through;
use super::view::Kind;
use super::{drive_errno, file_size, SiteTree};
use crate::drive::BlobRef;
use crate::model::keys::Key;
use crate::site::{ContentError, FileContent};
use crate::store::Core;

/// An open file: the content it was opened on (a later version does not change it).
pub(super) struct OpenFile {
    pub(super) ino: u64,
    pub(super) blob: Option<BlobRef>,
    pub(super) content: ContentId,
    pub(super) mode: OpenMode,
    pub(super) reading: Reading,
    /// Passed through to a copy: the kernel reads it, no read reaches us. Held only: the
    /// last one dropped closes the kernel's registration.
    pub(super) _backing: Option<Arc<BackingId>>,
    /// The site whose copy of this file is made when this handle closes.
    pub(super) copy_on_close: Option<Key>,
}

/// An open's answer: the handle, its flags, and the copy it passes through to.
pub(super) struct Opened {
    pub(super) fh: u64,
    pub(super) flags: FopenFlags,
    pub(super) backing: Option<Arc<BackingId>>,
}

/// How an open file's bytes are read.
#[derive(Clone)]
pub(super) enum Reading {
    /// No content (an entry without a blob).
    Empty,
    /// The site's blobs core is not known yet: `EIO` ("try again later").
    NoCore,
    /// The entry's offsets disagree with the blobs core ([`crate::site::content`]): `EIO`.
    Refused,
    /// Checked, and every block was held at open: straight from the blobs core's data file.
    Straight(FileContent),
    /// Checked; blocks read one by one through hypercore (`EIO` for one not held yet).
    Blocks(FileContent),
    /// Not checkable yet (tree nodes still arriving): checked again at every read.
    Pending(Arc<Core>, BlobRef),
}

/// Logs why a file's content cannot be read and maps it to `EIO`.
fn content_errno(what: &str, e: ContentError) -> Errno {
    match e {
        ContentError::Drive(e) => drive_errno(what, e),
        other => {
            tracing::warn!("site tree: {what}: {other}");
            Errno::EIO
        }
    }
}

impl SiteTree {
    /// Opens file `ino`; `register` hands a copy to the kernel for passthrough.
    pub(super) fn do_open(
        &self,
        ino: u64,
        flags: i32,
        register: &dyn Fn(&std::fs::File) -> std::io::Result<BackingId>,
    ) -> Result<Opened, Errno> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(Errno::EROFS);
        }
        let id = self.node_id(ino)?;
        let NodeId::Path(key, _) = &id else {
            return Err(Errno::EISDIR);
        };
        let stat = self.stat(&id)?;
        let blob = match stat.found.kind {
            Kind::File { blob, .. } => blob,
            Kind::Dir => return Err(Errno::EISDIR),
            Kind::Symlink { .. } => return Err(Errno::ELOOP),
        };
        let blobs = self.site_now(key).and_then(|s| s.blobs);
        let reading = match (&blobs, blob) {
            (_, None) => Reading::Empty,
            (None, Some(_)) => Reading::NoCore,
            (Some(core), Some(b)) => match self.block_on(FileContent::open(core.clone(), b))? {
                Ok(c) if c.straight() && self.block_on(c.all_held())? => Reading::Straight(c),
                Ok(c) => Reading::Blocks(c),
                Err(e) if e.is_missing() => Reading::Pending(core.clone(), b),
                Err(e) => {
                    tracing::warn!("site tree: refusing {id:?}: {e}");
                    Reading::Refused
                }
            },
        };
        let content = ContentId {
            blobs: blobs.as_ref().map(|b| b.key()),
            blob: blob.unwrap_or_default(),
        };
        let copy = match (&reading, &self.checkouts) {
            (Reading::Straight(c), Some(copies)) if copies.wanted(c) => Some((copies, c)),
            _ => None,
        };
        let mut st = self.st();
        if st.inodes.get_mut(ino).is_none() {
            return Err(Errno::ESTALE);
        }
        let through = match copy {
            Some((copies, c)) => {
                self.pass_through(&mut st, ino, content, copies, key, c, register)?
            }
            None => Through::Mirror,
        };
        let (backing, copy_on_close) = match through {
            Through::Copy(b) => (Some(b), None),
            Through::Mirror => (None, None),
            Through::MirrorThenCopy => (None, Some(*key)),
        };
        let mode = match (&backing, st.inodes.get_mut(ino)) {
            (_, None) => return Err(Errno::ESTALE),
            // The kernel reads the copy and adds no page to this inode: its page-cache rule
            // stays as it was (the next open through us still drops what is not this
            // content's), and this handle counts as one that adds no pages.
            (Some(_), Some(_)) => OpenMode::Direct,
            (None, Some(node)) => node.open(content, file_size(blob.as_ref())),
        };
        let fh = st.fh();
        tracing::debug!(
            "site tree: open {id:?} as {mode:?}{}",
            if backing.is_some() {
                ", passed through"
            } else {
                ""
            }
        );
        if let Some(b) = &backing {
            st.backings.insert(ino, (content, Arc::downgrade(b)));
        }
        st.files.insert(
            fh,
            OpenFile {
                ino,
                blob,
                content,
                mode,
                reading,
                _backing: backing.clone(),
                copy_on_close,
            },
        );
        let flags = match (mode, &backing) {
            (_, Some(_)) => FopenFlags::empty(),
            (OpenMode::KeepCache, None) => FopenFlags::FOPEN_KEEP_CACHE,
            (OpenMode::Fresh, None) => FopenFlags::empty(),
            (OpenMode::Direct, None) => FopenFlags::FOPEN_DIRECT_IO,
        };
        Ok(Opened { fh, flags, backing })
    }

    pub(super) fn do_read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        tracing::trace!("site tree: read fh {fh} at {offset}, {size} bytes");
        let (blob, reading) = {
            let mut st = self.st();
            let f = st.files.get(&fh).ok_or(Errno::EBADF)?;
            let (ino, content, mode) = (f.ino, f.content, f.mode);
            let out = (f.blob, f.reading.clone());
            if let Some(node) = st.inodes.get_mut(ino) {
                node.note_read(content, mode);
            }
            out
        };
        let Some(blob) = blob else {
            return Ok(Vec::new());
        };
        if offset >= blob.byte_length || size == 0 {
            return Ok(Vec::new());
        }
        let range = offset..offset.saturating_add(u64::from(size));
        let content = match reading {
            Reading::Empty => return Ok(Vec::new()),
            Reading::NoCore => {
                tracing::warn!(
                    "site tree: the site's content core is not known yet; try again later"
                );
                return Err(Errno::EIO);
            }
            Reading::Refused => {
                tracing::debug!("site tree: read of a refused entry (see the warning at open)");
                return Err(Errno::EIO);
            }
            Reading::Straight(c) => {
                return c.read_held(range).map_err(|e| {
                    tracing::warn!("site tree: reading a file: {e}");
                    Errno::EIO
                });
            }
            Reading::Blocks(c) => c,
            Reading::Pending(core, b) => self
                .block_on(FileContent::open(core, b))?
                .map_err(|e| content_errno("reading a file", e))?,
        };
        self.block_on(content.read(range))?
            .map_err(|e| drive_errno("reading a file", e))
    }
}
