//! Entry points for a libFuzzer harness (one line per target in the repository's `fuzz/`
//! workspace, as for dat-mirror's own decoders) and for the fuzz-style tests: each feeds
//! arbitrary bytes to a decoder or a session and panics only if an invariant breaks
//! (a decoded value that does not survive re-encoding).

use crate::encoding::Reader;
use crate::framing::FrameDecoder;
use crate::manifest::Manifest;
use crate::messages::{Handshake, Message};
use crate::mux::{decode_frame, MuxMessage};
use crate::session::{Event, Limits, Session, SessionConfig};

/// Target `hypercore_message`: the first byte picks the message type, the rest is its payload.
pub fn message(data: &[u8]) {
    let Some((kind, payload)) = data.split_first() else {
        return;
    };
    let kind = u64::from(*kind % 12);
    if let Ok(Some(m)) = Message::decode(kind, payload) {
        let again = Message::decode(kind, &m.to_bytes());
        assert_eq!(
            again,
            Ok(Some(m)),
            "a decoded message must survive re-encoding"
        );
    }
}

/// Target `hypercore_manifest`.
pub fn manifest(data: &[u8]) {
    if let Ok(m) = Manifest::decode(&mut Reader::new(data)) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(Manifest::decode(&mut Reader::new(&out)), Ok(m));
    }
    let _ = Handshake::decode(&mut Reader::new(data));
}

/// Target `protomux_frame`: a frame, and every channel message in it.
pub fn frame(data: &[u8]) {
    let mut out = Vec::new();
    if decode_frame(data, 1 << 24, &mut out).is_ok() {
        for m in out {
            if let MuxMessage::Message { kind, payload, .. } = m {
                let mut with_kind = vec![(kind % 256) as u8];
                with_kind.extend_from_slice(payload);
                message(&with_kind);
            }
        }
    }
}

/// Target `stream_framing`: a byte stream cut into frames.
pub fn stream(data: &[u8]) {
    let mut d = FrameDecoder::new(1 << 16);
    for chunk in data.chunks(7) {
        d.push(chunk);
        while let Ok(Some(_)) = d.next_frame() {}
    }
}

/// Target `hypercore_session`: a session (no cores added; every remote open is refused) fed
/// the input as a sequence of 2-byte-length-prefixed frames.
pub fn session(data: &[u8]) {
    let Ok(mut s) = Session::new(SessionConfig {
        push: true,
        is_initiator: data.first().is_some_and(|b| b & 1 == 1),
        handshake_hash: vec![0; 64],
        limits: Limits {
            max_channels: 16,
            max_queued_requests: 64,
            max_buffered_bytes: 1 << 16,
            ..Limits::default()
        },
    }) else {
        return;
    };
    let mut rest = data.get(1..).unwrap_or_default();
    while let [a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*a, *b]));
        let (frame, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        let closed = s.handle_frame(frame).is_err();
        while let Some(e) = s.poll_event() {
            if let Event::ChannelRequested { discovery_key } = e {
                s.reject_core(&discovery_key);
            }
        }
        while s.poll_transmit().is_some() {}
        if closed {
            return;
        }
    }
}
