//! Which opens pass through to a copy ([`super::checkout`]), under the kernel's rule for
//! FUSE passthrough (fs/fuse/iomode.c): while any open of an inode passes through, every
//! open of it must pass through to the same backing file, and none may while an open
//! through us that caches pages is live (either mistake is `EIO` to the user). So: an
//! inode's live copy is shared; a changed file beside an open of its old copy is `EBUSY`;
//! opens through us keep further opens through us; a missing copy is made once the open
//! that found it missing closes.

use std::sync::Arc;

use fuser::{BackingId, Errno};

use super::inodes::ContentId;
use super::{Checkouts, Reading, SiteTree, State};
use crate::model::keys::Key;
use crate::site::FileContent;

/// How an open file is read.
pub(super) enum Through {
    /// By the kernel, from this copy.
    Copy(Arc<BackingId>),
    /// Through us.
    Mirror,
    /// Through us, and a copy is made once this handle closes.
    MirrorThenCopy,
}

impl SiteTree {
    /// The copy an open of `ino` (showing `content`) passes through to, if any: the one its
    /// other passthrough opens use, else its finished copy when no other open reads through
    /// us (the kernel holds an inode to one way of reading while it is open). Without a
    /// finished copy, one is made once this open closes (not competing with its reads).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pass_through(
        &self,
        st: &mut State,
        ino: u64,
        content: ContentId,
        copies: &Arc<Checkouts>,
        site: &Key,
        c: &FileContent,
        register: &dyn Fn(&std::fs::File) -> std::io::Result<BackingId>,
    ) -> Result<Through, Errno> {
        if let Some((shown, live)) = st.backings.get(&ino) {
            if let Some(live) = live.upgrade() {
                if *shown == content {
                    return Ok(Through::Copy(live));
                }
                // The kernel reads every open of this inode from the old copy until the
                // last one closes: a new open could only see the old bytes.
                tracing::warn!(
                    "site tree: a file changed while its earlier version is open; close that \
                     and open it again"
                );
                return Err(Errno::EBUSY);
            }
            st.backings.remove(&ino);
        }
        if st.files.values().any(|f| f.ino == ino) {
            return Ok(Through::Mirror); // open through us: the kernel would refuse passthrough
        }
        let Some(file) = copies.ready(site, c) else {
            return Ok(Through::MirrorThenCopy);
        };
        match register(&file) {
            Ok(id) => Ok(Through::Copy(Arc::new(id))),
            Err(e) => {
                copies.disable(&e);
                Ok(Through::Mirror)
            }
        }
    }

    /// Forgets handle `fh`; a copy it waited for is started now.
    pub(super) fn do_release(&self, fh: u64) {
        let Some(file) = self.st().files.remove(&fh) else {
            return;
        };
        if let (Some(site), Reading::Straight(c), Some(copies)) =
            (file.copy_on_close, file.reading, &self.checkouts)
        {
            copies.request(&site, c);
        }
    }
}
