//! Wire formats of the db core: the Hyperbee protobuf messages (`Header`, `Node`,
//! `YoloIndex`), hyperdrive's key encoding (`"files" 0x00 "/path"`) and its JSON entry value.
//!
//! The protobuf schema is hyperbee 2.x's `schema.proto` (proto2):
//! `Header { required string protocol = 1; optional Metadata metadata = 2 }`,
//! `Metadata { optional bytes contentFeed = 1; optional bytes userData = 2 }`,
//! `Node { required bytes index = 1; required bytes key = 2; optional bytes value = 3 }`,
//! `YoloIndex { repeated Level levels = 1 }`,
//! `Level { repeated uint64 keys = 1 [packed]; repeated uint64 children = 2 [packed] }`
//! where `children` holds `(seq, offset)` pairs flattened. Required fields are always
//! written (an empty index is written as a zero-length field), as Node's encoder does.

use serde::{Deserialize, Serialize};

use super::{CoreKind, DriveError};

/// The sub-encoder prefix hyperdrive puts before every file path (`"files"` + `0x00`).
pub const FILES_PREFIX: &[u8] = b"files\0";

/// The protocol name in a Hyperbee header.
pub const PROTOCOL: &str = "hyperbee";

#[derive(Clone, PartialEq, prost::Message)]
struct HeaderMsg {
    #[prost(string, optional, tag = "1")]
    protocol: Option<String>,
    #[prost(message, optional, tag = "2")]
    metadata: Option<MetadataMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MetadataMsg {
    #[prost(bytes = "vec", optional, tag = "1")]
    content_feed: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    user_data: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NodeMsg {
    #[prost(bytes = "vec", optional, tag = "1")]
    index: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    value: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct YoloIndexMsg {
    #[prost(message, repeated, tag = "1")]
    levels: Vec<LevelMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LevelMsg {
    #[prost(uint64, repeated, packed = "true", tag = "1")]
    keys: Vec<u64>,
    #[prost(uint64, repeated, packed = "true", tag = "2")]
    children: Vec<u64>,
}

/// A decoded db header (block 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The blobs core key (`metadata.contentFeed`, first 32 bytes); `None` for drives
    /// whose blobs key is derived from a manifest (not verifiable by this crate).
    pub content_feed: Option<[u8; 32]>,
    /// `metadata.userData`, if any.
    pub user_data: Option<Vec<u8>>,
}

/// Encodes block 0 of a db core: `Header { protocol: "hyperbee", metadata: { contentFeed } }`
/// exactly as hyperdrive 11 writes it for a compat (hypercore 10) drive.
pub fn encode_header(content_feed: &[u8; 32]) -> Vec<u8> {
    let msg = HeaderMsg {
        protocol: Some(PROTOCOL.to_string()),
        metadata: Some(MetadataMsg {
            content_feed: Some(content_feed.to_vec()),
            user_data: None,
        }),
    };
    prost::Message::encode_to_vec(&msg)
}

/// Decodes block 0 of a db core. Anything that is not a Hyperbee header, or a content feed
/// shorter than 32 bytes, is [`DriveError::NotHyperdrive`].
pub fn decode_header(block0: &[u8]) -> Result<Header, DriveError> {
    let msg: HeaderMsg = prost::Message::decode(block0)
        .map_err(|e| DriveError::NotHyperdrive(format!("header does not decode: {e}")))?;
    match msg.protocol.as_deref() {
        Some(PROTOCOL) => {}
        Some(other) => {
            return Err(DriveError::NotHyperdrive(format!(
                "header protocol is {other:?}, not \"hyperbee\""
            )))
        }
        None => return Err(DriveError::NotHyperdrive("header has no protocol".into())),
    }
    let (content_feed, user_data) = match msg.metadata {
        None => (None, None),
        Some(m) => {
            let feed = match m.content_feed {
                None => None,
                Some(f) if f.len() >= 32 => {
                    let mut k = [0u8; 32];
                    k.copy_from_slice(&f[..32]);
                    Some(k)
                }
                Some(f) => {
                    return Err(DriveError::NotHyperdrive(format!(
                        "content feed is {} bytes, expected 32",
                        f.len()
                    )))
                }
            };
            (feed, m.user_data)
        }
    };
    Ok(Header {
        content_feed,
        user_data,
    })
}

/// One decoded db block after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBlock {
    /// Encoded `YoloIndex` (decode with [`decode_index`]).
    pub index: Vec<u8>,
    pub key: Vec<u8>,
    /// `None` for a deletion (or a put of a null value).
    pub value: Option<Vec<u8>>,
}

/// One level of a `YoloIndex`: a B-tree node. `keys` are block seqs whose `key` field is
/// the key; `children` are `(seq, offset)`: level `offset` of block `seq`'s index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Level {
    pub keys: Vec<u64>,
    pub children: Vec<(u64, u64)>,
}

/// Encodes a db `Node` block.
pub fn encode_node(index: &[u8], key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let msg = NodeMsg {
        index: Some(index.to_vec()),
        key: Some(key.to_vec()),
        value: value.map(<[u8]>::to_vec),
    };
    prost::Message::encode_to_vec(&msg)
}

/// Decodes a db `Node` block (`seq` is only used in the error).
pub fn decode_node(seq: u64, bytes: &[u8]) -> Result<NodeBlock, DriveError> {
    let msg: NodeMsg = prost::Message::decode(bytes)
        .map_err(|e| DriveError::corrupt(CoreKind::Db, seq, format!("node: {e}")))?;
    let index = msg
        .index
        .ok_or_else(|| DriveError::corrupt(CoreKind::Db, seq, "node has no index"))?;
    let key = msg
        .key
        .ok_or_else(|| DriveError::corrupt(CoreKind::Db, seq, "node has no key"))?;
    Ok(NodeBlock {
        index,
        key,
        value: msg.value,
    })
}

/// Encodes a `YoloIndex`.
pub fn encode_index(levels: &[Level]) -> Vec<u8> {
    let msg = YoloIndexMsg {
        levels: levels
            .iter()
            .map(|l| LevelMsg {
                keys: l.keys.clone(),
                children: l.children.iter().flat_map(|&(s, o)| [s, o]).collect(),
            })
            .collect(),
    };
    prost::Message::encode_to_vec(&msg)
}

/// Decodes a `YoloIndex` (`seq` is only used in the error).
pub fn decode_index(seq: u64, bytes: &[u8]) -> Result<Vec<Level>, DriveError> {
    let msg: YoloIndexMsg = prost::Message::decode(bytes)
        .map_err(|e| DriveError::corrupt(CoreKind::Db, seq, format!("index: {e}")))?;
    msg.levels
        .into_iter()
        .map(|l| {
            if l.children.len() % 2 != 0 {
                return Err(DriveError::corrupt(
                    CoreKind::Db,
                    seq,
                    "index level has an odd number of child words",
                ));
            }
            Ok(Level {
                keys: l.keys,
                children: l.children.chunks_exact(2).map(|c| (c[0], c[1])).collect(),
            })
        })
        .collect()
}

/// Where a file's bytes live in the blobs core (hyperblobs' blob id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRef {
    /// First block of the file.
    pub block_offset: u64,
    /// Number of blocks (0 for an empty file).
    pub block_length: u64,
    /// Byte offset of the file's first byte within the whole blobs core.
    pub byte_offset: u64,
    /// File size in bytes.
    pub byte_length: u64,
}

/// A hyperdrive entry, the JSON value stored under a file's key:
/// `{"executable":bool,"linkname":string|null,"blob":BlobRef|null,"metadata":any}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub executable: bool,
    /// Symlink target (never followed by this module); `None` for regular files.
    #[serde(default)]
    pub linkname: Option<String>,
    /// File content; `None` for symlinks. Empty files have a blob with zero length.
    #[serde(default)]
    pub blob: Option<BlobRef>,
    /// Free-form metadata (`null` when unset).
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// Encodes an entry as hyperdrive's JSON value.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    serde_json::to_vec(entry).expect("entry serializes")
}

/// Decodes a JSON entry value (`seq` is only used in the error).
pub fn decode_entry(seq: u64, value: &[u8]) -> Result<Entry, DriveError> {
    serde_json::from_slice(value)
        .map_err(|e| DriveError::corrupt(CoreKind::Db, seq, format!("entry JSON: {e}")))
}

/// The db key of a drive path (`"/a/b.html"` → `files\0/a/b.html`).
pub fn file_key(path: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(FILES_PREFIX.len() + path.len());
    k.extend_from_slice(FILES_PREFIX);
    k.extend_from_slice(path.as_bytes());
    k
}

/// The drive path of a db key, if it is a UTF-8 key in hyperdrive's `files` sub.
pub fn key_path(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(FILES_PREFIX)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_match_node() {
        let key = [7u8; 32];
        let enc = encode_header(&key);
        let mut want = vec![0x0a, 8];
        want.extend_from_slice(b"hyperbee");
        want.extend_from_slice(&[0x12, 34, 0x0a, 32]);
        want.extend_from_slice(&key);
        assert_eq!(enc, want);
        let h = decode_header(&enc).unwrap();
        assert_eq!(h.content_feed, Some(key));
        assert!(matches!(
            decode_header(b"\x0a\x03abc"),
            Err(DriveError::NotHyperdrive(_))
        ));
        assert!(decode_header(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode_header(&[]).is_err());
    }

    #[test]
    fn node_and_index_bytes_match_node() {
        let idx = encode_index(&[Level {
            keys: vec![1, 300],
            children: vec![(2, 0), (3, 1), (4, 2)],
        }]);
        // level: 0a len (0a 03 01 ac 02) (12 06 02 00 03 01 04 02)
        assert_eq!(
            idx,
            vec![0x0a, 13, 0x0a, 3, 1, 0xac, 2, 0x12, 6, 2, 0, 3, 1, 4, 2]
        );
        assert_eq!(decode_index(0, &idx).unwrap()[0].children[2], (4, 2));
        // an empty index and empty key are still written
        assert_eq!(encode_node(&[], b"", None), vec![0x0a, 0, 0x12, 0]);
        let n = decode_node(1, &encode_node(&idx, b"k", Some(b"v"))).unwrap();
        assert_eq!(
            (n.key.as_slice(), n.value.as_deref()),
            (&b"k"[..], Some(&b"v"[..]))
        );
        assert!(
            decode_node(1, &[0x1a, 0]).is_err(),
            "missing required fields"
        );
        // an empty tree root is one empty level
        assert_eq!(encode_index(&[Level::default()]), vec![0x0a, 0]);
    }

    #[test]
    fn entry_json_matches_hyperdrive() {
        let e = Entry {
            executable: false,
            linkname: None,
            blob: Some(BlobRef {
                block_offset: 1,
                block_length: 2,
                byte_offset: 3,
                byte_length: 4,
            }),
            metadata: serde_json::Value::Null,
        };
        let s = String::from_utf8(encode_entry(&e)).unwrap();
        assert_eq!(
            s,
            r#"{"executable":false,"linkname":null,"blob":{"blockOffset":1,"blockLength":2,"byteOffset":3,"byteLength":4},"metadata":null}"#
        );
        assert_eq!(decode_entry(0, s.as_bytes()).unwrap(), e);
        assert!(decode_entry(0, b"{nope").is_err());
        assert_eq!(key_path(&file_key("/a b")), Some("/a b"));
        assert_eq!(key_path(b"other\0/x"), None);
    }
}
