//! The crate's error type.

/// What can go wrong running a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The transport failed or closed.
    #[error("transport: {0}")]
    Transport(String),
    /// A frame too large for a 3-byte length prefix.
    #[error("frame of {0} bytes is too large")]
    FrameTooLarge(usize),
    /// The storage engine failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The replication session refused an operation.
    #[error("session: {0}")]
    Session(String),
    /// A core this peer does not replicate.
    #[error("unknown core {0}")]
    UnknownCore(String),
    /// A drive header that does not decode.
    #[error("not a hyperdrive header: {0}")]
    NotADrive(&'static str),
}

impl From<hypercore_engine::Error> for PeerError {
    fn from(e: hypercore_engine::Error) -> Self {
        PeerError::Storage(e.to_string())
    }
}
