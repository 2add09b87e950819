//! One core's channel on a connection: what the remote announced, the requests it queued for us
//! to serve, and our own fetching (upgrade first, then pipelined block requests, resuming from
//! what is held).

use super::output::Output;
use super::ranges::RangeSet;
use super::types::{ChannelCloseReason, CloseReason, Event, Limits};
use crate::messages::{
    no_data_reason, Bitfield, Data, Message, NoData, Range, Request, Sync, Want,
};
use crate::store::{CoreStore, StoreError};
use std::collections::{HashMap, HashSet, VecDeque};

mod fetch;
mod push;

/// Words of one `bitfield` message processed (Node's segment: 2^21 bits).
const MAX_BITFIELD_WORDS: usize = 1 << 16;
/// Outstanding wants accepted from a peer (Node sends at most 512).
const MAX_REMOTE_WANTS: usize = 1024;

/// What ended a message's handling early.
#[derive(Debug)]
pub(crate) enum Fault {
    /// Close this channel.
    Channel(ChannelCloseReason),
    /// Close the connection.
    Connection(CloseReason),
}

/// Shared pieces of the session a channel writes to.
pub(crate) struct Ctx<'a> {
    pub out: &'a mut Output,
    pub events: &'a mut VecDeque<Event>,
    pub next_id: &'a mut u64,
    pub limits: &'a Limits,
    pub queued_total: &'a mut usize,
}

/// What the remote told us about its copy.
#[derive(Debug)]
struct Remote {
    synced: bool,
    fork: u64,
    length: u64,
    length_acked: u64,
    can_upgrade: bool,
    uploading: bool,
    downloading: bool,
    /// It accepts blocks pushed unasked (`sync.allowPush`).
    allow_push: bool,
    has_manifest: bool,
    contiguous: u64,
    ranges: RangeSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inflight {
    Block(u64),
    /// An upgrade, with the first block past our length when the remote has it.
    Upgrade(Option<u64>),
}

/// One core's channel.
pub(crate) struct Channel {
    pub key: [u8; 32],
    pub discovery_key: [u8; 32],
    pub local_id: u64,
    pub remote_id: Option<u64>,
    pub opened: bool,
    pub store: Box<dyn CoreStore + Send>,
    download: bool,
    /// Push mode ([`crate::session::SessionConfig::push`]).
    push: bool,
    /// (fork, length) our pushes brought the remote to: not pushed twice.
    pushed: (u64, u64),
    remote: Remote,
    serving: VecDeque<Request>,
    /// Our requests in flight: id → (what, timer generation when sent).
    inflight: HashMap<u64, (Inflight, u64)>,
    /// [`Channel::on_timer`] calls so far.
    generation: u64,
    /// An answer (data or noData) to one of our requests arrived since the last timer tick:
    /// the remote is working through them, so none has timed out (on a slow, lossy link
    /// cancelling and asking again would throw away answers already on the way, forever).
    answered: bool,
    /// Want batches sent (start of each 2^21-block batch).
    wants_sent: HashSet<u64>,
    requested: HashSet<u64>,
    upgrade_inflight: bool,
    cursor: u64,
    invalid_requests: u32,
    remote_wants: usize,
    announced_length: u64,
    announced_contiguous: u64,
    caught_up_at: Option<u64>,
    paused: bool,
}

impl Channel {
    pub fn new(
        key: [u8; 32],
        discovery_key: [u8; 32],
        local_id: u64,
        store: Box<dyn CoreStore + Send>,
        download: bool,
        push: bool,
        limits: &Limits,
    ) -> Self {
        let cursor = store.info().contiguous_length;
        Self {
            key,
            discovery_key,
            local_id,
            remote_id: None,
            opened: false,
            store,
            download,
            push,
            pushed: (0, 0),
            remote: Remote {
                synced: false,
                fork: 0,
                length: 0,
                length_acked: 0,
                can_upgrade: false,
                uploading: true,
                downloading: false,
                allow_push: false,
                has_manifest: false,
                contiguous: 0,
                ranges: RangeSet::new(limits.max_remote_ranges),
            },
            serving: VecDeque::new(),
            inflight: HashMap::new(),
            generation: 0,
            answered: false,
            wants_sent: HashSet::new(),
            requested: HashSet::new(),
            upgrade_inflight: false,
            cursor,
            invalid_requests: 0,
            remote_wants: 0,
            announced_length: 0,
            announced_contiguous: 0,
            caught_up_at: None,
            paused: false,
        }
    }

    /// Our requests in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    fn send(&self, ctx: &mut Ctx<'_>, msg: Message) {
        ctx.out.message(self.local_id, &msg);
    }

    /// Sends a block (an answer or a push) and reports the upload.
    fn send_data(&self, ctx: &mut Ctx<'_>, data: Data) {
        if let Some(b) = &data.block {
            ctx.events.push_back(Event::Uploaded {
                key: self.key,
                index: b.index,
                bytes: b.value.len() as u64,
            });
        }
        self.send(ctx, Message::Data(Box::new(data)));
    }

    fn send_sync(&mut self, ctx: &mut Ctx<'_>) {
        let info = self.store.info();
        let same_fork = info.fork == self.remote.fork;
        let sync = Sync {
            fork: info.fork,
            length: info.length,
            remote_length: if same_fork { self.remote.length } else { 0 },
            can_upgrade: same_fork && self.store.can_upgrade_from(self.remote.length),
            uploading: true,
            downloading: self.download,
            has_manifest: info.has_manifest,
            allow_push: self.push && self.download,
        };
        self.announced_length = info.length;
        self.send(ctx, Message::Sync(sync));
    }

    fn announce_contiguous(&mut self, ctx: &mut Ctx<'_>) {
        let info = self.store.info();
        let contig = info.contiguous_length.min(info.length);
        if contig > self.announced_contiguous {
            self.announced_contiguous = contig;
            self.send(
                ctx,
                Message::Range(Range {
                    drop: false,
                    start: 0,
                    length: contig,
                }),
            );
        }
    }

    /// Both sides opened and the remote's capability verified.
    pub fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        self.opened = true;
        self.send_sync(ctx);
        self.announce_contiguous(ctx);
        ctx.events.push_back(Event::ChannelOpened { key: self.key });
    }

    /// Our core changed (a local append, or blocks fetched on another connection).
    pub fn on_local_update(&mut self, ctx: &mut Ctx<'_>) {
        if !self.opened {
            return;
        }
        // What we hold first, then the new length: a peer that hears the length already
        // knows the new blocks are here and asks for the first with the upgrade. A peer in
        // push mode gets the upgrade with the first new block before the length, so a
        // one-block append leaves it nothing to ask.
        self.announce_contiguous(ctx);
        self.push_appended(ctx);
        if self.store.info().length != self.announced_length {
            self.send_sync(ctx);
        }
        self.fetch(ctx);
    }

    /// Handles one message of this channel.
    pub fn on_message(&mut self, ctx: &mut Ctx<'_>, msg: Message) -> Result<(), Fault> {
        match msg {
            Message::Sync(s) => self.on_sync(ctx, s),
            Message::Request(r) => {
                // Node: a request reusing an id replaces the earlier one.
                if let Some(pos) = self.serving.iter().position(|q| q.id == r.id) {
                    self.serving.remove(pos);
                    *ctx.queued_total = ctx.queued_total.saturating_sub(1);
                }
                if self.serving.len() >= ctx.limits.max_queued_requests {
                    return Err(Fault::Connection(CloseReason::RequestFlood(
                        ctx.limits.max_queued_requests,
                    )));
                }
                if *ctx.queued_total >= ctx.limits.max_queued_requests_total {
                    return Err(Fault::Connection(CloseReason::RequestFlood(
                        ctx.limits.max_queued_requests_total,
                    )));
                }
                self.serving.push_back(r);
                *ctx.queued_total += 1;
            }
            Message::Cancel(c) => {
                if let Some(pos) = self.serving.iter().position(|q| q.id == c.request) {
                    self.serving.remove(pos);
                    *ctx.queued_total = ctx.queued_total.saturating_sub(1);
                }
            }
            Message::Data(d) => self.on_data(ctx, *d)?,
            Message::NoData(n) => self.on_no_data(ctx, n),
            Message::Want(w) => {
                // Node keeps at most 512 wants outstanding per peer (wants.js MAX).
                self.remote_wants += 1;
                if self.remote_wants > MAX_REMOTE_WANTS {
                    return Err(Fault::Connection(CloseReason::WantFlood(MAX_REMOTE_WANTS)));
                }
                self.on_want(ctx, w)
            }
            Message::Unwant(_) => self.remote_wants = self.remote_wants.saturating_sub(1),
            Message::Bitfield(b) => self.on_bitfield(ctx, b),
            Message::Range(r) => self.on_range(ctx, r),
            Message::Extension(e) => ctx.events.push_back(Event::Extension {
                key: self.key,
                name: e.name,
                message: e.message,
            }),
        }
        Ok(())
    }

    fn on_sync(&mut self, ctx: &mut Ctx<'_>, s: Sync) {
        let info = self.store.info();
        self.remote.synced = true;
        self.remote.fork = s.fork;
        self.remote.length = s.length;
        self.remote.can_upgrade = s.can_upgrade;
        self.remote.uploading = s.uploading;
        self.remote.downloading = s.downloading;
        self.remote.allow_push = s.allow_push;
        self.remote.has_manifest = s.has_manifest;
        self.remote.length_acked = if s.fork == info.fork {
            s.remote_length
        } else {
            0
        };
        ctx.events.push_back(Event::RemoteSync {
            key: self.key,
            length: s.length,
            fork: s.fork,
        });
        // Tell a shorter remote (or one that has not heard our length) where we are.
        if s.fork == info.fork
            && (info.length > s.length || self.remote.length_acked != info.length)
        {
            self.send_sync(ctx);
        }
        self.fetch(ctx);
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, d: Data) -> Result<(), Fault> {
        let Some((what, _)) = self.inflight.remove(&d.request) else {
            if d.request == 0 {
                return self.on_push(ctx, d);
            }
            return Ok(()); // cancelled or timed out: ignored
        };
        self.answered = true;
        let result = self.on_answer(ctx, what, d);
        self.forget(what);
        if result.is_ok() {
            self.fetch(ctx);
        }
        result
    }

    fn on_answer(&mut self, ctx: &mut Ctx<'_>, what: Inflight, d: Data) -> Result<(), Fault> {
        if let Inflight::Upgrade(_) = what {
            self.upgrade_inflight = false;
        }
        let block_is = |i: u64| d.block.as_ref().is_some_and(|b| b.index == i);
        let matches = match what {
            Inflight::Block(i) => block_is(i),
            Inflight::Upgrade(None) => d.upgrade.is_some(),
            Inflight::Upgrade(Some(i)) => d.upgrade.is_some() && block_is(i),
        };
        if !matches {
            if let Inflight::Block(i) | Inflight::Upgrade(Some(i)) = what {
                self.remote.ranges.remove(i, i.saturating_add(1));
            }
            return Ok(());
        }
        self.store_data(ctx, &d)
    }

    /// Verifies and stores an answer or a push; a proof that does not verify closes the
    /// channel, a storage failure pauses fetching.
    fn store_data(&mut self, ctx: &mut Ctx<'_>, d: &Data) -> Result<(), Fault> {
        let before = self.store.info().length;
        match self.store.apply(d) {
            Ok(applied) => {
                if let Some(index) = applied.block {
                    ctx.events.push_back(Event::Downloaded {
                        key: self.key,
                        index,
                        bytes: applied.block_bytes,
                    });
                }
                if applied.length > before {
                    ctx.events.push_back(Event::Upgraded {
                        key: self.key,
                        length: applied.length,
                    });
                    self.send_sync(ctx);
                }
                Ok(())
            }
            Err(StoreError::Invalid(why)) => {
                Err(Fault::Channel(ChannelCloseReason::InvalidProof(why)))
            }
            Err(StoreError::Storage(error)) => {
                self.paused = true;
                ctx.events.push_back(Event::StoreFailed {
                    key: self.key,
                    error,
                });
                Ok(())
            }
        }
    }

    /// Ends a request of ours: the block is no longer in flight (and its claim released).
    fn forget(&mut self, what: Inflight) {
        match what {
            Inflight::Block(i) => self.unrequest(i),
            Inflight::Upgrade(block) => {
                self.upgrade_inflight = false;
                if let Some(i) = block {
                    self.unrequest(i);
                }
            }
        }
    }

    /// Block `index` is no longer asked for: its claim is released.
    fn unrequest(&mut self, index: u64) {
        if self.requested.remove(&index) {
            self.store.release(index);
        }
    }

    /// Releases every claim (the channel is closing).
    pub fn release_all(&mut self) {
        for i in std::mem::take(&mut self.requested) {
            self.store.release(i);
        }
    }

    /// Sends an extension message.
    pub fn send_extension(&mut self, ctx: &mut Ctx<'_>, name: String, message: Vec<u8>) {
        if self.opened {
            self.send(
                ctx,
                Message::Extension(crate::messages::Extension { name, message }),
            );
        }
    }

    fn on_no_data(&mut self, ctx: &mut Ctx<'_>, n: NoData) {
        let Some((what, _)) = self.inflight.remove(&n.request) else {
            return;
        };
        self.answered = true;
        self.forget(what);
        match what {
            // The remote does not have it after all: do not ask it again until it says so.
            Inflight::Block(i) => self.remote.ranges.remove(i, i.saturating_add(1)),
            // Either part may be what it lacks: the block is not asked with an upgrade
            // again, and a plain upgrade refused next stops upgrading from this peer.
            Inflight::Upgrade(Some(i)) => self.remote.ranges.remove(i, i.saturating_add(1)),
            Inflight::Upgrade(None) => self.remote.can_upgrade = false,
        }
        if let Inflight::Block(i) | Inflight::Upgrade(Some(i)) = what {
            if i < self.remote.contiguous {
                self.remote.contiguous = i;
            }
        }
        self.fetch(ctx);
    }

    fn on_want(&mut self, ctx: &mut Ctx<'_>, w: Want) {
        let info = self.store.info();
        let contig = info.contiguous_length.min(info.length);
        let end = w.start.saturating_add(w.length);
        if end <= contig || info.length == contig || (w.any && w.start < contig) {
            self.announced_contiguous = contig;
            self.send(
                ctx,
                Message::Range(Range {
                    drop: false,
                    start: 0,
                    length: contig,
                }),
            );
            return;
        }
        let start = w.start - w.start % 32;
        let end = end
            .min(info.length)
            .min(start.saturating_add(ctx.limits.max_want_blocks));
        if end <= start {
            return;
        }
        let words = usize::try_from((end - start).div_ceil(32)).unwrap_or(0);
        let bitfield = self.store.bitfield_words(start, words);
        self.send(ctx, Message::Bitfield(Bitfield { start, bitfield }));
    }

    fn on_bitfield(&mut self, ctx: &mut Ctx<'_>, b: Bitfield) {
        // Node sends at most one 2^21-bit segment per message; more is ignored, and so are
        // runs once the remembered ranges are full (the work per message stays bounded).
        let words = b.bitfield.get(..MAX_BITFIELD_WORDS).unwrap_or(&b.bitfield);
        let mut run: Option<u64> = None;
        let mut earliest = None;
        let mut index = b.start;
        for word in words {
            if self.remote.ranges.len() >= ctx.limits.max_remote_ranges {
                break;
            }
            match (*word, run) {
                (0, Some(s)) => {
                    self.remote.ranges.insert(s, index);
                    earliest = earliest.or(Some(s));
                    run = None;
                }
                (0, None) | (u32::MAX, Some(_)) => {}
                (u32::MAX, None) => run = Some(index),
                (w, _) => {
                    for bit in 0..32u64 {
                        let i = index.saturating_add(bit);
                        match (w & (1 << bit) != 0, run) {
                            (true, None) => run = Some(i),
                            (false, Some(s)) => {
                                self.remote.ranges.insert(s, i);
                                earliest = earliest.or(Some(s));
                                run = None;
                            }
                            _ => {}
                        }
                    }
                }
            }
            index = index.saturating_add(32);
        }
        if let Some(s) = run {
            self.remote.ranges.insert(s, index);
            earliest = earliest.or(Some(s));
        }
        if let Some(s) = earliest {
            self.cursor = self.cursor.min(s);
        }
        self.fetch(ctx);
    }

    fn on_range(&mut self, ctx: &mut Ctx<'_>, r: Range) {
        let end = r.start.saturating_add(r.length);
        if r.drop {
            self.remote.ranges.remove(r.start, end);
            if r.start < self.remote.contiguous {
                self.remote.contiguous = r.start;
            }
            return;
        }
        if r.start == 0 {
            self.remote.contiguous = self.remote.contiguous.max(end);
        } else {
            self.remote.ranges.insert(r.start, end);
        }
        self.cursor = self.cursor.min(r.start);
        self.fetch(ctx);
    }

    /// Serves the oldest queued request; false if none was queued.
    pub fn serve_one(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fault> {
        let Some(req) = self.serving.pop_front() else {
            return Ok(false);
        };
        *ctx.queued_total = ctx.queued_total.saturating_sub(1);
        let info = self.store.info();
        let answer = if req.fork == info.fork {
            self.store.proof_for(&req)
        } else {
            Ok(None)
        };
        let reason = match answer {
            Ok(Some(data)) => {
                self.send_data(ctx, data);
                return Ok(true);
            }
            Ok(None) | Err(StoreError::Storage(_)) => no_data_reason::NOT_AVAILABLE,
            Err(StoreError::Invalid(_)) => {
                self.invalid_requests += 1;
                if self.invalid_requests >= ctx.limits.max_invalid_requests {
                    return Err(Fault::Channel(ChannelCloseReason::InvalidRequests));
                }
                no_data_reason::INVALID_REQUEST
            }
        };
        self.send(
            ctx,
            Message::NoData(NoData {
                request: req.id,
                reason,
            }),
        );
        Ok(true)
    }

    /// Drops queued requests (the channel is closing); returns how many.
    /// One line of this channel's state, for traces of a stalled replication.
    pub fn describe(&self) -> String {
        let info = self.store.info();
        let mut inflight: Vec<String> = self
            .inflight
            .iter()
            .map(|(id, (what, g))| match what {
                Inflight::Block(i) => format!("#{id}:b{i}@{g}"),
                Inflight::Upgrade(None) => format!("#{id}:up@{g}"),
                Inflight::Upgrade(Some(i)) => format!("#{id}:up+b{i}@{g}"),
            })
            .collect();
        inflight.sort();
        format!(
            "core {:02x}{:02x} local {} remote {:?} open {} dl {} paused {} gen {} | ours len {} contig {} | \
             remote synced {} len {} acked {} contig {} upgrade {} uploading {} | serving {} | \
             inflight [{}]",
            self.key[0],
            self.key[1],
            self.local_id,
            self.remote_id,
            self.opened,
            self.download,
            self.paused,
            self.generation,
            info.length,
            info.contiguous_length,
            self.remote.synced,
            self.remote.length,
            self.remote.length_acked,
            self.remote.contiguous,
            self.remote.can_upgrade,
            self.remote.uploading,
            self.serving.len(),
            inflight.join(" ")
        )
    }

    pub fn drain_queue(&mut self) -> usize {
        let n = self.serving.len();
        self.serving.clear();
        n
    }
}
