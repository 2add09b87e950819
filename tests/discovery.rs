//! Peers found by id alone, each discovery route on its own, with nothing public involved:
//! - DHT: a mainline test network on loopback; mirror and laptop in-process with only the
//!   DHT on and no direct addresses; a reader finds the site's holders by discovery key;
//! - mDNS: `dat-mirror serve` and `dat-mirror mount` in two network namespaces on one
//!   bridge, the laptop given the mirror's id only;
//! - relay: a local iroh relay, the direct path between the two namespaces dropped.

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use dat_mirror::laptop::{Laptop, LaptopConfig};
use dat_mirror::mirror::{self, MirrorConfig};
use dat_mirror::model::command::Command as Cmd;
use dat_mirror::model::keys::Key;
use dat_mirror::net::endpoint::{self, NetworkConfig, RelayChoice};
use dat_mirror::net::endpoint::{Identity, PeerAddr};
use dat_mirror::net::node::{Node, Policy};
use dat_mirror::net::providers::Providers;
use dat_mirror::store::CoreStore;
use netns::{require_netns_or_skip, Lab};

const BIN: &str = env!("CARGO_BIN_EXE_dat-mirror");

fn dht_only(bootstrap: &[String]) -> NetworkConfig {
    NetworkConfig {
        mdns: false,
        dht: true,
        dht_bootstrap: bootstrap.to_vec(),
        relay: RelayChoice::Off,
        hyperswarm: false,
        hyperswarm_bootstrap: vec![],
    }
}

struct Nobody;
impl Policy for Nobody {
    fn may_serve(&self, _: &Key, _: &Key) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dht_connects_by_id_alone_and_finds_the_sites_holders() {
    init_tracing();
    let testnet = n0_mainline::Testnet::new(5)
        .await
        .expect("local DHT testnet");
    assert!(
        testnet
            .bootstrap
            .iter()
            .all(|b| b.starts_with("127.0.0.1:")),
        "the testnet must be on loopback: {:?}",
        testnet.bootstrap
    );
    let net = dht_only(&testnet.bootstrap);
    let tmp = tempfile::tempdir().unwrap();
    let (pi_dir, lap_dir, site_dir, reader_dir) = (
        tmp.path().join("pi"),
        tmp.path().join("lap"),
        tmp.path().join("site"),
        tmp.path().join("reader"),
    );
    let mirror = mirror::start(MirrorConfig {
        data: pi_dir,
        listen: "127.0.0.1:0".parse().unwrap(),
        http: None,
        allow: vec![node_id(&lap_dir)],
        network: net.clone(),
        ..Default::default()
    })
    .await
    .expect("mirror starts");
    let laptop = Laptop::start(LaptopConfig {
        data: lap_dir,
        mirrors: vec![PeerAddr::id_only(mirror.key())],
        listen: "127.0.0.1:0".parse().unwrap(),
        network: net.clone(),
    })
    .await
    .expect("laptop starts");
    wait_until("the laptop to reach the mirror by id alone", || async {
        laptop.inner.node.is_connected(&mirror.key()).then_some(())
    })
    .await;

    let files = make_site(&site_dir, 300_000);
    let site = publish(&laptop, &site_dir, None).await;
    laptop.inner.announce_published().await;
    laptop
        .inner
        .append(Cmd::Mirror {
            key: site.key,
            alias: None,
        })
        .await
        .unwrap();
    wait_until("the mirror to hold the whole site", || async {
        let (db, blobs) = mirror.inner.site(&site.key)?;
        (db.info().synced() && blobs?.info().synced()).then_some(())
    })
    .await;

    // A reader that knows only the site key: who holds it?
    let reader_id = Identity::load_or_create(&reader_dir).unwrap();
    let bound = endpoint::bind(&reader_id, "127.0.0.1:0".parse().unwrap(), &net)
        .await
        .unwrap();
    let store = Arc::new(CoreStore::new(&reader_dir).unwrap());
    let reader = Node::start(bound.endpoint, store.clone(), Arc::new(Nobody));
    let providers = Providers::start(reader.clone(), &bound.lookups, &reader_id);
    let dk = site.key.discovery_key();
    let found = wait_until("the DHT to name the mirror and the laptop", || async {
        let found = providers.find(&dk).await;
        (found.contains(&mirror.key()) && found.contains(&laptop.inner.key())).then_some(found)
    })
    .await;
    assert!(
        !found.contains(&reader.id()),
        "find never returns this node"
    );
    let unknown = providers.find_on_dht(&Key([9; 32]).discovery_key()).await;
    assert!(unknown.is_empty(), "nobody announced that key: {unknown:?}");

    // Stop the laptop: the mirror alone serves the site, dialled by the id the DHT gave.
    laptop.shutdown().await;
    let db = store.open_or_create_replica(&site.key).await.unwrap();
    reader.want(db.clone());
    reader
        .connect(&PeerAddr::id_only(mirror.key()))
        .await
        .expect("the reader dials the mirror by id alone");
    wait_until(
        "the reader to copy the site's db from the mirror",
        || async { db.info().synced().then_some(()) },
    )
    .await;
    assert!(db.info().length >= files.len() as u64);

    // The CLI reader, given nothing but the key: `clone` asks the DHT who has the site and
    // fetches it from the mirror (the laptop is gone).
    let out = tmp.path().join("cloned");
    let cli_data = tmp.path().join("cli-reader");
    let (o, d) = (out.clone(), cli_data.clone());
    let bootstrap = testnet.bootstrap.join(",");
    let key_link = site.key.to_link();
    let result = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dat-mirror"))
            .arg("--data")
            .arg(&d)
            .args(["clone", &key_link])
            .arg(&o)
            .args(["--timeout", "60s"])
            .env("XDG_CONFIG_HOME", &d)
            .env_remove("DAT_MIRROR_CONFIG")
            .env("DAT_MIRROR_NETWORK_MDNS", "false")
            .env("DAT_MIRROR_NETWORK_DHT", "true")
            .env("DAT_MIRROR_NETWORK_HYPERSWARM", "false")
            .env("DAT_MIRROR_NETWORK_DHT_BOOTSTRAP", &bootstrap)
            .env("DAT_MIRROR_NETWORK_RELAY", "off")
            .output()
            .expect("run dat-mirror clone")
    })
    .await
    .unwrap();
    assert!(
        result.status.success(),
        "clone by key alone failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    for (path, bytes) in &files {
        let got = std::fs::read(out.join(path.trim_start_matches('/'))).unwrap();
        assert!(got == *bytes, "{path} differs in the clone");
    }

    // Withdrawn sites are no longer re-announced (the DHT keeps the last one until it expires).
    mirror.inner.providers.withdraw(&dk);
    assert!(!mirror.inner.providers.announced().contains(&dk));
    reader.endpoint().close().await;
    mirror.shutdown().await;
}

#[tokio::test]
async fn id_alone_with_every_route_off_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let id = Identity::load_or_create(tmp.path()).unwrap();
    let bound = endpoint::bind(
        &id,
        "127.0.0.1:0".parse().unwrap(),
        &NetworkConfig::offline(),
    )
    .await
    .unwrap();
    assert!(bound.lookups.mdns.is_none() && bound.lookups.dht.is_none());
    let store = Arc::new(CoreStore::new(tmp.path()).unwrap());
    let node = Node::start(bound.endpoint, store, Arc::new(Nobody));
    let providers = Providers::start(node.clone(), &bound.lookups, &id);
    providers.announce([1; 32]);
    assert!(
        providers.announced().is_empty(),
        "no DHT: nothing announced"
    );
    assert!(providers.find(&[1; 32]).await.is_empty());
    let err = tokio::time::timeout(
        TIMEOUT,
        node.connect(&PeerAddr::id_only(
            Identity::load_or_create(&tmp.path().join("other"))
                .unwrap()
                .key(),
        )),
    )
    .await
    .expect("fails, not hangs")
    .expect_err("no route to a bare id");
    let msg = format!("{err:#}");
    assert!(msg.contains("ID@IP:PORT") && msg.contains("mDNS"), "{msg}");
    node.endpoint().close().await;
}

/// A `dat-mirror` process; SIGTERM then SIGKILL on drop.
struct Proc(Child, &'static str);

impl Drop for Proc {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.1);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lazily unmounts on drop whatever is still mounted there (after a failed test).
struct MountGuard(PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

/// `dat-mirror` in `host`'s namespace, with a clean environment (no user config file) and
/// only the routes given in `env`.
fn dat_mirror_in(lab: &Lab, host: &str, home: &Path, env: &[(&str, &str)]) -> Command {
    let mut c = lab.command(host, BIN);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("DAT_MIRROR_") || k.starts_with("XDG_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home)
        .env("RUST_LOG", "dat_mirror=debug,iroh=info,warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn spawn_logged(mut c: Command, log: &Path, name: &'static str) -> Proc {
    let f = std::fs::File::create(log).unwrap();
    let child = c
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    Proc(child, name)
}

/// Mirror (`serve --mount SITES`) in `pi`, laptop (`mount MNT --mirror <mirror id>`) in
/// `lap`; publishes a site, `touch`es it into the control folder, waits until the laptop
/// says it is mirrored, and compares the mirrored files with the originals.
async fn mirror_a_site_across_namespaces(lab: &Lab, tmp: &Path, env: &[(&str, &str)]) {
    let (pi_dir, lap_dir, site_dir, mnt, sites) = (
        tmp.join("pi"),
        tmp.join("lap"),
        tmp.join("site"),
        tmp.join("mnt"),
        tmp.join("sites"),
    );
    let (pi_id, lap_id) = (node_id(&pi_dir), node_id(&lap_dir));
    let _unmount = (MountGuard(mnt.clone()), MountGuard(sites.clone()));
    let mut serve = dat_mirror_in(lab, "pi", tmp, env);
    serve.arg("--data").arg(&pi_dir).args([
        "serve",
        "--listen",
        "0.0.0.0:7070",
        "--http",
        "127.0.0.1:8080",
        "--allow",
        &lap_id.to_hex(),
        "--mount",
    ]);
    serve.arg(&sites);
    let _serve = spawn_logged(serve, &tmp.join("pi.log"), "dat-mirror serve");
    let mut mount = dat_mirror_in(lab, "lap", tmp, env);
    mount
        .arg("--data")
        .arg(&lap_dir)
        .arg("mount")
        .arg(&mnt)
        .args(["--mirror", &pi_id.to_hex()]);
    let _mount = spawn_logged(mount, &tmp.join("lap.log"), "dat-mirror mount");
    let logs = |tmp: &Path| {
        format!(
            "\n--- pi.log\n{}\n--- lap.log\n{}",
            std::fs::read_to_string(tmp.join("pi.log")).unwrap_or_default(),
            std::fs::read_to_string(tmp.join("lap.log")).unwrap_or_default()
        )
    };
    let m = mnt.clone();
    wait_until("the control folder to be mounted", || {
        let m = m.clone();
        async move { blocking(move || m.join("STATUS").exists().then_some(())).await }
    })
    .await;

    let files = make_site(&site_dir, 1 << 20);
    let out = Command::new(BIN)
        .arg("--data")
        .arg(&lap_dir)
        .arg("publish")
        .arg(&site_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let key = Key::parse_link(&link).unwrap_or_else(|e| panic!("publish printed {link:?}: {e}"));
    let entry = mnt.join(key.to_hex());
    blocking(move || std::fs::File::create(entry).map(drop))
        .await
        .expect("touch the site into the control folder");

    let (m, name) = (mnt.clone(), key.to_hex());
    let state = tokio::time::timeout(2 * TIMEOUT, async {
        loop {
            let (m, name) = (m.clone(), name.clone());
            let s = blocking(move || state_of(&m, &name)).await;
            if s.as_deref().is_some_and(|s| s.starts_with("mirrored")) {
                return s.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the site was not mirrored in time{}", logs(tmp)));
    eprintln!("laptop says: {state}");
    for (path, bytes) in &files {
        let p = sites.join(key.to_hex()).join(path);
        let got = blocking(move || std::fs::read(&p)).await;
        assert!(
            got.as_ref().is_ok_and(|g| g == bytes),
            "{path} differs on the mirror ({:?}){}",
            got.map(|g| g.len()),
            logs(tmp)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mdns_finds_the_mirror_by_id_alone_across_namespaces() {
    let test = "mdns_finds_the_mirror_by_id_alone_across_namespaces";
    if !require_netns_or_skip(test) || !dat_mirror::fs::require_fuse_or_skip(test) {
        return;
    }
    init_tracing();
    let lab = Lab::new(&["pi", "lap"]);
    let tmp = tempfile::tempdir().unwrap();
    mirror_a_site_across_namespaces(
        &lab,
        tmp.path(),
        &[
            ("DAT_MIRROR_NETWORK_MDNS", "true"),
            ("DAT_MIRROR_NETWORK_DHT", "false"),
            ("DAT_MIRROR_NETWORK_HYPERSWARM", "false"),
            ("DAT_MIRROR_NETWORK_RELAY", "off"),
        ],
    )
    .await;
}

/// iroh's relay server: `$IROH_RELAY_BIN`, else `iroh-relay` on the PATH or in
/// ~/.cargo/bin (scripts/test.sh installs it).
fn relay_binary() -> Option<String> {
    let mut candidates: Vec<String> = std::env::var("IROH_RELAY_BIN").into_iter().collect();
    candidates.push("iroh-relay".into());
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(format!("{}/.cargo/bin/iroh-relay", home.to_string_lossy()));
    }
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_carries_the_sync_when_the_direct_path_is_blocked() {
    let test = "relay_carries_the_sync_when_the_direct_path_is_blocked";
    if !require_netns_or_skip(test) || !dat_mirror::fs::require_fuse_or_skip(test) {
        return;
    }
    let relay_bin = relay_binary();
    let missing = match (Command::new("iptables").arg("-V").output(), &relay_bin) {
        (Err(_), _) => Some("iptables is missing"),
        (_, None) => {
            Some("the iroh-relay binary is missing (cargo install iroh-relay --features server)")
        }
        _ => None,
    };
    if let Some(why) = missing {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {why}; CI=true, so this is a failure (scripts/test.sh installs it)");
        }
        eprintln!("SKIPPED {test}: {why}");
        return;
    }
    let relay_bin = relay_bin.unwrap();
    init_tracing();
    let lab = Lab::new(&["pi", "lap"]);
    lab.block("pi", "lap");
    // The block is real: a TCP connect from lap to a closed port on pi is not even refused
    // (it times out or is not permitted); without the block pi would answer with a reset.
    let probe = lab
        .command("lap", "timeout")
        .args([
            "2",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{}/9", lab.ip("pi")),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&probe.stderr).to_lowercase();
    assert!(
        !probe.status.success() && !said.contains("refused"),
        "lap still reaches pi directly: {said}"
    );

    // iroh's relay server (`iroh-relay --dev`: plain HTTP on port 3340) in the switch
    // namespace, which both hosts reach.
    let tmp = tempfile::tempdir().unwrap();
    let relay = spawn_logged(
        {
            let mut c = lab.command("sw", &relay_bin);
            c.arg("--dev");
            c
        },
        &tmp.path().join("relay.log"),
        "iroh-relay",
    );
    let url = format!("http://{}:3340", lab.switch_ip());
    let probe = format!("exec 3<>/dev/tcp/{}/3340", lab.switch_ip());
    wait_until("the relay to listen", || {
        let mut c = lab.command("pi", "bash");
        c.args(["-c", &probe]);
        async move { c.output().ok().filter(|o| o.status.success()).map(drop) }
    })
    .await;

    mirror_a_site_across_namespaces(
        &lab,
        tmp.path(),
        &[
            ("DAT_MIRROR_NETWORK_MDNS", "false"),
            ("DAT_MIRROR_NETWORK_DHT", "false"),
            ("DAT_MIRROR_NETWORK_HYPERSWARM", "false"),
            ("DAT_MIRROR_NETWORK_RELAY", &url),
        ],
    )
    .await;
    drop(relay);
}
