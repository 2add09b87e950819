//! Test helper: a JSON view of Rust messages with the field names and shapes Node's
//! hypercore 11 decoders produce (buffers as hex), so a Rust decode can be compared with
//! Node's decode of the same bytes.

use hypercore_wire::{Manifest, Message, TreeNode};
use serde_json::{json, Value};

fn hex(b: &[u8]) -> Value {
    Value::String(hex::encode(b))
}

fn nodes(ns: &[TreeNode]) -> Value {
    Value::Array(
        ns.iter()
            .map(|n| json!({"index": n.index, "size": n.size, "hash": hex(&n.hash)}))
            .collect(),
    )
}

fn opt<T>(v: &Option<T>, f: impl Fn(&T) -> Value) -> Value {
    v.as_ref().map(f).unwrap_or(Value::Null)
}

/// Node's decoded view of a manifest.
pub fn manifest(m: &Manifest) -> Value {
    json!({
        "version": m.version,
        "hash": "blake2b",
        "allowPatch": m.allow_patch,
        "quorum": m.quorum,
        "signers": m.signers.iter().map(|s| json!({
            "signature": "ed25519",
            "namespace": hex(&s.namespace),
            "publicKey": hex(&s.public_key),
        })).collect::<Vec<_>>(),
        "prologue": opt(&m.prologue, |p| json!({"hash": hex(&p.hash), "length": p.length})),
        "linked": opt(&m.linked, |l| Value::Array(l.iter().map(|k| hex(k)).collect())),
        "userData": opt(&m.user_data, |u| hex(u)),
    })
}

/// Node's decoded view of a message.
pub fn message(m: &Message) -> Value {
    match m {
        Message::Sync(s) => json!({
            "fork": s.fork, "length": s.length, "remoteLength": s.remote_length,
            "canUpgrade": s.can_upgrade, "uploading": s.uploading, "downloading": s.downloading,
            "hasManifest": s.has_manifest, "allowPush": s.allow_push,
        }),
        Message::Request(r) => json!({
            "id": r.id, "fork": r.fork,
            "block": opt(&r.block, |b| json!({"index": b.index, "nodes": b.nodes})),
            "hash": opt(&r.hash, |b| json!({"index": b.index, "nodes": b.nodes})),
            "seek": opt(&r.seek, |s| json!({"bytes": s.bytes, "padding": s.padding})),
            "upgrade": opt(&r.upgrade, |u| json!({"start": u.start, "length": u.length})),
            "manifest": r.manifest, "priority": r.priority,
        }),
        Message::Cancel(c) => json!({"request": c.request}),
        Message::Data(d) => json!({
            "request": d.request, "fork": d.fork,
            "block": opt(&d.block, |b| json!({"index": b.index, "value": hex(&b.value), "nodes": nodes(&b.nodes)})),
            "hash": opt(&d.hash, |h| json!({"index": h.index, "nodes": nodes(&h.nodes)})),
            "seek": opt(&d.seek, |s| json!({"bytes": s.bytes, "nodes": nodes(&s.nodes)})),
            "upgrade": opt(&d.upgrade, |u| json!({
                "start": u.start, "length": u.length, "nodes": nodes(&u.nodes),
                "additionalNodes": nodes(&u.additional_nodes),
                "signature": opt(&u.signature, |s| hex(s)),
            })),
            "manifest": opt(&d.manifest, manifest),
        }),
        Message::NoData(n) => json!({"request": n.request, "reason": n.reason}),
        Message::Want(w) | Message::Unwant(w) => {
            json!({"start": w.start, "length": w.length, "any": w.any})
        }
        Message::Bitfield(b) => json!({"start": b.start, "bitfield": b.bitfield}),
        Message::Range(r) => json!({"drop": r.drop, "start": r.start, "length": r.length}),
        Message::Extension(e) => json!({"name": e.name, "message": hex(&e.message)}),
    }
}
