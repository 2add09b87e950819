//! Fuzz-style tests in plain `cargo test` (a deterministic PRNG, no nightly): arbitrary
//! bytes into every decoder, arbitrary proofs into verification, and structure-aware
//! mutations of genuine proofs (indices, nodes, sizes, hashes, upgrade start/length,
//! signature, fork, manifest, block value). Nothing may panic; a mutated proof may only be
//! accepted if what it stores is exactly what the genuine proof stores.

use hypercore_engine::proof::{verify_tree, verify_upgrade};
use hypercore_engine::store::records::{decode_location, decode_node, CoreMeta};
use hypercore_engine::verifier::{inflate, inflate_v0};
use hypercore_engine::{
    CoreKind, DataUpgrade, KeyPair, Manifest, Node, Proof, Request, RequestBlock, RequestUpgrade,
    Store, TreeBatch, TreeHead, Verifier,
};

/// splitmix64: tiny, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max as u64 + 1) as usize;
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn interesting(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => self.below(40),
            2 => u64::MAX - self.below(3),
            3 => 1 << self.below(64),
            4 => (1 << 60) - self.below(3),
            _ => self.below(1 << 12),
        }
    }
}

#[test]
fn arbitrary_bytes_into_every_decoder() {
    let mut rng = Rng(1);
    let genuine = [
        Manifest::single_signer([7; 32]).encode().unwrap(),
        Manifest {
            version: 0,
            ..Manifest::single_signer([7; 32])
        }
        .encode()
        .unwrap(),
    ];
    for i in 0..20_000 {
        let mut b = rng.bytes(300);
        if i % 2 == 0 {
            // start from a genuine encoding and damage it
            b = genuine[i % genuine.len()].clone();
            let n = rng.below(4) + 1;
            for _ in 0..n {
                if b.is_empty() {
                    break;
                }
                let at = rng.below(b.len() as u64) as usize;
                match rng.below(3) {
                    0 => b[at] = rng.next() as u8,
                    1 => {
                        b.truncate(at);
                    }
                    _ => b.insert(at, rng.next() as u8),
                }
            }
        }
        if let Ok(m) = Manifest::decode(&b) {
            let _ = m.hash();
            let _ = m.blobs_key(&[1; 32]);
            let _ = Verifier::new(&[1; 32], Some(&m)).map(|v| {
                v.verify(
                    &TreeHead {
                        hash: [0; 32],
                        length: 1,
                        fork: 0,
                    },
                    Some(&b),
                )
            });
        }
        let _ = CoreMeta::decode(&b);
        let _ = decode_node(rng.next(), &b);
        let _ = decode_location(&b);
        let _ = inflate(&b);
        let _ = inflate_v0(&b);
        let _ = hypercore_engine::crypto::KeyPair::from_secret_key(&b);
        let v = Verifier::new(&[1; 32], None).unwrap();
        v.verify(
            &TreeHead {
                hash: [0; 32],
                length: 1,
                fork: 0,
            },
            Some(&b),
        );
    }
}

fn random_nodes(rng: &mut Rng) -> Vec<Node> {
    (0..rng.below(6))
        .map(|_| Node {
            index: rng.interesting(),
            size: rng.interesting(),
            hash: [rng.next() as u8; 32],
        })
        .collect()
}

#[test]
fn arbitrary_proofs_never_panic() {
    let mut rng = Rng(2);
    for _ in 0..20_000 {
        let p = Proof {
            fork: rng.below(2),
            block: (rng.below(2) == 0).then(|| hypercore_engine::DataBlock {
                index: rng.interesting(),
                value: rng.bytes(8),
                nodes: random_nodes(&mut rng),
            }),
            hash: (rng.below(3) == 0).then(|| hypercore_engine::DataHash {
                index: rng.interesting(),
                nodes: random_nodes(&mut rng),
            }),
            seek: (rng.below(3) == 0).then(|| hypercore_engine::DataSeek {
                bytes: rng.interesting(),
                nodes: random_nodes(&mut rng),
            }),
            upgrade: (rng.below(2) == 0).then(|| DataUpgrade {
                start: rng.interesting(),
                length: rng.interesting(),
                nodes: random_nodes(&mut rng),
                additional_nodes: random_nodes(&mut rng),
                signature: Some(rng.bytes(70)),
            }),
            manifest: None,
        };
        let mut out = Vec::new();
        let root = verify_tree(&p, &mut out).ok().flatten();
        let mut batch = TreeBatch::default();
        if rng.below(2) == 0 {
            for i in 0..rng.below(9) {
                batch.append(&[i as u8]).unwrap();
            }
        }
        let _ = verify_upgrade(&p, root, &mut batch, None);
        if let Some(u) = &p.upgrade {
            let _ = u.upgrade_length();
        }
    }
}

struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    w: Store,
    key: [u8; 32],
    manifest: Manifest,
}

fn writer(len: usize) -> Fixture {
    let d = tempfile::tempdir().unwrap();
    let w = Store::open(d.path()).unwrap();
    let kp = KeyPair::from_seed(&[42; 32]);
    let key = w.create_writer(&kp, CoreKind::Default).unwrap();
    w.append(&key, (0..len).map(|i| vec![i as u8; 100 + i]).collect())
        .unwrap();
    Fixture {
        manifest: Manifest::single_signer(kp.public_key),
        _dirs: vec![d],
        w,
        key,
    }
}

fn mutations(p: &Proof, rng: &mut Rng) -> Vec<Proof> {
    let mut out = Vec::new();
    let mut m = |f: &mut dyn FnMut(&mut Proof)| {
        let mut q = p.clone();
        f(&mut q);
        if q != *p {
            out.push(q);
        }
    };
    m(&mut |q| q.fork += 1);
    for v in [1u64, 2, 1 << 40, u64::MAX] {
        m(&mut |q| {
            if let Some(b) = &mut q.block {
                b.index = b.index.wrapping_add(v)
            }
        });
        m(&mut |q| {
            if let Some(h) = &mut q.hash {
                h.index = h.index.wrapping_add(v)
            }
        });
        m(&mut |q| {
            if let Some(u) = &mut q.upgrade {
                u.start = u.start.wrapping_add(v)
            }
        });
        m(&mut |q| {
            if let Some(u) = &mut q.upgrade {
                u.length = u.length.wrapping_add(v)
            }
        });
        m(&mut |q| {
            if let Some(u) = &mut q.upgrade {
                u.length = u.length.wrapping_sub(v)
            }
        });
    }
    m(&mut |q| {
        if let Some(b) = &mut q.block {
            b.value.push(0)
        }
    });
    m(&mut |q| {
        if let Some(b) = &mut q.block {
            b.value.pop();
        }
    });
    m(&mut |q| {
        if let Some(b) = &mut q.block {
            if let Some(x) = b.value.first_mut() {
                *x ^= 1
            }
        }
    });
    m(&mut |q| {
        if let Some(u) = &mut q.upgrade {
            u.signature = None
        }
    });
    m(&mut |q| {
        if let Some(u) = &mut q.upgrade {
            if let Some(s) = &mut u.signature {
                s.truncate(s.len() / 2)
            }
        }
    });
    let sig_len = p
        .upgrade
        .as_ref()
        .and_then(|u| u.signature.as_ref())
        .map_or(0, |s| s.len());
    for i in 0..sig_len {
        let bit = 1u8 << rng.below(8);
        m(&mut |q| {
            if let Some(s) = q.upgrade.as_mut().and_then(|u| u.signature.as_mut()) {
                s[i] ^= bit
            }
        });
    }
    m(&mut |q| q.manifest = Some(Manifest::single_signer([9; 32])));
    m(&mut |q| {
        q.manifest = Some(Manifest {
            quorum: 0,
            ..Manifest::single_signer([9; 32])
        })
    });
    // every node of every part
    let shape: Vec<usize> = (0..5).map(|li| list_len(p, li)).collect();
    for (li, n) in shape.iter().enumerate() {
        for ni in 0..*n {
            let edits: [&dyn Fn(&mut Node); 7] = [
                &|x| x.index += 1,
                &|x| x.index = x.index.wrapping_sub(1),
                &|x| x.index ^= 1 << 40,
                &|x| x.size += 1,
                &|x| x.size = u64::MAX,
                &|x| x.hash[0] ^= 1,
                &|x| x.hash[31] ^= 0x80,
            ];
            for e in edits {
                m(&mut |q| {
                    if let Some(x) = list_mut(q, li).and_then(|l| l.get_mut(ni)) {
                        e(x)
                    }
                });
            }
            m(&mut |q| {
                if let Some(l) = list_mut(q, li) {
                    l.remove(ni);
                }
            });
            m(&mut |q| {
                if let Some(l) = list_mut(q, li) {
                    let x = l[ni];
                    l.insert(ni, x);
                }
            });
            if ni + 1 < *n {
                m(&mut |q| {
                    if let Some(l) = list_mut(q, li) {
                        l.swap(ni, ni + 1);
                    }
                });
            }
        }
        m(&mut |q| {
            if let Some(l) = list_mut(q, li) {
                l.push(Node {
                    index: 1,
                    size: 1,
                    hash: [0; 32],
                });
            }
        });
    }
    out
}

fn list_mut(q: &mut Proof, li: usize) -> Option<&mut Vec<Node>> {
    match li {
        0 => q.block.as_mut().map(|b| &mut b.nodes),
        1 => q.hash.as_mut().map(|h| &mut h.nodes),
        2 => q.seek.as_mut().map(|s| &mut s.nodes),
        3 => q.upgrade.as_mut().map(|u| &mut u.nodes),
        _ => q.upgrade.as_mut().map(|u| &mut u.additional_nodes),
    }
}

fn list_len(p: &Proof, li: usize) -> usize {
    let mut q = p.clone();
    list_mut(&mut q, li).map_or(0, |l| l.len())
}

/// A fresh replica of `f`'s core, primed to `start` blocks through `prime`.
fn replica(f: &Fixture, prime: &[Proof]) -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let r = Store::open(d.path()).unwrap();
    r.open_replica(f.key, Some(f.manifest.clone())).unwrap();
    for p in prime {
        r.apply_proof(&f.key, p.clone()).unwrap();
    }
    (d, r)
}

fn state(r: &Store, key: &[u8; 32]) -> (hypercore_engine::Info, Vec<Option<Vec<u8>>>) {
    let info = r.info(key).unwrap();
    let blocks = (0..info.length.min(64))
        .map(|i| r.get(key, i).unwrap())
        .collect();
    (info, blocks)
}

#[test]
fn mutated_genuine_proofs_never_apply_wrongly() {
    let mut rng = Rng(3);
    // writer at 5, then at 13 (same key pair, so the replica can follow)
    let at5 = writer(5);
    let at13 = writer(13);
    let up = |start, length| Some(RequestUpgrade { start, length });
    let p05 = at5
        .w
        .create_proof(
            &at5.key,
            &Request {
                block: Some(RequestBlock { index: 3, nodes: 0 }),
                upgrade: up(0, 5),
                ..Default::default()
            },
        )
        .unwrap();
    let p013 = at13
        .w
        .create_proof(
            &at13.key,
            &Request {
                block: Some(RequestBlock { index: 7, nodes: 2 }),
                upgrade: up(0, 13),
                ..Default::default()
            },
        )
        .unwrap();
    let cases: Vec<(Vec<Proof>, Proof)> = vec![
        (vec![], p05.clone()),
        (
            vec![],
            at13.w
                .create_proof(
                    &at13.key,
                    &Request {
                        upgrade: up(0, 4),
                        ..Default::default()
                    },
                )
                .unwrap(),
        ),
        (
            vec![p05.clone()],
            at13.w
                .create_proof(
                    &at13.key,
                    &Request {
                        block: Some(RequestBlock { index: 9, nodes: 0 }),
                        upgrade: up(5, 8),
                        ..Default::default()
                    },
                )
                .unwrap(),
        ),
        (
            vec![p05.clone()],
            at13.w
                .create_proof(
                    &at13.key,
                    &Request {
                        block: Some(RequestBlock { index: 1, nodes: 1 }),
                        upgrade: up(5, 8),
                        ..Default::default()
                    },
                )
                .unwrap(),
        ),
        (
            vec![p013.clone()],
            at13.w
                .create_proof(
                    &at13.key,
                    &Request {
                        block: Some(RequestBlock { index: 6, nodes: 1 }),
                        ..Default::default()
                    },
                )
                .unwrap(),
        ),
        (
            vec![p013.clone()],
            at13.w
                .create_proof(
                    &at13.key,
                    &Request {
                        hash: Some(RequestBlock {
                            index: 17,
                            nodes: 1,
                        }),
                        ..Default::default()
                    },
                )
                .unwrap(),
        ),
    ];
    let (mut tried, mut accepted) = (0, 0);
    for (ci, (prime, genuine)) in cases.iter().enumerate() {
        // what the genuine proof produces
        let (_gd, g) = replica(&at13, prime);
        g.apply_proof(&at13.key, genuine.clone())
            .unwrap_or_else(|e| panic!("case {ci}: genuine proof refused: {e}"));
        let good = state(&g, &at13.key);
        let (mut _rd, mut r) = replica(&at13, prime);
        let before = state(&r, &at13.key);
        for q in mutations(genuine, &mut rng) {
            tried += 1;
            match r.apply_proof(&at13.key, q.clone()) {
                Err(_) => assert_eq!(
                    state(&r, &at13.key),
                    before,
                    "case {ci}: a refused proof changed state: {q:?}"
                ),
                Ok(_) => {
                    accepted += 1;
                    let now = state(&r, &at13.key);
                    assert_eq!(
                        now.1,
                        good.1.iter().take(now.1.len()).cloned().collect::<Vec<_>>(),
                        "case {ci}: accepted mutation stored wrong blocks: {q:?}"
                    );
                    assert_eq!(
                        (now.0.length, now.0.byte_length),
                        (good.0.length, good.0.byte_length),
                        "case {ci}: accepted mutation changed the tree: {q:?}"
                    );
                    (_rd, r) = replica(&at13, prime);
                }
            }
        }
    }
    eprintln!(
        "{tried} mutated proofs: {accepted} accepted as harmless equivalents, the rest refused"
    );
    assert!(tried > 300);
}

#[test]
fn arbitrary_requests_never_panic() {
    let mut rng = Rng(4);
    let f = writer(37);
    let some = |rng: &mut Rng| {
        (rng.below(2) == 0).then(|| RequestBlock {
            index: rng.interesting(),
            nodes: rng.interesting(),
        })
    };
    for _ in 0..20_000 {
        let req = Request {
            fork: rng.below(2),
            block: some(&mut rng),
            hash: some(&mut rng),
            seek: (rng.below(3) == 0).then(|| hypercore_engine::RequestSeek {
                bytes: rng.interesting(),
                padding: rng.below(3),
            }),
            upgrade: (rng.below(2) == 0).then(|| RequestUpgrade {
                start: rng.interesting(),
                length: rng.interesting(),
            }),
            manifest: rng.below(2) == 0,
        };
        let _ = f.w.create_proof(&f.key, &req);
        let _ = f.w.missing_nodes(&f.key, rng.interesting());
    }
}
