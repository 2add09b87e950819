//! The message transports a replication session runs over: anything that sends and receives
//! whole protomux frames. Implemented for a `hyperswarm_bridge::Connection` (one decrypted
//! secret-stream message = one frame) and for a byte stream (TCP, QUIC, a socketpair) carrying
//! frames with the wire crate's 3-byte length prefixes ([`hypercore_wire::framing`]).

use crate::error::PeerError;
use async_trait::async_trait;
use bytes::Bytes;
use hypercore_wire::framing::{encode_frame, FrameDecoder, MAX_FRAME};
use hyperswarm_bridge::Connection;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

/// The connection facts a session needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Whether we started the connection (secret-stream's `isInitiator`).
    pub is_initiator: bool,
    /// The handshake hash the capabilities are keyed by (≤ 64 bytes).
    pub handshake_hash: Vec<u8>,
    /// The peer's public key, when the transport authenticates one.
    pub remote_public_key: Option<[u8; 32]>,
}

/// A message transport: whole frames in, whole frames out.
#[async_trait]
pub trait FrameIo: Send + Sync + 'static {
    /// The connection facts.
    fn info(&self) -> LinkInfo;
    /// Sends one frame (waits while the peer is not reading).
    async fn send(&self, frame: Vec<u8>) -> Result<(), PeerError>;
    /// The next frame; an error once the connection is closed.
    async fn recv(&self) -> Result<Vec<u8>, PeerError>;
    /// Closes the connection, telling the peer why where the transport can.
    async fn close(&self, reason: &str);
}

/// A hyperswarm connection (the bridge's, or any other `Connection`).
pub struct SwarmIo(pub Arc<dyn Connection>);

#[async_trait]
impl FrameIo for SwarmIo {
    fn info(&self) -> LinkInfo {
        let i = self.0.info();
        LinkInfo {
            is_initiator: i.is_initiator,
            handshake_hash: i.handshake_hash.to_vec(),
            remote_public_key: Some(i.remote_public_key),
        }
    }

    async fn send(&self, frame: Vec<u8>) -> Result<(), PeerError> {
        self.0
            .send(Bytes::from(frame))
            .await
            .map_err(|e| PeerError::Transport(e.to_string()))
    }

    async fn recv(&self) -> Result<Vec<u8>, PeerError> {
        self.0
            .recv()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| PeerError::Transport(e.to_string()))
    }

    async fn close(&self, reason: &str) {
        self.0.close(reason).await;
    }
}

/// A byte stream carrying length-prefixed frames (e.g. a TCP or QUIC stream whose
/// encryption and handshake hash come from elsewhere).
pub struct FramedIo<S> {
    info: LinkInfo,
    /// The read half, the frames decoded so far, and the buffer reads land in (kept: a
    /// fresh 64 KiB per frame was zeroed for every small message).
    reader: Mutex<(ReadHalf<S>, FrameDecoder, Vec<u8>)>,
    writer: Mutex<WriteHalf<S>>,
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> FramedIo<S> {
    /// Frames over `stream`, with the connection facts the caller established.
    pub fn new(stream: S, info: LinkInfo) -> Self {
        let (r, w) = tokio::io::split(stream);
        Self {
            info,
            reader: Mutex::new((r, FrameDecoder::new(MAX_FRAME), vec![0u8; 64 * 1024])),
            writer: Mutex::new(w),
        }
    }
}

#[async_trait]
impl<S: AsyncRead + AsyncWrite + Send + 'static> FrameIo for FramedIo<S> {
    fn info(&self) -> LinkInfo {
        self.info.clone()
    }

    async fn send(&self, frame: Vec<u8>) -> Result<(), PeerError> {
        let bytes = encode_frame(&frame).ok_or(PeerError::FrameTooLarge(frame.len()))?;
        let mut w = self.writer.lock().await;
        w.write_all(&bytes)
            .await
            .map_err(|e| PeerError::Transport(e.to_string()))
    }

    async fn recv(&self) -> Result<Vec<u8>, PeerError> {
        let mut guard = self.reader.lock().await;
        let (r, dec, buf) = &mut *guard;
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(PeerError::Transport(format!("bad framing: {e}"))),
            }
            let n = r
                .read(buf)
                .await
                .map_err(|e| PeerError::Transport(e.to_string()))?;
            if n == 0 {
                return Err(PeerError::Transport("end of stream".into()));
            }
            dec.push(buf.get(..n).unwrap_or_default());
        }
    }

    async fn close(&self, _reason: &str) {
        let mut w = self.writer.lock().await;
        let _ = w.shutdown().await;
    }
}
