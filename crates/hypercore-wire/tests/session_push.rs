//! Push mode (`SessionConfig::push`, Node's `allowPush`): an append reaches a peer that
//! accepts pushes together with its announcement — one delivery of the writer's frames, no
//! request — and only when both sides are in push mode; forged pushes and pushes overtaken
//! by another source behave as the module says.

mod common;

use common::fake::{block, Fake};
use common::pair::{pair_with_push, pump, step, Peer};
use hypercore_wire::session::{ChannelCloseReason, Event};

/// A seeder of 10 blocks on `a`, a reader that caught up with it on `b`.
fn caught_up_pair(seed: u64, push_a: bool, push_b: bool) -> (Fake, Fake, Peer, Peer) {
    let seeder = Fake::new(seed, 10, 0..10);
    let reader = Fake::new(seed, 0, []);
    let (mut a, mut b) = pair_with_push(push_a, push_b);
    a.open(&seeder, false);
    b.open(&reader, true);
    pump(&mut a, &mut b);
    assert_eq!(reader.lock().length, 10);
    (seeder, reader, a, b)
}

fn invalid_proof(p: &Peer) -> bool {
    p.events.iter().any(|e| {
        matches!(
            e,
            Event::ChannelClosed {
                reason: ChannelCloseReason::InvalidProof(_),
                ..
            }
        )
    })
}

#[test]
fn an_append_arrives_with_its_announcement() {
    let (seeder, reader, mut a, mut b) = caught_up_pair(60, true, true);
    for n in [1u64, 1, 3, 40] {
        let before = reader.lock().length;
        seeder.append(n);
        a.s.core_updated(&seeder.key());
        // Only the writer's frames are delivered: the reader never gets to ask. It holds
        // the new length and the first new block (a command, an acknowledgement).
        step(&mut a, &mut b);
        let r = reader.lock();
        assert_eq!(r.length, before + n, "append of {n}");
        assert_eq!(r.blocks.get(&before), Some(&block(60, before)));
        assert_eq!(r.blocks.len() as u64, before + 1, "append of {n}");
        drop(r);
        // The rest of a longer append is requested as usual.
        pump(&mut a, &mut b);
        assert_eq!(reader.lock().blocks.len() as u64, before + n);
    }
    // Each block was served once: nothing pushed was asked for again.
    assert!(seeder.lock().served.values().all(|n| *n == 1));
    assert!(a.closed.is_none() && b.closed.is_none());
}

#[test]
fn without_push_on_both_sides_an_append_waits_for_the_request() {
    for (push_a, push_b) in [(true, false), (false, true), (false, false)] {
        let (seeder, reader, mut a, mut b) = caught_up_pair(61, push_a, push_b);
        seeder.append(1);
        a.s.core_updated(&seeder.key());
        step(&mut a, &mut b);
        assert_eq!(reader.lock().length, 10, "pushed with {push_a}/{push_b}");
        pump(&mut a, &mut b);
        assert_eq!(
            reader.lock().length,
            11,
            "not replicated with {push_a}/{push_b}"
        );
    }
}

#[test]
fn a_forged_push_closes_the_channel_and_stores_nothing() {
    let (seeder, reader, mut a, mut b) = caught_up_pair(63, true, true);
    seeder.lock().evil = true;
    seeder.append(1);
    a.s.core_updated(&seeder.key());
    step(&mut a, &mut b);
    assert!(invalid_proof(&b), "events: {:?}", b.events);
    let r = reader.lock();
    assert_eq!(r.length, 10);
    assert!(!r.blocks.contains_key(&10));
}

#[test]
fn a_push_overtaken_by_another_source_is_dropped_without_blame() {
    // One reader, two writers' copies of the same core on two connections: the first push
    // stores block 10; the second no longer fits (its upgrade starts at 10, the reader is
    // at 11) and is dropped unverified, even though it is forged.
    let s1 = Fake::new(64, 10, 0..10);
    let s2 = Fake::new(64, 10, 0..10);
    let reader = Fake::new(64, 0, []);
    let (mut a1, mut b1) = pair_with_push(true, true);
    let (mut a2, mut b2) = pair_with_push(true, true);
    a1.open(&s1, false);
    a2.open(&s2, false);
    b1.open(&reader, true);
    b2.open(&reader, true);
    pump(&mut a1, &mut b1);
    pump(&mut a2, &mut b2);
    assert_eq!(reader.lock().length, 10);
    s1.append(1);
    s2.append(1);
    s2.lock().evil = true;
    a1.s.core_updated(&s1.key());
    a2.s.core_updated(&s2.key());
    step(&mut a1, &mut b1);
    assert_eq!(reader.lock().length, 11);
    step(&mut a2, &mut b2);
    assert_eq!(
        s2.lock().served.get(&10),
        Some(&1),
        "the second writer pushed"
    );
    assert!(!invalid_proof(&b2), "events: {:?}", b2.events);
    assert_eq!(
        reader.lock().applied.iter().filter(|i| **i == 10).count(),
        1
    );
    assert_eq!(reader.lock().blocks.get(&10), Some(&block(64, 10)));
    assert_eq!(b2.s.channel_count(), 1);
}
