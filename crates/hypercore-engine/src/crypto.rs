//! Hypercore's hashing and signing: BLAKE2b-256 leaf/parent/root hashes with their type
//! prefixes, the namespace constants, discovery keys, the tree signables (compat and v1),
//! the replication capability, and Ed25519 key pairs.

use blake2b_simd::{Params, State};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::tree::Node;

fn state() -> State {
    Params::new().hash_length(32).to_state()
}

fn finish(st: &State) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(st.finalize().as_bytes());
    out
}

const LEAF_TYPE: u8 = 0;
const PARENT_TYPE: u8 = 1;
const ROOT_TYPE: u8 = 2;

/// BLAKE2b-256 of the concatenation of `parts`.
pub fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = state();
    for p in parts {
        h.update(p);
    }
    finish(&h)
}

/// Keyed BLAKE2b-256 (libsodium `crypto_generichash` with a key).
pub fn keyed_hash(key: &[u8], parts: &[&[u8]]) -> Result<[u8; 32]> {
    if key.is_empty() || key.len() > blake2b_simd::KEYBYTES {
        return Err(Error::Decode("bad BLAKE2b key length"));
    }
    let mut h = Params::new().hash_length(32).key(key).to_state();
    for p in parts {
        h.update(p);
    }
    Ok(finish(&h))
}

/// `count` 32-byte namespace constants derived from `name` (hypercore-crypto's `namespace`).
pub fn namespace(name: &[u8], count: u8) -> Vec<[u8; 32]> {
    let ns = hash(&[name]);
    (0..count).map(|i| hash(&[&ns, &[i]])).collect()
}

struct Caps {
    tree: [u8; 32],
    replicate_initiator: [u8; 32],
    replicate_responder: [u8; 32],
    manifest: [u8; 32],
    default_namespace: [u8; 32],
    blobs: [u8; 32],
}

fn caps() -> &'static Caps {
    static CAPS: OnceLock<Caps> = OnceLock::new();
    CAPS.get_or_init(|| {
        let ns = namespace(b"hypercore", 6);
        let get = |i: usize| ns.get(i).copied().unwrap_or([0; 32]);
        let blobs = namespace(b"hyperdrive", 1);
        Caps {
            tree: get(0),
            replicate_initiator: get(1),
            replicate_responder: get(2),
            manifest: get(3),
            default_namespace: get(4),
            blobs: blobs.first().copied().unwrap_or([0; 32]),
        }
    })
}

/// The TREE namespace (prefix of every tree signable).
pub fn tree_namespace() -> [u8; 32] {
    caps().tree
}

/// The MANIFEST namespace (prefix of the manifest hash).
pub fn manifest_namespace() -> [u8; 32] {
    caps().manifest
}

/// The default signer namespace.
pub fn default_namespace() -> [u8; 32] {
    caps().default_namespace
}

/// Hyperdrive's BLOBS namespace (content-manifest derivation).
pub fn blobs_namespace() -> [u8; 32] {
    caps().blobs
}

/// Hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    hash(&[&[LEAF_TYPE], &(data.len() as u64).to_le_bytes(), data])
}

/// Hash of a parent of `a` and `b` (ordered by index); errors when the sizes overflow.
pub fn parent_hash(a: &Node, b: &Node) -> Result<[u8; 32]> {
    let (l, r) = if a.index > b.index { (b, a) } else { (a, b) };
    let size = l
        .size
        .checked_add(r.size)
        .ok_or(Error::OutOfRange("node size overflow"))?;
    Ok(hash(&[
        &[PARENT_TYPE],
        &size.to_le_bytes(),
        &l.hash,
        &r.hash,
    ]))
}

/// Hash of a tree given its roots.
pub fn tree_hash(roots: &[Node]) -> [u8; 32] {
    let mut h = state();
    h.update(&[ROOT_TYPE]);
    for r in roots {
        h.update(&r.hash);
        h.update(&r.index.to_le_bytes());
        h.update(&r.size.to_le_bytes());
    }
    finish(&h)
}

/// Discovery key of a core key.
pub fn discovery_key(key: &[u8; 32]) -> [u8; 32] {
    // A 32-byte key is always a valid BLAKE2b key.
    keyed_hash(key, &[b"hypercore"]).unwrap_or([0; 32])
}

/// The replication capability for `key` bound to a handshake hash.
pub fn replicate_capability(
    is_initiator: bool,
    key: &[u8; 32],
    handshake_hash: &[u8],
) -> Result<[u8; 32]> {
    let ns = if is_initiator {
        caps().replicate_initiator
    } else {
        caps().replicate_responder
    };
    keyed_hash(handshake_hash, &[&ns, key])
}

/// The v1 signable: what a signer of a manifest-keyed core signs (112 bytes).
pub fn tree_signable(
    manifest_hash: &[u8; 32],
    tree_hash: &[u8; 32],
    length: u64,
    fork: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(112);
    out.extend_from_slice(&caps().tree);
    out.extend_from_slice(manifest_hash);
    out.extend_from_slice(tree_hash);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&fork.to_le_bytes());
    out
}

/// The compat signable (80 bytes; 48 without the TREE header in "legacy" mode).
pub fn tree_signable_compat(tree_hash: &[u8; 32], length: u64, fork: u64, legacy: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    if !legacy {
        out.extend_from_slice(&caps().tree);
    }
    out.extend_from_slice(tree_hash);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&fork.to_le_bytes());
    out
}

/// An Ed25519 key pair (secret part optional: replicas hold only the public key).
#[derive(Clone)]
pub struct KeyPair {
    /// The public key.
    pub public_key: [u8; 32],
    secret: Option<ed25519_dalek::SigningKey>,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &self.public_key)
            .field("secret", &self.secret.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

impl KeyPair {
    /// The key pair libsodium derives from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let sk = ed25519_dalek::SigningKey::from_bytes(seed);
        KeyPair {
            public_key: sk.verifying_key().to_bytes(),
            secret: Some(sk),
        }
    }

    /// From a 64-byte libsodium secret key (seed ++ public key); checks the halves agree.
    pub fn from_secret_key(secret: &[u8]) -> Result<Self> {
        let seed: [u8; 32] = secret
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Decode("secret key must be 64 bytes"))?;
        if secret.len() != 64 {
            return Err(Error::Decode("secret key must be 64 bytes"));
        }
        let kp = Self::from_seed(&seed);
        if secret.get(32..) != Some(&kp.public_key[..]) {
            return Err(Error::Decode("secret key does not match its public half"));
        }
        Ok(kp)
    }

    /// A fresh random key pair.
    pub fn generate() -> Result<Self> {
        let mut seed = [0u8; 32];
        // SAFETY: getrandom writes at most `seed.len()` bytes into the buffer we own.
        let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
        if n != seed.len() as isize {
            return Err(Error::io("getrandom", std::io::Error::last_os_error()));
        }
        Ok(Self::from_seed(&seed))
    }

    /// The 64-byte libsodium secret key, when held.
    pub fn secret_key(&self) -> Option<[u8; 64]> {
        self.secret.as_ref().map(|s| s.to_keypair_bytes())
    }

    /// Whether the secret half is held.
    pub fn can_sign(&self) -> bool {
        self.secret.is_some()
    }

    /// Signs `message` (errors without the secret half).
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64]> {
        use ed25519_dalek::Signer;
        let sk = self.secret.as_ref().ok_or(Error::NotWritable)?;
        Ok(sk.sign(message).to_bytes())
    }
}

/// Verifies an Ed25519 signature (false on any malformed input).
pub fn verify(message: &[u8], signature: &[u8], public_key: &[u8; 32]) -> bool {
    let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    vk.verify_strict(message, &sig).is_ok()
}
