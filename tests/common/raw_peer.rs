//! A hand-driven peer for hostile and authorization tests: a bare iroh endpoint that dials a
//! node on dat-mirror's ALPN, opens the replication stream itself and then writes whatever
//! hypercore frames the test wants (well-formed, forged or hostile), reading the node's
//! frames back. Frames are built with `hypercore_wire`'s own encoders.
#![allow(dead_code)]

use dat_mirror::model::keys::Key;
use dat_mirror::net::capability::EXPORTER_LABEL;
use dat_mirror::net::endpoint::{PeerAddr, ALPN};
use dat_mirror::net::node::STREAM_PREFACE;
use hypercore_peer::{FrameIo, FramedIo, LinkInfo};
use hypercore_wire::caps;
use hypercore_wire::messages::Handshake;
use hypercore_wire::mux;
use iroh::endpoint::{Connection, ConnectionError, RecvStream, SendStream};

use crate::common::TIMEOUT;

pub type RawIo = FramedIo<tokio::io::Join<RecvStream, SendStream>>;

/// One raw connection to a node, with its replication stream open.
pub struct RawPeer {
    pub endpoint: iroh::Endpoint,
    pub conn: Connection,
    pub id: Key,
    pub io: RawIo,
    /// The capabilities' handshake hash (the link's TLS exported secret).
    pub secret: [u8; 32],
    _tmp: tempfile::TempDir,
}

/// Dials `to` with a fresh identity and opens the replication stream.
pub async fn raw_peer(to: &PeerAddr) -> RawPeer {
    let tmp = tempfile::tempdir().unwrap();
    let (id, ep) = crate::common::loopback_endpoint(tmp.path()).await;
    let conn = ep.connect(to.endpoint_addr().unwrap(), ALPN).await.unwrap();
    let (io, secret) = open_stream(&conn, to.id).await;
    RawPeer {
        endpoint: ep,
        conn,
        id: id.key(),
        io,
        secret,
        _tmp: tmp,
    }
}

/// Opens the replication stream on `conn` (as the dialling end does).
pub async fn open_stream(conn: &Connection, server: Key) -> (RawIo, [u8; 32]) {
    let mut secret = [0u8; 32];
    conn.export_keying_material(&mut secret, EXPORTER_LABEL, b"")
        .unwrap();
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(STREAM_PREFACE).await.unwrap();
    let info = LinkInfo {
        is_initiator: true,
        handshake_hash: secret.to_vec(),
        remote_public_key: Some(server.0),
    };
    (FramedIo::new(tokio::io::join(recv, send), info), secret)
}

impl RawPeer {
    /// The capability for `key` on this connection (as the dialling end).
    pub fn capability(&self, key: &Key) -> [u8; 32] {
        caps::replicate_capability(true, &key.0, &self.secret).unwrap()
    }

    /// A protomux open of core `key`'s channel as `local_id`, with `capability`.
    pub fn open_frame(local_id: u64, key: &Key, capability: [u8; 32]) -> Vec<u8> {
        let mut hs = Vec::new();
        Handshake {
            seeks: true,
            capability,
        }
        .encode(&mut hs);
        mux::encode_open(
            local_id,
            hypercore_wire::PROTOCOL,
            Some(&key.discovery_key()),
            &hs,
        )
    }

    pub async fn send(&self, frame: Vec<u8>) -> bool {
        self.io.send(frame).await.is_ok()
    }

    /// The node's frames until one satisfies `want` (bounded by [`TIMEOUT`]); None if the
    /// stream ends first.
    pub async fn recv_until(&self, mut want: impl FnMut(&[u8]) -> bool) -> Option<Vec<u8>> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                let frame = self.io.recv().await.ok()?;
                if want(&frame) {
                    return Some(frame);
                }
            }
        })
        .await
        .expect("the node never answered")
    }
}

/// What the node answered to our open of `key`'s channel: `Rejected` (protomux's reject
/// of our id), or `Opened` (it opened its side of the channel: it serves the core to us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Rejected,
    Opened,
}

impl RawPeer {
    /// Reads the node's frames (batches too) until it answers our open of `key` as
    /// `local_id`; None if the stream ends first.
    pub async fn answer(&self, local_id: u64, key: &Key) -> Option<Answer> {
        let dk = key.discovery_key();
        let mut found = None;
        self.recv_until(|frame| {
            let mut msgs = Vec::new();
            if mux::decode_frame(frame, usize::MAX, &mut msgs).is_err() {
                return false;
            }
            found = msgs.iter().find_map(|m| match m {
                mux::MuxMessage::Reject { local_id: id } if *id == local_id => {
                    Some(Answer::Rejected)
                }
                mux::MuxMessage::Open { id, .. } if *id == dk.as_slice() => Some(Answer::Opened),
                _ => None,
            });
            found.is_some()
        })
        .await?;
        found
    }
}

/// Waits for `conn` to be closed by the other end; returns (code, reason).
pub async fn closed_by_peer(conn: &Connection) -> (u64, String) {
    let e = tokio::time::timeout(TIMEOUT, conn.closed())
        .await
        .expect("the victim never closed the bad peer's connection");
    match e {
        ConnectionError::ApplicationClosed(c) => (
            u64::from(c.error_code),
            String::from_utf8_lossy(&c.reason).into_owned(),
        ),
        other => panic!("connection ended otherwise: {other}"),
    }
}
