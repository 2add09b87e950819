//! A small network lab for tests: Linux network namespaces ("hosts") joined by a bridge that
//! lives in a namespace of its own (the "switch"), so nothing touches the machine's own
//! network. Each host gets `eth0` with 10.N.0.H/24, `lo` up and a multicast route (mDNS);
//! the switch's bridge has 10.N.0.1 (for a server every host can reach, e.g. a relay).
//! Names are unique per lab; every namespace is deleted on drop, even when the test fails.
//! Include it with `#[path = "common/netns.rs"] mod netns;` (it needs root and `ip`).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static LABS: AtomicU32 = AtomicU32::new(0);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `true` if network-namespace tests can run here (root, `ip`, `nsenter`); otherwise skips
/// loudly, or panics when `CI=true` (where they must run).
pub fn require_netns_or_skip(test: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "nsenter"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok());
    let why = match (root, tools) {
        (false, _) => "it needs root (network namespaces)",
        (_, false) => "`ip` (iproute2) or `nsenter` (util-linux) is missing",
        _ => return true,
    };
    if in_ci() {
        panic!("{test}: {why}; CI=true, so this is a failure (scripts/test.sh installs iproute2)");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Runs `cmd`, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

pub struct Lab {
    prefix: String,
    subnet: u8,
    hosts: Vec<String>,
    made: Vec<String>,
}

impl Lab {
    /// Creates the switch and one namespace per name in `hosts`.
    pub fn new(hosts: &[&str]) -> Lab {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("dm{}x{n}", std::process::id());
        let subnet = 1 + (std::process::id() as u8 ^ (n as u8).wrapping_mul(37)) % 250;
        let mut lab = Lab {
            prefix,
            subnet,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            made: Vec::new(),
        };
        let sw = lab.ns("sw");
        ip(&["netns", "add", &sw]);
        lab.made.push(sw.clone());
        ip(&["-n", &sw, "link", "set", "lo", "up"]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        // No IGMP snooping: multicast (mDNS) floods to every port, as on a plain switch.
        ip(&[
            "-n",
            &sw,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&[
            "-n",
            &sw,
            "addr",
            "add",
            &format!("{}/24", lab.switch_ip()),
            "dev",
            "br0",
        ]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for (i, host) in hosts.iter().enumerate() {
            let ns = lab.ns(host);
            ip(&["netns", "add", &ns]);
            lab.made.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &sw, "link", "set", &port, "up"]);
            let addr = format!("{}/24", lab.ip(host));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        lab
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// The file that names `host`'s namespace (for `nsenter --net=`).
    pub fn ns_path(&self, host: &str) -> String {
        format!("/var/run/netns/{}", self.ns(host))
    }

    /// The bridge's address (in the switch namespace), reachable from every host.
    pub fn switch_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, 1)
    }

    pub fn ip(&self, host: &str) -> Ipv4Addr {
        let i = self
            .hosts
            .iter()
            .position(|h| h == host)
            .unwrap_or_else(|| panic!("no host {host} in this lab"));
        Ipv4Addr::new(10, self.subnet, 0, 2 + i as u8)
    }

    /// `program` run inside `host`'s network namespace (same file system and mounts).
    pub fn command(&self, host: &str, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.ns_path(host)))
            .arg("--")
            .arg(program);
        c
    }

    /// Drops every packet between hosts `a` and `b` (both directions, in both hosts), so
    /// they can only talk through a third party.
    pub fn block(&self, a: &str, b: &str) {
        for (me, other) in [(a, b), (b, a)] {
            let other = self.ip(other).to_string();
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                run(self
                    .command(me, "iptables")
                    .args(["-w", "-A", chain, dir, &other, "-j", "DROP"]));
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
