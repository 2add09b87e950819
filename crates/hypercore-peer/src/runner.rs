//! The async driver of one connection's [`Session`]: a reader task feeds incoming frames, a
//! writer task sends outgoing ones (bounded queues both ways, so a slow peer slows us instead
//! of growing memory), and the loop in between runs the session, its timer, and the peer's
//! control messages (cores added or removed, cores grown elsewhere). Storage work (proof
//! verification, fsyncs) runs in place on a multi-threaded runtime's worker, marked blocking.

use crate::io::FrameIo;
use crate::peer::{ConnectionEnd, Control, Inner, PeerEvent};
use hypercore_wire::session::{ChannelCloseReason, CoreOptions, Event, Session, SessionConfig};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{broadcast, mpsc};

/// Runs `f`, telling a multi-threaded runtime that it may block (disk I/O, fsync).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn short(key: &[u8; 32]) -> String {
    hex::encode(key.get(..4).unwrap_or_default())
}

struct Conn {
    inner: Arc<Inner>,
    id: u64,
    session: Session,
    dirty: HashSet<[u8; 32]>,
    hostile: Option<String>,
}

impl Conn {
    fn add(&mut self, key: [u8; 32]) {
        let Some(reg) = self.inner.core(&key) else {
            return;
        };
        let store = Box::new(self.inner.engine_core(key, &reg));
        let _ = self.session.add_core(
            key,
            store,
            CoreOptions {
                download: reg.download,
            },
        );
    }

    fn events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match &event {
                Event::ChannelRequested { discovery_key } => {
                    match self.inner.key_of(discovery_key) {
                        Some(key) => self.add(key),
                        None => self.session.reject_core(discovery_key),
                    }
                }
                Event::Downloaded { key, .. } | Event::Upgraded { key, .. } => {
                    self.dirty.insert(*key);
                }
                Event::ChannelClosed { key, reason } => match reason {
                    ChannelCloseReason::BadCapability
                    | ChannelCloseReason::InvalidProof(_)
                    | ChannelCloseReason::InvalidRequests => {
                        self.hostile
                            .get_or_insert_with(|| format!("core {}…: {reason}", short(key)));
                    }
                    _ => {}
                },
                _ => {}
            }
            self.inner.emit(PeerEvent::Session {
                conn: self.id,
                event,
            });
        }
        for key in self.dirty.drain() {
            let _ = self.inner.control.send(Control::Updated {
                key,
                from: Some(self.id),
            });
        }
    }

    fn control(&mut self, c: Result<Control, broadcast::error::RecvError>) -> bool {
        match c {
            Ok(Control::Added(key)) => self.add(key),
            Ok(Control::Removed(key)) => self.session.remove_core(&key),
            Ok(Control::Updated { key, from }) => {
                if from != Some(self.id) {
                    self.session.core_updated(&key);
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                for (key, _) in self.inner.cores() {
                    self.session.core_updated(&key);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return false,
        }
        true
    }
}

/// Runs one connection to its end.
pub(crate) async fn run(inner: Arc<Inner>, io: Arc<dyn FrameIo>) -> ConnectionEnd {
    let id = inner.next_conn();
    let link = io.info();
    let end = |reason: String, hostile: bool| ConnectionEnd {
        conn: id,
        remote: link.remote_public_key,
        reason,
        hostile,
    };
    inner.emit(PeerEvent::Connected {
        conn: id,
        remote: link.remote_public_key,
    });
    let session = match Session::new(SessionConfig {
        is_initiator: link.is_initiator,
        handshake_hash: link.handshake_hash.clone(),
        limits: inner.config.limits,
    }) {
        Ok(s) => s,
        Err(e) => {
            io.close(&e.to_string()).await;
            let e = end(e.to_string(), false);
            inner.emit(PeerEvent::Closed(e.clone()));
            return e;
        }
    };
    let mut ctl = inner.control.subscribe();
    let mut conn = Conn {
        inner: inner.clone(),
        id,
        session,
        dirty: HashSet::new(),
        hostile: None,
    };
    for (key, _) in inner.cores() {
        conn.add(key);
    }

    let queue = inner.config.frame_queue.max(1);
    let (in_tx, mut in_rx) = mpsc::channel(queue);
    let reader = {
        let io = io.clone();
        tokio::spawn(async move {
            loop {
                let r = io.recv().await;
                let done = r.is_err();
                if in_tx.send(r).await.is_err() || done {
                    break;
                }
            }
        })
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(queue);
    let writer = {
        let io = io.clone();
        tokio::spawn(async move {
            while let Some(f) = out_rx.recv().await {
                if let Err(e) = io.send(f).await {
                    return e.to_string();
                }
            }
            String::new()
        })
    };
    let mut timer = tokio::time::interval(inner.config.timer);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer.tick().await;

    let outcome: (String, bool) = 'run: loop {
        // Move output to the writer while it has room.
        let mut blocked = false;
        loop {
            match out_tx.try_reserve() {
                Ok(permit) => match blocking(|| conn.session.poll_transmit()) {
                    Some(frame) => permit.send(frame),
                    None => break,
                },
                Err(mpsc::error::TrySendError::Full(())) => {
                    blocked = true;
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(())) => {
                    break 'run ("the transport stopped sending".into(), false);
                }
            }
        }
        conn.events();
        if let Some(reason) = conn.hostile.take() {
            break (reason, true);
        }
        if let Some(reason) = conn.session.close_reason() {
            break (reason.to_string(), true);
        }
        tokio::select! {
            biased;
            c = ctl.recv() => {
                if !conn.control(c) {
                    break ("peer shut down".into(), false);
                }
            }
            msg = in_rx.recv() => match msg {
                Some(Ok(frame)) => {
                    if let Err(reason) = blocking(|| conn.session.handle_frame(&frame)) {
                        conn.events();
                        break (reason.to_string(), true);
                    }
                }
                Some(Err(e)) => break (format!("remote closed: {e}"), false),
                None => break ("remote closed".into(), false),
            },
            permit = out_tx.reserve(), if blocked => match permit {
                Ok(permit) => {
                    if let Some(frame) = blocking(|| conn.session.poll_transmit()) {
                        permit.send(frame);
                    }
                }
                Err(_) => break ("the transport stopped sending".into(), false),
            },
            _ = timer.tick() => conn.session.on_timer(),
        }
    };
    conn.session.close();
    drop(out_tx);
    reader.abort();
    if outcome.1 {
        writer.abort();
    } else {
        let _ = writer.await;
    }
    io.close(&outcome.0).await;
    let e = end(outcome.0, outcome.1);
    tracing::debug!(conn = id, reason = %e.reason, hostile = e.hostile, "connection ended");
    inner.emit(PeerEvent::Closed(e.clone()));
    e
}
