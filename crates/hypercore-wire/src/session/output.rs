//! The session's outgoing queue: messages waiting to be framed, packed into protomux batch
//! frames (as Node's cork/uncork does) when more than one is waiting.

use crate::encoding::{put_buffer, put_uint};
use crate::messages::Message;
use std::collections::VecDeque;

/// Batches are cut at this size (well under Node's 8 MiB batch and secret-stream's 16 MiB).
const BATCH_BYTES: usize = 1 << 20;

/// Queued items: (channel, body) where body is `uint type` + payload (channel 0: control).
#[derive(Debug, Default)]
pub(crate) struct Output {
    items: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
}

impl Output {
    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn push(&mut self, channel: u64, body: Vec<u8>) {
        self.bytes = self.bytes.saturating_add(body.len());
        self.items.push_back((channel, body));
    }

    /// Queues a message on our channel `local_id`.
    pub fn message(&mut self, local_id: u64, msg: &Message) {
        let mut body = Vec::new();
        put_uint(&mut body, msg.kind());
        msg.encode(&mut body);
        self.push(local_id, body);
    }

    /// Queues an open of our channel `local_id`.
    pub fn open(&mut self, local_id: u64, protocol: &str, id: &[u8], handshake: &[u8]) {
        let mut body = vec![1];
        put_uint(&mut body, local_id);
        put_buffer(&mut body, protocol.as_bytes());
        put_buffer(&mut body, id);
        body.extend_from_slice(handshake);
        self.push(0, body);
    }

    /// Queues a close of our channel `local_id`.
    pub fn close(&mut self, local_id: u64) {
        let mut body = vec![3];
        put_uint(&mut body, local_id);
        self.push(0, body);
    }

    /// Queues a reject of the remote's channel `remote_id`.
    pub fn reject(&mut self, remote_id: u64) {
        let mut body = vec![2];
        put_uint(&mut body, remote_id);
        self.push(0, body);
    }

    /// The next frame: one message alone, or a batch of every queued message up to
    /// [`BATCH_BYTES`].
    pub fn pop_frame(&mut self) -> Option<Vec<u8>> {
        let (channel, body) = self.items.pop_front()?;
        self.bytes = self.bytes.saturating_sub(body.len());
        if self.items.is_empty() {
            let mut frame = Vec::with_capacity(body.len() + 9);
            put_uint(&mut frame, channel);
            frame.extend_from_slice(&body);
            return Some(frame);
        }
        let mut frame = vec![0, 0];
        put_uint(&mut frame, channel);
        put_buffer(&mut frame, &body);
        let mut prev = channel;
        while frame.len() < BATCH_BYTES {
            let Some((channel, body)) = self.items.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(body.len());
            if channel != prev {
                frame.push(0);
                put_uint(&mut frame, channel);
                prev = channel;
            }
            put_buffer(&mut frame, &body);
        }
        Some(frame)
    }
}
