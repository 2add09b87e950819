//! The redb schema and the byte format of every stored record (core metadata, tree nodes,
//! block locations). Decoders return errors on any malformed byte, never panic.

use redb::TableDefinition;

use crate::encoding::{Reader, Writer};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::tree::Node;

/// Core key → core id.
pub const CORES: TableDefinition<&[u8; 32], u64> = TableDefinition::new("cores");
/// Core id → [`CoreMeta`] bytes.
pub const META: TableDefinition<u64, &[u8]> = TableDefinition::new("meta");
/// (core id, flat index) → node (size LE ++ hash).
pub const NODES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("nodes");
/// (core id, block index) → location (offset LE ++ length LE) in the core's data file.
pub const BLOCKS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("blocks");
/// (core id, data file offset) → bytes written there by a small batch without an
/// fdatasync of the data file: replayed into the file on open, dropped at the next sync.
pub const JOURNAL: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("journal");

const META_VERSION: u64 = 1;

/// Everything about a core except its nodes and blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreMeta {
    /// Core key.
    pub key: [u8; 32],
    /// Manifest, when known.
    pub manifest: Option<Manifest>,
    /// 64-byte secret key (writers only).
    pub secret_key: Option<Vec<u8>>,
    /// Signed length.
    pub length: u64,
    /// Bytes in the signed length.
    pub byte_length: u64,
    /// Fork id.
    pub fork: u64,
    /// Signature over the head.
    pub signature: Option<Vec<u8>>,
    /// Committed end of the data file: bytes past it are ignored.
    pub data_end: u64,
    /// Bytes of this core held in the journal (not yet fdatasync'ed in the data file).
    pub journal_bytes: u64,
}

impl CoreMeta {
    /// Encodes the record.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        w.uint(META_VERSION);
        w.raw(&self.key);
        let flags = u64::from(self.manifest.is_some())
            | u64::from(self.secret_key.is_some()) << 1
            | u64::from(self.signature.is_some()) << 2;
        w.uint(flags);
        if let Some(m) = &self.manifest {
            w.buffer(&m.encode()?);
        }
        if let Some(s) = &self.secret_key {
            w.buffer(s);
        }
        w.uint(self.length);
        w.uint(self.byte_length);
        w.uint(self.fork);
        if let Some(s) = &self.signature {
            w.buffer(s);
        }
        w.uint(self.data_end);
        w.uint(self.journal_bytes);
        Ok(w.buf)
    }

    /// Decodes the record.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        if r.uint()? != META_VERSION {
            return Err(Error::Decode("unknown core record version"));
        }
        let key = r.fixed32()?;
        let flags = r.uint()?;
        let manifest = if flags & 1 != 0 {
            Some(Manifest::decode(r.buffer()?)?)
        } else {
            None
        };
        let secret_key = if flags & 2 != 0 {
            Some(r.buffer()?.to_vec())
        } else {
            None
        };
        let length = r.uint()?;
        let byte_length = r.uint()?;
        let fork = r.uint()?;
        let signature = if flags & 4 != 0 {
            Some(r.buffer()?.to_vec())
        } else {
            None
        };
        let data_end = r.uint()?;
        let journal_bytes = r.uint()?;
        r.finish()?;
        Ok(CoreMeta {
            key,
            manifest,
            secret_key,
            length,
            byte_length,
            fork,
            signature,
            data_end,
            journal_bytes,
        })
    }
}

/// Encodes a node's value.
pub fn encode_node(n: &Node) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&n.size.to_le_bytes());
    out[8..].copy_from_slice(&n.hash);
    out
}

/// Decodes a node's value.
pub fn decode_node(index: u64, bytes: &[u8]) -> Result<Node> {
    let mut r = Reader::new(bytes);
    let size = r.u64_le()?;
    let hash = r.fixed32()?;
    r.finish()?;
    Ok(Node { index, size, hash })
}

/// Where a block's bytes live in its core's data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLocation {
    /// Byte offset in the data file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Encodes a location.
pub fn encode_location(l: &BlockLocation) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&l.offset.to_le_bytes());
    out[8..].copy_from_slice(&l.len.to_le_bytes());
    out
}

/// Decodes a location.
pub fn decode_location(bytes: &[u8]) -> Result<BlockLocation> {
    let mut r = Reader::new(bytes);
    let offset = r.u64_le()?;
    let len = r.u64_le()?;
    r.finish()?;
    Ok(BlockLocation { offset, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip() {
        let m = CoreMeta {
            key: [3; 32],
            manifest: Some(Manifest::single_signer([4; 32])),
            secret_key: Some(vec![5; 64]),
            length: 10,
            byte_length: 1000,
            fork: 0,
            signature: Some(vec![6; 64]),
            data_end: 1000,
            journal_bytes: 10,
        };
        let e = m.encode().unwrap();
        assert_eq!(CoreMeta::decode(&e).unwrap(), m);
        for cut in 0..e.len() {
            assert!(CoreMeta::decode(&e[..cut]).is_err());
        }
    }
}
