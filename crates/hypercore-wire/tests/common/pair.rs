//! Test helper: a peer (a session plus the fake cores it knows) and in-memory wiring of two
//! peers: `step` delivers one side's pending frames, `pump` runs both until quiet. A peer
//! answers the remote's opens of cores it knows and rejects the others.

use super::fake::Fake;
use hypercore_wire::caps;
use hypercore_wire::session::{CloseReason, CoreOptions, Event, Limits, Session, SessionConfig};
use std::collections::HashMap;

pub const HH: [u8; 64] = [0x42; 64];

pub struct Peer {
    pub s: Session,
    pub cores: HashMap<[u8; 32], (Fake, bool)>,
    pub events: Vec<Event>,
    pub closed: Option<CloseReason>,
    pub max_inflight: usize,
}

impl Peer {
    pub fn new(is_initiator: bool, hh: &[u8], limits: Limits) -> Self {
        Self::with_push(is_initiator, hh, limits, false)
    }
    /// A peer whose session is in push mode or not.
    pub fn with_push(is_initiator: bool, hh: &[u8], limits: Limits, push: bool) -> Self {
        let s = Session::new(SessionConfig {
            push,
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
    pub fn know(&mut self, core: &Fake, download: bool) {
        self.cores
            .insert(caps::discovery_key(&core.key()), (core.clone(), download));
    }
    /// Opens `core` on the connection.
    pub fn open(&mut self, core: &Fake, download: bool) {
        self.know(core, download);
        self.s
            .add_core(core.key(), core.boxed(), CoreOptions { download })
            .expect("add core");
    }
    pub fn close_reason_or_none(&self) -> Option<CloseReason> {
        self.s.close_reason().cloned()
    }
    pub fn drain_events(&mut self) {
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

pub fn step(from: &mut Peer, to: &mut Peer) -> bool {
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

pub fn pump(a: &mut Peer, b: &mut Peer) {
    for _ in 0..100_000 {
        let x = step(a, b);
        let y = step(b, a);
        if (!x && !y) || a.closed.is_some() || b.closed.is_some() {
            return;
        }
    }
    panic!("no quiescence");
}

pub fn pair() -> (Peer, Peer) {
    (
        Peer::new(true, &HH, Limits::default()),
        Peer::new(false, &HH, Limits::default()),
    )
}

/// Two connected peers, each in push mode or not.
pub fn pair_with_push(a: bool, b: bool) -> (Peer, Peer) {
    (
        Peer::with_push(true, &HH, Limits::default(), a),
        Peer::with_push(false, &HH, Limits::default(), b),
    )
}
