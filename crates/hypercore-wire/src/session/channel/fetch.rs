//! A channel's fetching: an upgrade when the remote is longer, then pipelined block requests
//! from the first block we lack (resuming from what is held), `want`s for remotes that have not
//! announced what they hold, and a clock-free stall check driven by the session's timer.

use super::{Channel, Ctx, Inflight};
use crate::messages::{Cancel, Message, Request, RequestBlock, RequestUpgrade, Want};
use crate::session::types::Event;

/// Node's want batch in its compat mode: 65536 words of 32 bits.
const WANT_BATCH: u64 = 1 << 21;
/// Node keeps at most 512 wants per peer.
const MAX_WANTS: usize = 512;

impl Channel {
    pub(super) fn remote_has(&self, index: u64) -> bool {
        index < self.remote.length
            && (index < self.remote.contiguous || self.remote.ranges.contains(index))
    }

    /// The first index at or after `from` the remote says it has.
    fn remote_next(&self, from: u64) -> Option<u64> {
        let next = if from < self.remote.contiguous {
            Some(from)
        } else {
            self.remote.ranges.next_at_or_after(from)
        };
        next.filter(|i| *i < self.remote.length)
    }

    fn new_id(ctx: &mut Ctx<'_>) -> u64 {
        let id = *ctx.next_id;
        *ctx.next_id = ctx.next_id.wrapping_add(1).max(1);
        id
    }

    /// Sends what we can ask for: an upgrade when the remote is longer, then block requests up
    /// to `Limits::max_inflight`, then a `want` if the remote may hold blocks it has not
    /// announced.
    pub fn fetch(&mut self, ctx: &mut Ctx<'_>) {
        if !self.opened || !self.download || self.paused || !self.remote.synced {
            return;
        }
        let info = self.store.info();
        let same_fork = self.remote.fork == info.fork;
        if same_fork
            && !self.upgrade_inflight
            && self.remote.length > info.length
            && self.remote.can_upgrade
            && self.remote.length_acked == info.length
            && self.remote.uploading
        {
            let id = Self::new_id(ctx);
            self.upgrade_inflight = true;
            // The first block past our length rides on the upgrade (as Node asks for a block
            // beyond its length): a one-block append — a command, an acknowledgement — costs
            // one round trip and one stored proof, not two.
            let first = info.length;
            let block = if self.remote_has(first)
                && !self.store.has(first)
                && !self.requested.contains(&first)
                && self.store.try_claim(first)
            {
                Some(self.requested_block(first))
            } else {
                None
            };
            self.inflight.insert(
                id,
                (
                    Inflight::Upgrade(block.as_ref().map(|b| b.index)),
                    self.generation,
                ),
            );
            self.send(
                ctx,
                Message::Request(Request {
                    id,
                    fork: self.remote.fork,
                    block,
                    upgrade: Some(RequestUpgrade {
                        start: info.length,
                        length: self.remote.length - info.length,
                    }),
                    manifest: !info.has_manifest && self.remote.has_manifest,
                    ..Request::default()
                }),
            );
        }
        if !same_fork || !self.remote.uploading {
            return;
        }
        let mut unannounced = None;
        while self.inflight.len() < ctx.limits.max_inflight && self.cursor < info.length {
            let i = self.cursor;
            if self.store.has(i) || self.requested.contains(&i) {
                self.cursor += 1;
                continue;
            }
            if !self.remote_has(i) {
                match self.remote_next(i) {
                    Some(next) if next > i => {
                        self.cursor = next;
                        continue;
                    }
                    _ => {
                        unannounced = Some(i);
                        break;
                    }
                }
            }
            if !self.store.try_claim(i) {
                self.cursor += 1; // in flight on another connection; rescanned on_timer
                continue;
            }
            let id = Self::new_id(ctx);
            let block = self.requested_block(i);
            self.inflight
                .insert(id, (Inflight::Block(i), self.generation));
            self.send(
                ctx,
                Message::Request(Request {
                    id,
                    fork: info.fork,
                    block: Some(block),
                    ..Request::default()
                }),
            );
            self.cursor += 1;
        }
        if let Some(i) = unannounced {
            self.want(ctx, i);
        }
        self.check_caught_up(ctx);
    }

    /// Block `index` (claimed by us) as requested: remembered until its answer, with the
    /// tree nodes we lack for it.
    fn requested_block(&mut self, index: u64) -> RequestBlock {
        self.requested.insert(index);
        RequestBlock {
            index,
            nodes: self.store.missing_nodes(index),
        }
    }

    /// Asks the remote which blocks of `index`'s batch it holds (it answers with `range` or
    /// `bitfield`), once per batch, as Node's replicator does for blocks no peer announced.
    fn want(&mut self, ctx: &mut Ctx<'_>, index: u64) {
        if index >= self.remote.length || self.wants_sent.len() >= MAX_WANTS {
            return;
        }
        let start = index - index % WANT_BATCH;
        if self.wants_sent.insert(start) {
            self.send(
                ctx,
                Message::Want(Want {
                    start,
                    length: WANT_BATCH,
                    any: false,
                }),
            );
        }
    }

    pub(super) fn check_caught_up(&mut self, ctx: &mut Ctx<'_>) {
        let info = self.store.info();
        if self.inflight.is_empty()
            && info.length >= self.remote.length
            && info.contiguous_length >= info.length
            && self.caught_up_at != Some(info.length)
        {
            self.caught_up_at = Some(info.length);
            ctx.events.push_back(Event::CaughtUp {
                key: self.key,
                length: info.length,
            });
        }
    }

    /// The session's periodic timer: requests still unanswered after
    /// [`Limits::request_timeout_ticks`](crate::session::Limits) ticks, with no answer
    /// to any request of this channel during the last tick, are cancelled and asked again (from
    /// this peer or, once the application adds the core elsewhere, from others). Wants may be
    /// sent again.
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.generation += 1;
        // a store failure (ours: disk full) pauses fetching until the next tick
        self.paused = false;
        let stale: Vec<(u64, Inflight)> = self
            .inflight
            .iter()
            .filter(|(_, (_, g))| {
                g.saturating_add(ctx.limits.request_timeout_ticks.max(1)) <= self.generation
            })
            .map(|(id, (what, _))| (*id, *what))
            .collect();
        self.wants_sent.clear();
        // Rescan from the first missing block: blocks skipped because another connection had
        // them in flight may have been released since.
        self.cursor = self.cursor.min(self.store.info().contiguous_length);
        if std::mem::take(&mut self.answered) || stale.is_empty() {
            self.fetch(ctx);
            return;
        }
        for (id, what) in &stale {
            self.inflight.remove(id);
            self.forget(*what);
            if let Inflight::Block(i) | Inflight::Upgrade(Some(i)) = what {
                self.cursor = self.cursor.min(*i);
            }
            self.send(ctx, Message::Cancel(Cancel { request: *id }));
        }
        ctx.events.push_back(Event::RequestsTimedOut {
            key: self.key,
            count: stale.len(),
        });
        self.fetch(ctx);
    }
}
