//! Fuzz targets of our hypercore engine (crate `hypercore-engine`): its manifest decoder, its
//! on-disk record decoders, proof verification and application (structure-aware: genuine
//! proofs of real cores, mutated field by field, applied to fresh replicas) and proof
//! creation from hostile requests. Promises checked beyond "no panic": decoded values
//! re-encode to themselves; a replica never stores a block or a length that the genuine
//! core does not have; a genuine upgrade from 0 always applies.
//!
//! Stores live in a per-process scratch folder on tmpfs (`/dev/shm`) when there is one,
//! removed at exit: the source cores are built once per process; one replica store is reused,
//! its core removed and opened again (empty) before each input.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use hypercore_engine::store::records::{decode_location, decode_node, encode_location, CoreMeta};
use hypercore_engine::{
    CoreKind, DataHash, DataSeek, DataUpgrade, KeyPair, Manifest, Node, Proof, Request,
    RequestBlock, RequestSeek, RequestUpgrade, Store,
};

/// The real cores proofs come from: a compat writer, a manifest-keyed (v1) writer, and a
/// replica of the compat one holding every third block.
struct Sources {
    writers: Store,
    partial: Store,
    compat: [u8; 32],
    manifest: [u8; 32],
    /// Blocks of each core (index → bytes), to check what replicas store.
    compat_blocks: Vec<Vec<u8>>,
    manifest_blocks: Vec<Vec<u8>>,
}

static SOURCES: OnceLock<Sources> = OnceLock::new();
static SCRATCH: AtomicU64 = AtomicU64::new(0);
static ROOT: OnceLock<PathBuf> = OnceLock::new();
/// The replica store reused between inputs (its core is removed before each one: a new
/// redb file per input would cost ~70 ms).
static REPLICA: Mutex<Option<Store>> = Mutex::new(None);

extern "C" fn remove_root() {
    if let Some(root) = ROOT.get() {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// This process's scratch folder (on tmpfs when there is one), removed at exit.
fn root() -> &'static PathBuf {
    ROOT.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        // SAFETY: registers a plain function with no arguments to run at exit.
        unsafe {
            libc::atexit(remove_root);
        }
        base.join(format!("dat-mirror-fuzz-engine-{}", std::process::id()))
    })
}

fn scratch_dir() -> PathBuf {
    let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
    root().join(n.to_string())
}

/// Runs `f` with a replica store holding a fresh, empty replica of `key`.
fn with_fresh_replica(key: [u8; 32], manifest: Option<Manifest>, f: impl FnOnce(&Store)) {
    let mut slot = REPLICA.lock().unwrap_or_else(|p| p.into_inner());
    let fresh = slot.as_ref().is_some_and(|s| {
        s.remove_core(&key).is_ok() && s.open_replica(key, manifest.clone()).is_ok()
    });
    if !fresh {
        slot.take();
        let store = Store::open(scratch_dir()).expect("a fresh store opens");
        store
            .open_replica(key, manifest)
            .expect("a fresh replica opens");
        *slot = Some(store);
    }
    if let Some(s) = slot.as_ref() {
        f(s);
    }
}

fn blocks(count: usize, seed: u8) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let len = (i * 37 + seed as usize) % 300;
            (0..len).map(|j| (i + j) as u8 ^ seed).collect()
        })
        .collect()
}

fn sources() -> &'static Sources {
    SOURCES.get_or_init(|| {
        let dir = scratch_dir();
        let writers = Store::open(&dir).expect("source store opens");
        let compat = writers
            .create_writer(&KeyPair::from_seed(&[7; 32]), CoreKind::Compat)
            .expect("compat writer");
        let manifest = writers
            .create_writer(&KeyPair::from_seed(&[8; 32]), CoreKind::Default)
            .expect("manifest writer");
        let compat_blocks = blocks(37, 1);
        let manifest_blocks = blocks(20, 2);
        // several appends: several batches' worth of tree
        for chunk in compat_blocks.chunks(13) {
            writers.append(&compat, chunk.to_vec()).expect("append");
        }
        writers
            .append(&manifest, manifest_blocks.clone())
            .expect("append");
        let pdir = scratch_dir();
        let partial = Store::open(&pdir).expect("partial store opens");
        partial.open_replica(compat, None).expect("replica");
        let len = compat_blocks.len() as u64;
        for i in (0..len).step_by(3) {
            let req = Request {
                block: Some(RequestBlock {
                    index: i,
                    nodes: partial.missing_nodes(&compat, i).unwrap_or(0),
                }),
                upgrade: (i == 0).then_some(RequestUpgrade {
                    start: 0,
                    length: len,
                }),
                ..Request::default()
            };
            let p = writers.create_proof(&compat, &req).expect("genuine proof");
            partial
                .apply_proof(&compat, p)
                .expect("genuine proof applies");
        }
        Sources {
            writers,
            partial,
            compat,
            manifest,
            compat_blocks,
            manifest_blocks,
        }
    })
}

/// Reads fuzzer bytes as small numbers, mostly: a byte below 0xf0 is itself, else the next
/// 8 bytes are a whole u64 (so the extremes are reachable too).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn num(&mut self) -> Option<u64> {
        let b = self.byte()?;
        if b < 0xf0 {
            return Some(u64::from(b));
        }
        let n = self.0.len().min(8);
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Some(u64::from_le_bytes(buf))
    }

    fn opt(&mut self) -> Option<Option<RequestBlock>> {
        if self.byte()? & 1 == 0 {
            return Some(None);
        }
        Some(Some(RequestBlock {
            index: self.num()?,
            nodes: self.num()?,
        }))
    }
}

/// After anything was applied: the replica holds only the genuine core's blocks, and a
/// length and byte length the genuine core signed (0 or its length; its blocks are known).
fn check_replica(replica: &Store, key: &[u8; 32], genuine: &[Vec<u8>]) {
    let info = replica.info(key).expect("replica known");
    let full = genuine.len() as u64;
    assert!(
        info.length == 0 || info.length == full,
        "replica accepted length {} (genuine {full})",
        info.length
    );
    if info.length == full {
        let bytes: u64 = genuine.iter().map(|b| b.len() as u64).sum();
        assert_eq!(
            info.byte_length, bytes,
            "replica accepted a forged byte length"
        );
    }
    for (start, end) in replica.held_ranges(key).expect("ranges") {
        for i in start..end {
            let got = replica.get(key, i).expect("a stored block reads back");
            let want = usize::try_from(i).ok().and_then(|i| genuine.get(i));
            assert_eq!(got.as_ref(), want, "replica stored a forged block {i}");
        }
    }
}

/// Target `engine_manifest`: manifest decoding (v0/v1/v2), re-encoding, hashing, the
/// verifier built from it and the hyperdrive content-manifest derivation.
pub fn engine_manifest(data: &[u8]) {
    let Ok(m) = Manifest::decode(data) else {
        return;
    };
    let enc = m.encode().expect("a decoded manifest encodes");
    assert_eq!(Manifest::decode(&enc).expect("re-decodes"), m);
    if let Ok(key) = m.hash() {
        let _ = m.validate();
        let _ = m.matches_key(&key);
        let _ = hypercore_engine::Verifier::new(&key, Some(&m));
        let _ = m.blobs_key(&key);
    }
}

/// Target `engine_records`: the redb record decoders (core metadata, tree node, block
/// location), chosen by the first byte; what decodes re-encodes to the same bytes.
pub fn engine_records(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(m) = CoreMeta::decode(rest) {
                let enc = m.encode().expect("decoded meta encodes");
                assert_eq!(CoreMeta::decode(&enc).expect("re-decodes"), m);
            }
        }
        1 => {
            if let Ok(n) = decode_node(7, rest) {
                assert_eq!(&hypercore_engine::store::records::encode_node(&n)[..], rest);
            }
        }
        _ => {
            if let Ok(l) = decode_location(rest) {
                assert_eq!(&encode_location(&l)[..], rest);
            }
        }
    }
}

fn mutate_nodes(nodes: &mut Vec<Node>, inp: &mut Input<'_>) -> Option<()> {
    let op = inp.byte()?;
    let at = usize::from(inp.byte()?);
    match op % 7 {
        0 => {
            let len = nodes.len();
            if let Some(n) = nodes.get_mut(at % len.max(1)) {
                n.index = inp.num()?;
            }
        }
        1 => {
            let len = nodes.len();
            if let Some(n) = nodes.get_mut(at % len.max(1)) {
                n.size = inp.num()?;
            }
        }
        2 => {
            let len = nodes.len();
            let b = inp.byte()?;
            if let Some(n) = nodes.get_mut(at % len.max(1)) {
                let i = usize::from(b) % 32;
                n.hash[i] ^= b | 1;
            }
        }
        3 => {
            if at < nodes.len() {
                nodes.remove(at);
            } else {
                nodes.pop();
            }
        }
        4 => {
            let n = nodes.get(at % nodes.len().max(1)).copied().unwrap_or(Node {
                index: 0,
                size: 0,
                hash: [0; 32],
            });
            nodes.insert(at.min(nodes.len()), n);
        }
        5 => {
            let (i, j) = (at % nodes.len().max(1), usize::from(inp.byte()?));
            if j < nodes.len() && i < nodes.len() {
                nodes.swap(i, j);
            }
        }
        _ => {
            let index = inp.num()?;
            let size = inp.num()?;
            let fill = inp.byte()?;
            nodes.insert(
                at.min(nodes.len()),
                Node {
                    index,
                    size,
                    hash: [fill; 32],
                },
            );
        }
    }
    Some(())
}

/// Applies the mutations the input describes to a genuine proof (until the input ends).
fn mutate(p: &mut Proof, inp: &mut Input<'_>) -> Option<()> {
    loop {
        let op = inp.byte()?;
        match op % 16 {
            0 => p.fork = inp.num()?,
            1 => {
                if let Some(b) = p.block.as_mut() {
                    b.index = inp.num()?;
                }
            }
            2 => {
                if let Some(b) = p.block.as_mut() {
                    mutate_nodes(&mut b.nodes, inp)?;
                }
            }
            3 => {
                let (at, x) = (usize::from(inp.byte()?), inp.byte()?);
                if let Some(b) = p.block.as_mut() {
                    match x % 3 {
                        0 => b.value.truncate(at),
                        1 => b.value.push(x),
                        _ => {
                            let len = b.value.len();
                            if let Some(v) = b.value.get_mut(at % len.max(1)) {
                                *v ^= x | 1;
                            }
                        }
                    }
                }
            }
            4 => {
                if let Some(u) = p.upgrade.as_mut() {
                    u.start = inp.num()?;
                }
            }
            5 => {
                if let Some(u) = p.upgrade.as_mut() {
                    u.length = inp.num()?;
                }
            }
            6 => {
                if let Some(u) = p.upgrade.as_mut() {
                    mutate_nodes(&mut u.nodes, inp)?;
                }
            }
            7 => {
                if let Some(u) = p.upgrade.as_mut() {
                    mutate_nodes(&mut u.additional_nodes, inp)?;
                }
            }
            8 => {
                let (at, x) = (usize::from(inp.byte()?), inp.byte()?);
                if let Some(u) = p.upgrade.as_mut() {
                    match (x % 4, u.signature.as_mut()) {
                        (0, _) => u.signature = None,
                        (1, Some(s)) => s.truncate(at),
                        (2, Some(s)) => s.push(x),
                        (_, Some(s)) => {
                            let len = s.len();
                            if let Some(v) = s.get_mut(at % len.max(1)) {
                                *v ^= x | 1;
                            }
                        }
                        _ => {}
                    }
                }
            }
            9 => p.block = None,
            10 => p.upgrade = None,
            11 => {
                let index = inp.num()?;
                let mut nodes = Vec::new();
                for _ in 0..inp.byte()? % 4 {
                    mutate_nodes(&mut nodes, inp)?;
                }
                p.hash = Some(DataHash { index, nodes });
            }
            12 => {
                let bytes = inp.num()?;
                let mut nodes = p
                    .block
                    .as_ref()
                    .map(|b| b.nodes.clone())
                    .unwrap_or_default();
                mutate_nodes(&mut nodes, inp)?;
                p.seek = Some(DataSeek { bytes, nodes });
            }
            13 => {
                let len = usize::from(inp.byte()?);
                let bytes: Vec<u8> = (0..len).filter_map(|_| inp.byte()).collect();
                p.manifest = Manifest::decode(&bytes).ok();
            }
            14 => p.manifest = Some(Manifest::single_signer([inp.byte()?; 32])),
            _ => {
                // move the block part into the upgrade's nodes, or vice versa
                if let (Some(b), Some(u)) = (p.block.as_mut(), p.upgrade.as_mut()) {
                    std::mem::swap(&mut b.nodes, &mut u.nodes);
                } else if p.upgrade.is_none() {
                    p.upgrade = Some(DataUpgrade {
                        start: inp.num()?,
                        length: inp.num()?,
                        nodes: Vec::new(),
                        additional_nodes: Vec::new(),
                        signature: Some(vec![inp.byte()?; 64]),
                    });
                }
            }
        }
    }
}

/// Target `engine_proof_apply`: a genuine proof (which core, which request, and whether the
/// replica already has the signed tree: from the first bytes), mutated by the rest of the
/// input, applied to a fresh replica. Must never panic; whatever it accepts must be genuine.
pub fn engine_proof_apply(data: &[u8]) {
    let src = sources();
    let mut inp = Input(data);
    let Some(setup) = inp.byte() else { return };
    let (key, genuine, manifest) = if setup & 1 == 0 {
        (src.compat, &src.compat_blocks, None)
    } else {
        (
            src.manifest,
            &src.manifest_blocks,
            Some(Manifest::single_signer(
                KeyPair::from_seed(&[8; 32]).public_key,
            )),
        )
    };
    let len = genuine.len() as u64;
    let index = u64::from(inp.byte().unwrap_or(0)) % len;
    let has_tree = setup & 2 != 0;
    // the replica may know the manifest up front, or have to learn it from the proof
    let known = if setup & 4 != 0 {
        manifest.clone()
    } else {
        None
    };
    with_fresh_replica(key, known, |r| {
        let manifest_req = setup & 8 != 0;
        if has_tree {
            let up = Request {
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: len,
                }),
                manifest: true,
                ..Request::default()
            };
            let p = src
                .writers
                .create_proof(&key, &up)
                .expect("genuine upgrade");
            r.apply_proof(&key, p)
                .expect("a genuine upgrade from 0 applies");
        }
        let req = Request {
            block: Some(RequestBlock {
                index,
                nodes: r.missing_nodes(&key, index).unwrap_or(0),
            }),
            upgrade: (!has_tree).then_some(RequestUpgrade {
                start: 0,
                length: len,
            }),
            manifest: manifest_req || !has_tree,
            ..Request::default()
        };
        let Ok(mut proof) = src.writers.create_proof(&key, &req) else {
            return;
        };
        let genuine_proof = inp.0.is_empty();
        let _ = mutate(&mut proof, &mut inp);
        let applied = r.apply_proof(&key, proof);
        if genuine_proof {
            // unmutated, it must apply and store the block
            assert!(
                applied.is_ok(),
                "a genuine proof does not apply: {applied:?}"
            );
            assert!(
                r.has(&key, index).unwrap_or(false),
                "genuine block not stored"
            );
        }
        check_replica(r, &key, genuine);
    });
}

/// Target `engine_proof_create`: hostile requests (every field from the input) against a
/// full writer, a manifest-keyed writer and a partial replica. Must never panic; a proof it
/// creates for an upgrade from 0 must apply to a fresh replica, which then holds only
/// genuine blocks.
pub fn engine_proof_create(data: &[u8]) {
    let src = sources();
    let mut inp = Input(data);
    let Some(setup) = inp.byte() else { return };
    let (store, key, genuine) = match setup % 3 {
        0 => (&src.writers, src.compat, &src.compat_blocks),
        1 => (&src.writers, src.manifest, &src.manifest_blocks),
        _ => (&src.partial, src.compat, &src.compat_blocks),
    };
    let req = (|| {
        let fork = inp.num()?;
        let block = inp.opt()?;
        let hash = inp.opt()?;
        let seek = if inp.byte()? & 1 == 1 {
            Some(RequestSeek {
                bytes: inp.num()?,
                padding: inp.num()?,
            })
        } else {
            None
        };
        let upgrade = if inp.byte()? & 1 == 1 {
            Some(RequestUpgrade {
                start: inp.num()?,
                length: inp.num()?,
            })
        } else {
            None
        };
        let manifest = inp.byte()? & 1 == 1;
        Some(Request {
            fork,
            block,
            hash,
            seek,
            upgrade,
            manifest,
        })
    })();
    let Some(req) = req else { return };
    let Ok(proof) = store.create_proof(&key, &req) else {
        return;
    };
    if proof.upgrade.as_ref().is_none_or(|u| u.start != 0) {
        return;
    }
    // a bare upgrade carrying what the replica needs to verify it (a manifest-keyed core's
    // manifest) must apply
    let plain = proof.block.is_none()
        && proof.hash.is_none()
        && proof.seek.is_none()
        && (key == src.compat || proof.manifest.is_some());
    with_fresh_replica(key, None, |r| {
        let applied = r.apply_proof(&key, proof);
        if plain {
            assert!(
                applied.is_ok(),
                "a genuine upgrade from 0 does not apply: {applied:?}"
            );
        }
        check_replica(r, &key, genuine);
    });
}
