//! The mirror's hypercore network plane behind a NAT, reached by a Node reader behind another
//! NAT, by hole punching (network namespaces; needs root, `ip`, `nsenter`, `iptables`; skips
//! loudly without them, fails with CI=true):
//!
//! ```text
//!   public segment 10.S.0.0/24 (a bridge in its own namespace)
//!     pub   10.S.0.2  the HyperDHT testnet (10 nodes) and, first, the Node publisher
//!     nata  10.S.0.3  router: MASQUERADE out of eth0, drops unsolicited inbound
//!       └─ mirror 192.168.1.2  (only the plane's bridge process runs in there)
//!     natb  10.S.0.4  router: the same
//!       └─ reader 192.168.2.2  a Node hyperdrive 13 reader
//! ```
//!
//! The plane (in this test process, with its bridge — the only part that touches the network
//! — started inside the mirror's namespace) fetches a Node hyperdrive 13 drive from the public
//! publisher; the publisher stops; then fresh Node readers behind natb read every file from
//! the plane alone:
//! 1. both NATs port-preserving (Linux MASQUERADE's default, a "consistent" NAT): connected by
//!    hole punching;
//! 2. the reader's NAT randomizing ports (`--random-fully`), the mirror's consistent: HyperDHT
//!    falls back to random probing from the consistent side and still connects (slower);
//! 3. both randomizing: HyperDHT does not try (it aborts double-randomized punches): the
//!    reader finds no peer. With no relay configured this is the limit; a mirror behind such a
//!    NAT needs a forwarded port or a public address.
//!
//! Two lab details, both what real networks have: the routers drop unsolicited inbound packets
//! (without that, a punch packet arriving before the router's own outbound one leaves a
//! conntrack entry that makes MASQUERADE pick another port, and the punch fails — on the
//! internet hyperdht's low-TTL first packets avoid this, but here the other NAT is 2 hops
//! away), and the testnet has 10 nodes (HyperDHT classifies a NAT from pings to several DHT
//! nodes; with 3 it cannot decide and aborts).

#[path = "common/netns.rs"]
mod netns;
#[path = "../crates/hypercore-peer/tests/common/mod.rs"]
mod peer_common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dat_mirror::model::keys::Key;
use dat_mirror::net::hypernet::HyperNet;
use netns::{run, Lab};
use peer_common::{assert_same_files, init_tracing, node_ready, random32, Testnet};
use serde_json::json;

/// A private network behind a router of `lab`: namespace `name` with 192.168.`sub`.2/24,
/// default route via the router's 192.168.`sub`.1; deleted on drop.
struct Lan {
    name: String,
    router: String,
}

impl Lan {
    fn new(lab: &Lab, router: &str, name: &str, sub: u8) -> Lan {
        let name = format!("dmnat{}{name}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(Command::new("ip").args(["netns", "add", &name]));
        let lan = Lan {
            name: name.clone(),
            router: router.to_string(),
        };
        let ip_in = |host: &str, args: &[&str]| {
            run(lab.command(host, "ip").args(args));
        };
        ip_in(
            router,
            &[
                "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", &name,
            ],
        );
        ip_in(
            router,
            &["addr", "add", &format!("192.168.{sub}.1/24"), "dev", "lan0"],
        );
        ip_in(router, &["link", "set", "lan0", "up"]);
        let here = |args: &[&str]| {
            run(Command::new("ip").args(["-n", &name]).args(args));
        };
        here(&["addr", "add", &format!("192.168.{sub}.2/24"), "dev", "eth0"]);
        here(&["link", "set", "eth0", "up"]);
        here(&["link", "set", "lo", "up"]);
        here(&[
            "route",
            "add",
            "default",
            "via",
            &format!("192.168.{sub}.1"),
        ]);
        run(lab
            .command(router, "sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"]));
        // a home router's firewall: nothing unsolicited reaches the router itself
        run(lab.command(router, "iptables").args([
            "-w",
            "-A",
            "INPUT",
            "-i",
            "eth0",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-j",
            "DROP",
        ]));
        lan
    }

    fn ns_path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// (Re)sets the router's NAT: MASQUERADE out of eth0, port-preserving or `--random-fully`.
    fn nat(&self, lab: &Lab, random: bool) {
        run(lab
            .command(&self.router, "iptables")
            .args(["-w", "-t", "nat", "-F", "POSTROUTING"]));
        let mut rule = vec![
            "-w",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "eth0",
            "-j",
            "MASQUERADE",
        ];
        if random {
            rule.push("--random-fully");
        }
        run(lab.command(&self.router, "iptables").args(rule));
        // forget old mappings, so new flows get the new behaviour
        let _ = lab.command(&self.router, "conntrack").arg("-F").output();
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// `node` for the bridge: a wrapper that runs it inside `netns`.
fn node_in(dir: &Path, netns: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("node-in-netns");
    std::fs::write(
        &p,
        format!("#!/bin/sh\nexec nsenter --net={netns} -- node \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn tools_or_skip(test: &str) -> bool {
    if !netns::require_netns_or_skip(test) {
        return false;
    }
    let ok = Command::new("iptables")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: iptables is missing (CI=true: not skipping)");
    }
    eprintln!("SKIPPED {test}: iptables is missing");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reader_behind_a_nat_reads_a_site_from_the_mirror_behind_another_nat_by_hole_punching(
) {
    const TEST: &str = "a_node_reader_behind_a_nat_reads_a_site_from_the_mirror_behind_another_nat_by_hole_punching";
    if !node_ready(TEST) || !tools_or_skip(TEST) {
        return;
    }
    init_tracing();
    let lab = Lab::new(&["pub", "nata", "natb"]);
    let mirror_lan = Lan::new(&lab, "nata", "m", 1);
    let reader_lan = Lan::new(&lab, "natb", "r", 2);
    mirror_lan.nat(&lab, false);
    reader_lan.nat(&lab, false);
    let public = lab.ns_path("pub");
    let net = Testnet::start_in(Some(&public), 10, &lab.ip("pub").to_string()).await;

    // the publisher, on the public segment
    let wdir = tempfile::tempdir().unwrap();
    let mut writer = net.drive_in(
        Some(&public),
        "v13",
        "write",
        wdir.path(),
        "",
        json!({"set": "small", "join": "server", "host": "0.0.0.0", "firewalled": false}),
    );
    let ready = writer.event("ready", 60).await;
    let db = peer_common::hex32(&ready["key"]);
    let blobs = peer_common::hex32(&ready["blobsKey"]);

    // the mirror's plane: its bridge behind nata
    let mdir = tempfile::tempdir().unwrap();
    let store = hypercore_engine::Store::open(mdir.path()).unwrap();
    let mut options = hyperswarm_bridge::BridgeOptions::new(random32());
    options.bootstrap = net.bootstrap.clone();
    options.node = node_in(mdir.path(), &mirror_lan.ns_path());
    options.js_dir = peer_common::bridge_js_dir();
    let plane = HyperNet::start(store.clone(), options).await.unwrap();
    plane.add_site(Key(db), true).await.unwrap();
    let complete = |key: &[u8; 32], length: u64| {
        store
            .info(key)
            .is_ok_and(|i| i.length >= length && i.contiguous_length >= i.length)
    };
    let started = Instant::now();
    while !(complete(&db, ready["dbLength"].as_u64().unwrap())
        && complete(&blobs, ready["blobsLength"].as_u64().unwrap()))
    {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the mirror behind nata did not fetch the site from the public publisher"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "the mirror behind a NAT fetched the site in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    writer.stop().await;

    let read = |what: &'static str| {
        let (net, key, reader_ns) = (&net, ready["key"].as_str().unwrap(), reader_lan.ns_path());
        async move {
            let dir = tempfile::tempdir().unwrap();
            let t = Instant::now();
            let mut r = net.drive_in(
                Some(&reader_ns),
                "v13",
                "read",
                dir.path(),
                key,
                json!({"host": "0.0.0.0", "firewalled": true}),
            );
            let files = r.event("files", 120).await;
            eprintln!(
                "{what}: {} bytes, {} peer(s), {:.0} ms after start",
                files["bytes"],
                files["peers"],
                t.elapsed().as_secs_f64() * 1000.0
            );
            r.stop().await;
            files
        }
    };

    // 1. both NATs consistent: hole punched
    let files = read("both NATs consistent").await;
    assert_same_files(&ready["files"], &files["files"], "reader behind natb");
    assert_eq!(files["peers"], 1, "from the mirror alone, hole punched");

    // 2. the reader's NAT random, the mirror's consistent: still connects
    reader_lan.nat(&lab, true);
    let files = read("reader's NAT --random-fully").await;
    assert_same_files(
        &ready["files"],
        &files["files"],
        "reader behind a random NAT",
    );
    assert_eq!(files["peers"], 1);

    // 3. both random: HyperDHT does not punch double-randomized NATs
    mirror_lan.nat(&lab, true);
    let files = read("both NATs --random-fully").await;
    assert_eq!(files["peers"], 0, "no connection through two random NATs");
    assert_eq!(files["files"], json!({}));

    plane.shutdown().await;
    drop(net);
}
