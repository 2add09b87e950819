//! The network, layered like iroh: [`endpoint`] (identity, the QUIC endpoint and the address
//! lookups that find a peer by id), [`node`] (the live connections, the protocol router and
//! the cores this node wants), the protocols on top ([`replicate`] over [`wire`] with
//! [`capability`]; [`pairing`]), and [`providers`] (who holds a site: content routing,
//! above the node). Nothing here knows the daemons.

pub mod capability;
pub mod endpoint;
pub mod node;
pub mod pairing;
pub mod providers;
pub mod replicate;
pub mod wire;
