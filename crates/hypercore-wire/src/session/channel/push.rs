//! Push mode (Node's `allowPush`): a fresh append goes to the remote with its proof before
//! the remote asks. The request → data round trip that otherwise follows every announced
//! append is gone, which is most of a small command's trip between two of our nodes.
//!
//! Both sides must want it: the fetching side says `allowPush` in its `sync` (only when its
//! session is in push mode and it fetches the core), and the serving side pushes only to a
//! remote that said so: the upgrade to the new length with the first new block (a command or
//! an acknowledgement is one block), before the `sync` announcing the length, so the remote
//! has nothing left to request. A pushed data message has request id 0, as in Node.
//!
//! The fetching side stores a push only when it fits what it holds: its upgrade starts at
//! our length, or (no upgrade) its block is one we lack below our length. A push that does
//! not fit (another source got there first) is dropped unverified; one that fits but does
//! not verify closes the channel, as a bad answer does.

use super::{Channel, Ctx, Fault};
use crate::messages::{Data, Request, RequestBlock, RequestUpgrade};

impl Channel {
    /// Pushes the upgrade to our new length with the first block past the remote's length
    /// (or our last push), when the remote accepts pushes.
    pub(super) fn push_appended(&mut self, ctx: &mut Ctx<'_>) {
        if !self.push || !self.remote.synced || !self.remote.allow_push || !self.remote.downloading
        {
            return;
        }
        let info = self.store.info();
        if info.fork != self.remote.fork {
            return;
        }
        let pushed = if self.pushed.0 == info.fork {
            self.pushed.1
        } else {
            0
        };
        let from = self.remote.length.max(pushed);
        // A remote holding nothing asks itself: its first request also fetches the manifest.
        if from == 0 || info.length <= from {
            return;
        }
        // The first new block rides on the upgrade, as the remote's own request would ask
        // (the proof is made for exactly that upgrade, whatever was appended since). Further
        // blocks of a longer append are the remote's to request: a block proof without an
        // upgrade is made against our tree as it is then, which may already be longer than
        // the one the remote trusts.
        let request = Request {
            id: 0,
            fork: info.fork,
            block: Some(RequestBlock {
                index: from,
                nodes: 0,
            }),
            upgrade: Some(RequestUpgrade {
                start: from,
                length: info.length - from,
            }),
            ..Request::default()
        };
        let Ok(Some(data)) = self.store.proof_for(&request) else {
            return; // not held after all, or the store failed: the remote asks as usual
        };
        self.send_data(ctx, data);
        self.pushed = (info.fork, info.length);
    }

    /// A data message with request id 0: a push, stored if we accept pushes and it fits.
    pub(super) fn on_push(&mut self, ctx: &mut Ctx<'_>, d: Data) -> Result<(), Fault> {
        if !self.push || !self.download || self.paused {
            return Ok(());
        }
        let info = self.store.info();
        let Some(block) = &d.block else {
            return Ok(());
        };
        if d.fork != info.fork {
            return Ok(());
        }
        let fits = match &d.upgrade {
            Some(u) => {
                u.start == info.length
                    && u.length > 0
                    && block.index >= u.start
                    && block.index - u.start < u.length
            }
            None => block.index < info.length && !self.store.has(block.index),
        };
        if !fits {
            return Ok(());
        }
        self.store_data(ctx, &d)?;
        self.fetch(ctx);
        Ok(())
    }
}
