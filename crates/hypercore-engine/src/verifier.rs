//! Signature verification and signing for a core: compat cores (key = public key, 80-byte
//! signable), manifest-keyed single-signer and multisig (quorum) cores, prologues. Multisig
//! signatures with patches are refused (not implemented), never accepted blindly.

use crate::crypto::{self, KeyPair};
use crate::encoding::{Reader, Writer};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Prologue, Signer};
use crate::tree::TreeHead;

/// Decides whether a signature over a tree head is valid for one core.
#[derive(Debug, Clone)]
pub struct Verifier {
    compat: bool,
    version: u64,
    allow_patch: bool,
    quorum: u64,
    signers: Vec<Signer>,
    prologue: Option<Prologue>,
    manifest_hash: [u8; 32],
}

/// One signer's part of a multisig signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialSignature {
    /// Index into the manifest's signers.
    pub signer: u64,
    /// Ed25519 signature.
    pub signature: [u8; 64],
    /// Patch length (0: none).
    pub patch: u64,
}

impl Verifier {
    /// The verifier for `key` with `manifest` (none: a compat core, key = public key).
    pub fn new(key: &[u8; 32], manifest: Option<&Manifest>) -> Result<Self> {
        let Some(m) = manifest else {
            return Ok(Verifier {
                compat: true,
                version: 0,
                allow_patch: false,
                quorum: 1,
                signers: vec![Signer {
                    namespace: crypto::default_namespace(),
                    public_key: *key,
                }],
                prologue: None,
                manifest_hash: *key,
            });
        };
        let compat = m.is_compat_for(key);
        Ok(Verifier {
            compat,
            version: if compat { 0 } else { m.version },
            allow_patch: !compat && m.allow_patch,
            quorum: if compat { 1 } else { m.quorum },
            signers: m.signers.clone(),
            prologue: if compat { None } else { m.prologue.clone() },
            manifest_hash: m.hash()?,
        })
    }

    /// Whether the core is verified as a compat core.
    pub fn is_compat(&self) -> bool {
        self.compat
    }

    fn signable(&self, signer: &Signer, head: &TreeHead) -> Vec<u8> {
        if self.compat {
            crypto::tree_signable_compat(&head.hash, head.length, head.fork, false)
        } else if self.version == 0 {
            crypto::tree_signable(&signer.namespace, &head.hash, head.length, head.fork)
        } else {
            crypto::tree_signable(&self.manifest_hash, &head.hash, head.length, head.fork)
        }
    }

    /// Whether `signature` is valid for `head`.
    pub fn verify(&self, head: &TreeHead, signature: Option<&[u8]>) -> bool {
        if self.version == 0 {
            let Some(sig) = signature.filter(|s| !s.is_empty()) else {
                return false;
            };
            if self.compat || (!self.allow_patch && self.signers.len() == 1) {
                return match self.signers.first() {
                    Some(s) => crypto::verify(&self.signable(s, head), sig, &s.public_key),
                    None => false,
                };
            }
            return self.verify_multi(head, sig);
        }
        if let Some(p) = &self.prologue {
            if head.length <= p.length {
                return head.length == p.length && head.hash == p.hash;
            }
        }
        match signature.filter(|s| !s.is_empty()) {
            Some(sig) => self.verify_multi(head, sig),
            None => false,
        }
    }

    fn verify_multi(&self, head: &TreeHead, signature: &[u8]) -> bool {
        if self.quorum == 0 {
            return false;
        }
        let proofs = match if self.version >= 1 {
            inflate(signature)
        } else {
            inflate_v0(signature)
        } {
            Ok(p) => p,
            Err(_) => return false,
        };
        if (proofs.len() as u64) < self.quorum {
            return false;
        }
        let mut tried = vec![false; self.signers.len()];
        for inp in proofs.iter().take(self.quorum as usize) {
            if inp.patch != 0 && self.allow_patch {
                // Patched multisig proofs are not implemented: refuse rather than guess.
                return false;
            }
            let Ok(i) = usize::try_from(inp.signer) else {
                return false;
            };
            match tried.get_mut(i) {
                Some(t) if !*t => *t = true,
                _ => return false,
            }
            let Some(s) = self.signers.get(i) else {
                return false;
            };
            if !crypto::verify(&self.signable(s, head), &inp.signature, &s.public_key) {
                return false;
            }
        }
        true
    }

    /// Whether a signature [`Verifier::sign`] makes with the key pair of `public_key` is all
    /// this core needs: a version-0 core (compat, or one signer and no patches) whose first
    /// signer is that key. [`Verifier::verify`] of such a signature cannot fail (the public
    /// half is derived from the secret one), so an appender need not spend a verification
    /// (~50 µs, a sixth of a small durable append) on its own fresh signature.
    pub fn signs_alone(&self, public_key: &[u8; 32]) -> bool {
        self.version == 0
            && (self.compat || (!self.allow_patch && self.signers.len() == 1))
            && self
                .signers
                .first()
                .is_some_and(|s| &s.public_key == public_key)
    }

    /// Signs `head` with `key_pair` the way Node does: a bare signature for compat and v0
    /// cores, a one-entry multisig envelope for v1/v2 single-signer cores. Multi-signer
    /// cores need [`Verifier::assemble`] over every signer's part.
    pub fn sign(&self, head: &TreeHead, key_pair: &KeyPair) -> Result<Vec<u8>> {
        let (i, s) = self
            .signers
            .iter()
            .enumerate()
            .find(|(_, s)| s.public_key == key_pair.public_key)
            .ok_or(Error::NotWritable)?;
        let sig = key_pair.sign(&self.signable(s, head))?;
        if self.signers.len() != 1 || self.version == 0 {
            return Ok(sig.to_vec());
        }
        Ok(assemble(&[PartialSignature {
            signer: i as u64,
            signature: sig,
            patch: 0,
        }]))
    }

    /// The part one signer contributes to a multisig signature.
    pub fn partial_signature(
        &self,
        head: &TreeHead,
        key_pair: &KeyPair,
    ) -> Result<PartialSignature> {
        let (i, s) = self
            .signers
            .iter()
            .enumerate()
            .find(|(_, s)| s.public_key == key_pair.public_key)
            .ok_or(Error::NotWritable)?;
        Ok(PartialSignature {
            signer: i as u64,
            signature: key_pair.sign(&self.signable(s, head))?,
            patch: 0,
        })
    }
}

/// Encodes a v1 multisig signature without patches.
pub fn assemble(parts: &[PartialSignature]) -> Vec<u8> {
    let mut w = Writer::new();
    w.uint(parts.len() as u64);
    for p in parts {
        w.uint(p.signer);
        w.raw(&p.signature);
        w.uint(p.patch);
    }
    w.uint(0); // patch nodes
    w.buf
}

fn skip_compact_nodes(r: &mut Reader<'_>) -> Result<()> {
    let n = r.array_len(34)?;
    for _ in 0..n {
        r.uint()?;
        r.uint()?;
        r.fixed32()?;
    }
    Ok(())
}

/// Decodes a v1 multisig signature (the patch nodes are parsed and dropped).
pub fn inflate(bytes: &[u8]) -> Result<Vec<PartialSignature>> {
    let mut r = Reader::new(bytes);
    let n = r.array_len(66)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(PartialSignature {
            signer: r.uint()?,
            signature: r.fixed64()?,
            patch: r.uint()?,
        });
    }
    skip_compact_nodes(&mut r)?;
    Ok(out)
}

/// Decodes a v0 multisig signature into v1 shape.
pub fn inflate_v0(bytes: &[u8]) -> Result<Vec<PartialSignature>> {
    let mut r = Reader::new(bytes);
    let n = r.array_len(67)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let flags = r.uint()?;
        let signer = r.uint()?;
        let signature = r.fixed64()?;
        let mut patch = 0;
        if flags & 1 != 0 {
            r.uint()?; // start
            patch = r.uint()?;
            let k = r.array_len(1)?;
            for _ in 0..k {
                r.uint()?;
            }
        }
        out.push(PartialSignature {
            signer,
            signature,
            patch,
        });
    }
    skip_compact_nodes(&mut r)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(length: u64) -> TreeHead {
        TreeHead {
            hash: [7; 32],
            length,
            fork: 0,
        }
    }

    /// Where `signs_alone` says the verification may be skipped, it could not have failed;
    /// where it could fail (another key, a multi-signer or v1 manifest) it is not skipped.
    #[test]
    fn signs_alone_only_where_the_own_signature_always_verifies() {
        let kp = KeyPair::generate().unwrap();
        let other = KeyPair::generate().unwrap();
        let compat = Verifier::new(&kp.public_key, None).unwrap();
        assert!(compat.signs_alone(&kp.public_key));
        assert!(!compat.signs_alone(&other.public_key));
        for length in [1, 2, 1000] {
            let sig = compat.sign(&head(length), &kp).unwrap();
            assert!(compat.verify(&head(length), Some(&sig)));
        }
        // A version-1 manifest (hypercore 11's): signed in an envelope, verified as before.
        let m = Manifest::single_signer(kp.public_key);
        let v1 = Verifier::new(&m.hash().unwrap(), Some(&m)).unwrap();
        assert!(!v1.signs_alone(&kp.public_key));
        // Two signers: one signature is not enough, and the check must run to say so.
        let mut two = Manifest::single_signer(kp.public_key);
        two.version = 0;
        two.quorum = 2;
        two.signers.push(Signer {
            namespace: crypto::default_namespace(),
            public_key: other.public_key,
        });
        let multi = Verifier::new(&two.hash().unwrap(), Some(&two)).unwrap();
        assert!(!multi.signs_alone(&kp.public_key));
        let sig = multi.sign(&head(3), &kp).unwrap();
        assert!(!multi.verify(&head(3), Some(&sig)));
    }
}
