//! The session state machine, two of them wired to each other in memory over fake cores:
//! replication both ways, many cores, resume, live updates, timeouts, shared cores,
//! capability and proof failures (hostile frames: `session_hostile.rs`).

mod common;

use common::fake::{block, Fake};
use common::pair::{pair, pump, step, Peer, HH};
use hypercore_wire::caps;
use hypercore_wire::session::{ChannelCloseReason, Event, Limits, Session};

fn caught_up(p: &Peer, core: &Fake) -> Option<u64> {
    p.events.iter().rev().find_map(|e| match e {
        Event::CaughtUp { key, length } if *key == core.key() => Some(*length),
        _ => None,
    })
}

/// The driver hands `poll_transmit` to a blocking-allowed thread only when
/// `transmit_reads_storage` says so: a call it did not announce must never read storage, and
/// a replication does announce some (or the check says nothing).
#[test]
fn only_an_announced_transmit_reads_storage() {
    let seeder = Fake::new(5, 200, 0..200);
    let reader = Fake::new(5, 0, []);
    let (mut a, mut b) = pair();
    a.open(&seeder, false);
    b.open(&reader, true);
    let (mut announced, mut unannounced) = (0, 0);
    for _ in 0..10_000 {
        let moved_b = step(&mut b, &mut a);
        let mut moved_a = false;
        a.drain_events();
        loop {
            let reads = a.s.transmit_reads_storage();
            let before = seeder.lock().proofs_built;
            let Some(frame) = a.s.poll_transmit() else {
                break;
            };
            moved_a = true;
            let built = seeder.lock().proofs_built - before;
            assert!(
                reads || built == 0,
                "an unannounced transmit built {built} proofs"
            );
            if reads {
                announced += 1;
            } else {
                unannounced += 1;
            }
            b.s.handle_frame(&frame).expect("frame");
            b.drain_events();
        }
        if !moved_a && !moved_b {
            break;
        }
    }
    assert_eq!(reader.lock().blocks.len(), 200);
    assert!(
        announced >= 200,
        "{announced} announced transmits for 200 blocks"
    );
    assert!(
        unannounced > 0,
        "every transmit was announced as reading storage"
    );
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

/// A core removed while the remote's answer to its open is on the way, and another opened at
/// once: the late answer names a closed channel (ignored), never the new one. Before channel
/// ids were quarantined, the freed id was reused at once and the new open named an id the
/// remote still held as undecided: a protocol violation that closed the connection.
#[test]
fn a_core_removed_and_another_opened_before_the_answer_closes_nothing() {
    let (x_seed, x_read) = (Fake::new(40, 5, 0..5), Fake::new(40, 0, []));
    let (y_seed, y_read) = (Fake::new(41, 5, 0..5), Fake::new(41, 0, []));
    let (mut a, mut b) = pair();
    a.know(&x_seed, false);
    a.know(&y_seed, false);
    // b opens X; a accepts it (its open and sync are queued, not yet sent).
    b.open(&x_read, true);
    step(&mut b, &mut a);
    // b drops X before a's answer arrives and opens Y right away.
    b.s.remove_core(&x_read.key());
    b.cores.remove(&caps::discovery_key(&x_read.key()));
    b.open(&y_read, true);
    step(&mut b, &mut a); // a: X closed by the remote, Y accepted
    pump(&mut a, &mut b);
    assert_eq!(a.closed, None);
    assert_eq!(b.closed, None);
    assert_eq!(y_read.lock().blocks.len(), 5);
    assert_eq!(x_read.lock().blocks.len(), 0);
}

/// A reject naming a channel the remote already paired (an answer that crossed an id reuse on
/// a Node peer) is late, not hostile: the channel stays open.
#[test]
fn a_late_reject_of_a_paired_channel_is_ignored() {
    let seeder = Fake::new(42, 5, 0..5);
    let reader = Fake::new(42, 0, []);
    let (mut a, mut b) = pair();
    a.open(&seeder, false);
    b.open(&reader, true);
    pump(&mut a, &mut b);
    assert_eq!(a.s.channel_count(), 1);
    a.s.handle_frame(&hypercore_wire::mux::encode_reject(1))
        .expect("a late reject is not a violation");
    assert_eq!(a.s.channel_count(), 1);
    seeder.append(3);
    a.s.core_updated(&seeder.key());
    pump(&mut a, &mut b);
    assert_eq!(reader.lock().blocks.len(), 8);
}
