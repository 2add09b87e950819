//! The crate's error type: every fallible operation returns [`Error`]; nothing panics on input.

use std::path::PathBuf;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bytes (on disk or from a peer) that do not decode.
    #[error("decode error: {0}")]
    Decode(&'static str),
    /// A flat-tree index or a length outside what the engine accepts (or arithmetic overflow).
    #[error("index out of range: {0}")]
    OutOfRange(&'static str),
    /// A proof that does not verify (bad shape, bad hash, bad signature, bad manifest).
    #[error("invalid proof: {0}")]
    InvalidProof(&'static str),
    /// A request this core cannot answer (missing data, bad bounds).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// A manifest the engine refuses (bad shape, does not hash to the key).
    #[error("invalid manifest: {0}")]
    InvalidManifest(&'static str),
    /// An operation this engine does not implement yet (said plainly instead of guessing).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A proof that no longer fits our state (e.g. an upgrade from a length we have passed):
    /// not the sender's fault, just drop it.
    #[error("stale proof: {0}")]
    Stale(&'static str),
    /// Writing to a core without its secret key.
    #[error("core is not writable")]
    NotWritable,
    /// A core key not present in the store.
    #[error("unknown core")]
    UnknownCore,
    /// A core created twice.
    #[error("core already exists")]
    CoreExists,
    /// Stored bytes that fail verification or decoding.
    #[error("corrupt storage: {0}")]
    Corrupt(String),
    /// A filesystem error (ENOSPC surfaces here), with the path involved.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An error from the embedded database.
    #[error("database error: {0}")]
    Db(String),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the error is the disk being full (ENOSPC / EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT)
            ),
            Error::Db(msg) => msg.contains("No space left") || msg.contains("os error 28"),
            _ => false,
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
