//! The pairing exchange (ALPN `dat-mirror/pair/0`): a laptop that holds an invite code dials
//! the mirror the code names, opens one stream and sends the code's secret; the mirror
//! answers `ok` or the reason it refuses, and closes. The laptop's id is the one the QUIC
//! handshake authenticated, so the mirror lets in exactly the laptop that presented the code.
//!
//! One JSON line each way, both bounded in size and time. The mirror's decision (the invite
//! book) is not here: [`answer`] takes it as a closure, and [`Pairing`], the protocol handler
//! the node's router hands pairing connections to, takes it once the daemon exists (the
//! daemon is built around the node, so the decision is installed after the router starts;
//! a request that comes before is refused with "try again").

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler};
use iroh::{Endpoint, EndpointAddr};
use serde::{Deserialize, Serialize};

use crate::model::invite::Invite;
use crate::model::keys::Key;

/// The ALPN of the pairing exchange.
pub const PAIR_ALPN: &[u8] = b"dat-mirror/pair/0";
/// Largest request or answer read.
const MAX_MESSAGE: usize = 4096;
/// How long either side waits for the other.
const TIMEOUT: Duration = Duration::from_secs(15);
/// How long the laptop tries one address of the invite.
const DIAL_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, Serialize, Deserialize)]
struct PairRequest {
    v: u32,
    secret: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PairAnswer {
    Ok,
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("the invite expired; run `dat-mirror invite` on the mirror for a new one")]
    Expired,
    #[error("cannot reach the mirror {mirror} ({tried}); is `dat-mirror serve` running there, and can this machine reach it? If the address in the invite is wrong, make a new invite with `dat-mirror invite --addr IP:PORT`")]
    Unreachable { mirror: String, tried: String },
    #[error("the mirror refused: {0}")]
    Refused(String),
    #[error("the pairing exchange failed: {0}")]
    Exchange(String),
}

/// Pairs with the mirror of `invite`: tries each address in the code (then the id alone,
/// for address lookup), presents the secret. Returns the address that worked (if any).
pub async fn request(
    endpoint: &Endpoint,
    invite: &Invite,
    now_secs: u64,
) -> Result<Option<SocketAddr>, PairError> {
    if invite.is_expired(now_secs) {
        return Err(PairError::Expired);
    }
    let id = iroh::PublicKey::from_bytes(invite.mirror.as_bytes())
        .map_err(|_| PairError::Exchange("the invite names an invalid mirror id".into()))?;
    let mut tried = Vec::new();
    let candidates: Vec<Option<SocketAddr>> = invite
        .addrs
        .iter()
        .copied()
        .map(Some)
        .chain(std::iter::once(None))
        .collect();
    for addr in candidates {
        let target = match addr {
            Some(a) => EndpointAddr::new(id).with_ip_addr(a),
            None => EndpointAddr::new(id),
        };
        let label = addr.map_or_else(|| "by id".to_string(), |a| a.to_string());
        match tokio::time::timeout(DIAL_TIMEOUT, endpoint.connect(target, PAIR_ALPN)).await {
            Ok(Ok(conn)) => return exchange(&conn, invite).await.map(|()| addr),
            Ok(Err(e)) => tried.push(format!("{label}: {e}")),
            Err(_) => tried.push(format!("{label}: timed out")),
        }
    }
    Err(PairError::Unreachable {
        mirror: invite.mirror.short(),
        tried: tried.join("; "),
    })
}

async fn exchange(conn: &Connection, invite: &Invite) -> Result<(), PairError> {
    let io = |e: &dyn std::fmt::Display| PairError::Exchange(e.to_string());
    let run = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| io(&e))?;
        let mut line = serde_json::to_vec(&PairRequest {
            v: 1,
            secret: hex::encode(invite.secret),
        })
        .map_err(|e| io(&e))?;
        line.push(b'\n');
        send.write_all(&line).await.map_err(|e| io(&e))?;
        send.finish().map_err(|e| io(&e))?;
        let bytes = recv.read_to_end(MAX_MESSAGE).await.map_err(|e| io(&e))?;
        match serde_json::from_slice::<PairAnswer>(&bytes) {
            Ok(PairAnswer::Ok) => Ok(()),
            Ok(PairAnswer::Refused(reason)) => Err(PairError::Refused(reason)),
            Err(e) => Err(PairError::Exchange(format!(
                "the mirror sent a malformed answer: {e}"
            ))),
        }
    };
    let out = tokio::time::timeout(TIMEOUT, run)
        .await
        .unwrap_or_else(|_| Err(PairError::Exchange("the mirror did not answer".into())));
    conn.close(0u32.into(), b"paired");
    out
}

/// The mirror's side: reads one request from `conn` and answers with `decide(laptop, secret)`.
pub async fn answer<F, Fut>(conn: Connection, decide: F)
where
    F: FnOnce(Key, [u8; 16]) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let laptop = Key(*conn.remote_id().as_bytes());
    let run = async {
        let (mut send, mut recv) = conn.accept_bi().await.ok()?;
        let bytes = recv.read_to_end(MAX_MESSAGE).await.ok()?;
        let answer = match parse_request(&bytes) {
            Ok(secret) => match decide(laptop, secret).await {
                Ok(()) => PairAnswer::Ok,
                Err(reason) => PairAnswer::Refused(reason),
            },
            Err(reason) => PairAnswer::Refused(reason),
        };
        let mut line = serde_json::to_vec(&answer).ok()?;
        line.push(b'\n');
        send.write_all(&line).await.ok()?;
        send.finish().ok()?;
        // Wait for the laptop to read the answer and close.
        let _ = tokio::time::timeout(TIMEOUT, conn.closed()).await;
        Some(())
    };
    if tokio::time::timeout(TIMEOUT * 2, run).await.is_err() {
        tracing::debug!(peer = %laptop.short(), "pairing attempt timed out");
    }
}

/// Decides a pairing request: `Ok` pairs the laptop, `Err` refuses it with a reason the
/// laptop shows its user.
type Decide = Arc<
    dyn Fn(Key, [u8; 16]) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync,
>;

/// The pairing protocol's handler for the node's router (ALPN [`PAIR_ALPN`]).
#[derive(Clone, Default)]
pub struct Pairing {
    decide: Arc<OnceLock<Decide>>,
}

impl std::fmt::Debug for Pairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pairing(ready: {})", self.decide.get().is_some())
    }
}

impl Pairing {
    pub fn new() -> Pairing {
        Pairing::default()
    }

    /// Installs the decision (the first call wins; later ones are ignored).
    pub fn answer_with<F, Fut>(&self, decide: F)
    where
        F: Fn(Key, [u8; 16]) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let decide: Decide = Arc::new(move |laptop, secret| Box::pin(decide(laptop, secret)));
        if self.decide.set(decide).is_err() {
            tracing::warn!("pairing: a second decision was installed and ignored");
        }
    }
}

impl ProtocolHandler for Pairing {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let decide = self.decide.get().cloned();
        answer(conn, |laptop, secret| async move {
            match decide {
                Some(decide) => decide(laptop, secret).await,
                None => Err("the mirror is still starting; try again in a moment".into()),
            }
        })
        .await;
        Ok(())
    }
}

fn parse_request(bytes: &[u8]) -> Result<[u8; 16], String> {
    let req: PairRequest = serde_json::from_slice(bytes)
        .map_err(|_| "malformed pairing request (is this a dat-mirror laptop?)".to_string())?;
    if req.v != 1 {
        return Err(format!(
            "pairing version {} is not supported by this mirror; update dat-mirror on both machines",
            req.v
        ));
    }
    let secret = hex::decode(&req.secret).map_err(|_| "malformed invite secret".to_string())?;
    secret
        .try_into()
        .map_err(|_| "malformed invite secret".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_or_are_refused_with_a_reason() {
        let ok = serde_json::to_vec(&PairRequest {
            v: 1,
            secret: hex::encode([5u8; 16]),
        })
        .unwrap();
        assert_eq!(parse_request(&ok).unwrap(), [5u8; 16]);
        assert!(parse_request(b"{}").is_err());
        assert!(parse_request(b"\xff\xfe").is_err());
        assert!(parse_request(br#"{"v":2,"secret":"00"}"#)
            .unwrap_err()
            .contains("version 2"));
        assert!(parse_request(br#"{"v":1,"secret":"0011"}"#).is_err());
        assert!(parse_request(br#"{"v":1,"secret":"zz"}"#).is_err());
    }
}
