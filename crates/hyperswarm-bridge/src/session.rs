//! One run of the bridge process: starts it, sends INIT, waits for READY, then runs the writer
//! (frames to the bridge) and the reader (frames from it: connections, data, credit, request
//! answers) until the process dies, the socket breaks, the bridge misbehaves or we are told to
//! stop. When it ends every open connection is closed with the reason and every pending
//! request fails, so nothing waits forever on a dead bridge.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bridge::{BridgeError, BridgeOptions};
use crate::child::{self, StderrTail};
use crate::connection::{BridgeConnection, ConnShared};
use crate::frame::{read_frame, FromBridge, ToBridge, MAX_MESSAGE};
use crate::transport::{Connection, ConnectionInfo, PublicKey, TransportError};

type Reply = oneshot::Sender<Result<(), String>>;

struct ConnEntry {
    shared: Arc<ConnShared>,
    inbox: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct Tables {
    conns: HashMap<u32, ConnEntry>,
    requests: HashMap<u32, Reply>,
    /// Set when the session ended: later requests fail at once.
    ended: Option<String>,
}

/// A running bridge process.
pub(crate) struct Session {
    pub public_key: PublicKey,
    pub pid: Option<u32>,
    out: mpsc::UnboundedSender<Bytes>,
    tables: Arc<Mutex<Tables>>,
    next_req: AtomicU32,
    stop: CancellationToken,
}

fn lock(t: &Mutex<Tables>) -> std::sync::MutexGuard<'_, Tables> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    /// Starts the process and waits for READY. The handle resolves to why the session ended.
    pub(crate) async fn start(
        opts: &BridgeOptions,
        incoming: mpsc::Sender<Box<dyn Connection>>,
    ) -> Result<(Arc<Session>, JoinHandle<String>), BridgeError> {
        let child::Spawned {
            mut child,
            socket,
            stderr,
        } = child::spawn(opts)?;
        let pid = child.id();
        let (read_half, mut write_half) = socket.into_split();
        let mut reader = BufReader::with_capacity(256 * 1024, read_half);

        let init = serde_json::json!({
            "seed": hex::encode(opts.seed),
            "bootstrap": opts.bootstrap,
            "host": opts.host,
            "firewalled": opts.firewalled,
            "window": opts.window,
        });
        let init = ToBridge::Init(init.to_string().into_bytes()).encode();
        let early = |what: String, stderr: &StderrTail| {
            let tail = stderr.text();
            BridgeError::StartFailed(if tail.is_empty() {
                what
            } else {
                format!("{what}; its stderr:\n{tail}")
            })
        };
        if let Err(e) = write_half.write_all(&init).await {
            return Err(early(format!("could not send INIT: {e}"), &stderr));
        }
        let first = tokio::time::timeout(opts.ready_timeout, read_frame(&mut reader)).await;
        let public_key = match first {
            Ok(Ok(Some(FromBridge::Ready { public_key }))) => public_key,
            Ok(Ok(Some(FromBridge::Fatal { message }))) => {
                // Give stderr a moment to arrive for the report.
                let _ = tokio::time::timeout(Duration::from_millis(500), child.wait()).await;
                return Err(early(format!("the bridge failed: {message}"), &stderr));
            }
            Ok(Ok(Some(other))) => {
                return Err(early(format!("expected READY, got {other:?}"), &stderr))
            }
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                let status = match status {
                    Ok(Ok(s)) => format!("exited ({s})"),
                    _ => "closed its control socket".into(),
                };
                return Err(early(format!("the bridge {status} before READY"), &stderr));
            }
            Err(_) => {
                return Err(early(
                    format!("no READY within {:?}", opts.ready_timeout),
                    &stderr,
                ))
            }
        };

        let (out, out_rx) = mpsc::unbounded_channel::<Bytes>();
        let stop = CancellationToken::new();
        let tables = Arc::new(Mutex::new(Tables::default()));
        let session = Arc::new(Session {
            public_key,
            pid,
            out: out.clone(),
            tables: tables.clone(),
            next_req: AtomicU32::new(1),
            stop: stop.clone(),
        });
        let writer = tokio::spawn(write_loop(write_half, out_rx, stop.clone()));
        let ctx = ReadCtx {
            tables: tables.clone(),
            out,
            incoming,
            window: opts.window,
        };
        let task = tokio::spawn(async move {
            let reason = tokio::select! {
                r = read_loop(&mut reader, &ctx) => {
                    // Say how the process ended, if it did.
                    match tokio::time::timeout(Duration::from_millis(300), child.wait()).await {
                        Ok(Ok(s)) => format!("{r}: the bridge process exited ({s})"),
                        _ => r,
                    }
                }
                s = child.wait() => match s {
                    Ok(s) => format!("the bridge process exited ({s})"),
                    Err(e) => format!("waiting for the bridge process: {e}"),
                },
                _ = stop.cancelled() => "shut down".to_string(),
            };
            // Close our end: the bridge exits when fd 3 closes. Kill it if it lingers.
            stop.cancel();
            drop(reader);
            let _ = writer.await;
            if tokio::time::timeout(Duration::from_secs(3), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
            let tail = stderr.text();
            let reason = if reason != "shut down" && !tail.is_empty() {
                let last = tail.lines().last().unwrap_or_default().to_string();
                format!("{reason}; last stderr line: {last}")
            } else {
                reason
            };
            end_all(&ctx.tables, &reason);
            reason
        });
        Ok((session, task))
    }

    /// Sends a request (JOIN or LEAVE, built with a fresh request id) and waits for its answer.
    pub(crate) async fn request(
        &self,
        build: impl FnOnce(u32) -> ToBridge,
    ) -> Result<(), TransportError> {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut t = lock(&self.tables);
            if let Some(reason) = &t.ended {
                return Err(TransportError::Stopped(reason.clone()));
            }
            t.requests.insert(req, tx);
        }
        if self.out.send(build(req).encode()).is_err() {
            lock(&self.tables).requests.remove(&req);
            return Err(TransportError::Stopped("the bridge stopped".into()));
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(TransportError::Failed(message)),
            Err(_) => Err(TransportError::Stopped(
                lock(&self.tables)
                    .ended
                    .clone()
                    .unwrap_or_else(|| "the bridge stopped".into()),
            )),
        }
    }

    /// Asks the session to end (the process exits when its control socket closes).
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }
}

/// Writes queued frames, batching what is ready into one write.
async fn write_loop(
    mut w: tokio::net::unix::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    stop: CancellationToken,
) {
    let mut buf = Vec::with_capacity(256 * 1024);
    loop {
        let first = tokio::select! {
            f = rx.recv() => f,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        let r = if first.len() >= 64 * 1024 {
            w.write_all(&first).await
        } else {
            buf.clear();
            buf.extend_from_slice(&first);
            while buf.len() < 256 * 1024 {
                match rx.try_recv() {
                    Ok(f) => buf.extend_from_slice(&f),
                    Err(_) => break,
                }
            }
            w.write_all(&buf).await
        };
        if r.is_err() {
            stop.cancel();
            break;
        }
    }
    let _ = w.shutdown().await;
}

struct ReadCtx {
    tables: Arc<Mutex<Tables>>,
    out: mpsc::UnboundedSender<Bytes>,
    incoming: mpsc::Sender<Box<dyn Connection>>,
    window: u32,
}

/// Reads and dispatches frames until the stream ends; returns why it ended.
async fn read_loop(r: &mut BufReader<tokio::net::unix::OwnedReadHalf>, ctx: &ReadCtx) -> String {
    loop {
        let frame = match read_frame(r).await {
            Ok(Some(f)) => f,
            Ok(None) => return "the bridge closed its control socket".into(),
            Err(e) => return format!("bad frame from the bridge: {e}"),
        };
        if let Some(reason) = dispatch(frame, ctx) {
            return reason;
        }
    }
}

fn send_close(ctx: &ReadCtx, conn: u32, reason: &str) {
    let _ = ctx.out.send(
        ToBridge::Close {
            conn,
            reason: reason.into(),
        }
        .encode(),
    );
}

/// Handles one frame; `Some(reason)` ends the session.
fn dispatch(frame: FromBridge, ctx: &ReadCtx) -> Option<String> {
    match frame {
        FromBridge::Ready { .. } => return Some("the bridge sent READY twice".into()),
        FromBridge::Fatal { message } => return Some(format!("the bridge failed: {message}")),
        FromBridge::Done { req } => {
            if let Some(tx) = lock(&ctx.tables).requests.remove(&req) {
                let _ = tx.send(Ok(()));
            }
        }
        FromBridge::Failed { req, message } => {
            if let Some(tx) = lock(&ctx.tables).requests.remove(&req) {
                let _ = tx.send(Err(message));
            }
        }
        FromBridge::Open {
            conn,
            initiator,
            remote_public_key,
            handshake_hash,
        } => {
            let shared = ConnShared::new(ctx.window);
            let (inbox, rx) = mpsc::unbounded_channel();
            {
                let mut t = lock(&ctx.tables);
                if t.conns.contains_key(&conn) {
                    return Some(format!("the bridge opened connection {conn} twice"));
                }
                t.conns.insert(
                    conn,
                    ConnEntry {
                        shared: shared.clone(),
                        inbox,
                    },
                );
            }
            let info = ConnectionInfo {
                remote_public_key,
                handshake_hash,
                is_initiator: initiator,
            };
            tracing::debug!(conn, ?info, "hyperswarm connection");
            let c = BridgeConnection::new(conn, info, ctx.window, shared, ctx.out.clone(), rx);
            if let Err(e) = ctx.incoming.try_send(Box::new(c)) {
                // Dropping the connection closes it with the bridge.
                tracing::warn!(
                    conn,
                    "connection refused: the daemon is not accepting ({e})"
                );
            }
        }
        FromBridge::Data { conn, msg } => {
            let limit = ctx.window as usize + MAX_MESSAGE;
            let mut t = lock(&ctx.tables);
            if let Some(e) = t.conns.get(&conn) {
                let queued = e.shared.queued.fetch_add(msg.len(), Ordering::Relaxed) + msg.len();
                if queued > limit {
                    let reason = "the bridge sent past its credit";
                    e.shared.set_closed(reason);
                    t.conns.remove(&conn);
                    drop(t);
                    send_close(ctx, conn, reason);
                } else if e.inbox.send(msg).is_err() {
                    // The handle is gone (its drop already told the bridge).
                    t.conns.remove(&conn);
                }
            }
        }
        FromBridge::Close { conn, reason } => {
            if let Some(e) = lock(&ctx.tables).conns.remove(&conn) {
                e.shared.set_closed(reason);
            }
        }
        FromBridge::Credit { conn, bytes } => {
            if let Some(e) = lock(&ctx.tables).conns.get(&conn) {
                e.shared.add_credit(bytes, ctx.window);
            }
        }
    }
    None
}

/// Closes every connection and fails every request with `reason`.
fn end_all(tables: &Mutex<Tables>, reason: &str) {
    let mut t = lock(tables);
    t.ended = Some(reason.to_string());
    for (_, e) in t.conns.drain() {
        e.shared.set_closed(format!("the bridge stopped: {reason}"));
    }
    for (_, tx) in t.requests.drain() {
        drop(tx);
    }
}
