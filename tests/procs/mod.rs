//! Real `dat-mirror` processes for fault tests: spawned (optionally inside a network
//! namespace) with discovery switched off and stdout+stderr in a log file, stopped with
//! SIGTERM or SIGKILL, and killed on drop. Also reads a node's logs (command log, status
//! log) from its data folder once the process is gone.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dat_mirror::model::command::Command as Cmd;
use dat_mirror::model::keys::Key;
use dat_mirror::model::status::{StatusEntry, StatusEvent};
use dat_mirror::store::CoreStore;

pub const BIN: &str = env!("CARGO_BIN_EXE_dat-mirror");

/// The environment every spawned process gets: only direct addresses, nothing public.
pub const NO_DISCOVERY: [(&str, &str); 4] = [
    ("DAT_MIRROR_NETWORK_MDNS", "false"),
    ("DAT_MIRROR_NETWORK_DHT", "false"),
    ("DAT_MIRROR_NETWORK_HYPERSWARM", "false"),
    ("DAT_MIRROR_NETWORK_RELAY", "off"),
];

/// A running `dat-mirror` process; SIGKILLed on drop. A `mount` process killed that way
/// leaves a dead FUSE mount, so its mount point is detached too, unless the test killed it
/// on purpose ([`Proc::kill9`]: it checks and reuses the dead mount).
pub struct Proc {
    pub what: String,
    pub log: PathBuf,
    child: Child,
    mount: Option<PathBuf>,
}

/// `dat-mirror` with `args`, inside namespace `netns` if given, writing to `log` (appended:
/// one file can hold several runs). `home` is its HOME (no config file is found there).
pub fn command(netns: Option<&str>, home: &Path) -> Command {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/var/run/netns/{ns}"))
                .arg("--")
                .arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("DAT_MIRROR_") || k.starts_with("XDG_") {
            c.env_remove(k);
        }
    }
    c.envs(NO_DISCOVERY)
        .env("HOME", home)
        // TEST_DAEMON_LOG: the daemons' RUST_LOG, to diagnose a failure.
        .env(
            "RUST_LOG",
            std::env::var("TEST_DAEMON_LOG").unwrap_or_else(|_| "dat_mirror=info,warn".into()),
        )
        .stdin(Stdio::null());
    c
}

/// `dat-mirror --data DATA serve --listen LISTEN --http HTTP --allow LAPTOP`: a mirror
/// following one laptop (see [`command`] for `netns` and `home`).
pub fn serve_command(
    netns: Option<&str>,
    home: &Path,
    data: &Path,
    listen: &str,
    http: &str,
    laptop: &Key,
) -> Command {
    let mut c = command(netns, home);
    c.arg("--data").arg(data).args([
        "serve",
        "--listen",
        listen,
        "--http",
        http,
        "--allow",
        &laptop.to_hex(),
    ]);
    c
}

/// `dat-mirror --data DATA mount MNT --mirror MIRROR@DIAL`: a laptop's control folder,
/// dialling its mirror at `dial` (see [`command`] for `netns` and `home`).
pub fn mount_command(
    netns: Option<&str>,
    home: &Path,
    data: &Path,
    mnt: &Path,
    mirror: &Key,
    dial: &str,
) -> Command {
    let mut c = command(netns, home);
    c.arg("--data")
        .arg(data)
        .arg("mount")
        .arg(mnt)
        .args(["--mirror", &format!("{mirror}@{dial}")]);
    c
}

impl Proc {
    pub fn spawn(what: &str, mut cmd: Command, log: &Path) -> Proc {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let args: Vec<&std::ffi::OsStr> = cmd.get_args().collect();
        let mount = args
            .iter()
            .position(|a| *a == "mount")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from);
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Proc {
            what: what.to_string(),
            log: log.to_path_buf(),
            child,
            mount,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited ({status}); its log:\n{}",
                self.what,
                self.log_text()
            );
        }
    }

    /// Waits (at most `timeout`) until the log contains `text` at least `times` times.
    pub fn wait_for_log(&mut self, text: &str, times: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().matches(text).count() >= times {
                return;
            }
            self.assert_alive();
            if Instant::now() > deadline {
                panic!(
                    "{} did not log {text:?} within {timeout:?}; its log:\n{}",
                    self.what,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
        self.mount = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL after 30 s). Returns the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        // SAFETY: sends a signal to our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} ignored SIGTERM for 30 s", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mnt) = &self.mount {
            // Dead only if the process did not unmount before it died; otherwise a no-op.
            dat_mirror::fs::detach_stale(mnt);
        }
    }
}

/// Every entry of core `key` in `data` (read from disk: the owning process must be gone).
pub async fn read_core(data: &Path, key: &Key) -> Vec<Vec<u8>> {
    let store = CoreStore::new(data).unwrap();
    let Some(core) = store.open_existing(key).await.unwrap() else {
        return vec![];
    };
    let mut out = Vec::new();
    for i in 0..core.info().length {
        out.push(core.get(i).await.unwrap().expect("a log holds every entry"));
    }
    out
}

/// The laptop's command log, decoded.
pub async fn command_log(lap_dir: &Path, laptop: &Key) -> Vec<Cmd> {
    read_core(lap_dir, laptop)
        .await
        .iter()
        .map(|b| Cmd::decode(b).expect("the laptop wrote a valid command"))
        .collect()
}

/// The mirror's status log, decoded.
pub async fn status_log(pi_dir: &Path, mirror: &Key) -> Vec<StatusEvent> {
    read_core(pi_dir, mirror)
        .await
        .iter()
        .map(|b| {
            StatusEntry::decode(b)
                .expect("the mirror wrote a valid entry")
                .event
        })
        .collect()
}

/// The command seqs of `laptop` the mirror acknowledged, in the order of its status log;
/// panics on any rejection.
pub fn acks(status: &[StatusEvent], laptop: &Key) -> Vec<u64> {
    status
        .iter()
        .filter_map(|e| match e {
            StatusEvent::Ack { log, seq } if log == laptop => Some(*seq),
            StatusEvent::Rejected { log, seq, reason } if log == laptop => {
                panic!("the mirror rejected command #{seq}: {reason}")
            }
            _ => None,
        })
        .collect()
}

/// A small seeded generator (xorshift) so a failing run can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    /// From `$var` if set, else from the clock; prints the seed and how to replay it.
    pub fn from_env(var: &str) -> Rng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("random seed {seed} (replay with {var}={seed})");
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-ish in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` saying what
/// it waited for. A hang guard, not a speed assertion.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    wait_for_every(what, timeout, Duration::from_millis(50), check)
}

/// Like [`wait_for`], checking every `every`.
pub fn wait_for_every<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// Like [`wait_for`], but `None` after `timeout` (so the caller can say more before failing).
pub fn wait_for_or_none<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a future to completion on a fresh runtime (for the few async library calls the
/// otherwise blocking fault tests make).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `dat-mirror --data DATA publish DIR` (through the running laptop's control socket if
/// there is one): the new site's key.
pub fn publish_cli(home: &Path, data: &Path, dir: &Path) -> Key {
    let out = command(None, home)
        .arg("--data")
        .arg(data)
        .arg("publish")
        .arg(dir)
        .output()
        .expect("run dat-mirror publish");
    assert!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Key::parse_link(String::from_utf8_lossy(&out.stdout).trim()).expect("publish prints a link")
}
