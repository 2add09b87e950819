//! [`Hooks`]: what the application decides for a [`crate::Peer`] — which connection may
//! replicate which core, which unregistered cores a remote may be served, whether there is
//! room to store, and what to do once stored data is durable. The defaults replicate every
//! registered core with anyone and nothing else (a public seeder).

use crate::io::LinkInfo;

/// The application's decisions (see the module header). Called synchronously from a
/// connection's task: keep them quick (in-memory lookups).
pub trait Hooks: Send + Sync + 'static {
    /// What the connection `link` may do with registered core `key`. Checked before we open
    /// its channel, when the remote opens it, and again on [`crate::Peer::access_changed`].
    fn access(&self, _link: &LinkInfo, _key: &[u8; 32]) -> Access {
        Access::BOTH
    }

    /// A core we did not register that the remote opened (by discovery key): its key, if the
    /// store holds it and this connection may be served it (served, never fetched).
    fn resolve(&self, _link: &LinkInfo, _discovery_key: &[u8; 32]) -> Option<[u8; 32]> {
        None
    }

    /// Before `bytes` of verified block data are stored in core `key`: `Err(why)` refuses
    /// them (our fault, e.g. disk full: the peer is not blamed; fetching resumes at the next
    /// timer tick).
    fn may_store(&self, _key: &[u8; 32], _bytes: u64) -> Result<(), String> {
        Ok(())
    }

    /// Data a connection fetched into these cores is stored: durable, except in cores for
    /// which [`Hooks::flush_may_wait`] said yes (durable within
    /// [`crate::PeerConfig::flush_delay`]).
    fn stored(&self, _keys: &[[u8; 32]]) {}

    /// Whether blocks fetched into core `key` may be told (to the application, to other
    /// connections) before they are durable, when [`crate::PeerConfig::flush_delay`] allows.
    /// No by default: what a node reports having fetched it then keeps through a crash.
    fn flush_may_wait(&self, _key: &[u8; 32]) -> bool {
        false
    }

    /// A remote announced `length` for core `key`.
    fn remote_length(&self, _key: &[u8; 32], _length: u64) {}
}

/// What one connection may do with one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Answer the remote's requests (and announce what we hold).
    pub serve: bool,
    /// Fetch from the remote (if the core is registered for download).
    pub fetch: bool,
}

impl Access {
    /// Serve and fetch.
    pub const BOTH: Access = Access {
        serve: true,
        fetch: true,
    };
    /// Nothing: the channel is not opened, the remote's open is refused.
    pub const NONE: Access = Access {
        serve: false,
        fetch: false,
    };
}

/// The defaults.
pub struct DefaultHooks;

impl Hooks for DefaultHooks {}
