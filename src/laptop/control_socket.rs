//! The laptop daemon's control socket (`DATA/control.sock`): the CLI's `publish` hands its
//! work to the running daemon here, because only one process may hold a data folder's
//! hypercores. One JSON request per line, one JSON answer per line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use super::publish::{publish_dir, Published};
use super::LaptopInner;
use crate::sync::keys::Key;

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Publish { dir: PathBuf, key: Option<Key> },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Published(Published),
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
