//! The laptop daemon's own output: a log it cannot write (its disk is full) must not stop
//! it, and reading a control-folder entry from a shell must not grow its log.
//!
//! Real processes (`dat-mirror serve` and `dat-mirror mount`) on 127.0.0.1 and a real FUSE
//! mount. Needs FUSE: skipped loudly without it, failed with `CI=true`.

mod common;
mod procs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use dat_mirror::model::command::Command as Cmd;
use dat_mirror::model::keys::Key;
use procs::*;

const LONG: Duration = Duration::from_secs(60);

struct Pair {
    _tmp: tempfile::TempDir,
    mnt: PathBuf,
    lap_dir: PathBuf,
    laptop_id: Key,
    laptop: Proc,
    mirror: Proc,
}

/// A mirror (log in a file) and a laptop writing its stdout and stderr to `laptop_log`,
/// with the daemons' `rust_log`; returns once the folder is mounted and connected.
fn pair(laptop_log: Option<&Path>, rust_log: &str) -> Pair {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (pi_dir, lap_dir, mnt, home) = (t.join("pi"), t.join("lap"), t.join("mnt"), t.join("home"));
    std::fs::create_dir_all(&home).unwrap();
    let (mirror_id, laptop_id) = (common::node_id(&pi_dir), common::node_id(&lap_dir));
    let port = common::free_udp_port();
    let dial = format!("127.0.0.1:{port}");
    let mut c = serve_command(None, &home, &pi_dir, &dial, "127.0.0.1:0", &laptop_id);
    c.env("RUST_LOG", rust_log);
    let mut mirror = Proc::spawn("mirror", c, &t.join("mirror.log"));
    mirror.wait_for_log("listening on", 1, LONG);
    let mut c = mount_command(None, &home, &lap_dir, &mnt, &mirror_id, &dial);
    c.env("RUST_LOG", rust_log);
    let laptop_log = laptop_log.map_or_else(|| t.join("laptop.log"), Path::to_path_buf);
    let mut laptop = Proc::spawn("laptop", c, &laptop_log);
    let status = mnt.join("STATUS");
    wait_for("the control folder to be mounted", LONG, || {
        laptop.assert_alive();
        std::fs::read_to_string(&status).ok()
    });
    Pair {
        _tmp: tmp,
        mnt,
        lap_dir,
        laptop_id,
        laptop,
        mirror,
    }
}

/// `touch`es a new key and waits until the mirror's acknowledgement is visible.
fn touch_and_wait_delivered(p: &mut Pair) -> Key {
    let key = Key(ed25519_dalek::SigningKey::from_bytes(&rand::random())
        .verifying_key()
        .to_bytes());
    let entry = p.mnt.join(key.to_hex());
    assert!(std::process::Command::new("touch")
        .arg(&entry)
        .status()
        .unwrap()
        .success());
    let (mnt, name) = (p.mnt.clone(), key.to_hex());
    let state = wait_for("the mirror's acknowledgement", LONG, || {
        common::state_of(&mnt, &name).filter(|s| s != "queued")
    });
    assert_eq!(state, "delivered");
    key
}

/// Every write of the laptop's stdout and stderr fails with ENOSPC (`/dev/full`), as when
/// the disk holding its log fills up, with debug logging so it writes all the time. It keeps
/// serving the folder, delivers commands and shuts down cleanly. (It used to die at its
/// first log line: tracing-subscriber reported the failed write with `eprintln!`, which
/// panics on that same full stderr.)
#[test]
fn a_laptop_whose_log_disk_is_full_keeps_serving_its_folder() {
    let test = "a_laptop_whose_log_disk_is_full_keeps_serving_its_folder";
    if !dat_mirror::fs::require_fuse_or_skip(test) {
        return;
    }
    let mut p = pair(Some(Path::new("/dev/full")), "dat_mirror=debug,info");
    let first = touch_and_wait_delivered(&mut p);
    // A shell reading the entry (an ioctl and reads), a listing and the status file.
    for _ in 0..5 {
        let read = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "read line < {}",
                p.mnt.join(first.to_hex()).display()
            ))
            .status()
            .unwrap();
        assert!(read.success());
        assert!(std::fs::read_dir(&p.mnt).unwrap().count() >= 2);
    }
    let second = touch_and_wait_delivered(&mut p);
    p.laptop.assert_alive();
    let Pair {
        laptop,
        mirror,
        lap_dir,
        laptop_id,
        ..
    } = p;
    assert!(
        laptop.terminate().success(),
        "the laptop's exit was not clean"
    );
    assert!(mirror.terminate().success());
    let commands = block_on(command_log(&lap_dir, &laptop_id));
    let mirror = |key| Cmd::Mirror { key, alias: None };
    assert_eq!(commands, vec![mirror(first), mirror(second)]);
}

/// A shell's `read line < ENTRY` asks the file for terminal settings (an ioctl) first. The
/// folder answers ENOTTY, as a regular file does, without a warning in the log: the log
/// grew by two lines on every poll of a status before.
#[test]
fn reading_an_entry_from_a_shell_logs_nothing() {
    let test = "reading_an_entry_from_a_shell_logs_nothing";
    if !dat_mirror::fs::require_fuse_or_skip(test) {
        return;
    }
    let mut p = pair(None, "dat_mirror=info,warn");
    let key = touch_and_wait_delivered(&mut p);
    let entry = p.mnt.join(key.to_hex());
    let before = p.laptop.log_text();
    let script = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do IFS= read -r line < {}; echo \"$line\"; done",
        entry.display()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout);
    // The reads happened: ten first lines of the entry (the laptop answered each one).
    assert_eq!(lines.lines().count(), 10, "{lines}");
    assert!(lines.lines().all(|l| l.starts_with("link: ")), "{lines}");
    // A terminal-settings ioctl on an entry is refused as on a regular file.
    let file = std::fs::File::open(&entry).unwrap();
    let mut termios = std::mem::MaybeUninit::<libc::termios>::zeroed();
    // SAFETY: TCGETS writes one `termios` into the buffer we pass; the fd is open.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::TCGETS,
            termios.as_mut_ptr(),
        )
    };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENOTTY)
    );
    drop(file);
    p.laptop.assert_alive();
    let after = p.laptop.log_text();
    let new = &after[before.len()..];
    assert!(
        !new.contains("ioctl") && !new.contains("Not Implemented"),
        "reading entries logged:\n{new}"
    );
    assert!(p.laptop.terminate().success());
    assert!(p.mirror.terminate().success());
}

/// A one-shot command whose output cannot be written (stdout on a full disk) fails with a
/// message that says so, instead of panicking.
#[test]
fn a_command_whose_output_cannot_be_written_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let out = command(None, tmp.path())
        .arg("--data")
        .arg(tmp.path().join("data"))
        .arg("id")
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write the output: No space left on device"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
