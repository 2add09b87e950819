//! Errors of the codecs: what can be wrong with bytes received from a peer.
//!
//! Decoding never panics; every malformed input maps to one [`DecodeError`].

use thiserror::Error;

/// Why a frame or message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("out of bounds: the input ends inside a value")]
    OutOfBounds,
    /// An array announced more elements than the protocol allows or the input can hold.
    #[error("array of {0} elements is too big")]
    ArrayTooBig(u64),
    /// A length does not fit this platform's `usize`.
    #[error("length {0} does not fit in memory")]
    LengthOverflow(u64),
    /// A frame is larger than the configured cap.
    #[error("frame of {len} bytes exceeds the cap of {cap} bytes")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
        /// The cap.
        cap: usize,
    },
    /// A manifest names a hash function other than BLAKE2b.
    #[error("unknown hash id {0}")]
    UnknownHash(u64),
    /// A manifest names a signature scheme other than ed25519.
    #[error("unknown signature id {0}")]
    UnknownSignature(u64),
    /// A manifest has a version this implementation does not know.
    #[error("unknown manifest version {0}")]
    UnknownManifestVersion(u64),
    /// A version-0 manifest has an unknown type.
    #[error("unknown manifest type {0}")]
    UnknownManifestType(u64),
    /// A batch frame contained another batch.
    #[error("nested batch frame")]
    NestedBatch,
}
