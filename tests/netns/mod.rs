//! Network namespaces for fault tests: two namespaces joined by a veth pair (`lo` up in both,
//! addresses 10.x.y.1 and 10.x.y.2), removed on drop even when the test panics. Processes run
//! inside one with `nsenter --net=/var/run/netns/NAME` (which, unlike `ip netns exec`, keeps
//! the caller's mount namespace, so a FUSE mount made inside is visible to the test). The
//! link can be cut and restored, and impaired with `tc netem` where the kernel has it.
//! Code of the test process itself reaches into a namespace with [`in_netns`] (a thread that
//! `setns`es), e.g. [`http_get_in`] for the mirror's HTTP gateway.
//!
//! Needs root and iproute2. Without them a test skips loudly; with `CI=true` it fails.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Runs `ip ARGS`, returning its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e} (install iproute2)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why network namespaces cannot be made here, if they cannot.
fn netns_unavailable() -> Option<String> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    for tool in ["ip", "nsenter"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!(
                "`{tool}` is not installed (packages iproute2, util-linux)"
            ));
        }
    }
    None
}

/// Two network namespaces `a` and `b` joined by a veth pair.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub veth_a: String,
    pub veth_b: String,
    pub ip_a: Ipv4Addr,
    pub ip_b: Ipv4Addr,
}

impl NetnsPair {
    /// Creates the pair, or returns `None` after printing why it cannot (outside CI; with
    /// `CI=true` it panics so the test fails instead of passing silently).
    pub fn create(test: &str) -> Option<NetnsPair> {
        if let Some(why) = netns_unavailable() {
            if in_ci() {
                panic!("{test}: network namespaces are required in CI (CI=true): {why}");
            }
            eprintln!("SKIPPED {test}: {why} (with CI=true this fails)");
            return None;
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{:x}{n}", pid % 0x10_0000);
        let x = (pid % 200 + 20) as u8;
        let y = (n % 250) as u8;
        let pair = NetnsPair {
            a: format!("dmf{tag}a"),
            b: format!("dmf{tag}b"),
            veth_a: format!("dmv{tag}a"),
            veth_b: format!("dmv{tag}b"),
            ip_a: Ipv4Addr::new(10, x, y, 1),
            ip_b: Ipv4Addr::new(10, x, y, 2),
        };
        // From here on, Drop cleans up whatever was made.
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &pair.a])?;
            ip(&["netns", "add", &pair.b])?;
            ip(&[
                "link",
                "add",
                &pair.veth_a,
                "type",
                "veth",
                "peer",
                "name",
                &pair.veth_b,
            ])?;
            ip(&["link", "set", &pair.veth_a, "netns", &pair.a])?;
            ip(&["link", "set", &pair.veth_b, "netns", &pair.b])?;
            for (ns, dev, addr) in [
                (&pair.a, &pair.veth_a, pair.ip_a),
                (&pair.b, &pair.veth_b, pair.ip_b),
            ] {
                ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
                ip(&["-n", ns, "link", "set", "lo", "up"])?;
                ip(&["-n", ns, "link", "set", dev, "up"])?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            if in_ci() {
                panic!("{test}: cannot set up network namespaces in CI: {e}");
            }
            eprintln!(
                "SKIPPED {test}: cannot set up network namespaces: {e} (with CI=true this fails)"
            );
            return None;
        }
        Some(pair)
    }

    pub fn path(ns: &str) -> String {
        format!("/var/run/netns/{ns}")
    }

    /// `program` to be run inside namespace `ns` (add arguments, env, stdio, then spawn).
    pub fn command(ns: &str, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", Self::path(ns)))
            .arg("--")
            .arg(program);
        c
    }

    /// Takes the link down at both ends: nothing passes between the namespaces.
    pub fn cut(&self) {
        ip(&["-n", &self.a, "link", "set", &self.veth_a, "down"]).unwrap();
        ip(&["-n", &self.b, "link", "set", &self.veth_b, "down"]).unwrap();
    }

    /// Brings the link back up at both ends.
    pub fn restore(&self) {
        ip(&["-n", &self.a, "link", "set", &self.veth_a, "up"]).unwrap();
        ip(&["-n", &self.b, "link", "set", &self.veth_b, "up"]).unwrap();
    }

    /// Adds `tc qdisc ... root netem ARGS` on both ends of the link (so both directions are
    /// impaired). `Err` says why not, e.g. the kernel has no `sch_netem`.
    pub fn netem(&self, args: &[&str]) -> Result<(), String> {
        for (ns, dev) in [(&self.a, &self.veth_a), (&self.b, &self.veth_b)] {
            let out = Self::command(ns, "tc")
                .args(["qdisc", "add", "dev", dev, "root", "netem"])
                .args(args)
                .output()
                .map_err(|e| format!("cannot run tc: {e} (install iproute2)"))?;
            if !out.status.success() {
                return Err(format!(
                    "tc netem on {dev}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(())
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the other end.
        for ns in [&self.a, &self.b] {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("warning: {e}");
            }
        }
    }
}

/// Runs `f` on a thread that has joined network namespace `ns`. Sockets made there stay in
/// that namespace after the thread ends.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = NetnsPair::path(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on a valid namespace fd; it changes only this thread's namespace.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("thread in the namespace panicked")
}

/// `GET path` on the HTTP server at `addr` inside namespace `ns`: (status, body), or `None`
/// if it does not answer (yet).
pub fn http_get_in(ns: &str, addr: SocketAddr, path: &str) -> Option<(u16, Vec<u8>)> {
    let path = path.to_string();
    in_netns(ns, move || http_get_here(addr, &path))
}

/// `GET path` (HTTP/1.0, so the server closes after the body) on `addr` from this thread's
/// namespace: (status, body), or `None` if it does not answer.
pub fn http_get_here(addr: SocketAddr, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, raw[split + 4..].to_vec()))
}

/// The mirror's status JSON (`/.well-known/dat-mirror`) from inside namespace `ns`.
pub fn status_json_in(ns: &str, addr: SocketAddr) -> Option<serde_json::Value> {
    let (status, body) = http_get_in(ns, addr, "/.well-known/dat-mirror")?;
    (status == 200).then_some(())?;
    serde_json::from_slice(&body).ok()
}

/// A UDP relay that impairs what it forwards (each datagram dropped with probability
/// `loss`, the rest delayed by `delay`), for kernels without `sch_netem`: its laptop-facing
/// socket lives in one namespace, its mirror-facing socket in the other, and the test cuts
/// the veth so the relay is the only path. Stops on drop.
pub struct ImpairedRelay {
    /// Where the laptop should dial (in the laptop's namespace).
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ImpairedRelay {
    /// Forwards datagrams from `listen` (bound in `near_ns`) to `target` (reached from
    /// `far_ns`), and the answers back to whoever sent the last datagram.
    pub fn start(
        near_ns: &str,
        listen: SocketAddr,
        far_ns: &str,
        target: SocketAddr,
        loss: f64,
        delay: Duration,
        seed: u64,
    ) -> ImpairedRelay {
        let near = in_netns(near_ns, move || std::net::UdpSocket::bind(listen).unwrap());
        let far = in_netns(far_ns, || std::net::UdpSocket::bind("0.0.0.0:0").unwrap());
        let addr = near.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                near.set_nonblocking(true).unwrap();
                far.set_nonblocking(true).unwrap();
                let near = std::sync::Arc::new(tokio::net::UdpSocket::from_std(near).unwrap());
                let far = std::sync::Arc::new(tokio::net::UdpSocket::from_std(far).unwrap());
                let mut x = seed | 1;
                let mut keep = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 1_000_000) as f64 >= loss * 1_000_000.0
                };
                let mut client: Option<SocketAddr> = None;
                let (mut a, mut b) = (vec![0u8; 65536], vec![0u8; 65536]);
                while !stopped.load(Ordering::Relaxed) {
                    let (bytes, to, via) = tokio::select! {
                        r = near.recv_from(&mut a) => {
                            let Ok((n, from)) = r else { continue };
                            client = Some(from);
                            (a[..n].to_vec(), target, far.clone())
                        }
                        r = far.recv_from(&mut b) => {
                            let Ok((n, _)) = r else { continue };
                            let Some(c) = client else { continue };
                            (b[..n].to_vec(), c, near.clone())
                        }
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    };
                    if keep() {
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = via.send_to(&bytes, to).await;
                        });
                    }
                }
            });
        });
        ImpairedRelay {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ImpairedRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
