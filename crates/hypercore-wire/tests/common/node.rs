//! Test helper: finds Node and installs the pinned packages of `tests/node` (npm ci, once per
//! lock file), or says why the Node tests are skipped (and fails instead under `CI=true`).

use std::path::PathBuf;
use std::process::Command;

/// The folder holding `vectors.js`, `package.json` and `package-lock.json`.
pub fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// Skips (returns `false`) loudly, or panics under `CI=true`.
pub fn skip(why: &str) -> bool {
    if in_ci() {
        panic!("Node interop test cannot run with CI=true: {why}");
    }
    eprintln!("SKIPPED: Node interop test: {why}");
    false
}

/// True when `node` runs and `tests/node/node_modules` matches the lock file (installing it
/// with `npm ci` if needed).
pub fn ready() -> bool {
    if Command::new("node").arg("--version").output().is_err() {
        return skip("`node` is not installed");
    }
    let dir = node_dir();
    // scripts/test.sh installs the packages (npm ci, stamped by the lock file's hash); a
    // plain `cargo test` installs them here if they are missing.
    if dir.join("node_modules/hypercore/lib/messages.js").exists() {
        return true;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status();
    match status {
        Ok(s) if s.success() => true,
        Ok(s) => skip(&format!("npm ci failed ({s})")),
        Err(e) => skip(&format!("`npm` is not available: {e}")),
    }
}

/// Runs `node vectors.js <mode>` with `stdin`, returning stdout parsed as JSON.
pub fn run(mode: &str, stdin: &str) -> serde_json::Value {
    use std::io::Write;
    let mut child = Command::new("node")
        .arg("vectors.js")
        .arg(mode)
        .current_dir(node_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn node");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("write to node");
    }
    let out = child.wait_with_output().expect("node output");
    assert!(out.status.success(), "node vectors.js {mode} failed");
    serde_json::from_slice(&out.stdout).expect("node printed JSON")
}
