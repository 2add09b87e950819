//! The daemons' control socket (`DATA/control.sock`): how a CLI command hands its work to the
//! `mount` or `serve` process that holds the data folder (only one process may open its
//! hypercores). One JSON request per line, one JSON answer per line; requests are bounded.
//! Each daemon supplies its own request and answer types and handler.

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

pub fn socket_path(data: &Path) -> PathBuf {
    data.join("control.sock")
}

/// Listens on `DATA/control.sock` (replacing a stale socket file: the caller holds the data
/// folder's lock) and answers each request with `handler`. A malformed request is handed to
/// the handler as `Err(reason)` so it can answer in its own error form.
pub fn serve<Req, Ans, H, Fut>(data: &Path, handler: H) -> anyhow::Result<JoinHandle<()>>
where
    Req: DeserializeOwned + Send + 'static,
    Ans: Serialize + Send + 'static,
    H: Fn(Result<Req, String>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Ans> + Send + 'static,
{
    let path = socket_path(data);
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                if let Err(e) = answer_one(stream, handler).await {
                    tracing::warn!("control socket: {e:#}");
                }
            });
        }
    }))
}

async fn answer_one<Req, Ans, H, Fut>(stream: UnixStream, handler: H) -> anyhow::Result<()>
where
    Req: DeserializeOwned,
    Ans: Serialize,
    H: Fn(Result<Req, String>) -> Fut,
    Fut: Future<Output = Ans>,
{
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read)
        .take(MAX_REQUEST)
        .read_line(&mut line)
        .await?;
    let request = serde_json::from_str::<Req>(&line).map_err(|e| format!("malformed request: {e}"));
    let answer = handler(request).await;
    let mut out = serde_json::to_vec(&answer)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}

/// Sends `request` to the daemon of `data`. `Ok(None)` if no daemon is listening.
pub async fn call<Req: Serialize, Ans: DeserializeOwned>(
    data: &Path,
    request: &Req,
) -> anyhow::Result<Option<Ans>> {
    let stream = match UnixStream::connect(socket_path(data)).await {
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
        "the running dat-mirror sent a malformed answer (is it an older version? restart it)",
    )?))
}
