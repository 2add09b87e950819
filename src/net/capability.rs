//! Capabilities: how a reader proves it knows a core's public key without sending it.
//!
//! A stream is opened with `Open { discovery_key, capability }`. The discovery key (a hash
//! of the public key) only says *which* core is meant; it is public, announced to the whole
//! network. The capability is
//!
//! ```text
//! BLAKE2b-256(key = core public key,
//!             "dat-mirror/cap/v1" || server id || reader id || session secret)
//! ```
//!
//! where the ids are the iroh endpoint ids of the two ends (authenticated by the QUIC/TLS
//! handshake) and the session secret is 32 bytes of TLS exported keying material (RFC 5705,
//! label [`EXPORTER_LABEL`]) of this very connection. Only someone who knows the public key
//! can compute it; it names both parties, so it means nothing on another peer's
//! connection; and it is bound to the TLS session, so it cannot even be replayed by the same
//! peer on a later connection. A server that receives a wrong capability answers exactly as
//! if it did not hold the core.
//!
//! Pure functions only; the link-specific inputs are gathered by [`super::link::session`].

use blake2::digest::consts::U32;
use blake2::digest::Mac;

use crate::model::keys::Key;

/// Domain separation for the capability hash.
pub const CAP_NAMESPACE: &[u8] = b"dat-mirror/cap/v1";
/// The TLS exporter label for the session secret.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-dat-mirror-cap-v1";

/// What a capability is bound to: both ends of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The end that serves the core (accepted the stream).
    pub server: Key,
    /// The end that reads the core (opened the stream).
    pub reader: Key,
    /// TLS exported keying material of the connection (the same at both ends).
    pub secret: [u8; 32],
}

/// The capability for reading `core` on `session`.
pub fn capability(core: &Key, session: &Session) -> [u8; 32] {
    let mut mac = blake2::Blake2bMac::<U32>::new_from_slice(&core.0)
        .expect("32-byte keys are valid BLAKE2b keys");
    mac.update(CAP_NAMESPACE);
    mac.update(&session.server.0);
    mac.update(&session.reader.0);
    mac.update(&session.secret);
    mac.finalize().into_bytes().into()
}

/// Checks a capability in constant time (no early exit on the first differing byte).
pub fn verify(core: &Key, session: &Session, presented: &[u8; 32]) -> bool {
    let expected = capability(core, session);
    expected
        .iter()
        .zip(presented.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            server: Key([1; 32]),
            reader: Key([2; 32]),
            secret: [3; 32],
        }
    }

    #[test]
    fn the_right_key_verifies() {
        let core = Key([9; 32]);
        let cap = capability(&core, &session());
        assert!(verify(&core, &session(), &cap));
        assert_ne!(cap, core.0);
        assert_ne!(cap, core.discovery_key());
    }

    #[test]
    fn anything_else_does_not() {
        let core = Key([9; 32]);
        let s = session();
        let cap = capability(&core, &s);
        // Another core (the reader does not know this key).
        assert!(!verify(&Key([8; 32]), &s, &cap));
        // Replayed on another peer's connection, or with the roles swapped.
        for other in [
            Session {
                reader: Key([4; 32]),
                ..s
            },
            Session {
                server: Key([4; 32]),
                ..s
            },
            Session {
                server: s.reader,
                reader: s.server,
                ..s
            },
            // Replayed on a later connection between the same two peers.
            Session {
                secret: [5; 32],
                ..s
            },
        ] {
            assert!(!verify(&core, &other, &cap), "{other:?}");
        }
        // Guessing from the discovery key, or flipping one bit.
        assert!(!verify(&core, &s, &core.discovery_key()));
        let mut flipped = cap;
        flipped[31] ^= 1;
        assert!(!verify(&core, &s, &flipped));
    }

    #[test]
    fn known_answer() {
        // Keyed BLAKE2b-256 as RFC 7693 defines it (computed independently with Python's
        // hashlib.blake2b(msg, key=core, digest_size=32)), so a change of the construction,
        // which breaks compatibility between versions, cannot go unnoticed.
        assert_eq!(
            hex::encode(capability(&Key([9; 32]), &session())),
            "305211fd7f376729989d3a98d11eabe4166f869a0f9f025e881d949038bbfec0"
        );
    }
}
