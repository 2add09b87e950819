//! The network, layered like iroh: [`endpoint`] (identity, the QUIC endpoint and the address
//! lookups that find a peer by id), [`node`] (the live connections and the protocol router:
//! iroh's `Router` with one `ProtocolHandler` per ALPN), the replication [`engine`] that runs
//! over any [`link::Link`] (the seam another transport plugs into: hypercore's replication
//! protocol from `hypercore-peer`, its capabilities keyed by the link's secret, see
//! [`capability`]), [`pairing`] (a second protocol handler), and
//! [`providers`] (who holds a site: content routing, above the node), and [`hypernet`] (the
//! second plane: sites replicated with hyper:// browsers and Node peers over the HyperDHT,
//! through `hypercore-peer` and `hyperswarm-bridge`). Nothing here knows the daemons.
//!
//! Arrows: endpoint ← link ← engine ← node ← providers; pairing ← endpoint only.

pub mod capability;
pub mod counters;
pub mod endpoint;
pub mod engine;
pub mod hypernet;
pub mod link;
pub mod node;
pub mod pairing;
pub mod providers;
