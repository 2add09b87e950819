//! Format core against vectors Node hypercore 11 / corestore 7 / hyperdrive 13 produce in
//! this test run: keys, discovery keys, hashes, signables, manifests, manifest hashes, blobs
//! keys, multisig verdicts, tree hashes, signatures, and proofs (created and verified purely,
//! over an in-memory tree).

mod common;

use common::*;
use hypercore_engine::crypto::{self, KeyPair};
use hypercore_engine::proof::{verify_tree, verify_upgrade};
use hypercore_engine::prove::{create_proof, NodeSource, TreeView};
use hypercore_engine::{Manifest, Node, Result, TreeBatch, TreeHead, Verifier};
use serde_json::Value;
use std::collections::HashMap;

#[test]
fn key_pairs_and_discovery_keys() {
    let Some(v) = vectors() else { return };
    for k in v["keyPairs"].as_array().unwrap() {
        let kp = KeyPair::from_seed(&hex32(&k["seed"]));
        assert_eq!(kp.public_key, hex32(&k["publicKey"]));
        assert_eq!(kp.secret_key().unwrap().to_vec(), hexv(&k["secretKey"]));
        assert_eq!(
            crypto::discovery_key(&kp.public_key),
            hex32(&k["discoveryKey"])
        );
        let again = KeyPair::from_secret_key(&hexv(&k["secretKey"])).unwrap();
        assert_eq!(again.public_key, kp.public_key);
    }
}

#[test]
fn hashes_and_signables() {
    let Some(v) = vectors() else { return };
    let h = &v["hashes"];
    assert_eq!(crypto::leaf_hash(b"hello"), hex32(&h["leafHello"]));
    assert_eq!(crypto::leaf_hash(b""), hex32(&h["leafEmpty"]));
    let a = Node::leaf(0, b"hello").unwrap();
    let b = Node::leaf(1, b"world").unwrap();
    assert_eq!(Node::parent(1, &a, &b).unwrap().hash, hex32(&h["parent"]));
    assert_eq!(Node::parent(1, &b, &a).unwrap().hash, hex32(&h["parent"]));
    assert_eq!(
        crypto::tree_hash(&nodes(&h["treeNodes"])),
        hex32(&h["tree"])
    );
    assert_eq!(crypto::default_namespace(), hex32(&h["defaultNamespace"]));
    assert_eq!(crypto::manifest_namespace(), hex32(&h["manifestNamespace"]));
    for s in v["signables"].as_array().unwrap() {
        let (mh, th, len, fork) = (
            hex32(&s["manifestHash"]),
            hex32(&s["treeHash"]),
            u(&s["length"]),
            u(&s["fork"]),
        );
        assert_eq!(
            crypto::tree_signable(&mh, &th, len, fork),
            hexv(&s["signable"])
        );
        assert_eq!(
            crypto::tree_signable_compat(&th, len, fork, false),
            hexv(&s["compat"])
        );
        assert_eq!(
            crypto::tree_signable_compat(&th, len, fork, true),
            hexv(&s["compatLegacy"])
        );
    }
}

#[test]
fn manifests_hashes_keys_and_blobs_keys() {
    let Some(v) = vectors() else { return };
    for m in v["manifests"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let man = manifest(&m["manifest"]).unwrap();
        let enc = man.encode().unwrap();
        assert_eq!(
            hex::encode(&enc),
            m["encoded"].as_str().unwrap(),
            "{name}: encoding"
        );
        let decoded = Manifest::decode(&enc).unwrap();
        assert_eq!(decoded.encode().unwrap(), enc, "{name}: re-encoding");
        let hash = man.hash().unwrap();
        assert_eq!(hash, hex32(&m["hash"]), "{name}: hash");
        assert_eq!(hash, hex32(&m["key"]), "{name}: key");
        assert_eq!(
            crypto::discovery_key(&hash),
            hex32(&m["discoveryKey"]),
            "{name}: dk"
        );
        match m["blobsKey"].as_str() {
            Some(_) => {
                assert_eq!(
                    man.blobs_key(&hash).unwrap(),
                    Some(hex32(&m["blobsKey"])),
                    "{name}: blobs key"
                );
                assert_eq!(
                    man.content_manifest(&hash),
                    manifest(&m["blobsManifest"]),
                    "{name}: content manifest"
                );
            }
            None => assert_eq!(man.blobs_key(&hash).unwrap(), None),
        }
    }
    let d = &v["drive"];
    let man = manifest(&d["manifest"]).unwrap();
    let key = hex32(&d["key"]);
    assert_eq!(
        man.hash().unwrap(),
        key,
        "hyperdrive 13 db key is its manifest hash"
    );
    assert_eq!(
        man.blobs_key(&key).unwrap(),
        Some(hex32(&d["blobsKey"])),
        "hyperdrive 13 blobs key"
    );
    assert_eq!(man.content_manifest(&key), manifest(&d["blobsManifest"]));
}

#[test]
fn multisig_verdicts_match_node() {
    let Some(v) = vectors() else { return };
    for c in v["multisig"].as_array().unwrap() {
        let man = manifest(&c["manifest"]).unwrap();
        let key = man.hash().unwrap();
        let ver = Verifier::new(&key, Some(&man)).unwrap();
        let head = TreeHead {
            hash: hex32(&c["treeHash"]),
            length: u(&c["length"]),
            fork: u(&c["fork"]),
        };
        let sig = hexv(&c["signature"]);
        assert_eq!(
            ver.verify(&head, Some(&sig)),
            c["valid"].as_bool().unwrap(),
            "{}",
            c["name"]
        );
    }
}

/// A tree in memory: every node a writer computed.
pub struct MemTree {
    pub nodes: HashMap<u64, Node>,
    pub batch: TreeBatch,
}

impl NodeSource for MemTree {
    fn node(&self, index: u64) -> Result<Option<Node>> {
        Ok(self.nodes.get(&index).copied())
    }
}

fn build(core: &Value) -> (MemTree, Verifier, [u8; 32], Option<Manifest>) {
    let key = hex32(&core["key"]);
    let man = manifest(&core["manifest"]);
    let mut batch = TreeBatch::default();
    for b in core["blocks"].as_array().unwrap() {
        batch.append(&hexv(b)).unwrap();
    }
    let nodes = batch.nodes.iter().map(|n| (n.index, *n)).collect();
    let ver = Verifier::new(&key, man.as_ref()).unwrap();
    (MemTree { nodes, batch }, ver, key, man)
}

fn check_core(name: &str, core: &Value) {
    let (tree, ver, key, man) = build(core);
    assert_eq!(
        ver.is_compat(),
        core["compat"].as_bool().unwrap(),
        "{name}: compat verdict"
    );
    let t = &core["tree"];
    assert_eq!(tree.batch.length, u(&t["length"]));
    assert_eq!(tree.batch.byte_length, u(&t["byteLength"]));
    assert_eq!(
        tree.batch.hash(),
        hex32(&t["treeHash"]),
        "{name}: tree hash"
    );
    assert_eq!(crypto::discovery_key(&key), hex32(&core["discoveryKey"]));
    let kp = KeyPair::from_seed(&[u(&core["seed"]) as u8; 32]);
    let head = tree.batch.head();
    let sig = ver.sign(&head, &kp).unwrap();
    assert_eq!(
        hex::encode(&sig),
        t["signature"].as_str().unwrap(),
        "{name}: signature"
    );
    assert!(ver.verify(&head, Some(&sig)));
    if let Some(m) = &man {
        assert!(
            m.matches_key(&key).unwrap(),
            "{name}: manifest belongs to key"
        );
    }
    let view = TreeView {
        roots: &tree.batch.roots,
        length: tree.batch.length,
        byte_length: tree.batch.byte_length,
        fork: 0,
        signature: Some(&sig),
    };
    let blocks: Vec<Vec<u8>> = core["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(hexv)
        .collect();
    for (i, case) in core["proofs"].as_array().unwrap().iter().enumerate() {
        let req = request(&case["request"]);
        let ours = create_proof(&view, &tree, &req);
        if case["proof"].is_null() {
            assert!(
                ours.is_err(),
                "{name} #{i}: Node refused {req:?} ({}), we made {ours:?}",
                case["error"]
            );
            continue;
        }
        let mut ours = ours.unwrap_or_else(|e| panic!("{name} #{i}: {req:?}: {e}"));
        if let Some(b) = ours.block.as_mut() {
            b.value = blocks[b.index as usize].clone();
        }
        let mut theirs = proof(&case["proof"]);
        if !req.manifest {
            theirs.manifest = None;
        } else if ours.manifest.is_none() && theirs.manifest.is_some() {
            ours.manifest = man.clone();
        }
        assert_eq!(
            ours, theirs,
            "{name} #{i}: proof for {req:?} differs from Node's"
        );
        // and Node's proof verifies purely against a replica that has the `start` prefix
        let start = req.upgrade.map(|u| u.start).unwrap_or(tree.batch.length);
        let mut prefix = TreeBatch::default();
        for b in &blocks[..start as usize] {
            prefix.append(b).unwrap();
        }
        let mut out = Vec::new();
        let root = verify_tree(&theirs, &mut out).unwrap();
        if theirs.upgrade.is_some() {
            let mut batch = TreeBatch::new(prefix.roots.clone(), prefix.length, 0).unwrap();
            let consumed = verify_upgrade(&theirs, root, &mut batch, None).unwrap();
            assert!(
                ver.verify(&batch.head(), batch.signature.as_deref()),
                "{name} #{i}: signature"
            );
            if !consumed {
                let r = root.unwrap();
                assert_eq!(
                    tree.nodes.get(&r.index),
                    Some(&r),
                    "{name} #{i}: root is trusted"
                );
            }
        } else if let Some(r) = root {
            assert_eq!(
                tree.nodes.get(&r.index),
                Some(&r),
                "{name} #{i}: root is trusted"
            );
        }
    }
}

#[test]
fn compat_core_tree_signature_and_proofs() {
    let Some(v) = vectors() else { return };
    check_core("compat", &v["compatCore"]);
}

#[test]
fn manifest_core_tree_signature_and_proofs() {
    let Some(v) = vectors() else { return };
    check_core("manifest", &v["manifestCore"]);
}
