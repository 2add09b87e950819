//! The async driver of one connection's [`Session`]: a reader task feeds incoming frames, a
//! writer task sends outgoing ones (bounded queues both ways, so a slow peer slows us instead
//! of growing memory), and the loop in between runs the session, its timer, and the peer's
//! control messages (cores added or removed, cores grown elsewhere). Storage work (proof
//! verification, fsyncs) runs in place on a multi-threaded runtime's worker, marked blocking.

use crate::io::{FrameIo, LinkInfo};
use crate::peer::{ConnectionEnd, Control, Inner, PeerEvent, Registered};
use crate::rate::RateBudget;
use hypercore_wire::session::{ChannelCloseReason, CoreOptions, Event, Session, SessionConfig};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{broadcast, mpsc};

/// Waits until `due` (forever when there is none; the caller's branch is disabled then).
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs `f`, telling a multi-threaded runtime that it may block (disk I/O, fsync).
///
/// That is not free: `block_in_place` hands the worker's scheduler to another thread and
/// takes it back after, and on the 2-core VM the benchmarks run on a thread wake-up averages
/// 56 µs (`perf sched latency`). So work that is short by construction runs in place
/// ([`INLINE_FRAME`], [`Session::transmit_reads_storage`]); an fsync, bulk data (hashing and
/// writing up to a frame's megabytes), a write behind another commit and serving a request
/// (reads of block bytes) come here.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn short(key: &[u8; 32]) -> String {
    hex::encode(key.get(..4).unwrap_or_default())
}

/// Frames handled in a row before the session's output, events and the store's flush get a
/// turn: proofs that arrive together are made durable with one fsync.
const FRAMES_PER_TURN: usize = 64;
/// Frames up to this size are handled in place, not as [`blocking`] work: control messages
/// and small proofs (a command, an acknowledgement, a tree node or two), whose verification
/// and page-cache write take tens of microseconds — unless a commit is under way, which the
/// write would wait for (fsyncs: milliseconds on a busy disk). Bigger ones carry block bytes
/// to hash and store. Measured on the touch → delivered path: p50 −0.36 to −0.40 ms against
/// handing every frame over (`scripts/bench/delivered_ab.sh`, 60 and 80 samples a side, both
/// orders).
const INLINE_FRAME: usize = 16 * 1024;
/// A refused core is opened again after at most this many timer ticks.
const MAX_RETRY_TICKS: u64 = 20;

struct Conn {
    inner: Arc<Inner>,
    id: u64,
    link: LinkInfo,
    session: Session,
    dirty: HashSet<[u8; 32]>,
    /// Cores served to this connection without being registered ([`crate::Hooks::resolve`]).
    resolved: HashSet<[u8; 32]>,
    /// Cores we fetch that the remote refused: opened again later (the remote may hold them
    /// by then), after 2, 4, 8 … up to [`MAX_RETRY_TICKS`] timer ticks: (refusals, due tick).
    rejected: HashMap<[u8; 32], (u32, u64)>,
    /// Timer ticks so far.
    ticks: u64,
    /// Frames were handled since the store's last flush.
    unflushed: bool,
    /// When the deferred flush is due ([`crate::PeerConfig::flush_delay`]), if one is.
    flush_due: Option<tokio::time::Instant>,
    /// What refusing the remote's channel opens may still cost.
    refusals: RateBudget,
    hostile: Option<String>,
}

impl Conn {
    /// Opens registered core `key` on this connection (or accepts the remote's open of it:
    /// `asked`), as far as the hooks allow.
    fn add(&mut self, key: [u8; 32], asked: bool) {
        let Some(reg) = self.inner.core(&key) else {
            return;
        };
        let access = self.inner.hooks.access(&self.link, &key);
        let download = reg.download && access.fetch;
        let serve = access.serve && (asked || self.inner.config.open_served);
        if !serve && !download {
            return;
        }
        let mut store = self.inner.engine_core(key, &reg);
        if !access.serve {
            store = store.fetch_only();
        }
        let _ = self
            .session
            .add_core(key, Box::new(store), CoreOptions { download });
    }

    /// Whether registered core `key` has a channel on this connection (see [`Conn::add`]).
    fn opens(&self, key: &[u8; 32]) -> bool {
        let access = self.inner.hooks.access(&self.link, key);
        access.serve || (access.fetch && self.inner.core(key).is_some_and(|r| r.download))
    }

    /// Serves core `key` (not registered, resolved by the hooks) on this connection.
    fn add_resolved(&mut self, key: [u8; 32]) {
        let reg = Registered {
            download: false,
            claims: Default::default(),
        };
        let store = Box::new(self.inner.engine_core(key, &reg));
        if self
            .session
            .add_core(key, store, CoreOptions { download: false })
            .is_ok()
        {
            self.resolved.insert(key);
        }
    }

    fn channel_requested(&mut self, discovery_key: &[u8; 32]) {
        let hooks = self.inner.hooks.clone();
        if let Some(key) = self.inner.key_of(discovery_key) {
            if self.opens(&key) {
                self.add(key, true);
                return;
            }
        } else if let Some(key) = hooks.resolve(&self.link, discovery_key) {
            self.add_resolved(key);
            return;
        }
        self.session.reject_core(discovery_key);
        if !self.refusals.take(std::time::Instant::now()) {
            self.hostile.get_or_insert_with(|| {
                format!(
                    "channel flood: opened unknown cores faster than {}/s (burst {})",
                    self.inner.config.refusals_per_second, self.inner.config.refusal_burst
                )
            });
        }
        self.inner.emit(PeerEvent::Refused {
            conn: self.id,
            remote: self.link.remote_public_key,
            discovery_key: *discovery_key,
        });
    }

    /// Makes what this connection stored durable: one fsync for every proof applied since
    /// the last time.
    fn flush(&mut self) {
        self.flush_due = None;
        if !std::mem::take(&mut self.unflushed) {
            return;
        }
        tracing::debug!(target: "latency", conn = self.id, "flush start");
        let r = blocking(|| self.inner.store.flush());
        tracing::debug!(target: "latency", conn = self.id, "flush done");
        if let Err(e) = r {
            // Ours, not the peer's: the data stays visible and the next durable commit
            // syncs it; say so.
            tracing::warn!(conn = self.id, "cannot make fetched blocks durable: {e}");
        }
    }

    /// Flushes now, before anyone is told — unless a delay is configured and every core that
    /// got data may wait ([`crate::Hooks::flush_may_wait`]): then makes sure a flush is due
    /// within the delay.
    fn flush_or_defer(&mut self) {
        let delay = self.inner.config.flush_delay;
        let hooks = &self.inner.hooks;
        if delay.is_zero() || !self.dirty.iter().all(|k| hooks.flush_may_wait(k)) {
            self.flush();
        } else if self.unflushed && self.flush_due.is_none() {
            self.flush_due = Some(tokio::time::Instant::now() + delay);
        }
    }

    /// Tells the application and the other connections what the session did, after
    /// [`Conn::flush_or_defer`].
    fn events(&mut self) {
        let mut events = Vec::new();
        while let Some(event) = self.session.poll_event() {
            if let Event::Downloaded { key, .. } | Event::Upgraded { key, .. } = &event {
                self.dirty.insert(*key);
            }
            events.push(event);
        }
        self.flush_or_defer();
        for event in events {
            match &event {
                Event::ChannelRequested { discovery_key } => self.channel_requested(discovery_key),
                Event::RemoteSync { key, length, .. } => {
                    self.inner.hooks.remote_length(key, *length);
                }
                Event::ChannelOpened { key } => {
                    self.rejected.remove(key);
                }
                Event::ChannelClosed { key, reason } => match reason {
                    ChannelCloseReason::BadCapability
                    | ChannelCloseReason::InvalidProof(_)
                    | ChannelCloseReason::InvalidRequests => {
                        self.hostile
                            .get_or_insert_with(|| format!("core {}…: {reason}", short(key)));
                    }
                    ChannelCloseReason::Rejected
                        if self.inner.core(key).is_some_and(|r| r.download) =>
                    {
                        let ticks = self.ticks;
                        let entry = self.rejected.entry(*key).or_insert((0, 0));
                        entry.0 = entry.0.saturating_add(1);
                        let wait = 1u64
                            .checked_shl(entry.0)
                            .unwrap_or(u64::MAX)
                            .min(MAX_RETRY_TICKS);
                        entry.1 = ticks.saturating_add(wait);
                    }
                    _ => {}
                },
                _ => {}
            }
            self.inner.emit(PeerEvent::Session {
                conn: self.id,
                event,
            });
        }
        if !self.dirty.is_empty() {
            tracing::debug!(target: "latency", conn = self.id, "stored hook");
            let keys: Vec<[u8; 32]> = self.dirty.iter().copied().collect();
            self.inner.hooks.stored(&keys);
        }
        for key in self.dirty.drain() {
            let _ = self.inner.control.send(Control::Updated {
                key,
                from: Some(self.id),
            });
        }
    }

    /// The hooks' answers may have changed: open what is now allowed, close what is not.
    fn recheck(&mut self) {
        for (key, _) in self.inner.cores() {
            if self.opens(&key) {
                self.add(key, false);
            } else {
                self.session.remove_core(&key);
            }
        }
        let resolved: Vec<[u8; 32]> = self.resolved.iter().copied().collect();
        for key in resolved {
            let dk = hypercore_wire::caps::discovery_key(&key);
            if self.inner.hooks.resolve(&self.link, &dk) != Some(key) {
                self.session.remove_core(&key);
                self.resolved.remove(&key);
            }
        }
    }

    fn on_timer(&mut self) {
        if self.session.inflight() > 0 || self.session.queued_requests() > 0 {
            tracing::trace!(
                conn = self.id,
                "session at tick {}:\n{}",
                self.ticks,
                self.session.describe()
            );
        }
        self.session.on_timer();
        self.ticks += 1;
        let due: Vec<[u8; 32]> = self
            .rejected
            .iter()
            .filter(|(_, (_, at))| *at == self.ticks)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            self.add(key, false);
        }
    }

    fn control(&mut self, c: Result<Control, broadcast::error::RecvError>) -> bool {
        match c {
            Ok(Control::Added(key)) => self.add(key, false),
            Ok(Control::Removed(key)) => {
                self.session.remove_core(&key);
                self.rejected.remove(&key);
            }
            Ok(Control::Updated { key, from }) => {
                if from != Some(self.id) {
                    self.session.core_updated(&key);
                }
            }
            Ok(Control::Recheck) => self.recheck(),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.recheck();
                for (key, _) in self.inner.cores() {
                    self.session.core_updated(&key);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return false,
        }
        true
    }

    /// The session's next frame to send: in place unless building it reads storage.
    fn transmit(&mut self) -> Option<Vec<u8>> {
        if self.session.transmit_reads_storage() {
            blocking(|| self.session.poll_transmit())
        } else {
            self.session.poll_transmit()
        }
    }

    /// Handles one frame from the remote; `Err(reason)` closes the connection.
    fn frame(&mut self, frame: &[u8]) -> Result<(), String> {
        tracing::debug!(target: "latency", conn = self.id, len = frame.len(), "frame in");
        self.unflushed = true;
        let r = if frame.len() <= INLINE_FRAME && !self.inner.store.is_committing() {
            self.session.handle_frame(frame)
        } else {
            blocking(|| self.session.handle_frame(frame))
        };
        r.map_err(|reason| {
            self.events();
            reason.to_string()
        })
    }
}

/// Runs one connection to its end.
pub(crate) async fn run(inner: Arc<Inner>, io: Arc<dyn FrameIo>) -> ConnectionEnd {
    let id = inner.next_conn();
    let link = io.info();
    let end = |reason: String, hostile: bool| ConnectionEnd {
        conn: id,
        remote: link.remote_public_key,
        reason,
        hostile,
    };
    inner.emit(PeerEvent::Connected {
        conn: id,
        remote: link.remote_public_key,
    });
    let session = match Session::new(SessionConfig {
        push: inner.config.push,
        is_initiator: link.is_initiator,
        handshake_hash: link.handshake_hash.clone(),
        limits: inner.config.limits,
    }) {
        Ok(s) => s,
        Err(e) => {
            io.close(&e.to_string()).await;
            let e = end(e.to_string(), false);
            inner.emit(PeerEvent::Closed(e.clone()));
            return e;
        }
    };
    let mut ctl = inner.control.subscribe();
    let mut conn = Conn {
        inner: inner.clone(),
        id,
        link: link.clone(),
        session,
        dirty: HashSet::new(),
        resolved: HashSet::new(),
        rejected: HashMap::new(),
        ticks: 0,
        unflushed: false,
        flush_due: None,
        refusals: RateBudget::new(
            inner.config.refusal_burst,
            inner.config.refusals_per_second,
            std::time::Instant::now(),
        ),
        hostile: None,
    };
    for (key, _) in inner.cores() {
        conn.add(key, false);
    }

    let queue = inner.config.frame_queue.max(1);
    let (in_tx, mut in_rx) = mpsc::channel(queue);
    let reader = {
        let io = io.clone();
        tokio::spawn(async move {
            loop {
                let r = io.recv().await;
                let done = r.is_err();
                if in_tx.send(r).await.is_err() || done {
                    break;
                }
            }
        })
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(queue);
    let writer = {
        let io = io.clone();
        tokio::spawn(async move {
            while let Some(f) = out_rx.recv().await {
                if let Err(e) = io.send(f).await {
                    return e.to_string();
                }
            }
            String::new()
        })
    };
    let mut timer = tokio::time::interval(inner.config.timer);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer.tick().await;

    let outcome: (String, bool) = 'run: loop {
        // Move output to the writer while it has room.
        let mut blocked = false;
        loop {
            match out_tx.try_reserve() {
                Ok(permit) => match conn.transmit() {
                    Some(frame) => {
                        tracing::debug!(target: "latency", conn = conn.id, len = frame.len(), "frame out");
                        permit.send(frame)
                    }
                    None => break,
                },
                Err(mpsc::error::TrySendError::Full(())) => {
                    blocked = true;
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(())) => {
                    break 'run ("the transport stopped sending".into(), false);
                }
            }
        }
        conn.events();
        if let Some(reason) = conn.hostile.take() {
            break (reason, true);
        }
        if let Some(reason) = conn.session.close_reason() {
            break (reason.to_string(), true);
        }
        tokio::select! {
            biased;
            c = ctl.recv() => {
                if !conn.control(c) {
                    break ("peer shut down".into(), false);
                }
            }
            msg = in_rx.recv() => {
                // This frame and those queued behind it, then one flush (in `events`).
                let mut msg = msg;
                for turn in 1..=FRAMES_PER_TURN {
                    match msg {
                        Some(Ok(frame)) => {
                            if let Err(reason) = conn.frame(&frame) {
                                break 'run (reason, true);
                            }
                        }
                        Some(Err(e)) => {
                            conn.events();
                            break 'run (format!("remote closed: {e}"), false);
                        }
                        None => {
                            conn.events();
                            break 'run ("remote closed".into(), false);
                        }
                    }
                    // Take the next frame only if this turn will handle it (a frame taken
                    // and not handled would be lost: its request never answered).
                    if conn.session.close_reason().is_some() || turn == FRAMES_PER_TURN {
                        break;
                    }
                    msg = match in_rx.try_recv() {
                        Ok(m) => Some(m),
                        Err(_) => break,
                    };
                }
            }
            permit = out_tx.reserve(), if blocked => match permit {
                Ok(permit) => {
                    if let Some(frame) = conn.transmit() {
                        permit.send(frame);
                    }
                }
                Err(_) => break ("the transport stopped sending".into(), false),
            },
            _ = timer.tick() => conn.on_timer(),
            _ = sleep_until(conn.flush_due), if conn.flush_due.is_some() => conn.flush(),
        }
    };
    conn.flush();
    conn.session.close();
    drop(out_tx);
    reader.abort();
    if outcome.1 {
        writer.abort();
    } else {
        let _ = writer.await;
    }
    io.close(&outcome.0).await;
    let e = end(outcome.0, outcome.1);
    tracing::debug!(conn = id, reason = %e.reason, hostile = e.hostile, "connection ended");
    inner.emit(PeerEvent::Closed(e.clone()));
    e
}
