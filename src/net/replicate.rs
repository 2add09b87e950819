//! One core's replication session over one bidirectional stream: the *reader* opens the stream
//! with `Open{discovery_key, capability}` (checked by [`super::engine`]), the *server* answers `Opened{length}` (or `NotFound`) and then
//! answers requests with proofs built by the engine's `create_proof`, which the reader's
//! engine verifies (`apply_proof`) before anything is stored. Many requests are in flight at once;
//! the server pushes `Length` when its core grows, so new versions flow without reconnecting;
//! a reader that restarts simply asks again for the blocks its bitfield lacks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Notify};

use super::wire::{
    engine_request, read_message, write_message, BlockRequest, Message, UpgradeRequest, WireError,
    WireProof, MAX_FRAME, MAX_READER_FRAME,
};
use crate::store::{Core, StoreError};

/// Requests a reader keeps in flight on one stream.
pub const WINDOW: usize = 64;
/// A proof may name at most this many tree nodes (tree depth bound).
const MAX_REQUEST_NODES: u64 = 64;
/// Unanswerable proofs (valid but not applicable) tolerated before giving up on a peer.
const MAX_UNAPPLIED: u32 = 64;
/// How often a reader retries blocks the server said it did not have.
const RETRY_UNAVAILABLE: Duration = Duration::from_secs(2);
/// Requests a reader may send before it has seen their answers. An honest reader sends a
/// request only while it has fewer than `WINDOW` (+1 upgrade) unanswered, so at the server
/// "requests received − answers sent" never exceeds that (plus a little for answers on the
/// way); more is a flood, and ends the session whatever the server's speed.
pub const MAX_IN_FLIGHT: u64 = 2 * WINDOW as u64;
/// Server messages a reader reads ahead of processing them (each up to `MAX_FRAME`).
const READER_READ_AHEAD: usize = 8;
/// Proofs a reader applies in one commit at most (those read ahead, with the one at hand).
const MAX_APPLY_BATCH: usize = READER_READ_AHEAD + 1;

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("peer broke the protocol: {0}")]
    Protocol(String),
    #[error("peer sent a proof that does not verify: {0}")]
    BadProof(String),
    /// This machine could not store (or read) a core; not the peer's fault.
    #[error("local storage: {0}")]
    Storage(StoreError),
    /// Many valid proofs could not be applied (our core moved on meanwhile, e.g. another
    /// peer upgraded it): start the session again.
    #[error("{0} proofs were stale by the time they arrived")]
    Stale(u32),
}

/// A proof that fails its signature or hash check: the peer sent data the core's key did not
/// sign. (Other failures can be a race with another peer and are judged by the caller.)
fn is_forgery(e: &StoreError) -> bool {
    e.is_forgery()
}

impl ReplicationError {
    /// The peer broke the protocol or sent something invalid: drop its connection.
    /// (I/O errors are the connection ending; storage errors are ours.)
    pub fn blames_peer(&self) -> bool {
        match self {
            ReplicationError::Wire(WireError::Io(_)) => false,
            ReplicationError::Wire(_) => true,
            ReplicationError::Protocol(_) | ReplicationError::BadProof(_) => true,
            ReplicationError::Storage(_) | ReplicationError::Stale(_) => false,
        }
    }
}

/// How a reader's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullEnd {
    /// The peer does not have the core (or will not give it to us).
    NotFound,
    /// The peer closed the stream (it stopped, or it is shutting down).
    Closed,
}

/// Serves `core` to a reader whose `Open` has already been read from `recv`.
pub async fn serve<R, W>(core: Arc<Core>, recv: R, mut send: W) -> Result<(), ReplicationError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let mut info_rx = core.subscribe();
    let mut sent_length = info_rx.borrow_and_update().length;
    write_message(
        &mut send,
        &Message::Opened {
            length: sent_length,
            fork: 0,
        },
    )
    .await?;
    let answered = Arc::new(AtomicU64::new(0));
    // Room for every request an honest reader may have in flight, so that reading never
    // waits on answering and a flood is seen (requests are a few bytes each).
    let queue = MAX_IN_FLIGHT as usize + 1;
    let flood = Arc::new(Notify::new());
    let mut incoming = spawn_reader(
        recv,
        MAX_READER_FRAME,
        queue,
        Some((answered.clone(), flood.clone())),
    );
    // A flood ends the session even while an answer waits for the reader to make room
    // (a peer that sends requests and never reads the answers).
    let session = async move {
        loop {
            tokio::select! {
                msg = incoming.recv() => {
                    let msg = match msg {
                        None => return Ok(()),
                        Some(Err(e)) => return Err(e.into()),
                        Some(Ok(m)) => m,
                    };
                    let Message::Request { id, block, upgrade } = msg else {
                        return Err(ReplicationError::Protocol(format!("unexpected message from reader: {msg:?}")));
                    };
                    let reply = answer(&core, id, block, upgrade).await?;
                    write_message(&mut send, &reply).await?;
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                changed = info_rx.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let length = info_rx.borrow_and_update().length;
                    if length > sent_length {
                        sent_length = length;
                        write_message(&mut send, &Message::Length { length, fork: 0 }).await?;
                    }
                }
            }
        }
    };
    tokio::select! {
        biased;
        _ = flood.notified() => Err(WireError::Flood(MAX_IN_FLIGHT).into()),
        r = session => r,
    }
}

async fn answer(
    core: &Arc<Core>,
    id: u64,
    block: Option<BlockRequest>,
    upgrade: Option<UpgradeRequest>,
) -> Result<Message, ReplicationError> {
    let length = core.info().length;
    let block_ok = block.is_none_or(|b| b.index < length && core.has(b.index));
    let upgrade_ok = upgrade.is_none_or(|u| {
        u.length > 0
            && u.start <= length
            && u.start
                .checked_add(u.length)
                .is_some_and(|end| end <= length)
    });
    if !block_ok || !upgrade_ok || (block.is_none() && upgrade.is_none()) {
        return Ok(Message::NoData { id });
    }
    let req = engine_request(block, upgrade, MAX_REQUEST_NODES);
    let c = core.clone();
    let proof = tokio::task::spawn_blocking(move || c.create_proof_blocking(&req))
        .await
        .map_err(|e| ReplicationError::Storage(StoreError::Task(e.to_string())))?;
    match proof {
        Ok(proof) => Ok(Message::Data {
            id,
            proof: WireProof::from_proof(&proof),
        }),
        Err(e) => {
            tracing::debug!(core = %core.key().short(), "cannot answer request {id}: {e}");
            Ok(Message::NoData { id })
        }
    }
}

/// Reads frames of at most `max_frame` bytes on a task of its own (reading is not
/// cancel-safe, so it never sits in a `select!`), handing them over a channel of `queue`
/// messages. With `answered` (server side), a peer that has more than `MAX_IN_FLIGHT`
/// requests unanswered is flooding, and the session ends.
fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(
    mut recv: R,
    max_frame: usize,
    queue: usize,
    answered: Option<(Arc<AtomicU64>, Arc<Notify>)>,
) -> mpsc::Receiver<Result<Message, WireError>> {
    let (tx, rx) = mpsc::channel(queue);
    tokio::spawn(async move {
        let mut received: u64 = 0;
        loop {
            match read_message(&mut recv, max_frame).await {
                Ok(Some(m)) => {
                    if let Some((answered, flood)) = &answered {
                        received += 1;
                        let unanswered = received.saturating_sub(answered.load(Ordering::SeqCst));
                        if unanswered > MAX_IN_FLIGHT {
                            flood.notify_one();
                            return;
                        }
                    }
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    rx
}

enum Pending {
    Block(u64),
    Upgrade,
}

/// Fetches `core` from the server at the other end of the stream, verifying every proof,
/// then keeps following it (new versions) until the server closes the stream. `capability`
/// proves to the server that we know the core's key (see [`super::capability`]).
pub async fn pull<R, W>(
    core: Arc<Core>,
    capability: [u8; 32],
    recv: R,
    mut send: W,
) -> Result<PullEnd, ReplicationError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    write_message(
        &mut send,
        &Message::Open {
            discovery_key: core.discovery_key(),
            capability,
        },
    )
    .await?;
    let mut incoming = spawn_reader(recv, MAX_FRAME, READER_READ_AHEAD, None);
    let mut remote_length = match incoming.recv().await {
        None => return Ok(PullEnd::Closed),
        Some(Err(e)) => return Err(e.into()),
        Some(Ok(Message::NotFound)) => return Ok(PullEnd::NotFound),
        Some(Ok(Message::Opened { length, .. })) => {
            core.note_remote_length(length);
            length
        }
        Some(Ok(other)) => {
            return Err(ReplicationError::Protocol(format!(
                "expected Opened, got {other:?}"
            )))
        }
    };

    let mut pending: HashMap<u64, Pending> = HashMap::new();
    // The local length when each request was sent: a proof that fails to apply after the
    // core changed (another peer upgraded it meanwhile) is stale, not forged.
    let mut sent_at: HashMap<u64, u64> = HashMap::new();
    let mut requested: HashSet<u64> = HashSet::new();
    let mut unavailable: HashSet<u64> = HashSet::new();
    let mut next_id: u64 = 0;
    let mut cursor: u64 = 0;
    let mut unapplied: u32 = 0;
    let mut upgrade_refused = false;
    let mut retry = tokio::time::interval(RETRY_UNAVAILABLE);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        // Send what we can: an upgrade when idle and behind, else block requests.
        {
            let local_length = core.info().length;
            if pending.is_empty() && remote_length > local_length && !upgrade_refused {
                let id = next_id;
                next_id += 1;
                let upgrade = UpgradeRequest {
                    start: local_length,
                    length: remote_length - local_length,
                };
                pending.insert(id, Pending::Upgrade);
                sent_at.insert(id, local_length);
                write_message(
                    &mut send,
                    &Message::Request {
                        id,
                        block: None,
                        upgrade: Some(upgrade),
                    },
                )
                .await?;
            } else if !pending.values().any(|p| matches!(p, Pending::Upgrade)) {
                let mut batch = Vec::new();
                while pending.len() + batch.len() < WINDOW && cursor < local_length {
                    let index = cursor;
                    cursor += 1;
                    if core.has(index) || requested.contains(&index) || unavailable.contains(&index)
                    {
                        continue;
                    }
                    let nodes = core
                        .missing_nodes(index)
                        .map_err(ReplicationError::Storage)?;
                    batch.push((index, nodes));
                }
                for (index, nodes) in batch {
                    let id = next_id;
                    next_id += 1;
                    pending.insert(id, Pending::Block(index));
                    sent_at.insert(id, local_length);
                    requested.insert(index);
                    let block = Some(BlockRequest { index, nodes });
                    write_message(
                        &mut send,
                        &Message::Request {
                            id,
                            block,
                            upgrade: None,
                        },
                    )
                    .await?;
                }
            }
        }

        tokio::select! {
            msg = incoming.recv() => {
                let msg = match msg {
                    None => return Ok(PullEnd::Closed),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(m)) => m,
                };
                // Messages already read ahead are handled with this one: their proofs are
                // applied in one commit.
                let mut msgs = vec![msg];
                let mut read_error = None;
                while msgs.len() < MAX_APPLY_BATCH {
                    match incoming.try_recv() {
                        Ok(Ok(m)) => msgs.push(m),
                        Ok(Err(e)) => {
                            read_error = Some(e);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut proofs = Vec::new();
                let mut sent_then = Vec::new();
                for msg in msgs {
                    match msg {
                        Message::Length { length, .. } => {
                            if length > remote_length {
                                core.note_remote_length(length);
                                remote_length = length;
                                upgrade_refused = false;
                            }
                        }
                        Message::Data { id, proof } => {
                            let Some(what) = pending.remove(&id) else {
                                return Err(ReplicationError::Protocol(format!("answer to unknown request {id}")));
                            };
                            let length_then = sent_at.remove(&id).unwrap_or(0);
                            if let Pending::Block(index) = what {
                                requested.remove(&index);
                            }
                            let proof = proof.to_proof()?;
                            if let (Pending::Block(index), Some(b)) = (&what, &proof.block) {
                                if b.index != *index {
                                    return Err(ReplicationError::Protocol(format!("asked for block {index}, got {}", b.index)));
                                }
                            }
                            if matches!(what, Pending::Upgrade) && proof.upgrade.is_none() {
                                return Err(ReplicationError::Protocol("upgrade answer without an upgrade".into()));
                            }
                            proofs.push(proof);
                            sent_then.push(length_then);
                        }
                        Message::NoData { id } => {
                            sent_at.remove(&id);
                            match pending.remove(&id) {
                                Some(Pending::Block(index)) => {
                                    requested.remove(&index);
                                    unavailable.insert(index);
                                }
                                Some(Pending::Upgrade) => upgrade_refused = true,
                                None => return Err(ReplicationError::Protocol(format!("answer to unknown request {id}"))),
                            }
                        }
                        other => return Err(ReplicationError::Protocol(format!("unexpected message from server: {other:?}"))),
                    }
                }
                let results = if proofs.is_empty() {
                    Vec::new()
                } else {
                    core.apply_proofs(proofs).await
                };
                for (result, length_then) in results.into_iter().zip(sent_then) {
                    let applied = match result {
                        Ok(applied) => applied,
                        Err(e) if e.is_storage_fault() => return Err(ReplicationError::Storage(e)),
                        Err(e) if is_forgery(&e) => {
                            return Err(ReplicationError::BadProof(e.to_string()));
                        }
                        Err(e) => {
                            // Not provably the peer's fault: a race with another peer
                            // (our core moved on since the request). Counted, not blamed.
                            tracing::debug!(core = %core.key().short(), "proof not applied (sent at length {length_then}): {e}");
                            false
                        }
                    };
                    if !applied {
                        unapplied += 1;
                        if unapplied > MAX_UNAPPLIED {
                            return Err(ReplicationError::Stale(unapplied));
                        }
                    }
                }
                if let Some(e) = read_error {
                    return Err(e.into());
                }
            }
            _ = retry.tick(), if !unavailable.is_empty() || upgrade_refused => {
                unavailable.clear();
                upgrade_refused = false;
                cursor = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::wire::read_message;
    use crate::store::CoreStore;

    async fn pair() -> (tempfile::TempDir, Arc<Core>, Arc<Core>) {
        let dir = tempfile::tempdir().unwrap();
        let a = CoreStore::new(&dir.path().join("a")).unwrap();
        let b = CoreStore::new(&dir.path().join("b")).unwrap();
        let signing = hypercore_engine::KeyPair::generate().unwrap();
        let writer = a.open_or_create_writable(&signing).await.unwrap();
        let reader = b.open_or_create_replica(&writer.key()).await.unwrap();
        (dir, writer, reader)
    }

    /// Connects a reader and a server through in-memory pipes (the real transport is
    /// exercised by the integration tests).
    fn connect(
        writer: Arc<Core>,
        reader: Arc<Core>,
    ) -> tokio::task::JoinHandle<Result<PullEnd, ReplicationError>> {
        let (r_to_s_w, r_to_s_r) = tokio::io::duplex(1 << 20);
        let (s_to_r_w, s_to_r_r) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let mut recv = r_to_s_r;
            let open = read_message(&mut recv, MAX_READER_FRAME)
                .await
                .unwrap()
                .unwrap();
            assert!(
                matches!(open, Message::Open { discovery_key, .. } if discovery_key == writer.discovery_key())
            );
            let _ = serve(writer, recv, s_to_r_w).await;
        });
        tokio::spawn(pull(reader, [0; 32], s_to_r_r, r_to_s_w))
    }

    async fn wait_for(core: &Core, length: u64) {
        let mut rx = core.subscribe();
        tokio::time::timeout(
            Duration::from_secs(30),
            rx.wait_for(|i| i.length == length && i.complete()),
        )
        .await
        .expect("replication timed out")
        .unwrap();
    }

    #[tokio::test]
    async fn replicates_blocks_of_every_size_and_live_appends() {
        let (_dir, writer, reader) = pair().await;
        let blocks: Vec<Vec<u8>> = (0..40)
            .map(|i| vec![i as u8; [1, 1000, 65536, 1 << 20][i % 4]])
            .collect();
        writer.append_batch(&blocks).await.unwrap();
        let _session = connect(writer.clone(), reader.clone());
        wait_for(&reader, 40).await;
        for (i, b) in blocks.iter().enumerate() {
            assert_eq!(&reader.get(i as u64).await.unwrap().unwrap(), b);
        }
        // A new version arrives on the same stream.
        writer.append(b"live").await.unwrap();
        wait_for(&reader, 41).await;
        assert_eq!(reader.get(40).await.unwrap().unwrap(), b"live");
    }

    #[tokio::test]
    async fn unknown_core_is_not_found() {
        let (_dir, writer, reader) = pair().await;
        let (r_to_s_w, mut r_to_s_r) = tokio::io::duplex(1 << 16);
        let (mut s_to_r_w, s_to_r_r) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let _ = read_message(&mut r_to_s_r, MAX_READER_FRAME).await;
            write_message(&mut s_to_r_w, &Message::NotFound)
                .await
                .unwrap();
        });
        drop(writer);
        assert_eq!(
            pull(reader, [0; 32], s_to_r_r, r_to_s_w).await.unwrap(),
            PullEnd::NotFound
        );
    }

    #[tokio::test]
    async fn forged_proofs_are_refused_and_nothing_is_stored() {
        // A server that answers with proofs from a *different* core of the same shape.
        let (_dir, writer, reader) = pair().await;
        let dir2 = tempfile::tempdir().unwrap();
        let other_store = CoreStore::new(dir2.path()).unwrap();
        let impostor = other_store
            .open_or_create_writable(&hypercore_engine::KeyPair::generate().unwrap())
            .await
            .unwrap();
        writer.append(b"real").await.unwrap();
        impostor.append(b"fake").await.unwrap();
        let (r_to_s_w, r_to_s_r) = tokio::io::duplex(1 << 20);
        let (s_to_r_w, s_to_r_r) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let mut recv = r_to_s_r;
            let _ = read_message(&mut recv, MAX_READER_FRAME).await;
            let _ = serve(impostor, recv, s_to_r_w).await;
        });
        let end = pull(reader.clone(), [0; 32], s_to_r_r, r_to_s_w).await;
        assert!(matches!(end, Err(ReplicationError::BadProof(_))), "{end:?}");
        assert_eq!(reader.info().length, 0);
        assert_eq!(reader.get(0).await.unwrap(), None);
    }

    #[tokio::test]
    async fn reader_resumes_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = CoreStore::new(&dir.path().join("a")).unwrap();
        let signing = hypercore_engine::KeyPair::generate().unwrap();
        let writer = a.open_or_create_writable(&signing).await.unwrap();
        let blocks: Vec<Vec<u8>> = (0..300).map(|i| vec![(i % 251) as u8; 65536]).collect();
        writer.append_batch(&blocks).await.unwrap();
        let key = writer.key();
        {
            let b = CoreStore::new(&dir.path().join("b")).unwrap();
            let reader = b.open_or_create_replica(&key).await.unwrap();
            let session = connect(writer.clone(), reader.clone());
            let mut rx = reader.subscribe();
            tokio::time::timeout(
                Duration::from_secs(30),
                rx.wait_for(|i| i.held_blocks >= 50),
            )
            .await
            .unwrap()
            .unwrap();
            session.abort();
            let _ = session.await;
        }
        // "Restart": a new store over the same folder (once the old one is closed: a
        // write the aborted session started finishes on the blocking pool first).
        let b = loop {
            match CoreStore::new(&dir.path().join("b")) {
                Ok(b) => break b,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let reader = b.open_existing(&key).await.unwrap().unwrap();
        let held_before = reader.info().held_blocks;
        assert!(held_before >= 50, "held {held_before}");
        let _session = connect(writer.clone(), reader.clone());
        wait_for(&reader, 300).await;
        assert_eq!(reader.get(299).await.unwrap().unwrap(), blocks[299]);
    }
}
