//! The laptop daemon's control socket (`DATA/control.sock`): the CLI's `publish` hands its
//! work to the running daemon here, and `status` asks it for the status view, because only
//! one process may hold a data folder's hypercores. One JSON request per line, one JSON
//! answer per line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use super::publish::{publish_dir, Published};
use super::LaptopInner;
use crate::model::invite::Invite;
use crate::model::keys::Key;
use crate::model::view::StatusView;
use crate::net::endpoint::PeerAddr;

/// One row of `dat-mirror peers` on a laptop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MirrorRow {
    pub addr: PeerAddr,
    pub online: bool,
    pub last_seen_ms: Option<u64>,
}

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Publish {
        dir: PathBuf,
        key: Option<Key>,
    },
    /// The status view, as the control folder shows it now.
    Status,
    /// Pair with a mirror by invite code.
    Pair {
        code: String,
    },
    /// The paired mirrors.
    Mirrors,
    Unpair {
        id: Key,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Published(Published),
    Status(Box<StatusView>),
    Paired(PeerAddr),
    Mirrors(Vec<MirrorRow>),
    Unpaired,
    Error(String),
}

pub fn path(data: &Path) -> PathBuf {
    data.join("control.sock")
}

pub fn spawn(inner: Arc<LaptopInner>) -> anyhow::Result<JoinHandle<()>> {
    let path = path(&inner.data);
    // We hold the data folder's lock, so a socket file left here is stale.
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let inner = inner.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(inner, stream).await {
                    tracing::warn!("control socket: {e:#}");
                }
            });
        }
    }))
}

async fn handle(inner: Arc<LaptopInner>, stream: UnixStream) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
    reader.read_line(&mut line).await?;
    let answer = match serde_json::from_str::<Request>(&line) {
        Err(e) => Answer::Error(format!("malformed request: {e}")),
        Ok(Request::Publish { dir, key }) => match publish_dir(&inner.store, &dir, key).await {
            Ok(p) => {
                inner.providers.announce(p.key.discovery_key());
                Answer::Published(p)
            }
            Err(e) => Answer::Error(format!("{e:#}")),
        },
        Ok(Request::Status) => Answer::Status(Box::new(inner.view())),
        Ok(Request::Pair { code }) => match Invite::decode(&code) {
            Err(e) => Answer::Error(e.to_string()),
            Ok(invite) => match inner.pair(&invite).await {
                Ok(peer) => Answer::Paired(peer),
                Err(e) => Answer::Error(format!("{e:#}")),
            },
        },
        Ok(Request::Mirrors) => Answer::Mirrors(inner.mirror_rows()),
        Ok(Request::Unpair { id }) => match inner.remove_mirror(&id) {
            Ok(()) => Answer::Unpaired,
            Err(e) => Answer::Error(format!("{e:#}")),
        },
    };
    let mut out = serde_json::to_vec(&answer)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}

/// Sends a request to the daemon of `data`. `Ok(None)` if no daemon is listening.
pub async fn call(data: &Path, request: &Request) -> anyhow::Result<Option<Answer>> {
    let stream = match UnixStream::connect(path(data)).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).context("cannot reach the running dat-mirror"),
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    Ok(Some(serde_json::from_str(&answer).context(
        "the running dat-mirror sent a malformed answer",
    )?))
}

/// The status view from what the data folder holds, for `dat-mirror status` when no daemon
/// runs: my command log and the mirrors' status logs as last replicated, every mirror shown
/// offline (this process does not connect). Holds the data folder's lock while it reads, so
/// it fails (saying why) if another dat-mirror process is using the folder. Creates nothing:
/// a folder no laptop has run in is an error.
pub async fn view_from_disk(data: &Path) -> anyhow::Result<StatusView> {
    use crate::model::command::Command;
    use crate::model::status::StatusEntry;
    use crate::model::view::{fold, MirrorInput};
    use crate::store::{Core, CoreStore};
    use crate::util::clock::now_ms;

    if !data.join("identity").exists() {
        anyhow::bail!(
            "{} holds no laptop yet (no identity): run `dat-mirror --data {} mount MOUNTPOINT --mirror ID@IP:PORT` first",
            data.display(),
            data.display()
        );
    }
    let _lock = crate::net::endpoint::DataLock::acquire(data)?;
    let me = crate::net::endpoint::Identity::load_or_create(data)?.key();
    let store = CoreStore::new(data)?;
    async fn entries(core: Option<Arc<Core>>) -> Vec<Vec<u8>> {
        let Some(core) = core else { return vec![] };
        let mut out = Vec::new();
        for seq in 0..core.info().contiguous_length {
            match core.get(seq).await {
                Ok(Some(bytes)) => out.push(bytes),
                _ => break,
            }
        }
        out
    }
    let commands = entries(store.open_existing(&me).await?)
        .await
        .iter()
        .map(|b| Command::decode(b))
        .collect::<Vec<_>>();
    let mut inputs = Vec::new();
    for m in super::load_mirrors(data)? {
        let status = entries(store.open_existing(&m.id).await?)
            .await
            .iter()
            .filter_map(|b| StatusEntry::decode(b).ok())
            .collect();
        inputs.push(MirrorInput {
            mirror: m.id,
            status,
            online: false,
            last_seen_ms: None,
        });
    }
    Ok(fold(me, &commands, &inputs, now_ms()))
}
