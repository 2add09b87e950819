//! Test helper: a deterministic PRNG and generators of random, valid messages (numbers below
//! 2^53 so Node's JavaScript numbers hold them exactly).

use hypercore_wire::*;

/// xorshift64*: deterministic, no dependencies.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// A coin flip.
    pub fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
    /// A number exercising every uint width, below 2^53.
    pub fn num(&mut self) -> u64 {
        const EDGES: [u64; 10] = [
            0,
            1,
            0xfc,
            0xfd,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            (1 << 53) - 1,
            300,
        ];
        match self.below(4) {
            0 => EDGES[self.below(EDGES.len() as u64) as usize],
            1 => self.below(256),
            2 => self.below(1 << 20),
            _ => self.below(1 << 53),
        }
    }
    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// 32 random bytes.
    pub fn b32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for b in out.iter_mut() {
            *b = self.next() as u8;
        }
        out
    }
    fn nodes(&mut self) -> Vec<TreeNode> {
        (0..self.below(4))
            .map(|_| TreeNode {
                index: self.num(),
                size: self.num(),
                hash: self.b32(),
            })
            .collect()
    }
    fn signer(&mut self) -> Signer {
        Signer {
            namespace: self.b32(),
            public_key: self.b32(),
        }
    }
    /// A manifest in a form Node encodes the same way.
    pub fn manifest(&mut self) -> Manifest {
        let version = self.below(3);
        let base = Manifest {
            version,
            allow_patch: false,
            quorum: 0,
            signers: vec![],
            prologue: None,
            linked: None,
            user_data: None,
        };
        if version == 0 {
            return match self.below(3) {
                0 => Manifest {
                    prologue: Some(Prologue {
                        hash: self.b32(),
                        length: 0,
                    }),
                    ..base
                },
                1 => Manifest {
                    quorum: 1,
                    signers: vec![self.signer()],
                    ..base
                },
                _ => Manifest {
                    allow_patch: true,
                    quorum: 2,
                    signers: vec![self.signer(), self.signer()],
                    ..base
                },
            };
        }
        Manifest {
            allow_patch: self.bool(),
            quorum: self.below(3),
            signers: (0..self.below(3)).map(|_| self.signer()).collect(),
            prologue: self.bool().then(|| Prologue {
                hash: self.b32(),
                length: self.num(),
            }),
            linked: self
                .bool()
                .then(|| (0..self.below(3)).map(|_| self.b32()).collect()),
            user_data: self.bool().then(|| {
                let n = self.below(40) as usize;
                self.bytes(n)
            }),
            ..base
        }
    }
    /// A random message of type `kind` (0..10).
    pub fn message(&mut self, kind: u64) -> Message {
        match kind {
            0 => Message::Sync(Sync {
                fork: self.num(),
                length: self.num(),
                remote_length: self.num(),
                can_upgrade: self.bool(),
                uploading: self.bool(),
                downloading: self.bool(),
                has_manifest: self.bool(),
                allow_push: self.bool(),
            }),
            1 => Message::Request(Request {
                id: self.num(),
                fork: self.num(),
                block: self.bool().then(|| RequestBlock {
                    index: self.num(),
                    nodes: self.num(),
                }),
                hash: self.bool().then(|| RequestBlock {
                    index: self.num(),
                    nodes: self.num(),
                }),
                seek: self.bool().then(|| RequestSeek {
                    bytes: self.num(),
                    padding: self.num(),
                }),
                upgrade: self.bool().then(|| RequestUpgrade {
                    start: self.num(),
                    length: self.num(),
                }),
                manifest: self.bool(),
                priority: if self.bool() { 0 } else { self.num() },
            }),
            2 => Message::Cancel(Cancel {
                request: self.num(),
            }),
            3 => Message::Data(Box::new(Data {
                request: self.num(),
                fork: self.num(),
                block: self.bool().then(|| {
                    let n = [0, 1, 100, 65536][self.below(4) as usize];
                    DataBlock {
                        index: self.num(),
                        value: self.bytes(n),
                        nodes: self.nodes(),
                    }
                }),
                hash: self.bool().then(|| DataHash {
                    index: self.num(),
                    nodes: self.nodes(),
                }),
                seek: self.bool().then(|| DataSeek {
                    bytes: self.num(),
                    nodes: self.nodes(),
                }),
                upgrade: self.bool().then(|| DataUpgrade {
                    start: self.num(),
                    length: self.num(),
                    nodes: self.nodes(),
                    additional_nodes: self.nodes(),
                    signature: self.bool().then(|| self.bytes(64)),
                }),
                manifest: self.bool().then(|| self.manifest()),
            })),
            4 => Message::NoData(NoData {
                request: self.num(),
                reason: self.below(4),
            }),
            5 | 6 => {
                let w = Want {
                    start: self.num(),
                    length: self.num(),
                    any: self.bool(),
                };
                if kind == 5 {
                    Message::Want(w)
                } else {
                    Message::Unwant(w)
                }
            }
            7 => Message::Bitfield(Bitfield {
                start: self.num(),
                bitfield: (0..self.below(40)).map(|_| self.next() as u32).collect(),
            }),
            8 => Message::Range(Range {
                drop: self.bool(),
                start: self.num(),
                length: if self.bool() { 1 } else { self.num() },
            }),
            _ => Message::Extension(Extension {
                name: ["", "a", "hyperdrive-ext", "ünïcødé"][self.below(4) as usize].into(),
                message: {
                    let n = self.below(60) as usize;
                    self.bytes(n)
                },
            }),
        }
    }
}
