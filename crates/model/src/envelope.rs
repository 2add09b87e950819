//! The versioned envelope every log entry travels in: one JSON object whose `v` field says
//! which encoding wrote it, its other fields being the entry itself (flattened), e.g.
//! `{"v":1,"op":"mirror","key":"…"}`. Command and status entries share this one
//! implementation; each maps [`EnvelopeError`] to its own error so messages stay specific.
//! Decoding is bounded (entries over the size limit are refused before parsing) and never
//! panics.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// An entry kind that travels in an envelope.
pub trait Versioned: Serialize + DeserializeOwned {
    /// The encoding version this build writes and understands.
    const VERSION: u32;
    /// Larger entries are refused on decode.
    const MAX_BYTES: usize;
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    #[serde(flatten)]
    body: serde_json::Value,
}

/// Why bytes are not an entry of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Over [`Versioned::MAX_BYTES`] (the length found).
    TooLarge(usize),
    /// Not a JSON object with a numeric `v`.
    NotJson(String),
    /// Written by another version (the version found).
    UnknownVersion(u32),
    /// The right version, but the body does not decode.
    Malformed(String),
}

/// Encodes `entry` inside an envelope of `T::VERSION`.
pub fn encode<T: Versioned>(entry: &T) -> Vec<u8> {
    let body = serde_json::to_value(entry).expect("log entries always serialize");
    serde_json::to_vec(&Envelope {
        v: T::VERSION,
        body,
    })
    .expect("log entries always serialize")
}

/// Decodes an entry of kind `T`, checking size and version first.
pub fn decode<T: Versioned>(bytes: &[u8]) -> Result<T, EnvelopeError> {
    if bytes.len() > T::MAX_BYTES {
        return Err(EnvelopeError::TooLarge(bytes.len()));
    }
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    if env.v != T::VERSION {
        return Err(EnvelopeError::UnknownVersion(env.v));
    }
    serde_json::from_value(env.body).map_err(|e| EnvelopeError::Malformed(e.to_string()))
}
