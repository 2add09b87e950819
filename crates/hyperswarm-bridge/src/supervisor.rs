//! The supervisor: watches the running bridge, and when it dies restarts it with capped,
//! jittered exponential back-off, joins every topic again, and reports each step in the
//! status, the events and the log. On cancellation it stops the bridge and waits for it.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

use crate::bridge::{Backoff, BridgeError, BridgeEvent, BridgeStatus, Inner};
use crate::frame::ToBridge;
use crate::session::Session;

/// The delay before restart `attempt` (1-based): `initial * 2^(attempt-1)`, capped at `max`,
/// times a random factor in [0.5, 1.0].
pub(crate) fn delay(b: &Backoff, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let base = b.initial.saturating_mul(1 << exp).min(b.max);
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.5 + (r % 1000) as f64 / 2000.0;
    base.mul_f64(factor)
}

pub(crate) async fn run(
    inner: Arc<Inner>,
    mut session: Arc<Session>,
    mut task: JoinHandle<String>,
) {
    let mut restarts: u64 = 0;
    let mut attempt: u32 = 0;
    'outer: loop {
        let started = Instant::now();
        let reason = tokio::select! {
            r = &mut task => r.unwrap_or_else(|e| format!("session task failed: {e}")),
            _ = inner.cancel.cancelled() => {
                session.stop();
                let _ = (&mut task).await;
                break 'outer;
            }
        };
        inner.set_current(None);
        if inner.cancel.is_cancelled() {
            break;
        }
        tracing::warn!(%reason, "hyperswarm bridge died");
        inner.event(BridgeEvent::Died {
            reason: reason.clone(),
        });
        if started.elapsed() >= inner.opts.backoff.reset_after {
            attempt = 0;
        }
        let mut last_error = reason;
        loop {
            attempt = attempt.saturating_add(1);
            let wait = delay(&inner.opts.backoff, attempt);
            let unavailable = matches!(
                inner.status.borrow().clone(),
                BridgeStatus::Unavailable { .. }
            );
            if !unavailable {
                inner.status.send_replace(BridgeStatus::Restarting {
                    last_error: last_error.clone(),
                    attempt,
                    next_in: wait,
                });
            }
            tracing::info!(attempt, ?wait, "restarting the hyperswarm bridge");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = inner.cancel.cancelled() => break 'outer,
            }
            match start(&inner).await {
                Ok((s, t)) => {
                    restarts += 1;
                    session = s;
                    task = t;
                    inner.set_current(Some(session.clone()));
                    inner.status.send_replace(BridgeStatus::Running {
                        pid: session.pid,
                        restarts,
                    });
                    tracing::info!(pid = ?session.pid, attempt, "hyperswarm bridge restarted");
                    inner.event(BridgeEvent::Restarted {
                        pid: session.pid,
                        attempt,
                    });
                    rejoin(&inner, &session);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "hyperswarm bridge did not start");
                    inner.event(BridgeEvent::StartFailed {
                        error: e.to_string(),
                    });
                    if let Some(fix) = e.fix() {
                        inner.status.send_replace(BridgeStatus::Unavailable {
                            reason: e.to_string(),
                            fix: fix.to_string(),
                        });
                    }
                    last_error = e.to_string();
                }
            }
        }
    }
    inner.set_current(None);
    inner.status.send_replace(BridgeStatus::Stopped);
    inner.event(BridgeEvent::Stopped);
    tracing::info!("hyperswarm bridge stopped");
}

async fn start(inner: &Inner) -> Result<(Arc<Session>, JoinHandle<String>), BridgeError> {
    crate::child::preflight(&inner.opts).await?;
    let (s, t) = Session::start(&inner.opts, inner.incoming_tx.clone()).await?;
    if s.public_key != inner.public_key {
        // Same seed, same key: anything else is a broken bridge.
        s.stop();
        let _ = t.await;
        return Err(BridgeError::StartFailed(
            "the restarted bridge has another public key".into(),
        ));
    }
    Ok((s, t))
}

/// Joins every wanted topic on a new session, in the background.
fn rejoin(inner: &Arc<Inner>, session: &Arc<Session>) {
    for (topic, mode) in inner.topics() {
        let s = session.clone();
        tokio::spawn(async move {
            let r = s
                .request(|req| ToBridge::Join {
                    req,
                    topic,
                    server: mode.server,
                    client: mode.client,
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(topic = %hex::encode(topic), error = %e, "re-join failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            reset_after: Duration::from_secs(60),
        };
        for attempt in 1..40 {
            let d = delay(&b, attempt);
            let base = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(b.max);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
        }
    }
}
