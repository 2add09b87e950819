//! Test support for the bridge's integration tests: the Node prerequisites check (skip loudly,
//! or panic with CI=true), a local HyperDHT testnet (js/test/testnet.js, 3 nodes on
//! 127.0.0.1), Node hyperswarm peers driven by js/test/peer.js, and bridge options for loopback.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use hyperswarm_bridge::{BridgeOptions, Topic};

pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Whether Node and the bridge's packages are here. Without them: in CI a panic, elsewhere a
/// loud skip (the caller returns).
pub fn node_ready(test: &str) -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let installed = js_dir()
        .join("node_modules/hyperswarm/package.json")
        .is_file()
        && js_dir()
            .join("node_modules/hyperdht/package.json")
            .is_file();
    if node && installed {
        return true;
    }
    let why = if node {
        format!(
            "the bridge's npm packages are not installed (run `npm ci --prefix {}` or scripts/test.sh)",
            js_dir().display()
        )
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
                .unwrap_or_else(|_| "hyperswarm_bridge=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A random topic (or seed).
pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    let f = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut b)
    });
    f.expect("read /dev/urandom");
    b
}

/// A Node process printing JSON lines.
pub struct NodeProc {
    pub child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Lines skipped while waiting for another event.
    backlog: Vec<serde_json::Value>,
    pub name: String,
}

impl NodeProc {
    fn spawn(name: &str, args: &[String]) -> NodeProc {
        let mut child = Command::new("node")
            .args(args)
            .current_dir(js_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node {args:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        NodeProc {
            child,
            lines: BufReader::new(stdout).lines(),
            backlog: Vec::new(),
            name: name.to_string(),
        }
    }

    /// The next JSON line (within `secs`).
    pub async fn next(&mut self, secs: u64) -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(secs), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: no output within {secs} s", self.name))
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
            .unwrap_or_else(|| panic!("{}: exited", self.name));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {line:?}: {e}", self.name))
    }

    /// The first line with `event` == `name` (earlier other lines are kept for later calls).
    pub async fn event(&mut self, name: &str, secs: u64) -> serde_json::Value {
        if let Some(i) = self.backlog.iter().position(|v| v["event"] == name) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.next(left.as_secs().max(1)).await;
            if v["event"] == name {
                return v;
            }
            self.backlog.push(v);
        }
    }
}

/// The local testnet.
pub struct Testnet {
    pub proc: NodeProc,
    pub bootstrap: Vec<String>,
}

impl Testnet {
    pub async fn start() -> Testnet {
        let mut proc = NodeProc::spawn("testnet", &["test/testnet.js".into(), "3".into()]);
        let v = proc.next(60).await;
        let bootstrap: Vec<String> = v["bootstrap"]
            .as_array()
            .expect("bootstrap list")
            .iter()
            .map(|b| b.as_str().expect("HOST:PORT").to_string())
            .collect();
        assert!(bootstrap.iter().all(|b| b.starts_with("127.0.0.1:")));
        Testnet { proc, bootstrap }
    }

    /// A Node hyperswarm peer (see js/test/peer.js) on this testnet; waits until it joined.
    pub async fn peer(&self, mode: &str, topic: &Topic, bytes: u64) -> (NodeProc, String) {
        let (p, key, _) = self.peer_with_pid(mode, topic, bytes).await;
        (p, key)
    }

    /// Like [`Testnet::peer`], also returning the peer's process id.
    pub async fn peer_with_pid(
        &self,
        mode: &str,
        topic: &Topic,
        bytes: u64,
    ) -> (NodeProc, String, u32) {
        let mut p = NodeProc::spawn(
            mode,
            &[
                "test/peer.js".into(),
                mode.into(),
                hex::encode(topic),
                self.bootstrap.join(","),
                bytes.to_string(),
            ],
        );
        let ready = p.event("ready", 30).await;
        let key = ready["publicKey"].as_str().expect("publicKey").to_string();
        let pid = ready["pid"].as_u64().expect("pid") as u32;
        p.event("joined", 60).await;
        (p, key, pid)
    }

    /// Bridge options for this testnet: loopback only, not firewalled, fast restarts.
    pub fn bridge_options(&self) -> BridgeOptions {
        let mut o = BridgeOptions::new(random32());
        o.bootstrap = self.bootstrap.clone();
        o.host = Some("127.0.0.1".into());
        o.firewalled = false;
        o.js_dir = js_dir();
        o.backoff.initial = Duration::from_millis(200);
        o.backoff.max = Duration::from_secs(2);
        o
    }
}
