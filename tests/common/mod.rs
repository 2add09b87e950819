//! Shared test harness: real mirrors and laptops on loopback, real FUSE mounts, real HTTP.
//! Every wait is bounded (`wait_until` panics after its deadline with what it was waiting for).
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dat_mirror::laptop::publish::{publish_dir, Published};
use dat_mirror::laptop::{Laptop, LaptopConfig};
use dat_mirror::mirror::{self, Mirror, MirrorConfig};
use dat_mirror::model::keys::Key;
use dat_mirror::net::endpoint::{Identity, NetworkConfig, PeerAddr};

/// Generous guard against hangs; never an assertion about speed.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "dat_mirror=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `TIMEOUT`.
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {TIMEOUT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs blocking file-system calls (on the FUSE mount) off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

/// A free UDP port on loopback (for a mirror that starts later at a known address).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn start_mirror(data: &Path, listen: SocketAddr, allow: Vec<Key>) -> Mirror {
    // A port from `free_udp_port` can be taken for a moment by another test's ephemeral
    // socket (tests run in parallel): retry a bounded number of times, then fail.
    let mut attempt = 0;
    loop {
        let started = mirror::start(MirrorConfig {
            data: data.to_path_buf(),
            listen,
            http: Some("127.0.0.1:0".parse().unwrap()),
            allow: allow.clone(),
            network: NetworkConfig::offline(),
            ..Default::default()
        })
        .await;
        match started {
            Ok(m) => return m,
            Err(e) if attempt < 20 && format!("{e:#}").contains("Address already in use") => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => panic!("mirror starts: {e:?}"),
        }
    }
}

pub async fn start_laptop(data: &Path, mirrors: Vec<PeerAddr>) -> Laptop {
    Laptop::start(LaptopConfig {
        data: data.to_path_buf(),
        mirrors,
        listen: "127.0.0.1:0".parse().unwrap(),
        network: NetworkConfig::offline(),
    })
    .await
    .expect("laptop starts")
}

pub fn mirror_addr(m: &Mirror) -> PeerAddr {
    PeerAddr::new(m.key(), m.listen)
}

/// The identity kept in `dir` (made on first use) and an endpoint for it on 127.0.0.1 with
/// every discovery route off.
pub async fn loopback_endpoint(dir: &Path) -> (Identity, iroh::Endpoint) {
    let id = Identity::load_or_create(dir).unwrap();
    let ep = dat_mirror::net::endpoint::bind_endpoint(
        &id,
        "127.0.0.1:0".parse().unwrap(),
        &NetworkConfig::offline(),
    )
    .await
    .unwrap();
    (id, ep)
}

pub fn node_id(data: &Path) -> Key {
    Identity::load_or_create(data).unwrap().key()
}

/// A mounted control folder; unmounted on drop.
pub struct Mounted {
    pub path: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if let Err(e) = dat_mirror::fs::fuse::unmount(s, &self.path) {
                eprintln!("unmounting {}: {e}", self.path.display());
            }
        }
    }
}

/// Mounts `laptop`'s control folder at `path`, or returns `None` (skipping loudly) when
/// FUSE is unavailable outside CI. In CI (`CI=true`) a missing FUSE fails the test.
pub async fn mount(laptop: &Laptop, path: &Path, test: &str) -> Option<Mounted> {
    if !dat_mirror::fs::require_fuse_or_skip(test) {
        return None;
    }
    std::fs::create_dir_all(path).unwrap();
    let backend: Arc<dyn dat_mirror::fs::ControlBackend> = laptop.inner.clone();
    let p = path.to_path_buf();
    let session = blocking(move || dat_mirror::fs::mount(&p, backend))
        .await
        .expect("mount");
    Some(Mounted {
        path: path.to_path_buf(),
        session: Some(session),
    })
}

/// Writes a sample site: nested folders, an index, text and binary files of mixed sizes.
pub fn make_site(dir: &Path, big_bytes: usize) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "index.html".into(),
            b"<!doctype html><h1>hello from the laptop</h1>".to_vec(),
        ),
        ("about/index.html".into(), b"<h1>about</h1>".to_vec()),
        ("css/site.css".into(), b"body { color: #333 }".to_vec()),
        ("empty.txt".into(), vec![]),
        ("data/exactly-64k.bin".into(), pseudo_random(65536, 1)),
    ];
    if big_bytes > 0 {
        files.push(("data/big.bin".into(), pseudo_random(big_bytes, 2)));
    }
    for (path, bytes) in &files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    files
}

/// Deterministic incompressible bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Publishes through the running laptop (as the CLI does via the control socket).
pub async fn publish(laptop: &Laptop, dir: &Path, key: Option<Key>) -> Published {
    publish_dir(&laptop.inner.store, dir, key)
        .await
        .expect("publish")
}

/// Publishes `dir` as a new site and asks the mirror for it (a `Mirror` command, no alias).
pub async fn publish_and_mirror(laptop: &Laptop, dir: &Path) -> Published {
    let site = publish(laptop, dir, None).await;
    laptop
        .inner
        .append(dat_mirror::model::command::Command::Mirror {
            key: site.key,
            alias: None,
        })
        .await
        .expect("the Mirror command is appended");
    site
}

/// The `state: ...` line of `cat <entry>`, or None if the entry does not exist.
pub fn state_of(mount: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(mount.join(name)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("state: "))
        .map(|s| s.trim().to_string())
}

pub async fn wait_for_state(mount: &Path, name: &str, prefix: &str) -> String {
    let (m, n, p) = (mount.to_path_buf(), name.to_string(), prefix.to_string());
    wait_until(&format!("{name} to reach state '{prefix}'"), || {
        let (m, n, p) = (m.clone(), n.clone(), p.clone());
        async move { blocking(move || state_of(&m, &n).filter(|s| s.starts_with(&p))).await }
    })
    .await
}

pub fn http_base(m: &Mirror) -> String {
    format!("http://{}", m.http.unwrap())
}

pub async fn http_get(url: &str) -> (u16, Option<String>, Vec<u8>) {
    let r = reqwest::get(url).await.expect("HTTP request");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.bytes().await.expect("HTTP body").to_vec();
    (status, ct, body)
}

/// A mirror and a laptop paired on loopback, with folders for their data and a site.
pub struct Pair {
    pub tmp: tempfile::TempDir,
    pub pi_dir: PathBuf,
    pub lap_dir: PathBuf,
    pub site_dir: PathBuf,
    pub mirror: Mirror,
    pub laptop: Laptop,
}

impl Pair {
    /// Starts a mirror that allows the laptop, and the laptop pointed at the mirror.
    pub async fn start() -> Pair {
        init_tracing();
        let tmp = tempfile::tempdir().unwrap();
        let (pi_dir, lap_dir, site_dir) = (
            tmp.path().join("pi"),
            tmp.path().join("lap"),
            tmp.path().join("site"),
        );
        let mirror = start_mirror(
            &pi_dir,
            "127.0.0.1:0".parse().unwrap(),
            vec![node_id(&lap_dir)],
        )
        .await;
        let laptop = start_laptop(&lap_dir, vec![mirror_addr(&mirror)]).await;
        Pair {
            tmp,
            pi_dir,
            lap_dir,
            site_dir,
            mirror,
            laptop,
        }
    }
}

/// Waits (up to `TIMEOUT`) for an event matching `want` on `rx` — the proof that an attempt
/// happened, before a test asserts what it must not have achieved.
pub async fn wait_for_event<E: Clone>(
    rx: &mut tokio::sync::broadcast::Receiver<E>,
    what: &str,
    want: impl Fn(&E) -> bool,
) -> E {
    use tokio::sync::broadcast::error::RecvError;
    let found = tokio::time::timeout(TIMEOUT, async {
        loop {
            match rx.recv().await {
                Ok(e) if want(&e) => return e,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("the events ended while waiting for {what}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out after {TIMEOUT:?} waiting for {what}"))
}
