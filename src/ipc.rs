//! The daemons' control socket (`DATA/control.sock`): how a CLI command hands its work to the
//! `mount` or `serve` process that holds the data folder (only one process may open its
//! hypercores). One JSON request per line, one JSON answer per line; requests are bounded.
//! Each daemon supplies its own request and answer types and handler.
//!
//! Access: the socket is created 0600 inside the private (0700) data folder, and every
//! connection's peer is checked with `SO_PEERCRED`: only the folder's owner (and root) may
//! use it, whatever the umask or the folder's permissions, because a request can mint
//! invites on a mirror or make a laptop publish any directory it can read.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::host::{DataDir, Tasks};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

pub fn socket_path(data: &Path) -> PathBuf {
    DataDir::new(data).control_socket()
}

/// May a process running as `peer` use a socket of a daemon running as `me`?
pub fn peer_allowed(peer: u32, me: u32) -> bool {
    peer == me || peer == 0
}

/// Listens on `DATA/control.sock` (replacing a stale socket file: the caller holds the data
/// folder's lock) and answers each request with `handler`, until `tasks` are cancelled. A
/// malformed request is handed to the handler as `Err(reason)` so it can answer in its own
/// error form.
pub fn serve<Req, Ans, H, Fut>(data: &DataDir, tasks: &Tasks, handler: H) -> anyhow::Result<()>
where
    Req: DeserializeOwned + Send + 'static,
    Ans: Serialize + Send + 'static,
    H: Fn(Result<Req, String>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Ans> + Send + 'static,
{
    let path = data.control_socket();
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let conns = tasks.clone();
    tasks.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            match stream.peer_cred() {
                Ok(cred) if peer_allowed(cred.uid(), me) => {}
                Ok(cred) => {
                    tracing::warn!(
                        uid = cred.uid(),
                        pid = cred.pid(),
                        "control socket: refused a process of another user"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!("control socket: cannot tell who connected ({e}); refused");
                    continue;
                }
            }
            let handler = handler.clone();
            conns.spawn(async move {
                if let Err(e) = answer_one(stream, handler).await {
                    tracing::warn!("control socket: {e:#}");
                }
            });
        }
    });
    Ok(())
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
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(e).with_context(|| {
                format!(
                    "cannot reach the running dat-mirror: {} belongs to another user; run this \
                     command as the user running the daemon",
                    data.display()
                )
            })
        }
        Err(e) => return Err(e).context("cannot reach the running dat-mirror"),
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    if answer.is_empty() {
        anyhow::bail!(
            "the running dat-mirror closed the control socket without answering (it refuses \
             other users' processes, see its log); run this command as the daemon's user"
        );
    }
    Ok(Some(serde_json::from_str(&answer).context(
        "the running dat-mirror sent a malformed answer (is it an older version? restart it)",
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_and_root_may_connect() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(!peer_allowed(1001, 1000));
    }

    /// Needs root (to connect as another user); says so and passes otherwise.
    #[tokio::test]
    async fn the_socket_is_private_and_refuses_other_users() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to connect as another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        data.create_private().unwrap();
        let tasks = Tasks::new();
        serve(&data, &tasks, |r: Result<String, String>| async move {
            r.unwrap_or_else(|e| e)
        })
        .unwrap();
        let sock = data.control_socket();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(data.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        // The owner is answered.
        let a: Option<String> = call(data.root(), &"hi".to_string()).await.unwrap();
        assert_eq!(a.as_deref(), Some("hi"));
        // Even if the permissions slip (a chmod by hand), another user is refused.
        for p in [dir.path(), data.root(), &sock] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ntry:\n \
             s.sendall(b'\"hi\"\\n')\n print(len(s.recv(100)))\nexcept OSError:\n print(0)",
            sock.display().to_string()
        );
        let out = tokio::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["/usr/bin/python3", "-c", &script])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0",
            "refused: no answer"
        );
        tasks.shutdown().await;
    }
}
