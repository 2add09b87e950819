//! The session state machine, two of them wired to each other in memory over fake cores:
//! replication both ways, many cores, resume, live updates, capability and proof failures,
//! and hostile-peer limits.

mod common;

use common::fake::{block, Fake};
use hypercore_wire::caps;
use hypercore_wire::messages::{Handshake, Message, Request, RequestBlock};
use hypercore_wire::mux;
use hypercore_wire::session::{
    ChannelCloseReason, CloseReason, CoreOptions, Event, Limits, Session, SessionConfig,
};
use std::collections::HashMap;

const HH: [u8; 64] = [0x42; 64];

struct Peer {
    s: Session,
    cores: HashMap<[u8; 32], (Fake, bool)>,
    events: Vec<Event>,
    closed: Option<CloseReason>,
    max_inflight: usize,
}

impl Peer {
    fn new(is_initiator: bool, hh: &[u8], limits: Limits) -> Self {
        let s = Session::new(SessionConfig {
            is_initiator,
            handshake_hash: hh.to_vec(),
            limits,
        })
        .expect("session");
        Peer {
            s,
            cores: HashMap::new(),
            events: vec![],
            closed: None,
            max_inflight: 0,
        }
    }
    /// Knows `core` (answers the remote's open of it) without opening it first.
    fn know(&mut self, core: &Fake, download: bool) {
        self.cores
            .insert(caps::discovery_key(&core.key()), (core.clone(), download));
    }
    /// Opens `core` on the connection.
    fn open(&mut self, core: &Fake, download: bool) {
        self.know(core, download);
        self.s
            .add_core(core.key(), core.boxed(), CoreOptions { download })
            .expect("add core");
    }
    fn close_reason_or_none(&self) -> Option<CloseReason> {
        self.s.close_reason().cloned()
    }
    fn drain_events(&mut self) {
        while let Some(e) = self.s.poll_event() {
            if let Event::ChannelRequested { discovery_key } = &e {
                match self.cores.get(discovery_key).cloned() {
                    Some((core, download)) => self
                        .s
                        .add_core(core.key(), core.boxed(), CoreOptions { download })
                        .expect("add requested core"),
                    None => self.s.reject_core(discovery_key),
                }
            }
            self.events.push(e);
        }
    }
}

fn step(from: &mut Peer, to: &mut Peer) -> bool {
    let mut moved = false;
    from.drain_events();
    while let Some(frame) = from.s.poll_transmit() {
        moved = true;
        if let Err(reason) = to.s.handle_frame(&frame) {
            to.closed = Some(reason);
            return false;
        }
        to.max_inflight = to.max_inflight.max(to.s.inflight());
        to.drain_events();
        if to.closed.is_some() {
            return false;
        }
    }
    from.drain_events();
    moved
}

fn pump(a: &mut Peer, b: &mut Peer) {
    for _ in 0..100_000 {
        let x = step(a, b);
        let y = step(b, a);
        if (!x && !y) || a.closed.is_some() || b.closed.is_some() {
            return;
        }
    }
    panic!("no quiescence");
}

fn pair() -> (Peer, Peer) {
    (
        Peer::new(true, &HH, Limits::default()),
        Peer::new(false, &HH, Limits::default()),
    )
}

fn caught_up(p: &Peer, core: &Fake) -> Option<u64> {
    p.events.iter().rev().find_map(|e| match e {
        Event::CaughtUp { key, length } if *key == core.key() => Some(*length),
        _ => None,
    })
}

#[test]
fn replicates_a_whole_core_with_upgrade_first_and_64_plus_requests_in_flight() {
    let seeder = Fake::new(1, 1000, 0..1000);
    let reader = Fake::new(1, 0, []);
    let (mut a, mut b) = pair();
    a.open(&seeder, false);
    b.open(&reader, true);
    pump(&mut a, &mut b);
    let r = reader.lock();
    assert_eq!(r.length, 1000);
    assert_eq!(r.blocks.len(), 1000);
    assert!((0..1000).all(|i| r.blocks.get(&i) == Some(&block(1, i))));
    assert!(b.max_inflight >= 64, "max in flight {}", b.max_inflight);
    drop(r);
    assert_eq!(caught_up(&b, &reader), Some(1000));
    assert!(b
        .events
        .iter()
        .any(|e| matches!(e, Event::Upgraded { length: 1000, .. })));
    assert!(a.events.iter().any(|e| matches!(e, Event::Uploaded { .. })));
    assert_eq!(a.closed, None);
    assert_eq!(b.closed, None);
}

#[test]
fn many_cores_both_directions_and_on_demand_channels() {
    let (mut a, mut b) = pair();
    let mut pairs = vec![];
    for seed in 10..16u64 {
        let full = Fake::new(seed, 50 + seed, 0..50 + seed);
        let empty = Fake::new(seed, 0, []);
        if seed % 2 == 0 {
            a.open(&full, false);
            b.know(&empty, true); // b only answers a's open
            pairs.push((empty, 50 + seed));
        } else {
            b.open(&full, false);
            a.open(&empty, true);
            pairs.push((empty, 50 + seed));
        }
    }
    pump(&mut a, &mut b);
    for (core, len) in &pairs {
        let c = core.lock();
        assert_eq!((c.length, c.blocks.len() as u64), (*len, *len));
    }
    assert_eq!(a.s.channel_count(), 6);
    assert_eq!(b.s.channel_count(), 6);
}

#[test]
fn resumes_from_what_is_held() {
    let seeder = Fake::new(2, 300, 0..300);
    let reader = Fake::new(2, 300, 0..120);
    let (mut a, mut b) = pair();
    a.open(&seeder, false);
    b.open(&reader, true);
    pump(&mut a, &mut b);
    let r = reader.lock();
    assert_eq!(r.blocks.len(), 300);
    assert!(
        r.applied.iter().all(|i| *i >= 120),
        "re-fetched held blocks"
    );
    assert_eq!(r.applied.len(), 180);
    assert!(seeder.lock().served.keys().all(|i| *i >= 120));
}

#[test]
fn live_updates_reach_connected_peers() {
    let seeder = Fake::new(3, 10, 0..10);
    let reader = Fake::new(3, 0, []);
    let (mut a, mut b) = pair();
    a.open(&seeder, false);
    b.open(&reader, true);
    pump(&mut a, &mut b);
    assert_eq!(reader.lock().length, 10);
    for round in 1..=3 {
        seeder.append(7);
        a.s.core_updated(&seeder.key());
        pump(&mut a, &mut b);
        let r = reader.lock();
        assert_eq!(r.length, 10 + 7 * round);
        assert_eq!(r.blocks.len() as u64, 10 + 7 * round);
    }
    assert_eq!(caught_up(&b, &reader), Some(31));
}

#[test]
fn a_bad_capability_closes_the_channel_and_nothing_is_stored() {
    let seeder = Fake::new(4, 20, 0..20);
    let reader = Fake::new(4, 0, []);
    let mut a = Peer::new(true, &HH, Limits::default());
    let mut b = Peer::new(false, &[0x43; 64], Limits::default()); // another connection's hash
    a.open(&seeder, false);
    b.open(&reader, true);
    pump(&mut a, &mut b);
    assert_eq!(reader.lock().blocks.len(), 0);
    for p in [&a, &b] {
        assert!(p.events.iter().any(|e| matches!(
            e,
            Event::ChannelClosed {
                reason: ChannelCloseReason::BadCapability,
                ..
            }
        )));
        assert_eq!(p.s.channel_count(), 0);
    }
}

#[test]
fn a_forged_proof_closes_the_channel_and_nothing_is_stored() {
    let seeder = Fake::new(5, 20, 0..20);
    seeder.lock().evil = true;
    let reader = Fake::new(5, 0, []);
    let (mut a, mut b) = pair();
    a.open(&seeder, false);
    b.open(&reader, true);
    pump(&mut a, &mut b);
    assert_eq!(reader.lock().blocks.len(), 0);
    assert!(b.events.iter().any(|e| matches!(
        e,
        Event::ChannelClosed {
            reason: ChannelCloseReason::InvalidProof(_),
            ..
        }
    )));
    assert!(a.events.iter().any(|e| matches!(
        e,
        Event::ChannelClosed {
            reason: ChannelCloseReason::RemoteClosed,
            ..
        }
    )));
}

#[test]
fn an_unknown_core_is_rejected_and_the_opener_hears_it() {
    let seeder = Fake::new(6, 5, 0..5);
    let (mut a, mut b) = pair();
    a.open(&seeder, false);
    pump(&mut a, &mut b);
    assert!(a.events.iter().any(|e| matches!(
        e,
        Event::ChannelClosed {
            reason: ChannelCloseReason::Rejected,
            ..
        }
    )));
    // the id is not reused for a channel the remote never acknowledged; a new open still works
    let other = Fake::new(7, 5, 0..5);
    let empty = Fake::new(7, 0, []);
    b.know(&empty, true);
    a.open(&other, false);
    pump(&mut a, &mut b);
    assert_eq!(empty.lock().blocks.len(), 5);
}

#[test]
fn removing_a_core_closes_its_channel_on_both_sides() {
    let seeder = Fake::new(8, 5, 0..5);
    let reader = Fake::new(8, 0, []);
    let (mut a, mut b) = pair();
    a.open(&seeder, false);
    b.open(&reader, true);
    pump(&mut a, &mut b);
    a.s.remove_core(&seeder.key());
    pump(&mut a, &mut b);
    assert_eq!(a.s.channel_count(), 0);
    assert_eq!(b.s.channel_count(), 0);
    assert!(b.events.iter().any(|e| matches!(
        e,
        Event::ChannelClosed {
            reason: ChannelCloseReason::RemoteClosed,
            ..
        }
    )));
}

#[test]
fn a_sparse_holder_is_asked_with_want_and_answers_with_a_bitfield() {
    let held: Vec<u64> = (0..200).filter(|i| i % 3 == 0).collect();
    let sparse = Fake::new(9, 200, held.clone());
    let (mut a, mut b) = pair();
    a.open(&sparse, false);
    let reader = Fake::new(9, 0, []);
    b.open(&reader, true);
    pump(&mut a, &mut b);
    // only block 0 is contiguous, so the rest is learnt through want → bitfield
    let r = reader.lock();
    assert_eq!(r.length, 200);
    assert_eq!(r.blocks.keys().copied().collect::<Vec<_>>(), held);
}

#[test]
fn unanswered_requests_time_out_after_two_timer_ticks_and_are_asked_again() {
    let seeder = Fake::new(30, 100, 0..100);
    let reader = Fake::new(30, 0, []);
    let (mut a, mut b) = pair();
    a.open(&seeder, false);
    b.open(&reader, true);
    // deliver until b asks for something, then lose what b sends
    for _ in 0..10 {
        step(&mut a, &mut b);
        if b.s.inflight() > 0 {
            break;
        }
        step(&mut b, &mut a);
    }
    while b.s.poll_transmit().is_some() {}
    let before = b.s.inflight();
    assert!(before > 0, "requests in flight");
    b.s.on_timer();
    b.drain_events();
    assert!(!b
        .events
        .iter()
        .any(|e| matches!(e, Event::RequestsTimedOut { .. })));
    b.s.on_timer();
    b.drain_events();
    assert!(b
        .events
        .iter()
        .any(|e| matches!(e, Event::RequestsTimedOut { count, .. } if *count == before)));
    pump(&mut a, &mut b);
    assert_eq!(reader.lock().blocks.len(), 100);
}

// ---- hostile peers: raw frames against one session ----

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

#[test]
fn a_session_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Session>();
}

#[test]
fn a_core_shared_by_two_connections_fetches_each_block_once() {
    let s1 = Fake::new(40, 400, 0..400);
    let s2 = Fake::new(40, 400, 0..400);
    let reader = Fake::new(40, 0, []);
    reader.lock().claiming = true;
    let (mut a1, mut b1) = pair();
    let (mut a2, mut b2) = pair();
    a1.open(&s1, false);
    a2.open(&s2, false);
    b1.open(&reader, true);
    b2.open(&reader, true);
    // interleave the two connections frame by frame
    for _ in 0..10_000 {
        let moved = [
            step(&mut a1, &mut b1),
            step(&mut b1, &mut a1),
            step(&mut a2, &mut b2),
            step(&mut b2, &mut a2),
        ];
        if moved.iter().all(|m| !m) {
            break;
        }
    }
    let r = reader.lock();
    assert_eq!(r.blocks.len(), 400);
    assert_eq!(r.applied.len(), 400, "a block was fetched twice");
    assert!(r.claims.is_empty() && r.bad_releases == 0);
    let served: u32 = [&s1, &s2]
        .iter()
        .map(|s| s.lock().served.values().sum::<u32>())
        .sum();
    assert_eq!(served, 400);
}

#[test]
fn extension_messages_reach_the_other_side() {
    let core = Fake::new(41, 3, 0..3);
    let other = Fake::new(41, 0, []);
    let (mut a, mut b) = pair();
    a.open(&core, false);
    b.open(&other, true);
    pump(&mut a, &mut b);
    a.s.send_extension(&core.key(), "hello", b"world".to_vec());
    pump(&mut a, &mut b);
    assert!(b.events.iter().any(|e| matches!(
        e,
        Event::Extension { name, message, .. } if name == "hello" && message == b"world"
    )));
}
