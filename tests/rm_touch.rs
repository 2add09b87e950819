//! `rm` then `touch` of the same key, 500 times, on a real control-folder mount of a real
//! laptop paired with a real mirror on loopback (issue 14, item 2). The mirror acknowledges
//! every command while the rounds run, so its acknowledgement of an `rm` lands at random
//! points of the next `touch` (between the kernel's lookup, create/open and setattr).
//!
//! Checked: every `touch` (GNU coreutils, as users run it) succeeds, every `rm` succeeds,
//! and the laptop's command log on disk holds exactly the commands the rounds asked for —
//! one `Mirror` per key to start, then `Unmirror`, `Mirror` per round, nothing else (no lost
//! re-mirror, no `Unmirror` nobody asked for). The pauses come from a seed the test prints
//! (`RM_TOUCH_SEED=<seed>` replays it). Needs FUSE: skipped loudly without it, failed with
//! `CI=true`.

mod common;

use std::time::Duration;

use common::*;
use dat_mirror::laptop::Laptop;
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 500;
const KEYS: usize = 3;

async fn log(laptop: &Laptop) -> Vec<Command> {
    let core = laptop
        .inner
        .store
        .open_existing(&laptop.inner.key())
        .await
        .unwrap()
        .unwrap();
    let mut out = vec![];
    for i in 0..core.info().length {
        out.push(Command::decode(&core.get(i).await.unwrap().unwrap()).unwrap());
    }
    out
}

fn new_key() -> Key {
    Key(hypercore_engine::KeyPair::generate().unwrap().public_key)
}

fn touch(path: &std::path::Path) -> Result<(), String> {
    let out = std::process::Command::new("touch")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run touch: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rm_then_touch_500_rounds_every_touch_mirrors() {
    let test = "rm_then_touch_500_rounds_every_touch_mirrors";
    let pair = Pair::start().await;
    let Some(mnt) = mount(&pair.laptop, &pair.tmp.path().join("mnt"), test).await else {
        return;
    };
    let seed = std::env::var("RM_TOUCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: seed {seed} (replay with RM_TOUCH_SEED={seed})");

    let keys: Vec<Key> = (0..KEYS).map(|_| new_key()).collect();
    let m = mnt.path.clone();
    let ks = keys.clone();
    let (expected, failures) = blocking(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut expected = vec![];
        let mut failures = vec![];
        for k in &ks {
            touch(&m.join(k.to_hex())).expect("the first touch of a key");
            expected.push(Command::Mirror {
                key: *k,
                alias: None,
            });
        }
        for round in 0..ROUNDS {
            let k = ks[rng.gen_range(0..ks.len())];
            let path = m.join(k.to_hex());
            // Pauses from 0 to 25 ms: the mirror's acknowledgement of the `rm` takes a few
            // milliseconds on loopback, so it lands before, during and after the touch.
            let pause = |rng: &mut rand::rngs::StdRng| {
                let ms = rng.gen_range(0..25u64);
                if ms > 2 {
                    std::thread::sleep(Duration::from_millis(ms));
                }
            };
            pause(&mut rng);
            if let Err(e) = std::fs::remove_file(&path) {
                failures.push(format!("round {round}: rm {}: {e}", k.short()));
            }
            expected.push(Command::Unmirror { key: k });
            pause(&mut rng);
            if let Err(e) = touch(&path) {
                failures.push(format!("round {round}: {e}"));
            }
            expected.push(Command::Mirror {
                key: k,
                alias: None,
            });
        }
        (expected, failures)
    })
    .await;
    let got = log(&pair.laptop).await;
    let first_difference = expected
        .iter()
        .zip(&got)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(got.len()));
    assert!(
        failures.is_empty() && got == expected,
        "{} of {ROUNDS} rounds failed: {failures:#?}\ncommand log: {} entries, expected {}; first \
         difference at #{first_difference}: got {:?}, expected {:?} (seed {seed})",
        failures.len(),
        got.len(),
        expected.len(),
        got.get(first_difference..(first_difference + 4).min(got.len())),
        expected.get(first_difference..(first_difference + 4).min(expected.len())),
    );
    drop(mnt);
    pair.laptop.shutdown().await;
    pair.mirror.shutdown().await;
}
