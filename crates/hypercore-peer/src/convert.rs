//! Mapping between the wire's message structs (`hypercore_wire`) and the engine's proof
//! structs (`hypercore_engine`): the same shapes, field for field, minus the wire's request
//! ids and priorities.

use hypercore_engine as engine;
use hypercore_wire as wire;

fn node_to_engine(n: &wire::TreeNode) -> engine::Node {
    engine::Node {
        index: n.index,
        size: n.size,
        hash: n.hash,
    }
}

fn node_to_wire(n: &engine::Node) -> wire::TreeNode {
    wire::TreeNode {
        index: n.index,
        size: n.size,
        hash: n.hash,
    }
}

fn nodes_to_engine(ns: &[wire::TreeNode]) -> Vec<engine::Node> {
    ns.iter().map(node_to_engine).collect()
}

fn nodes_to_wire(ns: &[engine::Node]) -> Vec<wire::TreeNode> {
    ns.iter().map(node_to_wire).collect()
}

/// A wire manifest as the engine's.
pub fn manifest_to_engine(m: &wire::Manifest) -> engine::Manifest {
    engine::Manifest {
        version: m.version,
        allow_patch: m.allow_patch,
        quorum: m.quorum,
        signers: m
            .signers
            .iter()
            .map(|s| engine::Signer {
                namespace: s.namespace,
                public_key: s.public_key,
            })
            .collect(),
        prologue: m.prologue.as_ref().map(|p| engine::Prologue {
            hash: p.hash,
            length: p.length,
        }),
        linked: m.linked.clone(),
        user_data: m.user_data.clone(),
    }
}

/// An engine manifest as the wire's.
pub fn manifest_to_wire(m: &engine::Manifest) -> wire::Manifest {
    wire::Manifest {
        version: m.version,
        allow_patch: m.allow_patch,
        quorum: m.quorum,
        signers: m
            .signers
            .iter()
            .map(|s| wire::Signer {
                namespace: s.namespace,
                public_key: s.public_key,
            })
            .collect(),
        prologue: m.prologue.as_ref().map(|p| wire::Prologue {
            hash: p.hash,
            length: p.length,
        }),
        linked: m.linked.clone(),
        user_data: m.user_data.clone(),
    }
}

/// A wire request as the engine's.
pub fn request_to_engine(r: &wire::Request) -> engine::Request {
    let rb = |b: &wire::RequestBlock| engine::RequestBlock {
        index: b.index,
        nodes: b.nodes,
    };
    engine::Request {
        fork: r.fork,
        block: r.block.as_ref().map(rb),
        hash: r.hash.as_ref().map(rb),
        seek: r.seek.as_ref().map(|s| engine::RequestSeek {
            bytes: s.bytes,
            padding: s.padding,
        }),
        upgrade: r.upgrade.as_ref().map(|u| engine::RequestUpgrade {
            start: u.start,
            length: u.length,
        }),
        manifest: r.manifest,
    }
}

/// An engine proof as the wire's `Data` answering request `request`.
pub fn proof_to_wire(request: u64, p: engine::Proof) -> wire::Data {
    wire::Data {
        request,
        fork: p.fork,
        block: p.block.map(|b| wire::DataBlock {
            index: b.index,
            value: b.value,
            nodes: nodes_to_wire(&b.nodes),
        }),
        hash: p.hash.map(|h| wire::DataHash {
            index: h.index,
            nodes: nodes_to_wire(&h.nodes),
        }),
        seek: p.seek.map(|s| wire::DataSeek {
            bytes: s.bytes,
            nodes: nodes_to_wire(&s.nodes),
        }),
        upgrade: p.upgrade.map(|u| wire::DataUpgrade {
            start: u.start,
            length: u.length,
            nodes: nodes_to_wire(&u.nodes),
            additional_nodes: nodes_to_wire(&u.additional_nodes),
            signature: u.signature,
        }),
        manifest: p.manifest.as_ref().map(manifest_to_wire),
    }
}

/// A wire `Data` as the engine's proof.
pub fn data_to_engine(d: &wire::Data) -> engine::Proof {
    engine::Proof {
        fork: d.fork,
        block: d.block.as_ref().map(|b| engine::DataBlock {
            index: b.index,
            value: b.value.clone(),
            nodes: nodes_to_engine(&b.nodes),
        }),
        hash: d.hash.as_ref().map(|h| engine::DataHash {
            index: h.index,
            nodes: nodes_to_engine(&h.nodes),
        }),
        seek: d.seek.as_ref().map(|s| engine::DataSeek {
            bytes: s.bytes,
            nodes: nodes_to_engine(&s.nodes),
        }),
        upgrade: d.upgrade.as_ref().map(|u| engine::DataUpgrade {
            start: u.start,
            length: u.length,
            nodes: nodes_to_engine(&u.nodes),
            additional_nodes: nodes_to_engine(&u.additional_nodes),
            signature: u.signature.clone(),
        }),
        manifest: d.manifest.as_ref().map(manifest_to_engine),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip() {
        let m = engine::Manifest::single_signer([7; 32]);
        assert_eq!(manifest_to_engine(&manifest_to_wire(&m)), m);
    }
}
