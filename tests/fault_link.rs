//! Network faults between a laptop and its mirror, each a real `dat-mirror` process in its
//! own network namespace (mirror in `a`, laptop and its FUSE control folder in `b`), joined
//! by a veth pair the test cuts, restores and impairs.
//!
//! Needs root, iproute2 and FUSE: skipped loudly without them, failed with `CI=true`.

mod common;
mod netns;
mod procs;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dat_mirror::model::command::Command as Cmd;
use dat_mirror::model::keys::Key;
use netns::{http_get_in, status_json_in, ImpairedRelay, NetnsPair};
use procs::*;

const PEER_PORT: u16 = 7070;
const HTTP: &str = "127.0.0.1:8080";
const LONG: Duration = Duration::from_secs(60);
/// The big file of the site synced through the impaired link (~0.6 MiB in all), and the hang
/// guard for it. At 10 % loss each way QUIC's loss-based congestion control (Cubic, and BBR3
/// too: tried) moves ~12 KB/s here, so "a few MiB" would take minutes; with 0 % loss and the
/// same delay the relay moves 3 MiB in ~8 s.
const SITE_BYTES: usize = 512 << 10;
const IMPAIRED: Duration = Duration::from_secs(300);

/// A mirror in namespace `a` and a laptop (`dat-mirror mount`) in `b`, paired.
struct Setup {
    mirror: Proc,
    laptop: Proc,
    pi_dir: PathBuf,
    lap_dir: PathBuf,
    mnt: PathBuf,
    home: PathBuf,
    mirror_id: Key,
    laptop_id: Key,
    http: SocketAddr,
}

/// `dial`: where the laptop reaches the mirror (its address on the veth, or a relay).
fn start(net: &NetnsPair, tmp: &Path, dial: SocketAddr) -> Setup {
    let (pi_dir, lap_dir, mnt, home) = (
        tmp.join("pi"),
        tmp.join("lap"),
        tmp.join("mnt"),
        tmp.join("home"),
    );
    std::fs::create_dir_all(&home).unwrap();
    let (mirror_id, laptop_id) = (common::node_id(&pi_dir), common::node_id(&lap_dir));
    let listen = format!("{}:{PEER_PORT}", net.ip_a);
    let mirror = serve_command(Some(&net.a), &home, &pi_dir, &listen, HTTP, &laptop_id);
    let mut mirror = Proc::spawn("mirror", mirror, &tmp.join("mirror.log"));
    let laptop = mount_command(
        Some(&net.b),
        &home,
        &lap_dir,
        &mnt,
        &mirror_id,
        &dial.to_string(),
    );
    let mut laptop = Proc::spawn("laptop", laptop, &tmp.join("laptop.log"));
    mirror.wait_for_log("mirror key:", 1, LONG);
    laptop.wait_for_log("control folder mounted at", 1, LONG);
    Setup {
        mirror,
        laptop,
        pi_dir,
        lap_dir,
        mnt,
        home,
        mirror_id,
        laptop_id,
        http: HTTP.parse().unwrap(),
    }
}

fn mirror_at(net: &NetnsPair) -> SocketAddr {
    SocketAddr::new(net.ip_a.into(), PEER_PORT)
}

/// Is the laptop connected, as the mirror's status JSON says?
fn laptop_online(ns: &str, http: SocketAddr) -> Option<bool> {
    let json = status_json_in(ns, http)?;
    json["laptops"][0]["online"].as_bool()
}

/// The sites the mirror holds completely, and all sites it has, from its status JSON.
fn mirror_sites(ns: &str, http: SocketAddr) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
    let json = status_json_in(ns, http)?;
    let sites = json["sites"].as_array()?;
    let key = |s: &serde_json::Value| s["key"].as_str().unwrap_or_default().to_string();
    let complete = sites
        .iter()
        .filter(|s| s["complete"] == true)
        .map(key)
        .collect();
    Some((complete, sites.iter().map(key).collect()))
}

/// Prints the last lines of both processes' logs (for a failure's diagnosis).
fn dump_logs(dir: &Path) {
    for log in ["mirror.log", "laptop.log"] {
        let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        eprintln!("--- last lines of {log}:");
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}

fn sh(program: &str, arg: &Path) {
    let status = std::process::Command::new(program)
        .arg(arg)
        .status()
        .unwrap();
    assert!(status.success(), "{program} {} failed", arg.display());
}

#[test]
fn commands_written_while_the_link_is_cut_arrive_once_in_order() {
    let test = "commands_written_while_the_link_is_cut_arrive_once_in_order";
    let Some(net) = NetnsPair::create(test) else {
        return;
    };
    if !dat_mirror::fs::require_fuse_or_skip(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&net, tmp.path(), mirror_at(&net));

    // Five small real sites, published on the laptop (so the mirror can fetch them).
    let sites: Vec<Key> = (0..5)
        .map(|i| {
            let dir = tmp.path().join(format!("site{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("index.html"), format!("<h1>site {i}</h1>")).unwrap();
            publish_cli(&s.home, &s.lap_dir, &dir)
        })
        .collect();
    wait_for("the laptop to connect to the mirror", LONG, || {
        laptop_online(&net.a, s.http).filter(|o| *o)
    });

    // Cut the link and wait until both ends gave the connection up.
    net.cut();
    wait_for("the mirror to see the laptop gone", LONG, || {
        laptop_online(&net.a, s.http).filter(|o| !*o)
    });

    // 100 touch/rm, seeded: rm a site the folder lists as mirrored, touch one it does not.
    let mut rng = Rng::from_env("FAULT_SEED");
    let mut wanted: BTreeSet<Key> = BTreeSet::new();
    let mut plan = Vec::new();
    for _ in 0..100 {
        let key = sites[rng.range(0, sites.len() as u64) as usize];
        let path = s.mnt.join(key.to_hex());
        if wanted.remove(&key) {
            sh("rm", &path);
            plan.push(Cmd::Unmirror { key });
        } else {
            sh("touch", &path);
            wanted.insert(key);
            plan.push(Cmd::Mirror { key, alias: None });
        }
    }
    // Nothing can have been acknowledged: every entry is queued or removing.
    for key in &sites {
        if let Some(state) = common::state_of(&s.mnt, &key.to_hex()) {
            assert!(
                state == "queued" || state == "removing",
                "{key}: {state} while the link is cut"
            );
        }
    }
    let (_, held) = mirror_sites(&net.a, s.http).unwrap();
    assert!(
        held.is_empty(),
        "the mirror got {held:?} through a cut link"
    );

    net.restore();
    let want: BTreeSet<String> = wanted.iter().map(|k| k.to_hex()).collect();
    let held = wait_for_or_none(LONG, || {
        mirror_sites(&net.a, s.http).filter(|(complete, all)| *complete == want && *all == want)
    });
    if held.is_none() {
        eprintln!("mirror status: {:?}", status_json_in(&net.a, s.http));
        dump_logs(tmp.path());
        panic!("the mirror does not hold exactly {want:?} {LONG:?} after the link came back");
    }
    wait_for("the control folder to show the final states", LONG, || {
        let listed: BTreeSet<String> = std::fs::read_dir(&s.mnt)
            .ok()?
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "STATUS")
            .collect();
        let mirrored = want
            .iter()
            .all(|k| common::state_of(&s.mnt, k).is_some_and(|st| st.starts_with("mirrored")));
        (listed == want && mirrored).then_some(())
    });

    let Setup {
        mirror,
        laptop,
        pi_dir,
        lap_dir,
        mirror_id,
        laptop_id,
        ..
    } = s;
    assert!(laptop.terminate().success());
    assert!(mirror.terminate().success());
    let log = block_on(command_log(&lap_dir, &laptop_id));
    assert_eq!(log, plan, "the command log is not the 100 commands written");
    let status = block_on(status_log(&pi_dir, &mirror_id));
    let acked = acks(&status, &laptop_id);
    assert_eq!(
        acked,
        (0..100).collect::<Vec<u64>>(),
        "acknowledgements are not 0..99, once each, in order"
    );
}

#[test]
fn a_sync_completes_through_loss_and_delay() {
    let test = "a_sync_completes_through_loss_and_delay";
    let Some(net) = NetnsPair::create(test) else {
        return;
    };
    if !dat_mirror::fs::require_fuse_or_skip(test) {
        return;
    }
    let mut rng = Rng::from_env("FAULT_SEED");
    // Both directions: 10 % of datagrams lost, the rest 200 ms late (FAULT_LOSS_PCT and
    // FAULT_DELAY_MS change that, to explore).
    let env = |var: &str, default: u64| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (loss, delay) = (env("FAULT_LOSS_PCT", 10), env("FAULT_DELAY_MS", 200));
    let netem = [format!("{loss}%"), format!("{delay}ms")];
    let (dial, _relay) = match net.netem(&["loss", &netem[0], "delay", &netem[1]]) {
        Ok(()) => {
            eprintln!("{test}: tc netem on both ends of the veth: loss {loss}%, delay {delay}ms");
            (mirror_at(&net), None)
        }
        Err(e) => {
            eprintln!(
                "NOTE {test}: {e}; this kernel has no sch_netem, so a userspace relay between \
                 the namespaces drops {loss}% and delays {delay} ms instead (the veth is cut)"
            );
            net.cut();
            let relay = ImpairedRelay::start(
                &net.b,
                "127.0.0.1:0".parse().unwrap(),
                &net.a,
                mirror_at(&net),
                loss as f64 / 100.0,
                Duration::from_millis(delay),
                rng.next(),
            );
            (relay.addr, Some(relay))
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&net, tmp.path(), dial);
    let site_dir = tmp.path().join("site");
    let files = common::make_site(&site_dir, SITE_BYTES);
    let key = publish_cli(&s.home, &s.lap_dir, &site_dir);
    sh("touch", &s.mnt.join(key.to_hex()));
    let t0 = std::time::Instant::now();
    let mut next_report = t0;
    let done = wait_for_or_none(IMPAIRED, || {
        if std::time::Instant::now() >= next_report {
            next_report = std::time::Instant::now() + Duration::from_secs(10);
            if let Some(json) = status_json_in(&net.a, s.http) {
                eprintln!(
                    "{:>5.1}s laptop online: {}, site: {}",
                    t0.elapsed().as_secs_f64(),
                    json["laptops"][0]["online"],
                    json["sites"][0]
                );
            }
        }
        mirror_sites(&net.a, s.http).filter(|(complete, _)| complete.contains(&key.to_hex()))
    });
    if done.is_none() {
        dump_logs(tmp.path());
        panic!("the site did not complete within {IMPAIRED:?}");
    }
    eprintln!(
        "{test}: {} bytes mirrored through the impaired link in {:.1} s",
        SITE_BYTES,
        t0.elapsed().as_secs_f64()
    );
    for (path, bytes) in &files {
        let (status, body) =
            http_get_in(&net.a, s.http, &format!("/{key}/{path}")).expect("HTTP answers");
        assert_eq!(status, 200, "{path}");
        assert!(body == *bytes, "{path} differs");
    }
    let log = std::fs::read_to_string(tmp.path().join("mirror.log")).unwrap();
    for bad in ["does not verify", "could not be applied", "panicked"] {
        assert!(!log.contains(bad), "the mirror logged {bad:?}:\n{log}");
    }
}
