//! One hyperswarm connection as the daemon sees it through the bridge: [`BridgeConnection`],
//! the [`Connection`] implementation, and the per-connection state the session's reader shares
//! with it (send credit, the inbox, the close reason).
//!
//! Flow control is byte credit per direction, `window` bytes each: `send` waits until the
//! bridge has handed back credit (it does once the peer's stream took the bytes), and `recv`
//! hands credit back to the bridge as the daemon consumes messages, so neither process buffers
//! more than about a window per connection.

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

use crate::frame::{ToBridge, MAX_MESSAGE};
use crate::transport::{Connection, ConnectionError, ConnectionInfo};

/// State shared by the session's reader and the connection handle.
pub(crate) struct ConnShared {
    state: Mutex<ConnState>,
    notify: Notify,
    /// Bytes received from the bridge and not yet taken by `recv`.
    pub(crate) queued: AtomicUsize,
}

struct ConnState {
    /// Bytes we may still send; may go below zero by at most one message.
    credit: i64,
    closed: Option<String>,
}

impl ConnShared {
    pub(crate) fn new(window: u32) -> Arc<ConnShared> {
        Arc::new(ConnShared {
            state: Mutex::new(ConnState {
                credit: i64::from(window),
                closed: None,
            }),
            notify: Notify::new(),
            queued: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bridge handed back `bytes` of send credit.
    pub(crate) fn add_credit(&self, bytes: u32, window: u32) {
        let mut s = self.lock();
        // Never more than a window: a confused bridge cannot make us buffer more.
        s.credit = (s.credit + i64::from(bytes)).min(i64::from(window));
        drop(s);
        self.notify.notify_waiters();
    }

    /// Marks the connection closed (the first reason wins). Returns whether it was open.
    pub(crate) fn set_closed(&self, reason: impl Into<String>) -> bool {
        let mut s = self.lock();
        let was_open = s.closed.is_none();
        if was_open {
            s.closed = Some(reason.into());
        }
        drop(s);
        self.notify.notify_waiters();
        was_open
    }

    fn closed_reason(&self) -> Option<String> {
        self.lock().closed.clone()
    }
}

/// A connection handed out by [`crate::HyperswarmBridge`].
pub struct BridgeConnection {
    id: u32,
    info: ConnectionInfo,
    window: u32,
    shared: Arc<ConnShared>,
    out: mpsc::UnboundedSender<Bytes>,
    inbox: tokio::sync::Mutex<Inbox>,
}

struct Inbox {
    rx: mpsc::UnboundedReceiver<Bytes>,
    /// Consumed bytes not yet handed back to the bridge as credit.
    consumed: u32,
}

impl BridgeConnection {
    pub(crate) fn new(
        id: u32,
        info: ConnectionInfo,
        window: u32,
        shared: Arc<ConnShared>,
        out: mpsc::UnboundedSender<Bytes>,
        rx: mpsc::UnboundedReceiver<Bytes>,
    ) -> BridgeConnection {
        BridgeConnection {
            id,
            info,
            window,
            shared,
            out,
            inbox: tokio::sync::Mutex::new(Inbox { rx, consumed: 0 }),
        }
    }

    /// The bridge's id of this connection (for logs).
    pub fn id(&self) -> u32 {
        self.id
    }

    fn closed_error(&self) -> ConnectionError {
        ConnectionError::Closed(
            self.shared
                .closed_reason()
                .unwrap_or_else(|| "the bridge stopped".into()),
        )
    }
}

#[async_trait]
impl Connection for BridgeConnection {
    fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    async fn send(&self, msg: Bytes) -> Result<(), ConnectionError> {
        if msg.len() > MAX_MESSAGE {
            return Err(ConnectionError::TooLarge {
                len: msg.len(),
                max: MAX_MESSAGE,
            });
        }
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.shared.lock();
                if let Some(reason) = &s.closed {
                    return Err(ConnectionError::Closed(reason.clone()));
                }
                if s.credit > 0 {
                    // msg.len() <= MAX_MESSAGE < 2^24: fits.
                    s.credit -= msg.len() as i64;
                    break;
                }
            }
            notified.await;
        }
        let frame = ToBridge::Data { conn: self.id, msg }.encode();
        self.out.send(frame).map_err(|_| self.closed_error())
    }

    async fn recv(&self) -> Result<Bytes, ConnectionError> {
        let mut inbox = self.inbox.lock().await;
        let Some(msg) = inbox.rx.recv().await else {
            return Err(self.closed_error());
        };
        self.shared.queued.fetch_sub(msg.len(), Ordering::Relaxed);
        // msg.len() <= MAX_MESSAGE < 2^24.
        inbox.consumed = inbox.consumed.saturating_add(msg.len() as u32);
        if inbox.consumed >= (self.window / 4).max(1) {
            let bytes = std::mem::take(&mut inbox.consumed);
            if bytes > 0 {
                let _ = self.out.send(
                    ToBridge::Credit {
                        conn: self.id,
                        bytes,
                    }
                    .encode(),
                );
            }
        }
        Ok(msg)
    }

    async fn close(&self, reason: &str) {
        if self.shared.set_closed(format!("closed locally: {reason}")) {
            let _ = self.out.send(
                ToBridge::Close {
                    conn: self.id,
                    reason: reason.to_string(),
                }
                .encode(),
            );
        }
    }
}

impl Drop for BridgeConnection {
    fn drop(&mut self) {
        if self.shared.set_closed("closed locally: dropped") {
            let _ = self.out.send(
                ToBridge::Close {
                    conn: self.id,
                    reason: "dropped".into(),
                }
                .encode(),
            );
        }
    }
}
