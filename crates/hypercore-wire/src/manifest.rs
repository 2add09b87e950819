//! The manifest codec (hypercore 11's `lib/messages.js` `manifest`): who signs a core, sent in a
//! `data` message when the requester asked for it. Versions 0 (legacy, three compact forms) and
//! 1–3 (flags + optional prologue, linked cores, user data) are decoded; encoding produces the
//! form Node produces for the same fields.

use crate::encoding::{put_buffer, put_uint, Reader};
use crate::error::DecodeError;

const FLAG_PATCH: u64 = 0b0001;
const FLAG_PROLOGUE: u64 = 0b0010;
const FLAG_LINKED: u64 = 0b0100;
const FLAG_USER_DATA: u64 = 0b1000;

/// Highest manifest version Node 11 decodes.
pub const MAX_MANIFEST_VERSION: u64 = 3;

/// One signer of a core (signature scheme ed25519, the only one defined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The signer's namespace.
    pub namespace: [u8; 32],
    /// The signer's ed25519 public key.
    pub public_key: [u8; 32],
}

/// A prologue: the tree hash and length the core starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prologue {
    /// The tree hash at `length`.
    pub hash: [u8; 32],
    /// The length it covers.
    pub length: u64,
}

/// A core's manifest (hash function BLAKE2b, the only one defined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// 0 (legacy) or 1..=3.
    pub version: u64,
    /// Whether signers may patch (truncate) the core.
    pub allow_patch: bool,
    /// How many signers must sign.
    pub quorum: u64,
    /// The signers.
    pub signers: Vec<Signer>,
    /// The prologue, if any.
    pub prologue: Option<Prologue>,
    /// Linked cores' keys (version ≥ 1).
    pub linked: Option<Vec<[u8; 32]>>,
    /// Opaque user data (version ≥ 1).
    pub user_data: Option<Vec<u8>>,
}

fn put_signer(out: &mut Vec<u8>, s: &Signer) {
    put_uint(out, 0); // ed25519
    out.extend_from_slice(&s.namespace);
    out.extend_from_slice(&s.public_key);
}

fn read_signer(r: &mut Reader<'_>) -> Result<Signer, DecodeError> {
    let sig = r.uint()?;
    if sig != 0 {
        return Err(DecodeError::UnknownSignature(sig));
    }
    Ok(Signer {
        namespace: r.fixed32()?,
        public_key: r.fixed32()?,
    })
}

fn read_signers(r: &mut Reader<'_>) -> Result<Vec<Signer>, DecodeError> {
    let n = r.array_len(65)?;
    (0..n).map(|_| read_signer(r)).collect()
}

fn put_signers(out: &mut Vec<u8>, signers: &[Signer]) {
    put_uint(out, signers.len() as u64);
    for s in signers {
        put_signer(out, s);
    }
}

fn read_hash(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    match r.uint()? {
        0 => Ok(()),
        n => Err(DecodeError::UnknownHash(n)),
    }
}

impl Manifest {
    /// Appends the manifest's encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_uint(out, self.version);
        if self.version == 0 {
            self.encode_v0(out);
            return;
        }
        let mut flags = 0;
        if self.allow_patch {
            flags |= FLAG_PATCH;
        }
        if self.prologue.is_some() {
            flags |= FLAG_PROLOGUE;
        }
        if self.linked.is_some() {
            flags |= FLAG_LINKED;
        }
        if self.user_data.is_some() {
            flags |= FLAG_USER_DATA;
        }
        put_uint(out, flags);
        put_uint(out, 0); // blake2b
        put_uint(out, self.quorum);
        put_signers(out, &self.signers);
        if let Some(p) = &self.prologue {
            out.extend_from_slice(&p.hash);
            put_uint(out, p.length);
        }
        if let Some(linked) = &self.linked {
            put_uint(out, linked.len() as u64);
            for k in linked {
                out.extend_from_slice(k);
            }
        }
        if let Some(u) = &self.user_data {
            put_buffer(out, u);
        }
    }

    fn encode_v0(&self, out: &mut Vec<u8>) {
        put_uint(out, 0); // blake2b
        if let (Some(p), true) = (&self.prologue, self.signers.is_empty()) {
            put_uint(out, 0);
            out.extend_from_slice(&p.hash);
            return;
        }
        match (self.quorum, self.signers.as_slice(), self.allow_patch) {
            (1, [only], false) => {
                put_uint(out, 1);
                put_signer(out, only);
            }
            _ => {
                put_uint(out, 2);
                put_uint(out, u64::from(self.allow_patch));
                put_uint(out, self.quorum);
                put_signers(out, &self.signers);
            }
        }
    }

    /// Decodes a manifest.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.uint()?;
        if version == 0 {
            return Self::decode_v0(r);
        }
        if version > MAX_MANIFEST_VERSION {
            return Err(DecodeError::UnknownManifestVersion(version));
        }
        let flags = r.uint()?;
        read_hash(r)?;
        let quorum = r.uint()?;
        let signers = read_signers(r)?;
        let prologue = if flags & FLAG_PROLOGUE != 0 {
            Some(Prologue {
                hash: r.fixed32()?,
                length: r.uint()?,
            })
        } else {
            None
        };
        let linked = if flags & FLAG_LINKED != 0 {
            let n = r.array_len(32)?;
            Some((0..n).map(|_| r.fixed32()).collect::<Result<Vec<_>, _>>()?)
        } else {
            None
        };
        let user_data = if flags & FLAG_USER_DATA != 0 {
            Some(r.buffer()?.to_vec())
        } else {
            None
        };
        Ok(Self {
            version,
            allow_patch: flags & FLAG_PATCH != 0,
            quorum,
            signers,
            prologue,
            linked,
            user_data,
        })
    }

    fn decode_v0(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        read_hash(r)?;
        let kind = r.uint()?;
        let base = Self {
            version: 0,
            allow_patch: false,
            quorum: 0,
            signers: Vec::new(),
            prologue: None,
            linked: None,
            user_data: None,
        };
        match kind {
            0 => Ok(Self {
                prologue: Some(Prologue {
                    hash: r.fixed32()?,
                    length: 0,
                }),
                ..base
            }),
            1 => Ok(Self {
                quorum: 1,
                signers: vec![read_signer(r)?],
                ..base
            }),
            2 => {
                let flags = r.uint()?;
                Ok(Self {
                    allow_patch: flags & 1 != 0,
                    quorum: r.uint()?,
                    signers: read_signers(r)?,
                    ..base
                })
            }
            n => Err(DecodeError::UnknownManifestType(n)),
        }
    }
}
