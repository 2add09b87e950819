//! Byte-exact interop with Node: hypercore 11's `lib/messages`, protomux 3 and `lib/caps`
//! (pinned in `tests/node/package-lock.json`) encode; the Rust codecs decode to the same values
//! and re-encode the same bytes. Then the Rust codecs encode and Node decodes and re-encodes.
//! Skips loudly without node/npm; fails under `CI=true`.

mod common;

use common::{gen::Rng, node, view};
use hypercore_wire::mux::{self, BatchBuilder, MuxMessage};
use hypercore_wire::{caps, Handshake, Message};
use serde_json::{json, Value};

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn reencode(frame: &[u8], msgs: &[MuxMessage<'_>]) -> Vec<u8> {
    let single = |m: &MuxMessage<'_>| match m {
        MuxMessage::Open {
            remote_id,
            protocol,
            id,
            handshake,
        } => mux::encode_open(*remote_id, protocol, Some(id), handshake),
        MuxMessage::Reject { local_id } => mux::encode_reject(*local_id),
        MuxMessage::Close { remote_id } => mux::encode_close(*remote_id),
        MuxMessage::Message {
            remote_id,
            kind,
            payload,
        } => mux::encode_message(*remote_id, *kind, payload),
        MuxMessage::OpenControl => vec![],
    };
    if frame.starts_with(&[0, 0]) {
        let mut b = BatchBuilder::new();
        for m in msgs {
            match m {
                MuxMessage::Open {
                    remote_id,
                    protocol,
                    id,
                    handshake,
                } => b.open(*remote_id, protocol, Some(id), handshake),
                MuxMessage::Reject { local_id } => b.reject(*local_id),
                MuxMessage::Close { remote_id } => b.close(*remote_id),
                MuxMessage::Message {
                    remote_id,
                    kind,
                    payload,
                } => b.message(*remote_id, *kind, payload),
                MuxMessage::OpenControl => {}
            }
        }
        b.finish()
    } else {
        msgs.first().map(single).unwrap_or_default()
    }
}

fn handshake_of(m: &MuxMessage<'_>) -> Handshake {
    match m {
        MuxMessage::Open { handshake, .. } => {
            Handshake::decode(&mut hypercore_wire::encoding::Reader::new(handshake))
                .expect("handshake decodes")
        }
        other => panic!("expected an open, got {other:?}"),
    }
}

fn decode(frame: &[u8]) -> Vec<MuxMessage<'_>> {
    let mut out = Vec::new();
    mux::decode_frame(frame, 1 << 24, &mut out).expect("frame decodes");
    out
}

#[test]
fn node_encodings_decode_to_the_same_values_and_reencode_byte_identical() {
    if !node::ready() {
        return;
    }
    let gen = node::run("gen", "");

    // hypercore messages
    let messages = gen["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 600);
    for (i, m) in messages.iter().enumerate() {
        let bytes = unhex(&m["hex"]);
        let kind = m["type"].as_u64().expect("type");
        let decoded = Message::decode(kind, &bytes)
            .unwrap_or_else(|e| panic!("#{i} {}: {e}", m["name"]))
            .expect("known type");
        assert_eq!(decoded.name(), m["name"].as_str().unwrap_or_default());
        assert_eq!(view::message(&decoded), m["decoded"], "#{i} decoded view");
        assert_eq!(decoded.to_bytes(), bytes, "#{i} {} re-encoding", m["name"]);
    }

    // protomux frames written by Node
    let dk1 = unhex(&gen["dk1"]);
    let dk2 = unhex(&gen["dk2"]);
    let frames: Vec<Vec<u8>> = gen["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(unhex)
        .collect();
    assert_eq!(frames.len(), 4);
    for f in &frames {
        assert_eq!(
            &reencode(f, &decode(f)),
            f,
            "frame re-encodes byte-identical"
        );
    }
    let f0 = decode(&frames[0]);
    assert!(
        matches!(&f0[..], [MuxMessage::Open { remote_id: 1, protocol, id, .. }]
        if protocol == "hypercore/alpha" && *id == &dk1[..])
    );
    assert_eq!(
        handshake_of(&f0[0]),
        Handshake {
            seeks: true,
            capability: [0xaa; 32]
        }
    );
    let f1 = decode(&frames[1]);
    assert!(matches!(
        &f1[..],
        [MuxMessage::Message {
            remote_id: 1,
            kind: 0,
            ..
        }]
    ));
    let batch = decode(&frames[2]);
    assert_eq!(batch.len(), 5);
    assert!(matches!(&batch[0], MuxMessage::Open { remote_id: 2, id, .. } if *id == &dk2[..]));
    assert_eq!(
        handshake_of(&batch[0]),
        Handshake {
            seeks: false,
            capability: [0xbb; 32]
        }
    );
    let kinds: Vec<(u64, u64)> = batch[1..]
        .iter()
        .map(|m| match m {
            MuxMessage::Message {
                remote_id, kind, ..
            } => (*remote_id, *kind),
            _ => (0, 0),
        })
        .collect();
    assert_eq!(kinds, vec![(1, 1), (1, 8), (2, 0), (1, 9)]);
    if let MuxMessage::Message { payload, .. } = &batch[1] {
        let req = Message::decode(1, payload)
            .expect("request")
            .expect("known");
        assert_eq!(
            view::message(&req),
            json!({"id": 1, "fork": 0, "block": {"index": 3, "nodes": 2}, "hash": null,
                   "seek": null, "upgrade": {"start": 0, "length": 5}, "manifest": true,
                   "priority": 0})
        );
    }
    assert_eq!(decode(&frames[3]), vec![MuxMessage::Close { remote_id: 1 }]);
    let reject = unhex(&gen["rejectFrames"][0]);
    assert_eq!(decode(&reject), vec![MuxMessage::Reject { local_id: 1 }]);
    assert_eq!(mux::encode_reject(1), reject);

    // capabilities and discovery keys
    for c in gen["caps"].as_array().expect("caps") {
        let key: [u8; 32] = unhex(&c["key"]).try_into().expect("32-byte key");
        let hh = unhex(&c["handshakeHash"]);
        let ini = caps::replicate_capability(true, &key, &hh).expect("cap");
        let res = caps::replicate_capability(false, &key, &hh).expect("cap");
        assert_eq!(ini.to_vec(), unhex(&c["initiator"]));
        assert_eq!(res.to_vec(), unhex(&c["responder"]));
        assert!(caps::verify_remote_capability(false, &key, &hh, &ini));
        assert!(caps::verify_remote_capability(true, &key, &hh, &res));
        assert_eq!(
            caps::discovery_key(&key).to_vec(),
            unhex(&c["discoveryKey"])
        );
    }
}

#[test]
fn rust_encodings_decode_in_node_to_the_same_values_and_node_reencodes_them_identically() {
    if !node::ready() {
        return;
    }
    let mut rng = Rng::new(0x5eed);
    let ours: Vec<Message> = (0..800).map(|i| rng.message(i % 10)).collect();
    let key_a = [1u8; 32];
    let key_b = [2u8; 32];
    let dk_a = caps::discovery_key(&key_a);
    let dk_b = caps::discovery_key(&key_b);
    let hs = |seeks, cap| {
        let mut out = Vec::new();
        Handshake {
            seeks,
            capability: cap,
        }
        .encode(&mut out);
        out
    };
    let mut frames = vec![
        mux::encode_open(
            1,
            hypercore_wire::PROTOCOL,
            Some(&dk_a),
            &hs(true, [0x11; 32]),
        ),
        mux::encode_message(1, 0, &ours[0].to_bytes()),
    ];
    let mut batch = BatchBuilder::new();
    batch.open(
        2,
        hypercore_wire::PROTOCOL,
        Some(&dk_b),
        &hs(false, [0x22; 32]),
    );
    for (i, m) in ours.iter().enumerate().take(40).skip(1) {
        batch.message(if i % 3 == 0 { 2 } else { 1 }, m.kind(), &m.to_bytes());
    }
    frames.push(batch.finish());
    frames.push(mux::encode_close(2));

    let input = json!({
        "messages": ours.iter().map(|m| json!({"name": m.name(), "hex": hex::encode(m.to_bytes())})).collect::<Vec<_>>(),
        "frames": frames.iter().map(hex::encode).collect::<Vec<_>>(),
    });
    let res = node::run("check", &input.to_string());
    for (i, (m, r)) in ours
        .iter()
        .zip(res["messages"].as_array().expect("messages"))
        .enumerate()
    {
        assert_eq!(r.get("error"), None, "#{i} Node failed to decode {m:?}");
        assert_eq!(
            r["decoded"],
            view::message(m),
            "#{i} Node's view of {}",
            m.name()
        );
        assert_eq!(
            unhex(&r["reencoded"]),
            m.to_bytes(),
            "#{i} Node re-encoding"
        );
    }

    let events = res["events"].as_array().expect("events");
    assert_eq!(res["destroyed"], json!([]), "Node destroyed the stream");
    let tag_a = &hex::encode(dk_a)[..8];
    let tag_b = &hex::encode(dk_b)[..8];
    let opens: Vec<&Value> = events.iter().filter(|e| e["ev"] == "open").collect();
    assert_eq!(opens.len(), 2);
    assert!(opens.contains(&&json!({"ev": "open", "channel": tag_a,
        "handshake": {"seeks": true, "capability": hex::encode([0x11; 32])}})));
    assert!(opens.contains(&&json!({"ev": "open", "channel": tag_b,
        "handshake": {"seeks": false, "capability": hex::encode([0x22; 32])}})));
    let got: Vec<(String, Value)> = events
        .iter()
        .filter(|e| e["ev"] == "message")
        .map(|e| {
            (
                e["channel"].as_str().unwrap_or_default().to_string(),
                e["msg"].clone(),
            )
        })
        .collect();
    let mut want_a = vec![view::message(&ours[0])];
    let mut want_b = vec![];
    for (i, m) in ours.iter().enumerate().take(40).skip(1) {
        if i % 3 == 0 {
            want_b.push(view::message(m));
        } else {
            want_a.push(view::message(m));
        }
    }
    let on = |tag: &str| -> Vec<Value> {
        got.iter()
            .filter(|(c, _)| c == tag)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(on(tag_a), want_a);
    assert_eq!(on(tag_b), want_b);
    assert!(events.contains(&json!({"ev": "close", "channel": tag_b, "isRemote": true})));
}
