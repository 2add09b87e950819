//! The session's vocabulary: limits, events, and why channels and connections are closed.

use crate::error::DecodeError;

/// Hostile-peer limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted (secret-stream messages are at most 2^24 - 1 bytes).
    pub max_frame: usize,
    /// Channels per connection: ours plus the remote's still undecided opens.
    pub max_channels: usize,
    /// Remote requests waiting to be served, per channel (Node pipelines up to 512 per core).
    pub max_queued_requests: usize,
    /// Remote requests waiting to be served, over the whole connection.
    pub max_queued_requests_total: usize,
    /// Our block requests in flight, per channel.
    pub max_inflight: usize,
    /// Bytes of messages held for channels the remote opened and we have not yet decided on.
    pub max_buffered_bytes: usize,
    /// Ranges remembered of what a remote holds, per channel.
    pub max_remote_ranges: usize,
    /// Requests the store refused as invalid before the channel is closed (Node: 64).
    pub max_invalid_requests: u32,
    /// Bytes of output not yet taken by [`super::Session::poll_transmit`] before the connection
    /// is closed (a peer that asks without reading).
    pub max_output_bytes: usize,
    /// Largest bitfield answered for one `want`, in blocks.
    pub max_want_blocks: u64,
    /// Timer ticks a request of ours may stay unanswered (with no other answer arriving)
    /// before it is cancelled and asked again. Over a slow, lossy link answers already on
    /// the way are thrown away by a cancel: give such links room.
    pub request_timeout_ticks: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: (1 << 24) - 1,
            max_channels: 1024,
            max_queued_requests: 2048,
            max_queued_requests_total: 16384,
            max_inflight: 128,
            max_buffered_bytes: 4 << 20,
            max_remote_ranges: 65536,
            max_invalid_requests: 64,
            max_output_bytes: 64 << 20,
            max_want_blocks: 1 << 21,
            request_timeout_ticks: 2,
        }
    }
}

/// Why the whole connection must be closed (and the peer may be banned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// A frame above [`Limits::max_frame`].
    #[error("frame of {0} bytes is too large")]
    FrameTooLarge(usize),
    /// Bytes that do not decode.
    #[error("malformed frame: {0}")]
    Malformed(DecodeError),
    /// Too many channels opened.
    #[error("channel flood: more than {0} channels")]
    ChannelFlood(usize),
    /// Too many requests queued.
    #[error("request flood: more than {0} queued requests")]
    RequestFlood(usize),
    /// Too many bytes sent for channels not yet accepted.
    #[error("buffer flood: more than {0} bytes for unaccepted channels")]
    BufferFlood(usize),
    /// Too many outstanding `want`s.
    #[error("want flood: more than {0} outstanding wants")]
    WantFlood(usize),
    /// Output piling up: the peer asks but does not read.
    #[error("output overflow: more than {0} bytes not taken")]
    OutputOverflow(usize),
    /// A message that breaks protomux's rules.
    #[error("protocol violation: {0}")]
    ProtocolViolation(&'static str),
    /// The application closed the session.
    #[error("closed locally")]
    Local,
}

/// Why one core's channel was closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelCloseReason {
    /// The remote's capability does not prove it knows the key for this connection.
    #[error("bad capability")]
    BadCapability,
    /// The remote sent data whose proof does not verify.
    #[error("invalid proof: {0}")]
    InvalidProof(String),
    /// The remote sent too many requests the store refused as invalid.
    #[error("too many invalid requests")]
    InvalidRequests,
    /// The remote refused our open.
    #[error("rejected by the remote")]
    Rejected,
    /// The remote closed it.
    #[error("closed by the remote")]
    RemoteClosed,
    /// [`super::Session::remove_core`] closed it.
    #[error("removed locally")]
    Removed,
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The remote opened a core we have not added: call `add_core` (with its key) or
    /// `reject_core`.
    ChannelRequested {
        /// The core's discovery key.
        discovery_key: [u8; 32],
    },
    /// Both sides opened the core's channel and their capabilities verified.
    ChannelOpened {
        /// The core's key.
        key: [u8; 32],
    },
    /// The core's channel closed.
    ChannelClosed {
        /// The core's key.
        key: [u8; 32],
        /// Why.
        reason: ChannelCloseReason,
    },
    /// The remote announced its length.
    RemoteSync {
        /// The core's key.
        key: [u8; 32],
        /// Remote length.
        length: u64,
        /// Remote fork.
        fork: u64,
    },
    /// A verified block was stored.
    Downloaded {
        /// The core's key.
        key: [u8; 32],
        /// Block index.
        index: u64,
        /// Block bytes.
        bytes: u64,
    },
    /// A verified upgrade made our core longer.
    Upgraded {
        /// The core's key.
        key: [u8; 32],
        /// New length.
        length: u64,
    },
    /// We served a block.
    Uploaded {
        /// The core's key.
        key: [u8; 32],
        /// Block index.
        index: u64,
        /// Block bytes.
        bytes: u64,
    },
    /// We hold every block up to the remote's length and nothing is in flight.
    CaughtUp {
        /// The core's key.
        key: [u8; 32],
        /// Our length.
        length: u64,
    },
    /// Requests to the remote went unanswered for two timer ticks and were cancelled (they
    /// are asked again).
    RequestsTimedOut {
        /// The core's key.
        key: [u8; 32],
        /// How many.
        count: usize,
    },
    /// The store failed (our side); downloading on this channel pauses until the next timer tick.
    StoreFailed {
        /// The core's key.
        key: [u8; 32],
        /// The store's message.
        error: String,
    },
    /// An extension message.
    Extension {
        /// The core's key.
        key: [u8; 32],
        /// Extension name (empty: same as the previous one).
        name: String,
        /// Payload.
        message: Vec<u8>,
    },
}
