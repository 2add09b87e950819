//! Protomux framing (Node's `protomux` 3): one frame per secret-stream message, carrying either
//! a channel message (`uint channel, uint type, payload`) or a control message on channel 0
//! (0 batch, 1 open, 2 reject, 3 close). A batch packs several messages for one or more
//! channels into one frame.
//!
//! [`decode_frame`] flattens a frame into [`MuxMessage`]s borrowing from it; the `encode_*`
//! functions and [`BatchBuilder`] produce the bytes Node's protomux writes.

use crate::encoding::{put_buffer, put_optional_buffer, put_string, put_uint, uint_len, Reader};
use crate::error::DecodeError;

/// Node's protomux flushes a batch once it reaches this many bytes.
pub const NODE_MAX_BATCH: usize = 8 * 1024 * 1024;

/// One message found in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxMessage<'a> {
    /// The remote opens a channel under its id `remote_id`.
    Open {
        /// The remote's id for the channel (never 0).
        remote_id: u64,
        /// Protocol name, e.g. `hypercore/alpha`.
        protocol: String,
        /// Channel id (for hypercore: the discovery key); empty means none.
        id: &'a [u8],
        /// The protocol's handshake bytes.
        handshake: &'a [u8],
    },
    /// The remote refuses a channel we opened under our id `local_id`.
    Reject {
        /// Our id of the refused channel.
        local_id: u64,
    },
    /// The remote closes its channel `remote_id`.
    Close {
        /// The remote's id of the channel.
        remote_id: u64,
    },
    /// A message on the remote's channel `remote_id`.
    Message {
        /// The remote's id of the channel.
        remote_id: u64,
        /// Message type.
        kind: u64,
        /// Payload.
        payload: &'a [u8],
    },
    /// An open of channel 0 (Node answers with a reject of 0 and so do we).
    OpenControl,
}

fn decode_control<'a>(
    r: &mut Reader<'a>,
    out: &mut Vec<MuxMessage<'a>>,
    in_batch: bool,
) -> Result<(), DecodeError> {
    match r.uint()? {
        0 => {
            if in_batch {
                return Err(DecodeError::NestedBatch);
            }
            decode_batch(r, out)
        }
        1 => {
            let remote_id = r.uint()?;
            let protocol = r.string()?;
            let id = r.buffer()?;
            let handshake = r.rest();
            out.push(if remote_id == 0 {
                MuxMessage::OpenControl
            } else {
                MuxMessage::Open {
                    remote_id,
                    protocol,
                    id,
                    handshake,
                }
            });
            Ok(())
        }
        2 => {
            out.push(MuxMessage::Reject {
                local_id: r.uint()?,
            });
            Ok(())
        }
        3 => {
            let remote_id = r.uint()?;
            if remote_id != 0 {
                out.push(MuxMessage::Close { remote_id });
            }
            Ok(())
        }
        _ => Ok(()), // unknown control messages are ignored, as in Node
    }
}

fn decode_one<'a>(
    channel: u64,
    r: &mut Reader<'a>,
    out: &mut Vec<MuxMessage<'a>>,
    in_batch: bool,
) -> Result<(), DecodeError> {
    if channel == 0 {
        return decode_control(r, out, in_batch);
    }
    let kind = r.uint()?;
    out.push(MuxMessage::Message {
        remote_id: channel,
        kind,
        payload: r.rest(),
    });
    Ok(())
}

fn decode_batch<'a>(r: &mut Reader<'a>, out: &mut Vec<MuxMessage<'a>>) -> Result<(), DecodeError> {
    let mut channel = r.uint()?;
    while !r.is_empty() {
        let len = r.len()?;
        if len == 0 {
            channel = r.uint()?;
            continue;
        }
        // Node clamps a length that runs past the frame's end.
        let item = r.take(len.min(r.remaining()))?;
        decode_one(channel, &mut Reader::new(item), out, true)?;
    }
    Ok(())
}

/// Decodes one frame into `out` (cleared first). An empty frame yields nothing (Node ignores
/// it); a frame longer than `max_frame` is refused before anything is decoded.
pub fn decode_frame<'a>(
    frame: &'a [u8],
    max_frame: usize,
    out: &mut Vec<MuxMessage<'a>>,
) -> Result<(), DecodeError> {
    out.clear();
    if frame.len() > max_frame {
        return Err(DecodeError::FrameTooLarge {
            len: frame.len(),
            cap: max_frame,
        });
    }
    if frame.is_empty() {
        return Ok(());
    }
    let mut r = Reader::new(frame);
    let channel = r.uint()?;
    decode_one(channel, &mut r, out, false)
}

/// The bytes of an `open` control message without the leading channel 0.
fn open_body(local_id: u64, protocol: &str, id: Option<&[u8]>, handshake: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + protocol.len() + 40 + handshake.len());
    put_uint(&mut out, 1);
    put_uint(&mut out, local_id);
    put_string(&mut out, protocol);
    put_optional_buffer(&mut out, id);
    out.extend_from_slice(handshake);
    out
}

fn control_frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(0);
    out.extend_from_slice(&body);
    out
}

/// A frame opening our channel `local_id` with the protocol's handshake bytes.
pub fn encode_open(local_id: u64, protocol: &str, id: Option<&[u8]>, handshake: &[u8]) -> Vec<u8> {
    control_frame(open_body(local_id, protocol, id, handshake))
}

/// A frame refusing the remote's channel `remote_id`.
pub fn encode_reject(remote_id: u64) -> Vec<u8> {
    let mut out = vec![0, 2];
    put_uint(&mut out, remote_id);
    out
}

/// A frame closing our channel `local_id`.
pub fn encode_close(local_id: u64) -> Vec<u8> {
    let mut out = vec![0, 3];
    put_uint(&mut out, local_id);
    out
}

/// A frame carrying one message of type `kind` on our channel `local_id`.
pub fn encode_message(local_id: u64, kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(uint_len(local_id) + uint_len(kind) + payload.len());
    put_uint(&mut out, local_id);
    put_uint(&mut out, kind);
    out.extend_from_slice(payload);
    out
}

/// Builds a batch frame the way Node's protomux does between `cork()` and `uncork()`.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    items: Vec<(u64, Vec<u8>)>,
}

impl BatchBuilder {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of messages in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if nothing was added.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds a message of type `kind` on our channel `local_id`.
    pub fn message(&mut self, local_id: u64, kind: u64, payload: &[u8]) {
        let mut b = Vec::with_capacity(uint_len(kind) + payload.len());
        put_uint(&mut b, kind);
        b.extend_from_slice(payload);
        self.items.push((local_id, b));
    }

    /// Adds an `open` of our channel `local_id`.
    pub fn open(&mut self, local_id: u64, protocol: &str, id: Option<&[u8]>, handshake: &[u8]) {
        self.items
            .push((0, open_body(local_id, protocol, id, handshake)));
    }

    /// Adds a `close` of our channel `local_id`.
    pub fn close(&mut self, local_id: u64) {
        let mut b = vec![3];
        put_uint(&mut b, local_id);
        self.items.push((0, b));
    }

    /// Adds a `reject` of the remote's channel `remote_id`.
    pub fn reject(&mut self, remote_id: u64) {
        let mut b = vec![2];
        put_uint(&mut b, remote_id);
        self.items.push((0, b));
    }

    /// The batch frame (empty if nothing was added).
    pub fn finish(self) -> Vec<u8> {
        let Some(first) = self.items.first().map(|(c, _)| *c) else {
            return Vec::new();
        };
        let mut out = vec![0, 0];
        put_uint(&mut out, first);
        let mut prev = first;
        for (channel, bytes) in &self.items {
            if *channel != prev {
                out.push(0);
                put_uint(&mut out, *channel);
                prev = *channel;
            }
            put_buffer(&mut out, bytes);
        }
        out
    }
}
