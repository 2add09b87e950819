//! Hypercore's capabilities and derived keys (Node's `hypercore/lib/caps.js` and
//! `hypercore-crypto`): the replication capability a peer sends when it opens a core's channel,
//! proving it knows the core's key, bound to the connection's handshake hash; and the discovery
//! key (the channel id and the DHT topic).

use blake2::digest::consts::U32;
use blake2::digest::{Mac, Update, VariableOutput};
use blake2::{Blake2bMac, Blake2bVar};

/// BLAKE2b-256 of `parts` concatenated, keyed with `key` when it is not empty
/// (libsodium's `crypto_generichash`; keys longer than 64 bytes are refused with `None`).
fn generichash(parts: &[&[u8]], key: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if key.is_empty() {
        let mut h = Blake2bVar::new(32).ok()?;
        for p in parts {
            h.update(p);
        }
        h.finalize_variable(&mut out).ok()?;
    } else {
        let mut h = <Blake2bMac<U32> as Mac>::new_from_slice(key).ok()?;
        for p in parts {
            Mac::update(&mut h, p);
        }
        out.copy_from_slice(&h.finalize().into_bytes());
    }
    Some(out)
}

/// `hypercore-crypto`'s `namespace(name, count)`: `hash(hash(name) || i)` for each `i`.
fn namespace(name: &[u8], i: u8) -> [u8; 32] {
    let ns = generichash(&[name], &[]).unwrap_or([0; 32]);
    generichash(&[&ns, &[i]], &[]).unwrap_or([0; 32])
}

/// The `hypercore` namespace entry used when the initiator proves its capability.
pub fn replicate_initiator_ns() -> [u8; 32] {
    namespace(b"hypercore", 1)
}

/// The `hypercore` namespace entry used when the responder proves its capability.
pub fn replicate_responder_ns() -> [u8; 32] {
    namespace(b"hypercore", 2)
}

/// The capability the side `is_initiator` sends when it opens the channel of the core `key` on a
/// connection whose Noise handshake hash is `handshake_hash` (Node's
/// `caps.replicate(isInitiator, key, handshakeHash)`). `None` if the handshake hash is longer
/// than 64 bytes (a BLAKE2b key cannot be).
pub fn replicate_capability(
    is_initiator: bool,
    key: &[u8; 32],
    handshake_hash: &[u8],
) -> Option<[u8; 32]> {
    let ns = if is_initiator {
        replicate_initiator_ns()
    } else {
        replicate_responder_ns()
    };
    generichash(&[&ns, key], handshake_hash)
}

/// Checks the capability the remote sent: it must be what the *other* role computes.
/// Compares in constant time.
pub fn verify_remote_capability(
    local_is_initiator: bool,
    key: &[u8; 32],
    handshake_hash: &[u8],
    remote_capability: &[u8; 32],
) -> bool {
    match replicate_capability(!local_is_initiator, key, handshake_hash) {
        Some(expected) => {
            expected
                .iter()
                .zip(remote_capability.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        }
        None => false,
    }
}

/// The discovery key of a core: BLAKE2b-256 of `"hypercore"` keyed with the core's key
/// (`hypercore-crypto`'s `discoveryKey`). It names the core's channel and its DHT topic.
pub fn discovery_key(key: &[u8; 32]) -> [u8; 32] {
    generichash(&[b"hypercore"], key).unwrap_or([0; 32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_differ_and_verify_against_each_other() {
        let key = [7u8; 32];
        let hh = [9u8; 64];
        let a = replicate_capability(true, &key, &hh);
        let b = replicate_capability(false, &key, &hh);
        assert!(a.is_some() && b.is_some());
        assert_ne!(a, b);
        let a = a.unwrap_or_default();
        let b = b.unwrap_or_default();
        assert!(verify_remote_capability(false, &key, &hh, &a));
        assert!(verify_remote_capability(true, &key, &hh, &b));
        assert!(!verify_remote_capability(true, &key, &hh, &a));
        assert!(!verify_remote_capability(true, &[8u8; 32], &hh, &b));
        assert!(replicate_capability(true, &key, &[0u8; 65]).is_none());
    }
}
