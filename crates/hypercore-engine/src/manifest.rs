//! Manifests (versions 0, 1 and 2): their byte encoding, the manifest hash (a manifest-keyed
//! core's key), key derivation for compat and manifest-keyed cores, and hyperdrive 12/13's
//! content manifest (the blobs core's key).

use crate::crypto;
use crate::encoding::{Reader, Writer};
use crate::error::{Error, Result};

const FLAG_PATCH: u64 = 1;
const FLAG_PROLOGUE: u64 = 2;
const FLAG_LINKED: u64 = 4;
const FLAG_USER_DATA: u64 = 8;

/// Bytes of the smallest encoded signer (signature id, namespace, public key).
const SIGNER_BYTES: usize = 65;

/// One Ed25519 signer (the only signature scheme hypercore defines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Signer namespace (the default one unless the author chose another).
    pub namespace: [u8; 32],
    /// Ed25519 public key.
    pub public_key: [u8; 32],
}

/// A fixed prefix of the core every signature must extend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prologue {
    /// Tree hash at `length`.
    pub hash: [u8; 32],
    /// Length the prologue covers.
    pub length: u64,
}

/// A core's manifest: who signs it and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// 0, 1 or 2.
    pub version: u64,
    /// Whether multisig proofs may carry patches.
    pub allow_patch: bool,
    /// Signatures needed.
    pub quorum: u64,
    /// The signers.
    pub signers: Vec<Signer>,
    /// Optional prologue.
    pub prologue: Option<Prologue>,
    /// Linked cores (version 2).
    pub linked: Option<Vec<[u8; 32]>>,
    /// Free-form user data (version 2).
    pub user_data: Option<Vec<u8>>,
}

impl Manifest {
    /// The manifest hypercore 11 / corestore 7 make for one signer (version 1, quorum 1).
    pub fn single_signer(public_key: [u8; 32]) -> Self {
        Manifest {
            version: 1,
            allow_patch: false,
            quorum: 1,
            signers: vec![Signer {
                namespace: crypto::default_namespace(),
                public_key,
            }],
            prologue: None,
            linked: None,
            user_data: None,
        }
    }

    /// Encodes the manifest as Node does.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        self.encode_into(&mut w)?;
        Ok(w.buf)
    }

    /// Encodes into a writer (for embedding in larger messages).
    pub fn encode_into(&self, w: &mut Writer) -> Result<()> {
        w.uint(self.version);
        if self.version == 0 {
            w.uint(0); // hash: blake2b
            match &self.prologue {
                Some(p) if self.signers.is_empty() => {
                    w.uint(0);
                    w.raw(&p.hash);
                }
                _ if self.quorum == 1 && self.signers.len() == 1 && !self.allow_patch => {
                    w.uint(1);
                    for s in &self.signers {
                        encode_signer(w, s);
                    }
                }
                _ => {
                    w.uint(2);
                    w.uint(u64::from(self.allow_patch));
                    w.uint(self.quorum);
                    encode_signers(w, &self.signers);
                }
            }
            return Ok(());
        }
        if self.version > 2 {
            return Err(Error::InvalidManifest("unknown version"));
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
        w.uint(flags);
        w.uint(0); // hash: blake2b
        w.uint(self.quorum);
        encode_signers(w, &self.signers);
        if let Some(p) = &self.prologue {
            w.raw(&p.hash);
            w.uint(p.length);
        }
        if let Some(l) = &self.linked {
            w.uint(l.len() as u64);
            for k in l {
                w.raw(k);
            }
        }
        if let Some(u) = &self.user_data {
            w.buffer(u);
        }
        Ok(())
    }

    /// Decodes a whole buffer (trailing bytes are an error).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let m = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(m)
    }

    /// Decodes one manifest from a reader.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let version = r.uint()?;
        if version == 0 {
            return decode_v0(r);
        }
        if version > 2 {
            return Err(Error::Decode("unknown manifest version"));
        }
        let flags = r.uint()?;
        decode_hash_id(r)?;
        let quorum = r.uint()?;
        let signers = decode_signers(r)?;
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
            let mut l = Vec::with_capacity(n);
            for _ in 0..n {
                l.push(r.fixed32()?);
            }
            Some(l)
        } else {
            None
        };
        let user_data = if flags & FLAG_USER_DATA != 0 {
            Some(r.buffer()?.to_vec())
        } else {
            None
        };
        Ok(Manifest {
            version,
            allow_patch: flags & FLAG_PATCH != 0,
            quorum,
            signers,
            prologue,
            linked,
            user_data,
        })
    }

    /// The manifest hash: the key of a manifest-keyed core.
    pub fn hash(&self) -> Result<[u8; 32]> {
        let enc = self.encode()?;
        Ok(crypto::hash(&[&crypto::manifest_namespace(), &enc]))
    }

    /// Whether `key` is this manifest's compat key (one signer whose public key is the key).
    pub fn is_compat_for(&self, key: &[u8; 32]) -> bool {
        matches!(self.signers.as_slice(), [only] if only.public_key == *key)
    }

    /// Whether this manifest belongs to `key` (hashes to it, or is its compat manifest).
    pub fn matches_key(&self, key: &[u8; 32]) -> Result<bool> {
        Ok(self.is_compat_for(key) || self.hash()? == *key)
    }

    /// Hyperdrive 12/13's content manifest for a drive whose db core has this manifest and
    /// `db_key`: same signers, each namespace = hash(BLOBS, db key, signer namespace).
    /// `None` for version-0 manifests (those drives keep the blobs key in their header).
    pub fn content_manifest(&self, db_key: &[u8; 32]) -> Option<Manifest> {
        if self.version < 1 {
            return None;
        }
        let blobs = crypto::blobs_namespace();
        Some(Manifest {
            version: self.version,
            allow_patch: self.allow_patch,
            quorum: self.quorum,
            signers: self
                .signers
                .iter()
                .map(|s| Signer {
                    namespace: crypto::hash(&[&blobs, db_key, &s.namespace]),
                    public_key: s.public_key,
                })
                .collect(),
            prologue: None,
            linked: None,
            user_data: None,
        })
    }

    /// The blobs core key of a hyperdrive 12/13 drive with this db manifest and key.
    pub fn blobs_key(&self, db_key: &[u8; 32]) -> Result<Option<[u8; 32]>> {
        self.content_manifest(db_key).map(|m| m.hash()).transpose()
    }

    /// Checks the shape Node's `createManifest` enforces.
    pub fn validate(&self) -> Result<()> {
        if self.version > 2 {
            return Err(Error::InvalidManifest("unknown version"));
        }
        if self.quorum > self.signers.len() as u64 {
            return Err(Error::InvalidManifest(
                "quorum higher than the number of signers",
            ));
        }
        if self.version < 2 && (self.linked.is_some() || self.user_data.is_some()) {
            return Err(Error::InvalidManifest("linked/userData need version 2"));
        }
        Ok(())
    }
}

fn encode_signer(w: &mut Writer, s: &Signer) {
    w.uint(0); // ed25519
    w.raw(&s.namespace);
    w.raw(&s.public_key);
}

fn encode_signers(w: &mut Writer, signers: &[Signer]) {
    w.uint(signers.len() as u64);
    for s in signers {
        encode_signer(w, s);
    }
}

fn decode_hash_id(r: &mut Reader<'_>) -> Result<()> {
    if r.uint()? != 0 {
        return Err(Error::Decode("unknown hash id"));
    }
    Ok(())
}

fn decode_signer(r: &mut Reader<'_>) -> Result<Signer> {
    if r.uint()? != 0 {
        return Err(Error::Decode("unknown signature id"));
    }
    Ok(Signer {
        namespace: r.fixed32()?,
        public_key: r.fixed32()?,
    })
}

fn decode_signers(r: &mut Reader<'_>) -> Result<Vec<Signer>> {
    let n = r.array_len(SIGNER_BYTES)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(decode_signer(r)?);
    }
    Ok(out)
}

fn decode_v0(r: &mut Reader<'_>) -> Result<Manifest> {
    decode_hash_id(r)?;
    let ty = r.uint()?;
    let base = Manifest {
        version: 0,
        allow_patch: false,
        quorum: 0,
        signers: Vec::new(),
        prologue: None,
        linked: None,
        user_data: None,
    };
    match ty {
        0 => Ok(Manifest {
            prologue: Some(Prologue {
                hash: r.fixed32()?,
                length: 0,
            }),
            ..base
        }),
        1 => Ok(Manifest {
            quorum: 1,
            signers: vec![decode_signer(r)?],
            ..base
        }),
        2 => {
            let flags = r.uint()?;
            let quorum = r.uint()?;
            Ok(Manifest {
                allow_patch: flags & 1 != 0,
                quorum,
                signers: decode_signers(r)?,
                ..base
            })
        }
        _ => Err(Error::Decode("unknown v0 manifest type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut m = Manifest::single_signer([7; 32]);
        let e = m.encode().unwrap();
        assert_eq!(Manifest::decode(&e).unwrap(), m);
        m.version = 2;
        m.user_data = Some(b"x".to_vec());
        m.linked = Some(vec![[1; 32]]);
        m.prologue = Some(Prologue {
            hash: [2; 32],
            length: 9,
        });
        let e = m.encode().unwrap();
        assert_eq!(Manifest::decode(&e).unwrap(), m);
        assert!(Manifest::decode(&e[..e.len() - 1]).is_err());
    }
}
