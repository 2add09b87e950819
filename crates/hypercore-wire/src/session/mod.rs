//! The per-connection replication state machine. Pure: feed it the connection's incoming frames
//! ([`Session::handle_frame`]), take its outgoing frames ([`Session::poll_transmit`]) and events
//! ([`Session::poll_event`]); no sockets, no clock, no async. Both roles, many cores per
//! connection, each core on its own `hypercore/alpha` channel named by its discovery key.
//!
//! Requests from the remote are queued and served one per `poll_transmit` call when no other
//! output is waiting, so a peer that stops reading stops being served; queues, channels and
//! buffered bytes are capped by [`Limits`], and breaking a cap closes the connection with a
//! [`CloseReason`].

mod channel;
mod output;
pub mod ranges;
mod types;

pub use types::{ChannelCloseReason, CloseReason, Event, Limits};

use crate::caps;
use crate::messages::Handshake;
use crate::mux::decode_frame;
use crate::store::CoreStore;
use channel::{Channel, Ctx};
use output::Output;
use std::collections::{HashMap, VecDeque};
use thiserror::Error;

/// Misuse of the session API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    /// The handshake hash is longer than 64 bytes.
    #[error("handshake hash of {0} bytes (at most 64)")]
    HandshakeHash(usize),
    /// The core is already on this connection.
    #[error("core already added")]
    AlreadyAdded,
    /// The connection is closed.
    #[error("session closed: {0}")]
    Closed(CloseReason),
    /// Too many channels.
    #[error("channel limit reached")]
    TooManyChannels,
}

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Whether we initiated the connection (secret-stream's `isInitiator`).
    pub is_initiator: bool,
    /// The connection's handshake hash (secret-stream's `handshakeHash`, ≤ 64 bytes).
    pub handshake_hash: Vec<u8>,
    /// Hostile-peer limits.
    pub limits: Limits,
    /// Push mode (Node's `allowPush`): on the cores we fetch, say that we accept blocks sent
    /// unasked, and send the upgrade of a fresh append with its first block to remotes
    /// that say the same, instead of waiting for their request. Saves a round trip per
    /// append. For links between our own nodes; off towards the hypercore network.
    pub push: bool,
}

/// Options of one core on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreOptions {
    /// Fetch what the remote has and we lack (serving is always on).
    pub download: bool,
}

/// Channel ids freed after this many others before one is reused. A closed channel's id may
/// still be named by messages on the way: when the remote closes a channel we accepted, it may
/// not have seen our open yet and will answer it (with a reject, or an open of its own) after
/// we freed the id. Reused at once (as protomux does), that answer lands on the new channel:
/// a reject of a paired channel, or an open naming an id the remote still holds as
/// undecided — both protocol violations, seen when a laptop toggled sites faster than a round
/// trip. Fresh ids for a while make such late answers name a closed channel (ignored).
const ID_QUARANTINE: usize = 64;

/// A remote channel we have not decided on yet.
struct PendingOpen {
    remote_id: u64,
    handshake: Handshake,
    buffered: Vec<(u64, Vec<u8>)>,
}

enum RemoteSlot {
    Pending([u8; 32]),
    Paired(u64),
}

/// One connection's replication state.
pub struct Session {
    config: SessionConfig,
    channels: HashMap<u64, Channel>,
    by_discovery_key: HashMap<[u8; 32], u64>,
    remote: HashMap<u64, RemoteSlot>,
    remote_table_len: u64,
    pending: HashMap<[u8; 32], PendingOpen>,
    buffered_bytes: usize,
    /// Our channel ids freed by closes, oldest first; reused only after [`ID_QUARANTINE`]
    /// others were freed (see there).
    free_ids: VecDeque<u64>,
    next_local_id: u64,
    next_request_id: u64,
    queued_total: usize,
    out: Output,
    events: VecDeque<Event>,
    closed: Option<CloseReason>,
    serve_cursor: u64,
}

impl Session {
    /// A session for one connection.
    pub fn new(config: SessionConfig) -> Result<Self, SessionError> {
        if config.handshake_hash.len() > 64 {
            return Err(SessionError::HandshakeHash(config.handshake_hash.len()));
        }
        Ok(Self {
            config,
            channels: HashMap::new(),
            by_discovery_key: HashMap::new(),
            remote: HashMap::new(),
            remote_table_len: 0,
            pending: HashMap::new(),
            buffered_bytes: 0,
            free_ids: VecDeque::new(),
            next_local_id: 1,
            next_request_id: 1,
            queued_total: 0,
            out: Output::default(),
            events: VecDeque::new(),
            closed: None,
            serve_cursor: 0,
        })
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// Open channels (cores on this connection, opened by us).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Our requests in flight over all channels.
    pub fn inflight(&self) -> usize {
        self.channels.values().map(Channel::inflight).sum()
    }

    /// Remote requests waiting to be served.
    pub fn queued_requests(&self) -> usize {
        self.queued_total
    }

    /// A line per channel and per undecided remote open, for traces of a stalled replication.
    pub fn describe(&self) -> String {
        let mut lines: Vec<String> = self.channels.values().map(Channel::describe).collect();
        lines.sort();
        for (dk, p) in &self.pending {
            lines.push(format!(
                "pending open {:02x}{:02x} remote {} ({} messages held)",
                dk[0],
                dk[1],
                p.remote_id,
                p.buffered.len()
            ));
        }
        lines.push(format!("output {} bytes", self.out.bytes()));
        lines.join("\n")
    }

    /// Closes the session (the application is closing the connection).
    pub fn close(&mut self) {
        self.closed.get_or_insert(CloseReason::Local);
    }

    fn ctx_parts(&mut self) -> (&mut HashMap<u64, Channel>, Ctx<'_>) {
        (
            &mut self.channels,
            Ctx {
                out: &mut self.out,
                events: &mut self.events,
                next_id: &mut self.next_request_id,
                limits: &self.config.limits,
                queued_total: &mut self.queued_total,
            },
        )
    }

    /// Adds a core: opens its channel (or accepts the remote's pending open of it).
    pub fn add_core(
        &mut self,
        key: [u8; 32],
        store: Box<dyn CoreStore + Send>,
        options: CoreOptions,
    ) -> Result<(), SessionError> {
        if let Some(reason) = &self.closed {
            return Err(SessionError::Closed(reason.clone()));
        }
        let dk = caps::discovery_key(&key);
        if self.by_discovery_key.contains_key(&dk) {
            return Err(SessionError::AlreadyAdded);
        }
        if self.channels.len() + self.pending.len() >= self.config.limits.max_channels
            && !self.pending.contains_key(&dk)
        {
            return Err(SessionError::TooManyChannels);
        }
        let reused = if self.free_ids.len() > ID_QUARANTINE {
            self.free_ids.pop_front()
        } else {
            None
        };
        let local_id = match reused {
            Some(id) => id,
            None => {
                let id = self.next_local_id;
                self.next_local_id += 1;
                id
            }
        };
        let capability =
            caps::replicate_capability(self.config.is_initiator, &key, &self.config.handshake_hash)
                .ok_or(SessionError::HandshakeHash(
                    self.config.handshake_hash.len(),
                ))?;
        let mut handshake = Vec::with_capacity(33);
        Handshake {
            seeks: true,
            capability,
        }
        .encode(&mut handshake);
        self.out.open(local_id, crate::PROTOCOL, &dk, &handshake);
        let channel = Channel::new(
            key,
            dk,
            local_id,
            store,
            options.download,
            self.config.push,
            &self.config.limits,
        );
        self.channels.insert(local_id, channel);
        self.by_discovery_key.insert(dk, local_id);
        if let Some(p) = self.pending.remove(&dk) {
            let bytes: usize = p.buffered.iter().map(|(_, b)| b.len()).sum();
            self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
            self.remote
                .insert(p.remote_id, RemoteSlot::Paired(local_id));
            self.pair(local_id, p.remote_id, &p.handshake);
            for (kind, payload) in p.buffered {
                if self.closed.is_some() || !self.channels.contains_key(&local_id) {
                    break;
                }
                if let Err(fault) = self.channel_message(local_id, kind, &payload) {
                    self.fault(local_id, fault);
                }
            }
        }
        Ok(())
    }

    /// Refuses the remote's pending open of a core (see [`Event::ChannelRequested`]).
    pub fn reject_core(&mut self, discovery_key: &[u8; 32]) {
        if let Some(p) = self.pending.remove(discovery_key) {
            let bytes: usize = p.buffered.iter().map(|(_, b)| b.len()).sum();
            self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
            self.remote.remove(&p.remote_id);
            self.out.reject(p.remote_id);
        }
    }

    /// Removes a core from this connection (closes its channel).
    pub fn remove_core(&mut self, key: &[u8; 32]) {
        let dk = caps::discovery_key(key);
        if let Some(local_id) = self.by_discovery_key.get(&dk).copied() {
            self.close_channel(local_id, ChannelCloseReason::Removed, true);
        }
    }

    /// Our copy of a core changed (appended locally, or grown on another connection): peers on
    /// this connection hear the new length and ranges.
    pub fn core_updated(&mut self, key: &[u8; 32]) {
        let dk = caps::discovery_key(key);
        let Some(local_id) = self.by_discovery_key.get(&dk).copied() else {
            return;
        };
        let (channels, mut ctx) = self.ctx_parts();
        if let Some(ch) = channels.get_mut(&local_id) {
            ch.on_local_update(&mut ctx);
        }
        self.check_output();
    }

    /// Sends an extension message on a core's channel (once it is open).
    pub fn send_extension(&mut self, key: &[u8; 32], name: &str, message: Vec<u8>) {
        let dk = caps::discovery_key(key);
        let Some(local_id) = self.by_discovery_key.get(&dk).copied() else {
            return;
        };
        let (channels, mut ctx) = self.ctx_parts();
        if let Some(ch) = channels.get_mut(&local_id) {
            ch.send_extension(&mut ctx, name.to_string(), message);
        }
    }

    /// The periodic timer (call it every few seconds, e.g. 10 s): requests unanswered for two
    /// ticks are cancelled and asked again. The session itself has no clock.
    pub fn on_timer(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let ids: Vec<u64> = self.channels.keys().copied().collect();
        for id in ids {
            let (channels, mut ctx) = self.ctx_parts();
            if let Some(ch) = channels.get_mut(&id) {
                ch.on_timer(&mut ctx);
            }
        }
        self.check_output();
    }

    /// Whether the next [`Session::poll_transmit`] would read storage: nothing is waiting to
    /// be sent, so it serves a queued remote request (a proof, block bytes). Otherwise it only
    /// hands over a frame already built, and its caller need not treat it as blocking.
    pub fn transmit_reads_storage(&self) -> bool {
        self.out.is_empty() && self.closed.is_none() && self.queued_total > 0
    }

    /// The next frame to send, if any. Serves one queued remote request when nothing else is
    /// waiting.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() && self.closed.is_none() {
            self.serve_next();
        }
        self.out.pop_frame()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn serve_next(&mut self) {
        // Round-robin over channels, starting after the one served last.
        let mut ids: Vec<u64> = self.channels.keys().copied().collect();
        ids.sort_unstable();
        let cursor = self.serve_cursor;
        let order: Vec<u64> = ids
            .iter()
            .filter(|id| **id > cursor)
            .chain(ids.iter().filter(|id| **id <= cursor))
            .copied()
            .collect();
        for id in order {
            let (channels, mut ctx) = self.ctx_parts();
            let Some(ch) = channels.get_mut(&id) else {
                continue;
            };
            match ch.serve_one(&mut ctx) {
                Ok(false) => continue,
                Ok(true) => {
                    self.serve_cursor = id;
                    return;
                }
                Err(fault) => {
                    self.fault(id, fault);
                    return;
                }
            }
        }
    }

    fn check_output(&mut self) {
        if self.out.bytes() > self.config.limits.max_output_bytes && self.closed.is_none() {
            self.closed = Some(CloseReason::OutputOverflow(
                self.config.limits.max_output_bytes,
            ));
        }
    }

    /// Handles one incoming frame. An error means the connection must be closed (the reason
    /// says why, e.g. to ban the peer); every later call returns it again.
    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<(), CloseReason> {
        if let Some(reason) = &self.closed {
            return Err(reason.clone());
        }
        let mut msgs = Vec::new();
        if let Err(e) = decode_frame(frame, self.config.limits.max_frame, &mut msgs) {
            let reason = match e {
                crate::DecodeError::FrameTooLarge { len, .. } => CloseReason::FrameTooLarge(len),
                e => CloseReason::Malformed(e),
            };
            self.closed = Some(reason.clone());
            return Err(reason);
        }
        for m in msgs {
            self.dispatch(m);
            if let Some(reason) = &self.closed {
                return Err(reason.clone());
            }
        }
        self.check_output();
        match &self.closed {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }
}

mod dispatch;
