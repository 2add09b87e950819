//! The wire format of core replication: length-prefixed frames (u32 big-endian length, then
//! a postcard-encoded `Message`), and the codec for hypercore proofs. A proof's block and
//! upgrade parts are the bytes of those parts of hypercore's `data` message (the compact
//! encoding `hypercore_wire`'s codec writes, byte for byte), written with `hypercore_wire`'s
//! encoder and read by our own bounded parser into the engine's `Proof`. Requests map field
//! for field onto the engine's `Request` ([`Message::engine_request`]). Nothing here panics
//! or allocates more than the frame it was given.

use hypercore_engine::{DataBlock, DataUpgrade, Node, Proof};
use hypercore_wire::encoding::{put_buffer, put_uint};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted: a 1 MiB block, its proof nodes and generous slack. Hypercore
/// blocks may in principle be larger; sites use 64 KiB blobs blocks.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;
/// Largest frame a server accepts from a reader: `Open` and `Request` are under 100 bytes.
pub const MAX_READER_FRAME: usize = 4 * 1024;
/// Most tree nodes a single proof may carry (a tree of 2^64 leaves has depth 64; an upgrade
/// carries at most two sets of roots and paths).
const MAX_NODES: usize = 256;
/// Highest flat-tree index a proof may name: every index below 2^62 - 1 has depth ≤ 61
/// (trees of up to 2^61 blocks); hypercore's parent arithmetic overflows above that.
const MAX_NODE_INDEX: u64 = (1 << 62) - 2;

/// One message on a core's stream. The reader opens the stream with `Open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Reader → server: "send me the core with this discovery key; here is proof that I know
    /// its public key" (see [`super::capability`]).
    Open {
        discovery_key: [u8; 32],
        capability: [u8; 32],
    },
    /// Server → reader: "I have it; it is this long". Sent again as `Length` when it grows.
    Opened { length: u64, fork: u64 },
    /// Server → reader: not here (or not for you: the two are indistinguishable).
    NotFound,
    /// Reader → server: a request for a block proof and/or an upgrade proof.
    Request {
        id: u64,
        block: Option<BlockRequest>,
        upgrade: Option<UpgradeRequest>,
    },
    /// Server → reader: the proof answering request `id`.
    Data { id: u64, proof: WireProof },
    /// Server → reader: request `id` cannot be answered (block not held, bad range).
    NoData { id: u64 },
    /// Server → reader: the core grew.
    Length { length: u64, fork: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRequest {
    pub index: u64,
    /// Tree nodes the reader is missing (from its `missing_nodes(index)`).
    pub nodes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeRequest {
    pub start: u64,
    pub length: u64,
}

/// A hypercore proof with its parts in hypercore's compact encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireProof {
    pub fork: u64,
    pub block: Option<Vec<u8>>,
    pub upgrade: Option<Vec<u8>>,
}

/// Why a frame or proof could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer sent a {0}-byte frame, more than the {1} allowed")]
    TooLarge(usize, usize),
    #[error("peer sent a malformed message: {0}")]
    Malformed(String),
    #[error("peer sent more than {0} requests without waiting for answers")]
    Flood(u64),
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("messages always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
        postcard::from_bytes(bytes).map_err(|e| WireError::Malformed(e.to_string()))
    }
}

/// Writes one frame.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &Message,
) -> Result<(), WireError> {
    let body = msg.encode();
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len(), MAX_FRAME));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    Ok(())
}

/// Reads one frame of at most `max` bytes; `Ok(None)` at a clean end of stream. Memory grows
/// with the bytes actually received, not with the length the peer announced.
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Message>, WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(WireError::TooLarge(len, max));
    }
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let got = (&mut *r).take(len as u64).read_to_end(&mut body).await?;
    if got < len {
        return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Message::decode(&body).map(Some)
}

fn put_nodes(out: &mut Vec<u8>, nodes: &[Node]) {
    put_uint(out, nodes.len() as u64);
    for n in nodes {
        put_uint(out, n.index);
        put_uint(out, n.size);
        out.extend_from_slice(&n.hash);
    }
}

/// A block request and/or an upgrade request as the engine's `Request` (fork 0: our cores
/// never truncate; `nodes` capped at `max_nodes`).
pub fn engine_request(
    block: Option<BlockRequest>,
    upgrade: Option<UpgradeRequest>,
    max_nodes: u64,
) -> hypercore_engine::Request {
    hypercore_engine::Request {
        fork: 0,
        block: block.map(|b| hypercore_engine::RequestBlock {
            index: b.index,
            nodes: b.nodes.min(max_nodes),
        }),
        hash: None,
        seek: None,
        upgrade: upgrade.map(|u| hypercore_engine::RequestUpgrade {
            start: u.start,
            length: u.length,
        }),
        manifest: false,
    }
}

impl WireProof {
    /// Encodes the block and upgrade parts of `proof` (its hash, seek and manifest parts
    /// are not carried: our readers never ask for them).
    pub fn from_proof(proof: &Proof) -> WireProof {
        WireProof {
            fork: proof.fork,
            block: proof.block.as_ref().map(|b| {
                let mut out = Vec::with_capacity(b.value.len() + 16 + 40 * b.nodes.len());
                put_uint(&mut out, b.index);
                put_buffer(&mut out, &b.value);
                put_nodes(&mut out, &b.nodes);
                out
            }),
            upgrade: proof.upgrade.as_ref().map(|u| {
                let mut out = Vec::new();
                put_uint(&mut out, u.start);
                put_uint(&mut out, u.length);
                put_nodes(&mut out, &u.nodes);
                put_nodes(&mut out, &u.additional_nodes);
                put_buffer(&mut out, u.signature.as_deref().unwrap_or_default());
                out
            }),
        }
    }

    /// Decodes the parts. Rejects trailing bytes, oversized counts and truncation.
    pub fn to_proof(&self) -> Result<Proof, WireError> {
        let block = match &self.block {
            None => None,
            Some(bytes) => {
                let mut c = Cursor::new(bytes);
                let index = c.uint()?;
                let value = c.buffer()?.to_vec();
                let nodes = c.nodes()?;
                c.finish()?;
                Some(DataBlock {
                    index,
                    value,
                    nodes,
                })
            }
        };
        let upgrade = match &self.upgrade {
            None => None,
            Some(bytes) => {
                let mut c = Cursor::new(bytes);
                let start = c.uint()?;
                let length = c.uint()?;
                let nodes = c.nodes()?;
                let additional_nodes = c.nodes()?;
                let signature = c.buffer()?;
                let signature = (!signature.is_empty()).then(|| signature.to_vec());
                c.finish()?;
                Some(DataUpgrade {
                    start,
                    length,
                    nodes,
                    additional_nodes,
                    signature,
                })
            }
        };
        Ok(Proof {
            fork: self.fork,
            block,
            hash: None,
            seek: None,
            upgrade,
            manifest: None,
        })
    }
}

/// A bounded reader of compact-encoded values.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| WireError::Malformed("proof is truncated".into()))?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| WireError::Malformed("proof is truncated".into()))?;
        self.pos = end;
        Ok(out)
    }

    fn uint(&mut self) -> Result<u64, WireError> {
        let le = |b: &[u8]| b.iter().rev().fold(0u64, |n, &x| (n << 8) | x as u64);
        let first = self.take(1)?.first().copied().unwrap_or_default();
        Ok(match first {
            0xfd => le(self.take(2)?),
            0xfe => le(self.take(4)?),
            0xff => le(self.take(8)?),
            n => n as u64,
        })
    }

    fn buffer(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.uint()?;
        let len = usize::try_from(len).map_err(|_| WireError::Malformed("buffer length".into()))?;
        self.take(len)
    }

    fn nodes(&mut self) -> Result<Vec<Node>, WireError> {
        let count = usize::try_from(self.uint()?).unwrap_or(usize::MAX);
        // Each node takes at least 34 bytes; refuse counts the buffer cannot hold.
        if count > MAX_NODES || count.saturating_mul(34) > self.buf.len().saturating_sub(self.pos) {
            return Err(WireError::Malformed(format!(
                "proof claims {count} tree nodes"
            )));
        }
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            let index = self.uint()?;
            // No real tree has nodes this high (depth ≥ 62); the engine refuses them too.
            if index > MAX_NODE_INDEX {
                return Err(WireError::Malformed(format!(
                    "proof names tree node {index}, beyond any tree"
                )));
            }
            let size = self.uint()?;
            let mut hash = [0u8; 32];
            hash.copy_from_slice(self.take(32)?);
            nodes.push(Node { index, size, hash });
        }
        Ok(nodes)
    }

    fn finish(&self) -> Result<(), WireError> {
        if self.pos != self.buf.len() {
            return Err(WireError::Malformed("trailing bytes after proof".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_survive_the_wire() {
        let dir = tempfile::tempdir().unwrap();
        let store = hypercore_engine::Store::open(dir.path().join("w")).unwrap();
        let kp = hypercore_engine::KeyPair::generate().unwrap();
        let key = store
            .create_writer(&kp, hypercore_engine::CoreKind::Compat)
            .unwrap();
        let blocks = (0..20u32)
            .map(|i| vec![i as u8; 1000 + i as usize])
            .collect();
        store.append(&key, blocks).unwrap();
        let req = engine_request(
            Some(BlockRequest { index: 5, nodes: 0 }),
            Some(UpgradeRequest {
                start: 0,
                length: 20,
            }),
            64,
        );
        let proof = store.create_proof(&key, &req).unwrap();
        let wire = WireProof::from_proof(&proof);
        let msg = Message::Data {
            id: 7,
            proof: wire.clone(),
        };
        let back = Message::decode(&msg.encode()).unwrap();
        assert_eq!(back, msg);
        let decoded = wire.to_proof().unwrap();
        assert_eq!(decoded, proof);
        // The parts are the bytes of hypercore's own `data` message.
        let data = hypercore_wire::Message::Data(Box::new(hypercore_wire::Data {
            request: 7,
            fork: 0,
            block: proof.block.as_ref().map(|b| hypercore_wire::DataBlock {
                index: b.index,
                value: b.value.clone(),
                nodes: b
                    .nodes
                    .iter()
                    .map(|n| hypercore_wire::TreeNode {
                        index: n.index,
                        size: n.size,
                        hash: n.hash,
                    })
                    .collect(),
            }),
            ..Default::default()
        }))
        .to_bytes();
        let block_part = wire.block.as_ref().unwrap();
        assert!(data.ends_with(block_part), "byte-exact block part");

        // A replica accepts the decoded proof.
        let replica = hypercore_engine::Store::open(dir.path().join("r")).unwrap();
        replica.open_replica(key, None).unwrap();
        replica.apply_proof(&key, decoded).unwrap();
        assert_eq!(replica.get(&key, 5).unwrap().unwrap(), vec![5u8; 1005]);
    }

    #[test]
    fn hostile_proofs_are_errors() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff],
            vec![0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // huge buffer length
            vec![0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff],                      // huge node count
            vec![0, 0, 0, 1],                                              // trailing byte
        ];
        for c in cases {
            let p = WireProof {
                fork: 0,
                block: Some(c.clone()),
                upgrade: None,
            };
            assert!(p.to_proof().is_err(), "{c:?}");
            let p = WireProof {
                fork: 0,
                block: None,
                upgrade: Some(c.clone()),
            };
            assert!(p.to_proof().is_err(), "{c:?}");
        }
    }

    #[tokio::test]
    async fn frames() {
        let open = Message::Open {
            discovery_key: [1; 32],
            capability: [2; 32],
        };
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_message(&mut a, &open).await.unwrap();
        write_message(&mut a, &Message::NotFound).await.unwrap();
        drop(a);
        assert_eq!(
            read_message(&mut b, MAX_READER_FRAME).await.unwrap(),
            Some(open)
        );
        assert_eq!(
            read_message(&mut b, MAX_READER_FRAME).await.unwrap(),
            Some(Message::NotFound)
        );
        assert_eq!(read_message(&mut b, MAX_READER_FRAME).await.unwrap(), None);

        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&(u32::MAX).to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_message(&mut b, MAX_FRAME).await,
            Err(WireError::TooLarge(_, MAX_FRAME))
        ));
        a.write_all(&3u32.to_be_bytes()).await.unwrap();
        a.write_all(&[200, 200, 200]).await.unwrap();
        assert!(matches!(
            read_message(&mut b, MAX_FRAME).await,
            Err(WireError::Malformed(_))
        ));
        // A server refuses reader frames bigger than any reader message.
        a.write_all(&((MAX_READER_FRAME + 1) as u32).to_be_bytes())
            .await
            .unwrap();
        assert!(matches!(
            read_message(&mut b, MAX_READER_FRAME).await,
            Err(WireError::TooLarge(_, MAX_READER_FRAME))
        ));
    }

    #[tokio::test]
    async fn announced_length_is_not_allocated_up_front() {
        // A peer announces an 8 MiB frame and sends 10 bytes, then closes: an error, and the
        // buffer only ever held what arrived.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&(MAX_FRAME as u32).to_be_bytes())
            .await
            .unwrap();
        a.write_all(&[0; 10]).await.unwrap();
        drop(a);
        assert!(matches!(
            read_message(&mut b, MAX_FRAME).await,
            Err(WireError::Io(_))
        ));
    }

    #[test]
    fn huge_counts_inside_messages_are_errors() {
        // `Data` whose proof claims a 2^62-byte block buffer, in a 20-byte message.
        let mut bytes = Message::Data {
            id: 1,
            proof: WireProof {
                fork: 0,
                block: Some(vec![1, 2, 3]),
                upgrade: None,
            },
        }
        .encode();
        // Replace the length varint of the block vector (3) by a huge varint.
        let pos = bytes.iter().position(|&b| b == 3).unwrap();
        bytes.splice(
            pos..pos + 1,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f],
        );
        assert!(matches!(
            Message::decode(&bytes),
            Err(WireError::Malformed(_))
        ));
    }
}
