//! Issue 14, item 12: a mirror killed with SIGKILL and restarted on the same address is
//! noticed by its laptop at once, not after QUIC's 8 s idle timeout. Both sides are real
//! `dat-mirror` processes (`serve`, and `mount` with its FUSE control folder); the laptop
//! still holds its connection to the dead process (iroh's stateless-reset key is random per
//! process, so nothing tells it the old connection is gone), and only the restarted
//! mirror dialling the laptops it knows (`dial_known_laptops`) replaces that connection.
//!
//! Measured as the user sees it: a command appended right after the restart (a `touch` in
//! the control folder) is acknowledged, as `dat-mirror status --json` on the laptop shows.
//! Needs FUSE: skipped loudly without it, failed with `CI=true`.

mod common;
mod procs;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use dat_mirror::model::keys::Key;
use procs::*;

const LONG: Duration = Duration::from_secs(60);
/// Well under the 8 s idle timeout the laptop would otherwise wait out.
const MAX_RECONNECT: Duration = Duration::from_secs(6);

/// The highest command seq the laptop's (only) mirror acknowledged, from the running
/// laptop's `dat-mirror status --json`.
fn acked(home: &Path, lap_dir: &Path) -> Option<u64> {
    let out = command(None, home)
        .arg("--data")
        .arg(lap_dir)
        .args(["status", "--json"])
        .output()
        .ok()?;
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    view["mirrors"][0]["acked"].as_u64()
}

#[test]
fn a_restarted_mirror_is_noticed_well_under_the_idle_timeout() {
    let test = "a_restarted_mirror_is_noticed_well_under_the_idle_timeout";
    if !dat_mirror::fs::require_fuse_or_skip(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (pi_dir, lap_dir, mnt, home) = (t.join("pi"), t.join("lap"), t.join("mnt"), t.join("home"));
    std::fs::create_dir_all(&home).unwrap();
    let (mirror_id, laptop_id) = (common::node_id(&pi_dir), common::node_id(&lap_dir));
    let port = common::free_udp_port();
    let http: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let spawn_mirror = |run: usize| {
        let listen = format!("127.0.0.1:{port}");
        let c = serve_command(None, &home, &pi_dir, &listen, &http.to_string(), &laptop_id);
        Proc::spawn("mirror", c, &t.join(format!("mirror-{run}.log")))
    };
    let mut mirror = spawn_mirror(0);
    mirror.wait_for_log("listening on", 1, LONG);

    let dial = format!("127.0.0.1:{port}");
    let laptop = mount_command(None, &home, &lap_dir, &mnt, &mirror_id, &dial);
    let mut laptop = Proc::spawn("laptop", laptop, &t.join("laptop.log"));
    laptop.wait_for_log("control folder mounted at", 1, LONG);

    // Command #0, acknowledged over the first connection; the mirror has noted where the
    // laptop connects from.
    let (a, b) = (Key([0xa1; 32]), Key([0xb2; 32]));
    std::fs::File::create(mnt.join(a.to_hex())).expect("touch <a> in the control folder");
    wait_for("the mirror to acknowledge command #0", LONG, || {
        laptop.assert_alive();
        acked(&home, &lap_dir)
    });
    wait_for("the mirror to note the laptop's address", LONG, || {
        let text = std::fs::read_to_string(pi_dir.join("laptop-addrs.json")).ok()?;
        text.contains(&laptop_id.to_hex()).then_some(())
    });

    mirror.kill9();
    let restarted = Instant::now();
    let mut mirror = spawn_mirror(1);
    // Command #1, appended while the laptop still believes in the dead connection.
    std::fs::File::create(mnt.join(b.to_hex())).expect("touch <b> in the control folder");
    let mut ready = None;
    let reconnect = wait_for_or_none(Duration::from_secs(30), || {
        mirror.assert_alive();
        laptop.assert_alive();
        if ready.is_none() && mirror.log_text().contains("listening on") {
            ready = Some(restarted.elapsed());
        }
        acked(&home, &lap_dir)
            .filter(|&s| s >= 1)
            .map(|_| restarted.elapsed())
    });
    let Some(reconnect) = reconnect else {
        panic!(
            "command #1 was not acknowledged within 30 s of the restart; laptop log:\n{}\nmirror log:\n{}",
            laptop.log_text(),
            mirror.log_text()
        );
    };
    let ready = ready.unwrap_or(reconnect);
    eprintln!(
        "restarted mirror: ready after {:.2} s; command appended at the restart acknowledged \
         after {:.2} s ({:.2} s after the mirror was ready)",
        ready.as_secs_f64(),
        reconnect.as_secs_f64(),
        reconnect.saturating_sub(ready).as_secs_f64()
    );
    assert!(
        reconnect < MAX_RECONNECT,
        "the laptop took {reconnect:?} to reach the restarted mirror (limit {MAX_RECONNECT:?}); \
         laptop log:\n{}",
        laptop.log_text()
    );
    assert!(mirror.terminate().success());
    assert!(laptop.terminate().success());
}
