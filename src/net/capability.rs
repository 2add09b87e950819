//! Capabilities: how a peer proves it knows a core's public key without sending it.
//!
//! Replication is hypercore's own protocol ([`super::engine`]): a channel is opened with the
//! core's discovery key (a hash of the public key: it only says *which* core is meant, and
//! is announced to the whole network) and a capability,
//!
//! ```text
//! BLAKE2b-256(key = handshake hash, "hypercore-replication" || initiator? || core public key)
//! ```
//!
//! (hypercore's `replicateCapability`, `hypercore_wire::caps`). On the hypercore network the
//! handshake hash is Noise's; on an iroh link it is 32 bytes of TLS exported keying material
//! (RFC 5705, label [`EXPORTER_LABEL`]) of this very connection — the same at both ends,
//! never sent, and bound to a TLS session that authenticated both ends' ids. So only someone
//! who knows the public key can compute it, it means nothing on another connection, and it
//! cannot be replayed even by the same peer later. A peer whose capability is wrong is
//! closed as hostile; a core we do not hold, or that the policy does not let the peer read,
//! is refused exactly like an unknown one.

/// The TLS exporter label for a link's shared secret (the capabilities' handshake hash).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-dat-mirror-cap-v1";
