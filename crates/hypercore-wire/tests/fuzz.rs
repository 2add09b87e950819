//! Fuzz-style tests on stable Rust inside `cargo test`: every decoder, and the session, fed
//! random bytes and mutated genuine frames from a deterministic PRNG. They must never panic;
//! whatever decodes must re-encode to something that decodes to the same value.

mod common;

use common::fake::Fake;
use common::gen::Rng;
use hypercore_wire::encoding::Reader;
use hypercore_wire::mux::{self, BatchBuilder, MuxMessage};
use hypercore_wire::session::{CoreOptions, Event, Limits, Session, SessionConfig};
use hypercore_wire::{caps, Handshake, Manifest, Message};

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let n = match rng.below(4) {
        0 => rng.below(8),
        1 => rng.below(64),
        2 => rng.below(600),
        _ => rng.below(5000),
    } as usize;
    // Bias towards small and boundary bytes so length prefixes and flags are exercised.
    (0..n)
        .map(|_| match rng.below(5) {
            0 => [0u8, 1, 0xfc, 0xfd, 0xfe, 0xff][rng.below(6) as usize],
            1 => rng.below(8) as u8,
            _ => rng.next() as u8,
        })
        .collect()
}

fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len() as u64) as usize;
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.below(8);
                }
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len() as u64) as usize;
                b.truncate(i);
            }
            2 => {
                let i = rng.below(b.len() as u64 + 1) as usize;
                let x = [0u8, 0xfd, 0xfe, 0xff, rng.next() as u8][rng.below(5) as usize];
                b.insert(i.min(b.len()), x);
            }
            3 if !b.is_empty() => {
                let i = rng.below(b.len() as u64) as usize;
                if let Some(x) = b.get_mut(i) {
                    *x = 0xff;
                }
            }
            4 if b.len() > 2 => {
                let i = rng.below(b.len() as u64 - 1) as usize;
                let tail: Vec<u8> = b.get(i..).map(<[u8]>::to_vec).unwrap_or_default();
                b.extend_from_slice(&tail);
            }
            _ => {
                let extra = random_bytes(rng);
                b.extend_from_slice(&extra[..extra.len().min(16)]);
            }
        }
    }
    b
}

fn check_message(kind: u64, bytes: &[u8]) {
    if let Ok(Some(m)) = Message::decode(kind, bytes) {
        let again = Message::decode(kind, &m.to_bytes());
        assert_eq!(
            again,
            Ok(Some(m)),
            "re-encoding must decode to the same value"
        );
    }
}

fn genuine_frame(rng: &mut Rng) -> Vec<u8> {
    let kind = rng.below(10);
    let msg = rng.message(kind);
    match rng.below(3) {
        0 => mux::encode_message(1 + rng.below(3), msg.kind(), &msg.to_bytes()),
        1 => {
            let mut b = BatchBuilder::new();
            for _ in 0..1 + rng.below(5) {
                let kind = rng.below(10);
                let m = rng.message(kind);
                b.message(1 + rng.below(3), m.kind(), &m.to_bytes());
            }
            if rng.bool() {
                b.close(1);
            }
            b.finish()
        }
        _ => {
            let mut hs = Vec::new();
            Handshake {
                seeks: rng.bool(),
                capability: rng.b32(),
            }
            .encode(&mut hs);
            mux::encode_open(
                1 + rng.below(3),
                hypercore_wire::PROTOCOL,
                Some(&rng.b32()),
                &hs,
            )
        }
    }
}

#[test]
fn message_decoders_never_panic_on_random_bytes() {
    let mut rng = Rng::new(1);
    for _ in 0..40_000 {
        let bytes = random_bytes(&mut rng);
        check_message(rng.below(12), &bytes);
        let _ = Manifest::decode(&mut Reader::new(&bytes));
        let _ = Handshake::decode(&mut Reader::new(&bytes));
        let mut r = Reader::new(&bytes);
        let _ = r.uint32_array();
        let _ = r.string();
        let _ = r.optional_buffer();
    }
}

#[test]
fn message_decoders_never_panic_on_mutated_genuine_messages() {
    let mut rng = Rng::new(2);
    for _ in 0..40_000 {
        let kind = rng.below(10);
        let genuine = rng.message(kind).to_bytes();
        let bytes = mutate(&mut rng, genuine);
        check_message(kind, &bytes);
        let mut man = Vec::new();
        rng.manifest().encode(&mut man);
        let man = mutate(&mut rng, man);
        if let Ok(m) = Manifest::decode(&mut Reader::new(&man)) {
            let mut again = Vec::new();
            m.encode(&mut again);
            assert_eq!(Manifest::decode(&mut Reader::new(&again)), Ok(m));
        }
    }
}

#[test]
fn frame_decoder_never_panics_on_random_and_mutated_frames() {
    let mut rng = Rng::new(3);
    for i in 0..60_000 {
        let mut out: Vec<MuxMessage<'_>> = Vec::new();
        let frame = if i % 2 == 0 {
            random_bytes(&mut rng)
        } else {
            let g = genuine_frame(&mut rng);
            mutate(&mut rng, g)
        };
        if mux::decode_frame(&frame, 1 << 20, &mut out).is_ok() {
            for m in &out {
                if let MuxMessage::Message { kind, payload, .. } = m {
                    check_message(*kind, payload);
                }
            }
        }
    }
}

fn relay(from: &mut Session, to: &mut Session, rng: &mut Rng) -> bool {
    let Some(f) = from.poll_transmit() else {
        return false;
    };
    let f = if rng.below(20) == 0 {
        mutate(rng, f)
    } else {
        f
    };
    let _ = to.handle_frame(&f);
    while to.poll_event().is_some() {}
    true
}

fn session(is_initiator: bool, rng: &mut Rng) -> (Session, Fake) {
    let mut s = Session::new(SessionConfig {
        push: false,
        is_initiator,
        handshake_hash: vec![7; 64],
        limits: Limits {
            max_channels: 8,
            max_queued_requests: 64,
            max_buffered_bytes: 1 << 16,
            ..Limits::default()
        },
    })
    .expect("session");
    let core = Fake::new(rng.below(3), 40, 0..40);
    s.add_core(core.key(), core.boxed(), CoreOptions { download: true })
        .expect("add");
    (s, core)
}

#[test]
fn a_session_never_panics_on_hostile_frames() {
    let mut rng = Rng::new(4);
    for _ in 0..400 {
        let (mut s, core) = session(false, &mut rng);
        // a genuine open so later messages reach the channel, then noise
        let mut hs = Vec::new();
        Handshake {
            seeks: true,
            capability: caps::replicate_capability(true, &core.key(), &[7; 64]).unwrap_or([0; 32]),
        }
        .encode(&mut hs);
        let dk = caps::discovery_key(&core.key());
        let _ = s.handle_frame(&mux::encode_open(
            1,
            hypercore_wire::PROTOCOL,
            Some(&dk),
            &hs,
        ));
        for _ in 0..60 {
            let frame = match rng.below(3) {
                0 => random_bytes(&mut rng),
                1 => {
                    let kind = rng.below(10);
                    let m = rng.message(kind);
                    mux::encode_message(1, m.kind(), &m.to_bytes())
                }
                _ => {
                    let g = genuine_frame(&mut rng);
                    mutate(&mut rng, g)
                }
            };
            let res = s.handle_frame(&frame);
            while let Some(e) = s.poll_event() {
                if let Event::ChannelRequested { discovery_key } = e {
                    s.reject_core(&discovery_key);
                }
            }
            for _ in 0..4 {
                let _ = s.poll_transmit();
            }
            if res.is_err() {
                assert!(s.close_reason().is_some());
                break;
            }
        }
    }
}

#[test]
fn two_sessions_with_a_corrupting_link_never_panic() {
    let mut rng = Rng::new(5);
    for round in 0..150 {
        let (mut a, _) = session(true, &mut rng);
        let mut b = Session::new(SessionConfig {
            push: false,
            is_initiator: false,
            handshake_hash: vec![7; 64],
            limits: Limits::default(),
        })
        .expect("session");
        let seed = rng.below(3);
        let reader = Fake::new(seed, 0, []);
        let _ = b.add_core(reader.key(), reader.boxed(), CoreOptions { download: true });
        for _ in 0..200 {
            let x = relay(&mut a, &mut b, &mut rng);
            let y = relay(&mut b, &mut a, &mut rng);
            if !x && !y {
                break;
            }
        }
        let _ = round;
    }
}

#[test]
fn the_libfuzzer_entry_points_never_panic_on_random_and_mutated_input() {
    use hypercore_wire::fuzzing;
    let mut rng = Rng::new(6);
    for i in 0..20_000 {
        let data = if i % 2 == 0 {
            random_bytes(&mut rng)
        } else {
            let g = genuine_frame(&mut rng);
            mutate(&mut rng, g)
        };
        fuzzing::message(&data);
        fuzzing::manifest(&data);
        fuzzing::frame(&data);
        fuzzing::stream(&data);
        if i % 10 == 0 {
            // a session input: frames with 2-byte lengths
            let mut input = vec![rng.below(2) as u8];
            for _ in 0..rng.below(6) {
                let g = genuine_frame(&mut rng);
                let f = mutate(&mut rng, g);
                input.extend_from_slice(&(f.len() as u16).to_le_bytes());
                input.extend_from_slice(&f);
            }
            fuzzing::session(&input);
            fuzzing::session(&data);
        }
    }
}
