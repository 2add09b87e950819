//! The laptop side (`dat-mirror mount DIR`, a real process) is SIGKILLed while a writer is
//! `touch`ing keys in its control folder. The dead FUSE mount it leaves must not block the
//! next `dat-mirror mount DIR` (it is detected, detached, and said so on stderr), and every
//! command whose `touch` returned must be in the command log after the restart, in order,
//! and be applied by the mirror.
//!
//! The moment of the kill is random, from a seed the test prints (`FAULT_SEED=<seed>`).
//! Needs FUSE: skipped loudly without it, failed with `CI=true`.

mod common;
mod netns;
mod procs;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dat_mirror::model::command::Command as Cmd;
use dat_mirror::model::keys::Key;
use procs::*;

const LONG: Duration = Duration::from_secs(60);

/// A valid public key no peer has (the mirror acknowledges it and looks for it in vain).
fn fresh_key(rng: &mut Rng) -> Key {
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    Key(ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes())
}

#[test]
fn laptop_killed_while_mounted_remounts_and_loses_no_command() {
    let test = "laptop_killed_while_mounted_remounts_and_loses_no_command";
    if !dat_mirror::fs::require_fuse_or_skip(test) {
        return;
    }
    let mut rng = Rng::from_env("FAULT_SEED");
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (pi_dir, lap_dir, mnt, home) = (t.join("pi"), t.join("lap"), t.join("mnt"), t.join("home"));
    std::fs::create_dir_all(&home).unwrap();
    let (mirror_id, laptop_id) = (common::node_id(&pi_dir), common::node_id(&lap_dir));
    let port = common::free_udp_port();
    let laptop_log = t.join("laptop.log");
    let dial = format!("127.0.0.1:{port}");
    let spawn_laptop = || {
        let c = mount_command(None, &home, &lap_dir, &mnt, &mirror_id, &dial);
        Proc::spawn("laptop", c, &laptop_log)
    };

    // The mirror is not running yet: commands queue in the laptop's log.
    let mut laptop = spawn_laptop();
    laptop.wait_for_log("control folder mounted at", 1, LONG);
    let keys: Vec<Key> = (0..400).map(|_| fresh_key(&mut rng)).collect();
    let done: Arc<Mutex<Vec<Key>>> = Arc::default();
    let writer = {
        let (done, keys, mnt) = (done.clone(), keys.clone(), mnt.clone());
        std::thread::spawn(move || {
            for key in keys {
                let ok = std::process::Command::new("touch")
                    .arg(mnt.join(key.to_hex()))
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    return; // the file system is gone
                }
                done.lock().unwrap().push(key);
            }
        })
    };
    // Kill at a random moment while the writer is still touching: after a random number of
    // acknowledged touches, well short of all of them (a random delay let a fast machine
    // finish all 400 first). Checked every 5 ms: a few more touches land meanwhile.
    let kill_after = rng.range(5, 200) as usize;
    wait_for_every(
        "touches before the kill",
        LONG,
        Duration::from_millis(5),
        || (done.lock().unwrap().len() >= kill_after).then_some(()),
    );
    laptop.kill9();
    writer.join().unwrap();
    let acknowledged = done.lock().unwrap().clone();
    eprintln!(
        "killed the laptop after {} acknowledged touches",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() < keys.len(),
        "the writer finished before the kill"
    );
    let dead = std::fs::metadata(&mnt).unwrap_err();
    assert_eq!(
        dead.raw_os_error(),
        Some(libc::ENOTCONN),
        "the killed mount is not a dead mount: {dead}"
    );

    // Mount again on the same folder: it works, and says what it cleaned up.
    let mut laptop = spawn_laptop();
    laptop.wait_for_log("control folder mounted at", 2, LONG);
    let log = laptop.log_text();
    assert!(
        log.contains(&format!(
            "{} is a dead mount from an earlier run; detaching it",
            mnt.display()
        )),
        "no word about the dead mount on stderr:\n{log}"
    );
    let listed: Vec<String> = std::fs::read_dir(&mnt)
        .expect("the new mount works")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for key in &acknowledged {
        assert!(
            listed.contains(&key.to_hex()),
            "{key} is gone after the kill"
        );
    }

    // The mirror comes up and applies every one of them.
    let c = serve_command(None, &home, &pi_dir, &dial, "127.0.0.1:0", &laptop_id);
    let mirror = Proc::spawn("mirror", c, &t.join("mirror.log"));
    let last = acknowledged.last().unwrap().to_hex();
    let mnt2: PathBuf = mnt.clone();
    wait_for("the mirror to acknowledge the last command", LONG, || {
        common::state_of(&mnt2, &last).filter(|s| s != "queued")
    });
    assert!(laptop.terminate().success());
    assert!(mirror.terminate().success());

    let commands = block_on(command_log(&lap_dir, &laptop_id));
    let expected: Vec<Cmd> = acknowledged
        .iter()
        .map(|&key| Cmd::Mirror { key, alias: None })
        .collect();
    assert!(
        commands.len() == expected.len() || commands.len() == expected.len() + 1,
        "{} commands in the log for {} acknowledged touches",
        commands.len(),
        expected.len()
    );
    assert_eq!(
        commands[..expected.len()],
        expected[..],
        "the command log differs"
    );
    let acked = acks(&block_on(status_log(&pi_dir, &mirror_id)), &laptop_id);
    assert_eq!(
        acked,
        (0..commands.len() as u64).collect::<Vec<_>>(),
        "the mirror did not apply every command once, in order"
    );
}
