//! The framed protocol between the daemon and the bridge process over the inherited socketpair.
//!
//! Every frame is `u32 LE length` (of type byte + payload), `u8 type`, payload. `js/bridge.js`
//! implements the other end; this file is the reference for both.
//!
//! | type | direction | payload |
//! |---|---|---|
//! | `0x01 INIT` | daemon → bridge | JSON `{seed, bootstrap, host, firewalled, window}` |
//! | `0x02 JOIN` | daemon → bridge | `u32 req`, `topic[32]`, `u8 flags` (1 server, 2 client) |
//! | `0x03 LEAVE` | daemon → bridge | `u32 req`, `topic[32]` |
//! | `0x04 DATA` / `0x85` | both | `u32 conn`, one secret-stream message |
//! | `0x05 CLOSE` / `0x86` | both | `u32 conn`, UTF-8 reason |
//! | `0x06 CREDIT` / `0x87` | both | `u32 conn`, `u32 bytes` the sender may send more |
//! | `0x81 READY` | bridge → daemon | `public_key[32]` of the swarm identity |
//! | `0x82 DONE` | bridge → daemon | `u32 req`: a join is flushed / a leave is done |
//! | `0x83 FAILED` | bridge → daemon | `u32 req`, UTF-8 message |
//! | `0x84 OPEN` | bridge → daemon | `u32 conn`, `u8 initiator`, `remote_key[32]`, `u8 n`, `handshake_hash[n]` (n = 64) |
//! | `0x88 FATAL` | bridge → daemon | UTF-8 message; the bridge exits |
//!
//! Decoding is bounded and total: a length over [`MAX_FRAME`], a short payload, an unknown type
//! or a bad field is a [`FrameError`], never a panic or an unbounded allocation.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::transport::{HandshakeHash, PublicKey, Topic};

/// Largest secret-stream message (its length prefix is 3 bytes).
pub const MAX_MESSAGE: usize = (1 << 24) - 1;
/// Largest value of a frame's length field: type byte + connection id + one message.
pub const MAX_FRAME: usize = 1 + 4 + MAX_MESSAGE;
/// Reasons and error messages are cut to this many bytes.
pub const MAX_TEXT: usize = 1024;

const INIT: u8 = 0x01;
const JOIN: u8 = 0x02;
const LEAVE: u8 = 0x03;
const DATA: u8 = 0x04;
const CLOSE: u8 = 0x05;
const CREDIT: u8 = 0x06;
const READY: u8 = 0x81;
const DONE: u8 = 0x82;
const FAILED: u8 = 0x83;
const OPEN: u8 = 0x84;
const RDATA: u8 = 0x85;
const RCLOSE: u8 = 0x86;
const RCREDIT: u8 = 0x87;
const FATAL: u8 = 0x88;

/// Why a frame from the bridge could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame length {0} out of range (1..={MAX_FRAME})")]
    Length(usize),
    #[error("frame type {0:#04x} is unknown")]
    UnknownType(u8),
    #[error("frame type {kind:#04x}: payload of {len} bytes is malformed")]
    Malformed { kind: u8, len: usize },
}

/// A frame the daemon sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToBridge {
    Init(Vec<u8>),
    Join {
        req: u32,
        topic: Topic,
        server: bool,
        client: bool,
    },
    Leave {
        req: u32,
        topic: Topic,
    },
    Data {
        conn: u32,
        msg: Bytes,
    },
    Close {
        conn: u32,
        reason: String,
    },
    Credit {
        conn: u32,
        bytes: u32,
    },
}

/// A frame the bridge sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromBridge {
    Ready {
        public_key: PublicKey,
    },
    Done {
        req: u32,
    },
    Failed {
        req: u32,
        message: String,
    },
    Open {
        conn: u32,
        initiator: bool,
        remote_public_key: PublicKey,
        handshake_hash: HandshakeHash,
    },
    Data {
        conn: u32,
        msg: Bytes,
    },
    Close {
        conn: u32,
        reason: String,
    },
    Credit {
        conn: u32,
        bytes: u32,
    },
    Fatal {
        message: String,
    },
}

fn frame(kind: u8, payload_len: usize) -> BytesMut {
    let mut b = BytesMut::with_capacity(5 + payload_len);
    // Callers bound payload_len by MAX_FRAME (messages are checked before they get here).
    b.put_u32_le(u32::try_from(1 + payload_len).unwrap_or(u32::MAX));
    b.put_u8(kind);
    b
}

fn cut(s: &str) -> &[u8] {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

impl ToBridge {
    /// The frame's bytes, length prefix included.
    pub fn encode(&self) -> Bytes {
        match self {
            ToBridge::Init(json) => {
                let mut b = frame(INIT, json.len());
                b.put_slice(json);
                b.freeze()
            }
            ToBridge::Join {
                req,
                topic,
                server,
                client,
            } => {
                let mut b = frame(JOIN, 37);
                b.put_u32_le(*req);
                b.put_slice(topic);
                b.put_u8(u8::from(*server) | (u8::from(*client) << 1));
                b.freeze()
            }
            ToBridge::Leave { req, topic } => {
                let mut b = frame(LEAVE, 36);
                b.put_u32_le(*req);
                b.put_slice(topic);
                b.freeze()
            }
            ToBridge::Data { conn, msg } => data(DATA, *conn, msg),
            ToBridge::Close { conn, reason } => close(CLOSE, *conn, reason),
            ToBridge::Credit { conn, bytes } => credit(CREDIT, *conn, *bytes),
        }
    }
}

fn data(kind: u8, conn: u32, msg: &[u8]) -> Bytes {
    let mut b = frame(kind, 4 + msg.len());
    b.put_u32_le(conn);
    b.put_slice(msg);
    b.freeze()
}

fn close(kind: u8, conn: u32, reason: &str) -> Bytes {
    let r = cut(reason);
    let mut b = frame(kind, 4 + r.len());
    b.put_u32_le(conn);
    b.put_slice(r);
    b.freeze()
}

fn credit(kind: u8, conn: u32, bytes: u32) -> Bytes {
    let mut b = frame(kind, 8);
    b.put_u32_le(conn);
    b.put_u32_le(bytes);
    b.freeze()
}

fn u32_at(p: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = p.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

fn text(p: &[u8]) -> String {
    String::from_utf8_lossy(&p[..p.len().min(MAX_TEXT)]).into_owned()
}

impl FromBridge {
    /// Decodes one frame's type and payload.
    pub fn decode(kind: u8, p: Bytes) -> Result<FromBridge, FrameError> {
        let len = p.len();
        let bad = || FrameError::Malformed { kind, len };
        let conn = u32_at(&p, 0);
        let f = match kind {
            READY => FromBridge::Ready {
                public_key: p[..].try_into().map_err(|_| bad())?,
            },
            DONE if p.len() == 4 => FromBridge::Done {
                req: conn.ok_or_else(bad)?,
            },
            FAILED => FromBridge::Failed {
                req: conn.ok_or_else(bad)?,
                message: p.get(4..).map(text).unwrap_or_default(),
            },
            OPEN => {
                let (Some(conn), Some(&init), Some(key), Some(&n)) =
                    (conn, p.get(4), p.get(5..37), p.get(37))
                else {
                    return Err(bad());
                };
                let hash = p.get(38..).filter(|h| h.len() == usize::from(n) && n == 64);
                let (Some(hash), 0 | 1) = (hash, init) else {
                    return Err(bad());
                };
                FromBridge::Open {
                    conn,
                    initiator: init == 1,
                    remote_public_key: key.try_into().map_err(|_| bad())?,
                    handshake_hash: hash.try_into().map_err(|_| bad())?,
                }
            }
            RDATA => FromBridge::Data {
                conn: conn.ok_or_else(bad)?,
                msg: p.slice(4..),
            },
            RCLOSE => FromBridge::Close {
                conn: conn.ok_or_else(bad)?,
                reason: p.get(4..).map(text).unwrap_or_default(),
            },
            RCREDIT if p.len() == 8 => FromBridge::Credit {
                conn: conn.ok_or_else(bad)?,
                bytes: u32_at(&p, 4).ok_or_else(bad)?,
            },
            FATAL => FromBridge::Fatal { message: text(&p) },
            DONE | RCREDIT => return Err(bad()),
            other => return Err(FrameError::UnknownType(other)),
        };
        Ok(f)
    }

    /// The frame's bytes (what `js/bridge.js` sends; used by tests and fakes).
    pub fn encode(&self) -> Bytes {
        match self {
            FromBridge::Ready { public_key } => {
                let mut b = frame(READY, 32);
                b.put_slice(public_key);
                b.freeze()
            }
            FromBridge::Done { req } => {
                let mut b = frame(DONE, 4);
                b.put_u32_le(*req);
                b.freeze()
            }
            FromBridge::Failed { req, message } => close(FAILED, *req, message),
            FromBridge::Open {
                conn,
                initiator,
                remote_public_key,
                handshake_hash,
            } => {
                let mut b = frame(OPEN, 4 + 1 + 32 + 1 + 64);
                b.put_u32_le(*conn);
                b.put_u8(u8::from(*initiator));
                b.put_slice(remote_public_key);
                b.put_u8(64);
                b.put_slice(handshake_hash);
                b.freeze()
            }
            FromBridge::Data { conn, msg } => data(RDATA, *conn, msg),
            FromBridge::Close { conn, reason } => close(RCLOSE, *conn, reason),
            FromBridge::Credit { conn, bytes } => credit(RCREDIT, *conn, *bytes),
            FromBridge::Fatal { message } => {
                let m = cut(message);
                let mut b = frame(FATAL, m.len());
                b.put_slice(m);
                b.freeze()
            }
        }
    }
}

/// Reads the next frame: `Ok(None)` at a clean end of stream (between frames).
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<FromBridge>, FrameError> {
    let mut head = [0u8; 5];
    let n = r.read(&mut head[..1]).await?;
    if n == 0 {
        return Ok(None);
    }
    r.read_exact(&mut head[1..]).await?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if !(1..=MAX_FRAME).contains(&len) {
        return Err(FrameError::Length(len));
    }
    let mut payload = BytesMut::zeroed(len - 1);
    r.read_exact(&mut payload).await?;
    FromBridge::decode(head[4], payload.freeze()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn roundtrip(f: FromBridge) -> FromBridge {
        let bytes = f.encode();
        let mut r = &bytes[..];
        read_frame(&mut r).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn every_bridge_frame_roundtrips() {
        let frames = vec![
            FromBridge::Ready {
                public_key: [7; 32],
            },
            FromBridge::Done { req: 9 },
            FromBridge::Failed {
                req: 3,
                message: "no".into(),
            },
            FromBridge::Open {
                conn: 1,
                initiator: true,
                remote_public_key: [1; 32],
                handshake_hash: [2; 64],
            },
            FromBridge::Data {
                conn: 4,
                msg: Bytes::from_static(b"hello"),
            },
            FromBridge::Close {
                conn: 4,
                reason: "bye".into(),
            },
            FromBridge::Credit {
                conn: 4,
                bytes: 65536,
            },
            FromBridge::Fatal {
                message: "boom".into(),
            },
        ];
        for f in frames {
            assert_eq!(roundtrip(f.clone()).await, f);
        }
    }

    #[tokio::test]
    async fn oversized_and_empty_lengths_are_refused_before_allocating() {
        for len in [0u32, (MAX_FRAME + 1) as u32, u32::MAX] {
            let mut b = len.to_le_bytes().to_vec();
            b.push(RDATA);
            let mut r = &b[..];
            assert!(matches!(
                read_frame(&mut r).await,
                Err(FrameError::Length(_))
            ));
        }
    }

    #[test]
    fn every_short_or_bad_payload_is_an_error_not_a_panic() {
        let kinds = [
            READY, DONE, FAILED, OPEN, RDATA, RCLOSE, RCREDIT, FATAL, 0, 1, 0x7f, 0xff,
        ];
        let full = FromBridge::Open {
            conn: 1,
            initiator: false,
            remote_public_key: [1; 32],
            handshake_hash: [2; 64],
        }
        .encode();
        for kind in kinds {
            for len in 0..full.len() + 2 {
                let p: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let _ = FromBridge::decode(kind, Bytes::from(p));
            }
        }
        // An OPEN with a handshake hash that is not 64 bytes, or initiator 2, is refused.
        let mut p = full.slice(5..).to_vec();
        p[4] = 2;
        assert!(FromBridge::decode(OPEN, Bytes::from(p)).is_err());
        let mut p = full.slice(5..).to_vec();
        p[37] = 32;
        assert!(FromBridge::decode(OPEN, Bytes::from(p)).is_err());
    }

    #[tokio::test]
    async fn a_truncated_stream_is_an_io_error() {
        let b = FromBridge::Done { req: 1 }.encode();
        let mut r = &b[..6];
        assert!(matches!(read_frame(&mut r).await, Err(FrameError::Io(_))));
    }

    #[test]
    fn reasons_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let b = ToBridge::Close {
            conn: 1,
            reason: long,
        }
        .encode();
        assert!(b.len() <= 5 + 4 + MAX_TEXT);
        assert!(std::str::from_utf8(&b[9..]).is_ok());
    }
}
