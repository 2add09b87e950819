//! Latency of one small durable append (a command, an acknowledgement): p50 and p90 of
//! 300 appends of 120 bytes (one fsync each, of the write-ahead log), against a plain
//! `fdatasync` of a 120-byte append to a file in the same folder as the anchor; then what
//! the rest costs: the same appends committed lazily (no fsync: signing, hashing, the log
//! record, redb's commit) and a replica's lazy apply of each as a proof (verification and
//! storing, what a peer does when an entry arrives).
//!
//! `cargo run --release -p hypercore-engine --example append_latency [-- DIR]`

use hypercore_engine::{Batch, CoreKind, KeyPair, Request, RequestBlock, RequestUpgrade, Store};
use std::io::Write;
use std::time::Instant;

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] * 1e6;
    format!("p50 {:6.0} us  p90 {:6.0} us", at(0.5), at(0.9))
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let n = 300;
    let entry = vec![b'x'; 120];

    let mut file = std::fs::File::create(dir.path().join("plain")).expect("file");
    let mut plain = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        file.write_all(&entry).expect("write");
        file.sync_data().expect("fdatasync");
        plain.push(t.elapsed().as_secs_f64());
    }
    println!(
        "{:<44} {}",
        "write + fdatasync of a plain file",
        stats(plain)
    );

    let store = Store::open(dir.path().join("store")).expect("open store");
    let key = store
        .create_writer(&KeyPair::from_seed(&[7; 32]), CoreKind::Default)
        .expect("writer");
    let before = store.stats();
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        store.append(&key, vec![entry.clone()]).expect("append");
        times.push(t.elapsed().as_secs_f64());
    }
    let fsyncs = store.stats().fsyncs() - before.fsyncs();
    println!(
        "{:<44} {}  ({:.2} fsyncs each, checkpoints included)",
        "append of one 120-byte block",
        stats(times),
        fsyncs as f64 / n as f64
    );

    let mut lazy = Vec::new();
    for _ in 0..n {
        let mut b = Batch::new();
        b.append(key, vec![entry.clone()]);
        let t = Instant::now();
        store.commit_lazy(b).expect("lazy append");
        lazy.push(t.elapsed().as_secs_f64());
    }
    store.flush().expect("flush");
    println!("{:<44} {}", "the same, lazy (no fsync)", stats(lazy));

    let replica = Store::open(dir.path().join("replica")).expect("open replica");
    let followed = store
        .create_writer(&KeyPair::from_seed(&[8; 32]), CoreKind::Compat)
        .expect("writer");
    replica.open_replica(followed, None).expect("replica");
    let mut applies = Vec::new();
    for i in 0..n as u64 {
        // the replica follows each new entry, like a peer receiving it
        store
            .append(&followed, vec![entry.clone()])
            .expect("append");
        let mut applied = false;
        for nodes in 0..64 {
            let req = Request {
                block: Some(RequestBlock { index: i, nodes }),
                upgrade: Some(RequestUpgrade {
                    start: i,
                    length: 1,
                }),
                ..Default::default()
            };
            let p = store.create_proof(&followed, &req).expect("proof");
            let t = Instant::now();
            if replica.apply_proof_lazy(&followed, p).is_ok() {
                applies.push(t.elapsed().as_secs_f64());
                applied = true;
                break;
            }
        }
        assert!(applied, "block {i} never applied");
    }
    println!(
        "{:<44} {}",
        "a replica's lazy apply of each (verify + store)",
        stats(applies)
    );
}
