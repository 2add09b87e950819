//! Hypercore's replication messages (hypercore 11 `lib/messages.js` `wire.*`): the channel
//! handshake and the ten message types of the `hypercore/alpha` protocol, in the order Node
//! registers them (their index is the protomux message type).

use crate::encoding::{put_optional_buffer, put_string, put_uint, put_uint32_array, Reader};
use crate::error::DecodeError;
use crate::manifest::Manifest;

/// The channel handshake: sent in the protomux `open` of a `hypercore/alpha` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The sender supports seek requests.
    pub seeks: bool,
    /// `caps.replicate(isInitiator, key, handshakeHash)` of the sender.
    pub capability: [u8; 32],
}

impl Handshake {
    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_uint(out, u64::from(self.seeks));
        out.extend_from_slice(&self.capability);
    }
    /// Decodes.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = r.uint()?;
        Ok(Self {
            seeks: flags & 1 != 0,
            capability: r.fixed32()?,
        })
    }
}

/// `sync` (type 0): the sender's length and fork, and what it knows of the receiver's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sync {
    /// The sender's fork.
    pub fork: u64,
    /// The sender's length.
    pub length: u64,
    /// The receiver's length as the sender last heard it (0 on another fork).
    pub remote_length: u64,
    /// The sender can prove an upgrade from `remote_length`.
    pub can_upgrade: bool,
    /// The sender serves requests.
    pub uploading: bool,
    /// The sender wants data.
    pub downloading: bool,
    /// The sender holds a manifest (and is not a compat core).
    pub has_manifest: bool,
    /// The sender accepts pushed data.
    pub allow_push: bool,
}

/// A block or hash request: the index and how many tree nodes the requester already has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestBlock {
    /// Block index (for `hash`: tree index).
    pub index: u64,
    /// Tree nodes the requester has, so the proof can leave them out.
    pub nodes: u64,
}

/// A seek request: find the block holding byte `bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestSeek {
    /// The byte offset.
    pub bytes: u64,
    /// Per-block padding.
    pub padding: u64,
}

/// An upgrade request: prove the tree from `start` to `start + length`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestUpgrade {
    /// The requester's length.
    pub start: u64,
    /// How much longer it wants to be.
    pub length: u64,
}

/// `request` (type 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Request id, echoed in the reply (0 is used by Node for conflict checks).
    pub id: u64,
    /// The fork the request is for.
    pub fork: u64,
    /// A block with its proof.
    pub block: Option<RequestBlock>,
    /// A tree hash with its proof.
    pub hash: Option<RequestBlock>,
    /// A seek.
    pub seek: Option<RequestSeek>,
    /// An upgrade proof.
    pub upgrade: Option<RequestUpgrade>,
    /// Also send the manifest (v11).
    pub manifest: bool,
    /// Priority (newer Node 11; 0 = normal).
    pub priority: u64,
}

/// `cancel` (type 2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cancel {
    /// The request id to cancel.
    pub request: u64,
}

/// A Merkle tree node in a proof.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeNode {
    /// Flat-tree index.
    pub index: u64,
    /// Byte size of the subtree.
    pub size: u64,
    /// BLAKE2b-256 hash.
    pub hash: [u8; 32],
}

/// A block with the nodes proving it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataBlock {
    /// Block index.
    pub index: u64,
    /// Block bytes.
    pub value: Vec<u8>,
    /// Proof nodes.
    pub nodes: Vec<TreeNode>,
}

/// A tree hash with the nodes proving it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataHash {
    /// Tree index.
    pub index: u64,
    /// Proof nodes.
    pub nodes: Vec<TreeNode>,
}

/// A seek answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataSeek {
    /// The byte offset sought.
    pub bytes: u64,
    /// Proof nodes.
    pub nodes: Vec<TreeNode>,
}

/// An upgrade proof.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataUpgrade {
    /// Start length.
    pub start: u64,
    /// Added length.
    pub length: u64,
    /// Nodes of the upgrade.
    pub nodes: Vec<TreeNode>,
    /// Extra nodes to reach the new roots.
    pub additional_nodes: Vec<TreeNode>,
    /// The signature of the new tree (`None` and empty encode alike).
    pub signature: Option<Vec<u8>>,
}

/// `data` (type 3): the answer to a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Data {
    /// The request id answered (0: unsolicited).
    pub request: u64,
    /// The fork of the proof.
    pub fork: u64,
    /// A block.
    pub block: Option<DataBlock>,
    /// A hash.
    pub hash: Option<DataHash>,
    /// A seek.
    pub seek: Option<DataSeek>,
    /// An upgrade.
    pub upgrade: Option<DataUpgrade>,
    /// The core's manifest (v11; absent from `hypercore-protocol` 0.7).
    pub manifest: Option<Manifest>,
}

/// Why no data is sent (`noData` reasons in Node's replicator).
pub mod no_data_reason {
    /// Unspecified.
    pub const UNKNOWN: u64 = 0;
    /// The block is not held.
    pub const NOT_AVAILABLE: u64 = 1;
    /// The request was invalid.
    pub const INVALID_REQUEST: u64 = 2;
}

/// `noData` (type 4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoData {
    /// The request id.
    pub request: u64,
    /// See [`no_data_reason`].
    pub reason: u64,
}

/// `want` (type 5) and `unwant` (type 6): a range the sender wants to hear about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Want {
    /// First block.
    pub start: u64,
    /// Number of blocks.
    pub length: u64,
    /// Any block of the range will do.
    pub any: bool,
}

/// `bitfield` (type 7): which blocks from `start` the sender holds, 32 per word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitfield {
    /// First block (a multiple of 32 in practice).
    pub start: u64,
    /// Little-endian words, bit `i` = block `start + i`.
    pub bitfield: Vec<u32>,
}

/// `range` (type 8): the sender now holds (or dropped) a range of blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    /// Dropped instead of added.
    pub drop: bool,
    /// First block.
    pub start: u64,
    /// Number of blocks.
    pub length: u64,
}

/// `extension` (type 9).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extension {
    /// Extension name (empty: same as the previous one).
    pub name: String,
    /// Opaque payload.
    pub message: Vec<u8>,
}

/// Any message of a `hypercore/alpha` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Type 0.
    Sync(Sync),
    /// Type 1.
    Request(Request),
    /// Type 2.
    Cancel(Cancel),
    /// Type 3.
    Data(Box<Data>),
    /// Type 4.
    NoData(NoData),
    /// Type 5.
    Want(Want),
    /// Type 6.
    Unwant(Want),
    /// Type 7.
    Bitfield(Bitfield),
    /// Type 8.
    Range(Range),
    /// Type 9.
    Extension(Extension),
}

/// The number of message types (a message of a higher type is ignored, as Node does).
pub const MESSAGE_TYPES: u64 = 10;

fn put_nodes(out: &mut Vec<u8>, nodes: &[TreeNode]) {
    put_uint(out, nodes.len() as u64);
    for n in nodes {
        put_uint(out, n.index);
        put_uint(out, n.size);
        out.extend_from_slice(&n.hash);
    }
}

fn read_nodes(r: &mut Reader<'_>) -> Result<Vec<TreeNode>, DecodeError> {
    let n = r.array_len(34)?;
    (0..n)
        .map(|_| {
            Ok(TreeNode {
                index: r.uint()?,
                size: r.uint()?,
                hash: r.fixed32()?,
            })
        })
        .collect()
}

fn read_pair(r: &mut Reader<'_>) -> Result<(u64, u64), DecodeError> {
    Ok((r.uint()?, r.uint()?))
}

/// An optional trailing flags `uint` (Node reads it only if bytes remain).
fn trailing_flags(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    if r.is_empty() {
        Ok(0)
    } else {
        r.uint()
    }
}

impl Message {
    /// The protomux message type.
    pub fn kind(&self) -> u64 {
        match self {
            Message::Sync(_) => 0,
            Message::Request(_) => 1,
            Message::Cancel(_) => 2,
            Message::Data(_) => 3,
            Message::NoData(_) => 4,
            Message::Want(_) => 5,
            Message::Unwant(_) => 6,
            Message::Bitfield(_) => 7,
            Message::Range(_) => 8,
            Message::Extension(_) => 9,
        }
    }

    /// The message's name in Node's `wire` object.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Sync(_) => "sync",
            Message::Request(_) => "request",
            Message::Cancel(_) => "cancel",
            Message::Data(_) => "data",
            Message::NoData(_) => "noData",
            Message::Want(_) => "want",
            Message::Unwant(_) => "unwant",
            Message::Bitfield(_) => "bitfield",
            Message::Range(_) => "range",
            Message::Extension(_) => "extension",
        }
    }

    /// Appends the payload (without the type).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Sync(m) => {
                let flags = u64::from(m.can_upgrade)
                    | u64::from(m.uploading) << 1
                    | u64::from(m.downloading) << 2
                    | u64::from(m.has_manifest) << 3
                    | u64::from(m.allow_push) << 4;
                put_uint(out, flags);
                put_uint(out, m.fork);
                put_uint(out, m.length);
                put_uint(out, m.remote_length);
            }
            Message::Request(m) => {
                let flags = u64::from(m.block.is_some())
                    | u64::from(m.hash.is_some()) << 1
                    | u64::from(m.seek.is_some()) << 2
                    | u64::from(m.upgrade.is_some()) << 3
                    | u64::from(m.manifest) << 4
                    | u64::from(m.priority != 0) << 5;
                put_uint(out, flags);
                put_uint(out, m.id);
                put_uint(out, m.fork);
                for b in [&m.block, &m.hash].into_iter().flatten() {
                    put_uint(out, b.index);
                    put_uint(out, b.nodes);
                }
                if let Some(s) = &m.seek {
                    put_uint(out, s.bytes);
                    put_uint(out, s.padding);
                }
                if let Some(u) = &m.upgrade {
                    put_uint(out, u.start);
                    put_uint(out, u.length);
                }
                if m.priority != 0 {
                    put_uint(out, m.priority);
                }
            }
            Message::Cancel(m) => put_uint(out, m.request),
            Message::Data(m) => encode_data(m, out),
            Message::NoData(m) => {
                put_uint(out, m.request);
                put_uint(out, u64::from(m.reason != 0));
                if m.reason != 0 {
                    put_uint(out, m.reason);
                }
            }
            Message::Want(m) | Message::Unwant(m) => {
                put_uint(out, m.start);
                put_uint(out, m.length);
                if m.any {
                    put_uint(out, 1);
                }
            }
            Message::Bitfield(m) => {
                put_uint(out, m.start);
                put_uint32_array(out, &m.bitfield);
            }
            Message::Range(m) => {
                put_uint(out, u64::from(m.drop) | u64::from(m.length == 1) << 1);
                put_uint(out, m.start);
                if m.length != 1 {
                    put_uint(out, m.length);
                }
            }
            Message::Extension(m) => {
                put_string(out, &m.name);
                out.extend_from_slice(&m.message);
            }
        }
    }

    /// The payload's encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes the payload of message type `kind`; `Ok(None)` for a type this protocol does
    /// not define (ignored, as Node ignores it). Trailing bytes are ignored, as in Node.
    pub fn decode(kind: u64, payload: &[u8]) -> Result<Option<Self>, DecodeError> {
        let r = &mut Reader::new(payload);
        Ok(Some(match kind {
            0 => {
                let flags = r.uint()?;
                Message::Sync(Sync {
                    fork: r.uint()?,
                    length: r.uint()?,
                    remote_length: r.uint()?,
                    can_upgrade: flags & 1 != 0,
                    uploading: flags & 2 != 0,
                    downloading: flags & 4 != 0,
                    has_manifest: flags & 8 != 0,
                    allow_push: flags & 16 != 0,
                })
            }
            1 => {
                let flags = r.uint()?;
                let id = r.uint()?;
                let fork = r.uint()?;
                let block = opt(flags & 1, r, |r| {
                    read_pair(r).map(|(index, nodes)| RequestBlock { index, nodes })
                })?;
                let hash = opt(flags & 2, r, |r| {
                    read_pair(r).map(|(index, nodes)| RequestBlock { index, nodes })
                })?;
                let seek = opt(flags & 4, r, |r| {
                    read_pair(r).map(|(bytes, padding)| RequestSeek { bytes, padding })
                })?;
                let upgrade = opt(flags & 8, r, |r| {
                    read_pair(r).map(|(start, length)| RequestUpgrade { start, length })
                })?;
                let priority = if flags & 32 != 0 { r.uint()? } else { 0 };
                Message::Request(Request {
                    id,
                    fork,
                    block,
                    hash,
                    seek,
                    upgrade,
                    manifest: flags & 16 != 0,
                    priority,
                })
            }
            2 => Message::Cancel(Cancel { request: r.uint()? }),
            3 => Message::Data(Box::new(decode_data(r)?)),
            4 => {
                let request = r.uint()?;
                let flags = trailing_flags(r)?;
                let reason = if flags & 1 != 0 { r.uint()? } else { 0 };
                Message::NoData(NoData { request, reason })
            }
            5 | 6 => {
                let (start, length) = read_pair(r)?;
                let any = trailing_flags(r)? & 1 != 0;
                let w = Want { start, length, any };
                if kind == 5 {
                    Message::Want(w)
                } else {
                    Message::Unwant(w)
                }
            }
            7 => Message::Bitfield(Bitfield {
                start: r.uint()?,
                bitfield: r.uint32_array()?,
            }),
            8 => {
                let flags = r.uint()?;
                let start = r.uint()?;
                let length = if flags & 2 != 0 { 1 } else { r.uint()? };
                Message::Range(Range {
                    drop: flags & 1 != 0,
                    start,
                    length,
                })
            }
            9 => Message::Extension(Extension {
                name: r.string()?,
                message: r.rest().to_vec(),
            }),
            _ => return Ok(None),
        }))
    }
}

fn opt<T>(
    flag: u64,
    r: &mut Reader<'_>,
    f: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if flag != 0 {
        f(r).map(Some)
    } else {
        Ok(None)
    }
}

fn encode_data(m: &Data, out: &mut Vec<u8>) {
    let flags = u64::from(m.block.is_some())
        | u64::from(m.hash.is_some()) << 1
        | u64::from(m.seek.is_some()) << 2
        | u64::from(m.upgrade.is_some()) << 3
        | u64::from(m.manifest.is_some()) << 4;
    put_uint(out, flags);
    put_uint(out, m.request);
    put_uint(out, m.fork);
    if let Some(b) = &m.block {
        put_uint(out, b.index);
        crate::encoding::put_buffer(out, &b.value);
        put_nodes(out, &b.nodes);
    }
    if let Some(h) = &m.hash {
        put_uint(out, h.index);
        put_nodes(out, &h.nodes);
    }
    if let Some(s) = &m.seek {
        put_uint(out, s.bytes);
        put_nodes(out, &s.nodes);
    }
    if let Some(u) = &m.upgrade {
        put_uint(out, u.start);
        put_uint(out, u.length);
        put_nodes(out, &u.nodes);
        put_nodes(out, &u.additional_nodes);
        put_optional_buffer(out, u.signature.as_deref());
    }
    if let Some(man) = &m.manifest {
        man.encode(out);
    }
}

fn decode_data(r: &mut Reader<'_>) -> Result<Data, DecodeError> {
    let flags = r.uint()?;
    let request = r.uint()?;
    let fork = r.uint()?;
    let block = opt(flags & 1, r, |r| {
        Ok(DataBlock {
            index: r.uint()?,
            value: r.buffer()?.to_vec(),
            nodes: read_nodes(r)?,
        })
    })?;
    let hash = opt(flags & 2, r, |r| {
        Ok(DataHash {
            index: r.uint()?,
            nodes: read_nodes(r)?,
        })
    })?;
    let seek = opt(flags & 4, r, |r| {
        Ok(DataSeek {
            bytes: r.uint()?,
            nodes: read_nodes(r)?,
        })
    })?;
    let upgrade = opt(flags & 8, r, |r| {
        Ok(DataUpgrade {
            start: r.uint()?,
            length: r.uint()?,
            nodes: read_nodes(r)?,
            additional_nodes: read_nodes(r)?,
            signature: r.optional_buffer()?.map(<[u8]>::to_vec),
        })
    })?;
    let manifest = opt(flags & 16, r, Manifest::decode)?;
    Ok(Data {
        request,
        fork,
        block,
        hash,
        seek,
        upgrade,
        manifest,
    })
}
