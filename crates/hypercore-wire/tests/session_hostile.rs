//! Hostile peers against one session, fed hand-made frames: request, channel, want and buffer
//! floods, oversized and malformed frames, protomux id rules, invalid requests, huge bitfields.
//! Each ends with the connection or the channel closed with its reason.

mod common;

use common::fake::Fake;
use common::pair::{Peer, HH};
use hypercore_wire::caps;
use hypercore_wire::messages::{Handshake, Message, Request, RequestBlock};
use hypercore_wire::mux;
use hypercore_wire::session::{ChannelCloseReason, CloseReason, Event, Limits};

fn open_frame(local_id: u64, key: &[u8; 32], is_initiator: bool) -> Vec<u8> {
    let cap = caps::replicate_capability(is_initiator, key, &HH).expect("cap");
    let mut hs = Vec::new();
    Handshake {
        seeks: true,
        capability: cap,
    }
    .encode(&mut hs);
    mux::encode_open(
        local_id,
        hypercore_wire::PROTOCOL,
        Some(&caps::discovery_key(key)),
        &hs,
    )
}

#[test]
fn a_request_flood_closes_the_connection() {
    let core = Fake::new(20, 10, 0..10);
    let limits = Limits {
        max_queued_requests: 100,
        ..Limits::default()
    };
    let mut a = Peer::new(false, &HH, limits);
    a.open(&core, false);
    a.s.handle_frame(&open_frame(1, &core.key(), true))
        .expect("open");
    let mut result = Ok(());
    for id in 1..=101 {
        let r = Message::Request(Request {
            id,
            block: Some(RequestBlock { index: 0, nodes: 0 }),
            ..Request::default()
        });
        result = a.s.handle_frame(&mux::encode_message(1, 1, &r.to_bytes()));
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(CloseReason::RequestFlood(100)));
    assert_eq!(a.s.handle_frame(&[]), Err(CloseReason::RequestFlood(100)));
}

#[test]
fn queued_requests_are_served_and_cancel_removes_them() {
    let core = Fake::new(21, 10, 0..10);
    let mut a = Peer::new(false, &HH, Limits::default());
    a.open(&core, false);
    a.s.handle_frame(&open_frame(1, &core.key(), true))
        .expect("open");
    for id in 1..=5 {
        let r = Message::Request(Request {
            id,
            block: Some(RequestBlock {
                index: id,
                nodes: 0,
            }),
            ..Request::default()
        });
        a.s.handle_frame(&mux::encode_message(1, 1, &r.to_bytes()))
            .expect("request");
    }
    let cancel = Message::Cancel(hypercore_wire::Cancel { request: 3 });
    a.s.handle_frame(&mux::encode_message(1, 2, &cancel.to_bytes()))
        .expect("cancel");
    assert_eq!(a.s.queued_requests(), 4);
    while a.s.poll_transmit().is_some() {}
    assert_eq!(a.s.queued_requests(), 0);
    let served: Vec<u64> = core.lock().served.keys().copied().collect();
    assert_eq!(served, vec![1, 2, 4, 5]);
}

#[test]
fn a_channel_flood_closes_the_connection() {
    let limits = Limits {
        max_channels: 16,
        ..Limits::default()
    };
    let mut a = Peer::new(false, &HH, limits);
    let mut result = Ok(());
    for i in 1..=17u64 {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&i.to_le_bytes());
        result = a.s.handle_frame(&open_frame(i, &key, true));
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(CloseReason::ChannelFlood(16)));
}

#[test]
fn oversized_frames_and_bad_ids_close_the_connection() {
    let limits = Limits {
        max_frame: 1000,
        ..Limits::default()
    };
    let mut a = Peer::new(false, &HH, limits);
    assert_eq!(
        a.s.handle_frame(&vec![1u8; 1001]),
        Err(CloseReason::FrameTooLarge(1001))
    );
    let mut b = Peer::new(false, &HH, Limits::default());
    // protomux lets the remote grow its channel ids by one only
    assert_eq!(
        b.s.handle_frame(&open_frame(5, &[1; 32], true)),
        Err(CloseReason::ProtocolViolation("invalid open message"))
    );
    let mut c = Peer::new(false, &HH, Limits::default());
    let limit = c.s.handle_frame(&{
        let mut f = open_frame(1, &[1; 32], true);
        f.truncate(20);
        f
    });
    assert!(matches!(limit, Err(CloseReason::Malformed(_))));
}

#[test]
fn messages_for_an_undecided_channel_are_buffered_then_bounded() {
    let limits = Limits {
        max_buffered_bytes: 1000,
        ..Limits::default()
    };
    let mut a = Peer::new(false, &HH, limits);
    let key = [9u8; 32];
    a.s.handle_frame(&open_frame(1, &key, true)).expect("open");
    let big = Message::Extension(hypercore_wire::Extension {
        name: "x".into(),
        message: vec![0; 600],
    });
    a.s.handle_frame(&mux::encode_message(1, 9, &big.to_bytes()))
        .expect("first is buffered");
    assert_eq!(
        a.s.handle_frame(&mux::encode_message(1, 9, &big.to_bytes())),
        Err(CloseReason::BufferFlood(1000))
    );
}

fn opened_session(core: &Fake, limits: Limits) -> Peer {
    let mut a = Peer::new(false, &HH, limits);
    a.open(core, false);
    a.s.handle_frame(&open_frame(1, &core.key(), true))
        .expect("open");
    a
}

#[test]
fn a_want_flood_closes_the_connection() {
    let core = Fake::new(22, 10, 0..10);
    let mut a = opened_session(&core, Limits::default());
    let want = Message::Want(hypercore_wire::Want {
        start: 0,
        length: 1,
        any: false,
    });
    let mut result = Ok(());
    for _ in 0..2000 {
        result =
            a.s.handle_frame(&mux::encode_message(1, 5, &want.to_bytes()));
        while a.s.poll_transmit().is_some() {}
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(CloseReason::WantFlood(1024)));
}

#[test]
fn a_huge_adversarial_bitfield_is_processed_in_bounded_time() {
    let core = Fake::new(23, 0, []);
    let mut a = Peer::new(false, &HH, Limits::default());
    a.open(&core, true);
    a.s.handle_frame(&open_frame(1, &core.key(), true))
        .expect("open");
    // 1 Mi words of alternating bits (a 4 MiB frame; the decoder refuses more): only Node's
    // segment size (64 Ki words) is looked at
    let bf = Message::Bitfield(hypercore_wire::Bitfield {
        start: 0,
        bitfield: vec![0x5555_5555; 1 << 20],
    });
    let frame = mux::encode_message(1, 7, &bf.to_bytes());
    let t = std::time::Instant::now();
    a.s.handle_frame(&frame).expect("accepted");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn invalid_requests_close_the_channel_after_the_limit() {
    let core = Fake::new(24, 10, 0..10);
    let mut a = opened_session(&core, Limits::default());
    for id in 1..=64u64 {
        let r = Message::Request(Request {
            id,
            upgrade: Some(hypercore_wire::RequestUpgrade {
                start: 0,
                length: 1000, // beyond the core: the store refuses it as invalid
            }),
            ..Request::default()
        });
        a.s.handle_frame(&mux::encode_message(1, 1, &r.to_bytes()))
            .expect("request");
        while a.s.poll_transmit().is_some() {}
    }
    a.drain_events();
    assert!(a.events.iter().any(|e| matches!(
        e,
        Event::ChannelClosed {
            reason: ChannelCloseReason::InvalidRequests,
            ..
        }
    )));
    assert_eq!(a.close_reason_or_none(), None, "the connection stays up");
}
