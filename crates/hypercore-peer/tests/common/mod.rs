//! Test support: the Node prerequisites check (skip loudly, or panic with CI=true), Node
//! processes printing JSON lines (tests/node/drive.js, testnet.js), the local HyperDHT testnet
//! and a Rust peer on the hyperswarm bridge.
#![allow(dead_code)]

use hypercore_peer::{Peer, PeerConfig};
use hyperswarm_bridge::{BridgeOptions, HyperswarmBridge, Transport};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

/// This crate's folder, also when the harness is included by another workspace member's
/// tests (`#[path]`; e.g. the daemon's `tests/hypernet.rs`).
fn peer_crate_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if here.ends_with("hypercore-peer") {
        here
    } else {
        here.join("crates/hypercore-peer")
    }
}

pub fn node_dir() -> PathBuf {
    peer_crate_dir().join("tests/node")
}

pub fn bridge_js_dir() -> PathBuf {
    peer_crate_dir().join("../hyperswarm-bridge/js")
}

/// Whether Node and every pinned package folder are installed. Without them: a panic in CI
/// (CI=true), a loud skip elsewhere.
pub fn node_ready(test: &str) -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let dirs = [
        node_dir().join("v11"),
        node_dir().join("v13"),
        bridge_js_dir(),
    ];
    let missing: Vec<_> = dirs
        .iter()
        .filter(|d| !d.join("node_modules").is_dir())
        .collect();
    if node && missing.is_empty() {
        return true;
    }
    let why = if node {
        format!("npm packages missing: run `npm ci` in {missing:?} (or scripts/test.sh)")
    } else {
        "node is not installed".to_string()
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why} (CI=true: not skipping)");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "hypercore_peer=info,hyperswarm_bridge=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    b
}

/// A Node process printing JSON lines, taking JSON commands on stdin.
pub struct NodeProc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    backlog: Vec<Value>,
    pub name: String,
}

impl NodeProc {
    pub fn spawn(name: &str, cwd: &str, args: &[String]) -> NodeProc {
        NodeProc::spawn_in(None, name, cwd, args)
    }

    /// [`NodeProc::spawn`] inside the network namespace `netns` (its `/var/run/netns/…`
    /// path; needs root and `nsenter`), or in this one with `None`.
    pub fn spawn_in(netns: Option<&str>, name: &str, cwd: &str, args: &[String]) -> NodeProc {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={ns}")).arg("--").arg("node");
                c
            }
            None => Command::new("node"),
        };
        let mut child = cmd
            .args(args)
            .current_dir(node_dir().join(cwd))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node {args:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        NodeProc {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            backlog: Vec::new(),
            name: name.to_string(),
        }
    }

    pub async fn next(&mut self, secs: u64) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(secs), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: no output within {secs} s", self.name))
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
            .unwrap_or_else(|| panic!("{}: exited", self.name));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {line:?}: {e}", self.name))
    }

    /// The first line with `event` == `name` (other lines are kept for later calls).
    pub async fn event(&mut self, name: &str, secs: u64) -> Value {
        if let Some(i) = self.backlog.iter().position(|v| v["event"] == name) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.next(left.as_secs().max(1)).await;
            if v["event"] == "error" {
                panic!("{}: {v}", self.name);
            }
            if v["event"] == name {
                return v;
            }
            self.backlog.push(v);
        }
    }

    pub async fn send(&mut self, cmd: Value) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .expect("write to node");
    }

    /// Closes stdin (the script exits cleanly) and waits, killing it after 10 s.
    pub async fn stop(mut self) {
        self.stdin.take();
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The local testnet.
pub struct Testnet {
    pub proc: NodeProc,
    pub bootstrap: Vec<String>,
}

impl Testnet {
    /// 3 HyperDHT nodes on 127.0.0.1.
    pub async fn start() -> Testnet {
        Testnet::start_in(None, 3, "127.0.0.1").await
    }

    /// `nodes` HyperDHT nodes bound to `host`, inside the network namespace `netns` (a
    /// `/var/run/netns/…` path) or this one.
    pub async fn start_in(netns: Option<&str>, nodes: usize, host: &str) -> Testnet {
        let mut proc = NodeProc::spawn_in(
            netns,
            "testnet",
            "v13",
            &["../testnet.js".into(), nodes.to_string(), host.into()],
        );
        let v = proc.next(60).await;
        let bootstrap: Vec<String> = v["bootstrap"]
            .as_array()
            .expect("bootstrap")
            .iter()
            .map(|b| b.as_str().expect("HOST:PORT").to_string())
            .collect();
        assert!(bootstrap.iter().all(|b| b.starts_with(&format!("{host}:"))));
        Testnet { proc, bootstrap }
    }

    /// A Node drive process (`write` or `read`) on this testnet: `stack` is "v11" or "v13".
    pub fn drive(
        &self,
        stack: &str,
        role: &str,
        dir: &std::path::Path,
        key: &str,
        opts: Value,
    ) -> NodeProc {
        self.drive_in(None, stack, role, dir, key, opts)
    }

    /// [`Testnet::drive`] inside the network namespace `netns` (or this one); `opts.host` and
    /// `opts.firewalled` set its DHT's bind address and NAT behaviour (default: loopback).
    pub fn drive_in(
        &self,
        netns: Option<&str>,
        stack: &str,
        role: &str,
        dir: &std::path::Path,
        key: &str,
        opts: Value,
    ) -> NodeProc {
        NodeProc::spawn_in(
            netns,
            &format!("{stack}-{role}"),
            stack,
            &[
                "../drive.js".into(),
                role.into(),
                self.bootstrap.join(","),
                dir.display().to_string(),
                key.into(),
                opts.to_string(),
            ],
        )
    }

    /// A Node drive writer on this testnet, with its files written and its topic joined
    /// (`opts`: drive.js's `set`, `join`; not `deferJoin`). Waits (bounded) for its `ready`.
    pub async fn writer(&self, stack: &str, opts: Value) -> Writer {
        let dir = tempfile::tempdir().expect("writer dir");
        let mut proc = self.drive(stack, "write", dir.path(), "", opts);
        let ready = proc.event("ready", 60).await;
        Writer {
            proc: Some(proc),
            ready,
            dir,
        }
    }

    /// A fresh Node reader of drive `key` (hex) on this testnet: it reads every file from
    /// whoever serves the drive. Waits (bounded) for its `files` line; the process stays up
    /// for live commands (`wait`).
    pub async fn reader(&self, stack: &str, key: &str) -> Reader {
        let dir = tempfile::tempdir().expect("reader dir");
        let mut proc = self.drive(stack, "read", dir.path(), key, serde_json::json!({}));
        let files = proc.event("files", 120).await;
        Reader { proc, files, dir }
    }

    pub fn bridge_options(&self) -> BridgeOptions {
        let mut o = BridgeOptions::new(random32());
        o.bootstrap = self.bootstrap.clone();
        o.host = Some("127.0.0.1".into());
        o.firewalled = false;
        o.js_dir = bridge_js_dir();
        o.backoff.initial = Duration::from_millis(200);
        o.backoff.max = Duration::from_secs(2);
        o
    }

    /// A Rust peer on its own bridge, accepting connections.
    pub async fn rust_peer(&self, dir: &std::path::Path) -> RustPeer {
        let cancel = CancellationToken::new();
        let bridge: Arc<HyperswarmBridge> = Arc::new(
            HyperswarmBridge::start(self.bridge_options(), cancel.clone())
                .await
                .expect("start bridge"),
        );
        let store = hypercore_engine::Store::open(dir).expect("open store");
        let peer = Peer::new(
            store,
            PeerConfig {
                timer: Duration::from_secs(2),
                ..PeerConfig::default()
            },
        );
        let transport: Arc<dyn Transport> = bridge.clone();
        let serve = tokio::spawn({
            let p = peer.clone();
            async move { p.serve(transport).await }
        });
        RustPeer {
            peer,
            bridge,
            cancel,
            serve,
        }
    }
}

pub struct RustPeer {
    pub peer: Peer,
    pub bridge: Arc<HyperswarmBridge>,
    pub cancel: CancellationToken,
    pub serve: tokio::task::JoinHandle<()>,
}

impl RustPeer {
    pub async fn stop(self) {
        self.cancel.cancel();
        self.bridge.shutdown().await;
        self.serve.abort();
    }
}

/// A running Node writer (see [`Testnet::writer`]).
pub struct Writer {
    proc: Option<NodeProc>,
    /// Its `ready` line: key, blobsKey, version, dbLength, blobsLength, files.
    pub ready: Value,
    pub dir: tempfile::TempDir,
}

impl Writer {
    pub fn key(&self) -> [u8; 32] {
        hex32(&self.ready["key"])
    }

    pub fn key_hex(&self) -> &str {
        self.ready["key"].as_str().expect("key")
    }

    pub fn blobs_key(&self) -> [u8; 32] {
        hex32(&self.ready["blobsKey"])
    }

    /// What it wrote: {path: {len, sha256}}.
    pub fn files(&self) -> &Value {
        &self.ready["files"]
    }

    pub fn proc(&mut self) -> &mut NodeProc {
        self.proc.as_mut().expect("the writer is running")
    }

    /// Stops the writer process (its `ready` line and folder stay).
    pub async fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop().await;
        }
    }
}

/// A Node reader that has read a drive (see [`Testnet::reader`]).
pub struct Reader {
    pub proc: NodeProc,
    /// Its `files` line: files, ms, bytes, peers (connections it ever had), version.
    pub files: Value,
    pub dir: tempfile::TempDir,
}

impl Reader {
    pub async fn stop(self) {
        self.proc.stop().await;
    }
}

pub fn hex32(v: &Value) -> [u8; 32] {
    let s = v.as_str().expect("hex string");
    hex::decode(s).expect("hex").try_into().expect("32 bytes")
}

/// Asserts a reader's files equal the writer's.
pub fn assert_same_files(wrote: &Value, read: &Value, who: &str) {
    let w = wrote.as_object().expect("files");
    let r = read.as_object().expect("files");
    assert_eq!(w.len(), r.len(), "{who}: file count");
    for (path, f) in w {
        assert_eq!(Some(f), r.get(path), "{who}: {path}");
    }
}
