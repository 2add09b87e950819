//! Starting the bridge process: the preflight checks (is `node` there, are the js packages
//! installed) that turn a missing piece into an error naming the command that fixes it, and the
//! spawn itself: `node bridge.js` with one end of a socketpair as fd 3, dying with its parent.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

use tokio::process::{Child, Command};

use crate::bridge::{BridgeError, BridgeOptions};

/// Lines of the bridge's stderr kept for error reports.
const STDERR_TAIL: usize = 20;
/// Longest stderr line kept (bytes).
const MAX_LINE: usize = 4096;

/// The last lines the bridge wrote to stderr.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: String) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == STDERR_TAIL {
            q.pop_front();
        }
        q.push_back(line);
    }

    /// The kept lines, joined (empty if none).
    pub(crate) fn text(&self) -> String {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// The command that installs the bridge's packages.
pub(crate) fn npm_fix(js_dir: &Path) -> String {
    format!("npm ci --prefix {}", js_dir.display())
}

fn node_fix(opts: &BridgeOptions) -> String {
    format!(
        "install Node.js >= 18 with npm (e.g. `apt-get install nodejs npm`), then {}",
        npm_fix(&opts.js_dir)
    )
}

/// Checks that the bridge can start: `node` runs (>= 18), bridge.js and its packages exist.
pub(crate) async fn preflight(opts: &BridgeOptions) -> Result<(), BridgeError> {
    let out = Command::new(&opts.node)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(Duration::from_secs(20), out).await {
        Err(_) => {
            return Err(BridgeError::NodeMissing {
                reason: format!("`{} --version` did not answer", opts.node.display()),
                fix: node_fix(opts),
            })
        }
        Ok(Err(e)) => {
            return Err(BridgeError::NodeMissing {
                reason: format!("cannot run `{}`: {e}", opts.node.display()),
                fix: node_fix(opts),
            })
        }
        Ok(Ok(out)) => out,
    };
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major = version
        .strip_prefix('v')
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if out.status.success() && m >= 18 => {}
        _ => {
            return Err(BridgeError::NodeMissing {
                reason: format!(
                    "`{} --version` says {version:?}; the bridge needs Node.js >= 18",
                    opts.node.display()
                ),
                fix: node_fix(opts),
            })
        }
    }
    if !opts.js_dir.join("bridge.js").is_file() {
        return Err(BridgeError::NotInstalled {
            reason: format!("{} has no bridge.js", opts.js_dir.display()),
            fix:
                "point BridgeOptions::js_dir at crates/hyperswarm-bridge/js (or its installed copy)"
                    .into(),
        });
    }
    for pkg in ["hyperswarm", "hyperdht", "b4a"] {
        let manifest = opts
            .js_dir
            .join("node_modules")
            .join(pkg)
            .join("package.json");
        if !manifest.is_file() {
            return Err(BridgeError::NotInstalled {
                reason: format!(
                    "the npm package `{pkg}` is not installed in {}",
                    opts.js_dir.display()
                ),
                fix: npm_fix(&opts.js_dir),
            });
        }
    }
    Ok(())
}

/// A started bridge process and our end of its control socket.
pub(crate) struct Spawned {
    pub child: Child,
    pub socket: tokio::net::UnixStream,
    pub stderr: StderrTail,
}

/// Starts `node bridge.js` with the socketpair's other end as fd 3.
pub(crate) fn spawn(opts: &BridgeOptions) -> Result<Spawned, BridgeError> {
    let spawn_err = |e: std::io::Error| BridgeError::Spawn(format!("{}: {e}", opts.node.display()));
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(spawn_err)?;
    let their_fd = theirs.as_raw_fd();
    let parent = std::process::id();
    let mut cmd = Command::new(&opts.node);
    cmd.arg(opts.js_dir.join("bridge.js"))
        .current_dir(&opts.js_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: runs in the forked child before exec; it calls only async-signal-safe functions
    // (dup2, fcntl, prctl, getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(their_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 onto itself keeps FD_CLOEXEC; fd 3 must survive exec either way.
            if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Die with the parent (also covered by the bridge exiting when fd 3 closes).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    drop(theirs);
    ours.set_nonblocking(true).map_err(spawn_err)?;
    let socket = tokio::net::UnixStream::from_std(ours).map_err(spawn_err)?;
    let stderr = StderrTail::default();
    if let Some(err) = child.stderr.take() {
        let tail = stderr.clone();
        let pid = child.id().unwrap_or(0);
        tokio::spawn(async move {
            let emit = |line: &[u8]| {
                let line = String::from_utf8_lossy(line).into_owned();
                tracing::info!(target: "hyperswarm_bridge::node", pid, "{line}");
                tail.push(line);
            };
            let mut r = tokio::io::BufReader::new(err);
            let mut line = Vec::new();
            loop {
                let (consumed, done) = match r.fill_buf().await {
                    Ok(buf) if !buf.is_empty() => {
                        let (chunk, consumed, done) = match buf.iter().position(|&c| c == b'\n') {
                            Some(i) => (&buf[..i], i + 1, true),
                            None => (buf, buf.len(), false),
                        };
                        // Lines are cut at MAX_LINE bytes: the child cannot make us hoard.
                        let room = MAX_LINE.saturating_sub(line.len());
                        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        (consumed, done)
                    }
                    _ => break,
                };
                r.consume(consumed);
                if done {
                    emit(&line);
                    line.clear();
                }
            }
            if !line.is_empty() {
                emit(&line);
            }
        });
    }
    Ok(Spawned {
        child,
        socket,
        stderr,
    })
}
