//! Replication counters for `/metrics`: bytes and blocks served and received, proofs
//! rejected. Kept by the engine ([`super::engine`]) around the streams it hands to the
//! replication code, so they count what really crossed the wire without that code knowing:
//! [`Counted`] wraps a stream and adds every byte that passes, and a [`FrameScan`] reads
//! just enough of each frame (its length and the first bytes of its body) to tell a `Data`
//! message that carries a block. Received blocks are counted as they arrive; those whose
//! proof does not verify are also counted in `proofs_rejected` (by the engine).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Monotonic counters of one node's replication.
#[derive(Debug, Default)]
pub struct ReplicationCounters {
    pub bytes_served: AtomicU64,
    pub blocks_served: AtomicU64,
    pub bytes_received: AtomicU64,
    pub blocks_received: AtomicU64,
    pub proofs_rejected: AtomicU64,
}

impl ReplicationCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Which way a [`Counted`] stream counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Bytes written to a reader we serve (and the blocks in them).
    Served,
    /// Bytes read from a peer we pull from.
    Received,
}

/// A stream whose bytes are added to `counters`.
pub struct Counted<S> {
    inner: S,
    counters: Arc<ReplicationCounters>,
    side: Side,
    frames: FrameScan,
}

impl<S> Counted<S> {
    pub fn new(inner: S, counters: Arc<ReplicationCounters>, side: Side) -> Counted<S> {
        Counted {
            inner,
            counters,
            side,
            frames: FrameScan::default(),
        }
    }

    fn passed(&mut self, bytes: &[u8]) {
        let c = &self.counters;
        match self.side {
            Side::Served => {
                ReplicationCounters::add(&c.bytes_served, bytes.len() as u64);
                let blocks = self.frames.feed(bytes);
                ReplicationCounters::add(&c.blocks_served, blocks);
            }
            Side::Received => {
                ReplicationCounters::add(&c.bytes_received, bytes.len() as u64);
                let blocks = self.frames.feed(bytes);
                ReplicationCounters::add(&c.blocks_received, blocks);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.passed(&buf.filled()[before..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.passed(&buf[..n.min(buf.len())]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bytes of a frame body looked at: the tag, two varints (≤ 10 bytes each), an option tag.
const PREFIX: usize = 22;
/// `Message::Data`'s variant index in the wire's postcard encoding.
const DATA_TAG: u8 = 4;

/// Follows the wire's frames (`u32` big-endian length, then the body) through a byte
/// stream cut anywhere, and counts the `Data` frames whose proof carries a block.
#[derive(Debug, Default)]
pub struct FrameScan {
    header: [u8; 4],
    header_len: usize,
    body_left: usize,
    prefix: Vec<u8>,
    decided: bool,
}

impl FrameScan {
    /// Takes the next bytes of the stream; returns how many block-carrying frames they
    /// completed the start of.
    pub fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut blocks = 0;
        while !bytes.is_empty() {
            if self.header_len < 4 {
                let n = (4 - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == 4 {
                    self.body_left = u32::from_be_bytes(self.header) as usize;
                    self.prefix.clear();
                    self.decided = false;
                    if self.body_left == 0 {
                        self.header_len = 0;
                    }
                }
                continue;
            }
            let n = self.body_left.min(bytes.len());
            let want = PREFIX.saturating_sub(self.prefix.len()).min(n);
            self.prefix.extend_from_slice(&bytes[..want]);
            self.body_left -= n;
            bytes = &bytes[n..];
            if !self.decided && (self.prefix.len() >= PREFIX || self.body_left == 0) {
                self.decided = true;
                blocks += u64::from(carries_block(&self.prefix));
            }
            if self.body_left == 0 {
                self.header_len = 0;
            }
        }
        blocks
    }
}

/// Is `body` (the start of a frame body) a `Data` whose proof has `block: Some`? Its layout:
/// tag, `id` varint, `fork` varint, then the option's tag.
fn carries_block(body: &[u8]) -> bool {
    fn skip_varint(b: &[u8]) -> Option<&[u8]> {
        let end = b.iter().take(10).position(|x| x & 0x80 == 0)?;
        b.get(end + 1..)
    }
    let Some((&DATA_TAG, rest)) = body.split_first() else {
        return false;
    };
    let after = skip_varint(rest).and_then(skip_varint);
    after.and_then(|r| r.first()).copied() == Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::wire::{Message, WireProof};

    fn frame(m: &Message) -> Vec<u8> {
        let body = m.encode();
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn counts_data_frames_with_a_block_however_the_stream_is_cut() {
        let data = |id, block: bool| Message::Data {
            id,
            proof: WireProof {
                fork: 300,
                block: block.then(|| vec![7u8; 70_000]),
                upgrade: Some(vec![1, 2, 3]),
            },
        };
        let mut stream = Vec::new();
        for m in [
            Message::Opened { length: 5, fork: 0 },
            data(1, true),
            data(u64::MAX, true),
            data(3, false),
            Message::NoData { id: 4 },
            data(5, true),
            Message::Length { length: 9, fork: 0 },
        ] {
            stream.extend(frame(&m));
        }
        for cut in [1, 2, 3, 5, 7, 13, 4096, stream.len()] {
            let mut scan = FrameScan::default();
            let n: u64 = stream.chunks(cut).map(|c| scan.feed(c)).sum();
            assert_eq!(n, 3, "cut every {cut} bytes");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut scan = FrameScan::default();
        for i in 0..2000u32 {
            let b = i.wrapping_mul(2654435761).to_le_bytes();
            scan.feed(&b);
        }
        assert!(!carries_block(&[]));
        assert!(!carries_block(&[4, 0x80, 0x80]));
    }
}
