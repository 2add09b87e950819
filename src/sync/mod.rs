//! Everything that moves between machines: keys and links, the command and status entries,
//! the hypercores on disk, the site drive format, the wire protocol and replication, and the
//! iroh transport.

pub mod capability;
pub mod command;
pub mod discovery;
pub mod drive;
pub mod invite;
pub mod keys;
pub mod pairing;
pub mod peer;
pub mod replicate;
pub mod status;
pub mod store;
pub mod transport;
pub mod view;
pub mod wire;
