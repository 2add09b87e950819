//! The session's handling of decoded protomux messages: opens (pairing with our channels or
//! waiting for the application's decision), rejects, closes, and channel messages routed to
//! their core; and the closing of channels with a reason.

use super::channel::Fault;
use super::ChannelCloseReason;
use super::{CloseReason, Event, PendingOpen, RemoteSlot, Session};
use crate::caps;
use crate::encoding::Reader;
use crate::messages::{Handshake, Message};
use crate::mux::MuxMessage;

impl Session {
    pub(super) fn dispatch(&mut self, m: MuxMessage<'_>) {
        match m {
            MuxMessage::OpenControl => self.out.reject(0),
            MuxMessage::Open {
                remote_id,
                protocol,
                id,
                handshake,
            } => self.on_remote_open(remote_id, &protocol, id, handshake),
            MuxMessage::Reject { local_id } => match self.channels.get(&local_id) {
                Some(c) if c.remote_id.is_none() => {
                    self.close_channel(local_id, ChannelCloseReason::Rejected, false);
                }
                // A reject of a channel the remote already paired: an answer to an earlier
                // open of this id that crossed the remote's close of it (Node reuses ids at
                // once). Late, like messages for a closed channel.
                Some(_) => {}
                // A reject that crossed our close of that channel (a core removed while its
                // open was on the way): late, like messages for a closed channel.
                None => {}
            },
            MuxMessage::Close { remote_id } => match self.remote.remove(&remote_id) {
                Some(RemoteSlot::Paired(local_id)) => {
                    self.close_channel(local_id, ChannelCloseReason::RemoteClosed, false);
                }
                Some(RemoteSlot::Pending(dk)) => {
                    if let Some(p) = self.pending.remove(&dk) {
                        let bytes: usize = p.buffered.iter().map(|(_, b)| b.len()).sum();
                        self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
                    }
                }
                None => {}
            },
            MuxMessage::Message {
                remote_id,
                kind,
                payload,
            } => match self.remote.get(&remote_id) {
                Some(RemoteSlot::Paired(local_id)) => {
                    let local_id = *local_id;
                    if let Err(fault) = self.channel_message(local_id, kind, payload) {
                        self.fault(local_id, fault);
                    }
                }
                Some(RemoteSlot::Pending(dk)) => {
                    let dk = *dk;
                    let limit = self.config.limits.max_buffered_bytes;
                    if self.buffered_bytes.saturating_add(payload.len()) > limit {
                        self.closed = Some(CloseReason::BufferFlood(limit));
                        return;
                    }
                    if let Some(p) = self.pending.get_mut(&dk) {
                        self.buffered_bytes += payload.len();
                        p.buffered.push((kind, payload.to_vec()));
                    }
                }
                None => {} // a closed channel: late messages are ignored, as in Node
            },
        }
    }

    fn on_remote_open(&mut self, remote_id: u64, protocol: &str, id: &[u8], handshake: &[u8]) {
        // protomux: the remote may grow its ids by one, and never reuse a live one.
        if remote_id > self.remote_table_len.saturating_add(1)
            || self.remote.contains_key(&remote_id)
        {
            self.closed = Some(CloseReason::ProtocolViolation("invalid open message"));
            return;
        }
        self.remote_table_len = self.remote_table_len.max(remote_id);
        let dk: Option<[u8; 32]> = id.try_into().ok();
        let (Some(dk), true) = (dk, protocol == crate::PROTOCOL || protocol == "hypercore") else {
            self.out.reject(remote_id);
            return;
        };
        let handshake = match Handshake::decode(&mut Reader::new(handshake)) {
            Ok(h) => h,
            Err(e) => {
                self.closed = Some(CloseReason::Malformed(e));
                return;
            }
        };
        match self.by_discovery_key.get(&dk).copied() {
            Some(local_id) => {
                let unpaired = self
                    .channels
                    .get(&local_id)
                    .is_some_and(|c| c.remote_id.is_none());
                if !unpaired {
                    self.out.reject(remote_id); // a second open of the same core
                    return;
                }
                self.remote.insert(remote_id, RemoteSlot::Paired(local_id));
                self.pair(local_id, remote_id, &handshake);
            }
            None => {
                if self.pending.contains_key(&dk) {
                    self.out.reject(remote_id);
                    return;
                }
                let limit = self.config.limits.max_channels;
                if self.channels.len() + self.pending.len() >= limit {
                    self.closed = Some(CloseReason::ChannelFlood(limit));
                    return;
                }
                self.remote.insert(remote_id, RemoteSlot::Pending(dk));
                self.pending.insert(
                    dk,
                    PendingOpen {
                        remote_id,
                        handshake,
                        buffered: Vec::new(),
                    },
                );
                self.events
                    .push_back(Event::ChannelRequested { discovery_key: dk });
            }
        }
    }

    /// Pairs our channel with the remote's and checks the remote's capability.
    pub(super) fn pair(&mut self, local_id: u64, remote_id: u64, handshake: &Handshake) {
        let is_initiator = self.config.is_initiator;
        let hh = self.config.handshake_hash.clone();
        let (channels, mut ctx) = self.ctx_parts();
        let Some(ch) = channels.get_mut(&local_id) else {
            return;
        };
        ch.remote_id = Some(remote_id);
        if !caps::verify_remote_capability(is_initiator, &ch.key, &hh, &handshake.capability) {
            self.close_channel(local_id, ChannelCloseReason::BadCapability, true);
            return;
        }
        ch.on_open(&mut ctx);
    }

    pub(super) fn channel_message(
        &mut self,
        local_id: u64,
        kind: u64,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let msg = match Message::decode(kind, payload) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Fault::Connection(CloseReason::Malformed(e))),
        };
        let (channels, mut ctx) = self.ctx_parts();
        match channels.get_mut(&local_id) {
            Some(ch) if ch.opened => ch.on_message(&mut ctx, msg),
            _ => Ok(()),
        }
    }

    pub(super) fn fault(&mut self, local_id: u64, fault: Fault) {
        match fault {
            Fault::Channel(reason) => self.close_channel(local_id, reason, true),
            Fault::Connection(reason) => {
                self.closed.get_or_insert(reason);
            }
        }
    }

    /// Closes our channel `local_id`, telling the remote if `send_close`.
    pub(super) fn close_channel(
        &mut self,
        local_id: u64,
        reason: ChannelCloseReason,
        send_close: bool,
    ) {
        let Some(mut ch) = self.channels.remove(&local_id) else {
            return;
        };
        self.queued_total = self.queued_total.saturating_sub(ch.drain_queue());
        ch.release_all();
        self.by_discovery_key.remove(&ch.discovery_key);
        if send_close {
            self.out.close(local_id);
        }
        if let Some(remote_id) = ch.remote_id {
            self.remote.remove(&remote_id);
            // Paired: both sides free the id once the close is through (as protomux does).
            self.free_ids.push_back(local_id);
        }
        self.events.push_back(Event::ChannelClosed {
            key: ch.key,
            reason,
        });
    }
}
