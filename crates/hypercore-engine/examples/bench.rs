//! Benchmark: append a ~100 MiB site-shaped data set (4 large, 48 medium, 1,400 small
//! files, cut into 64 KiB blocks) to a writer, then replicate it in-process to a replica
//! (proof creation + verification + apply, batched), on disk and on tmpfs. Prints MiB/s,
//! commits and fdatasyncs per batch, then runs the Node anchor (tests/node/bench.js: Node
//! hypercore 11 doing the same in one process) in the same folder.
//!
//! `cargo run --release -p hypercore-engine --example bench [-- DIR...]`

use hypercore_engine::{Batch, CoreKind, KeyPair, Request, RequestBlock, RequestUpgrade, Store};
use std::path::PathBuf;
use std::time::Instant;

const BLOCK: usize = 64 * 1024;

fn files() -> Vec<Vec<u8>> {
    let mut seed = 7u64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as u8
            })
            .collect()
    };
    let mut out = Vec::new();
    for _ in 0..4 {
        out.push(bytes(16 << 20));
    }
    for i in 0..48 {
        out.push(bytes(500 * 1024 + i * 3000));
    }
    for i in 0..1400 {
        out.push(bytes(2000 + (i * 37) % 9000));
    }
    out
}

fn run(dir: PathBuf, label: &str, data: &[Vec<u8>]) {
    let _ = std::fs::remove_dir_all(&dir);
    let total: usize = data.iter().map(|f| f.len()).sum();
    let mib = total as f64 / (1024.0 * 1024.0);
    let w = Store::open(dir.join("writer")).expect("open writer");
    let key = w
        .create_writer(&KeyPair::from_seed(&[1; 32]), CoreKind::Default)
        .expect("create");
    // append: one commit per file (what publishing a folder does)
    let t = Instant::now();
    let mut blocks_n = 0u64;
    for f in data {
        let blocks: Vec<Vec<u8>> = f.chunks(BLOCK).map(|c| c.to_vec()).collect();
        blocks_n += blocks.len() as u64;
        w.append(&key, blocks).expect("append");
    }
    let dt = t.elapsed().as_secs_f64();
    let st = w.stats();
    println!(
        "{label}: append {mib:.1} MiB in {blocks_n} blocks, {} commits (one per file): {dt:.2} s = {:.0} MiB/s, {:.2} fsyncs per batch",
        st.commits,
        mib / dt,
        st.fsyncs() as f64 / st.commits as f64
    );
    // append again to a second core, several files per commit (up to 64 blocks = 4 MiB)
    let key2 = w
        .create_writer(&KeyPair::from_seed(&[2; 32]), CoreKind::Default)
        .expect("create");
    let before = w.stats();
    let t = Instant::now();
    let mut pending: Vec<Vec<u8>> = Vec::new();
    for f in data {
        pending.extend(f.chunks(BLOCK).map(|c| c.to_vec()));
        if pending.len() >= 64 {
            w.append(&key2, std::mem::take(&mut pending))
                .expect("append");
        }
    }
    if !pending.is_empty() {
        w.append(&key2, pending).expect("append");
    }
    let dt = t.elapsed().as_secs_f64();
    let st = w.stats();
    let commits = st.commits - before.commits;
    println!(
        "{label}: append {mib:.1} MiB, {commits} commits (files grouped, <= 4 MiB each): {dt:.2} s = {:.0} MiB/s, {:.2} fsyncs per batch",
        mib / dt,
        (st.fsyncs() - before.fsyncs()) as f64 / commits as f64
    );
    // replicate in-process: upgrade, then every block, BATCH proofs per commit
    let r = Store::open(dir.join("replica")).expect("open replica");
    r.open_replica(key, None).expect("replica");
    let t = Instant::now();
    let len = w.info(&key).expect("info").length;
    let up = w
        .create_proof(
            &key,
            &Request {
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: len,
                }),
                manifest: true,
                ..Default::default()
            },
        )
        .expect("upgrade proof");
    r.apply_proof(&key, up).expect("apply upgrade");
    let mut create = 0.0;
    for batch_size in [64u64] {
        let mut i = 0;
        while i < len {
            let end = (i + batch_size).min(len);
            let mut b = Batch::new();
            let tc = Instant::now();
            for j in i..end {
                let nodes = r.missing_nodes(&key, j).expect("missing");
                let p = w
                    .create_proof(
                        &key,
                        &Request {
                            block: Some(RequestBlock { index: j, nodes }),
                            ..Default::default()
                        },
                    )
                    .expect("proof");
                b.apply(key, p);
            }
            create += tc.elapsed().as_secs_f64();
            r.commit(b).expect("apply batch");
            i = end;
        }
    }
    let dt = t.elapsed().as_secs_f64();
    let st = r.stats();
    let info = r.info(&key).expect("info");
    assert_eq!(info.contiguous_length, len);
    println!(
        "{label}: replicate {mib:.1} MiB ({len} blocks) in-process: {dt:.2} s = {:.0} MiB/s (proof creation {create:.2} s), {} commits, {:.2} fsyncs per batch",
        mib / dt,
        st.commits,
        st.fsyncs() as f64 / st.commits as f64
    );
    drop(r);
    let t = Instant::now();
    let r = Store::open(dir.join("replica")).expect("reopen");
    println!(
        "{label}: reopen replica ({} cores, integrity check + bitfield rebuild): {:.3} s",
        r.report().cores,
        t.elapsed().as_secs_f64()
    );
    drop(r);
    let _ = std::fs::remove_dir_all(&dir);
    node_anchor(&dir, label);
}

/// Runs the Node anchor (tests/node/bench.js: hypercore 11 / corestore 7, same data shape)
/// in the same folder, when node and the pinned packages are installed.
fn node_anchor(dir: &std::path::Path, label: &str) {
    let node_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    if !node_dir.join("node_modules/corestore").exists() {
        println!(
            "{label}: Node anchor skipped (run `npm ci` in {})",
            node_dir.display()
        );
        return;
    }
    let status = std::process::Command::new("node")
        .arg(node_dir.join("bench.js"))
        .arg(dir.join("node"))
        .arg(label)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        println!("{label}: Node anchor failed to run");
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    let data = files();
    let mut dirs: Vec<(PathBuf, String)> = std::env::args()
        .skip(1)
        .map(|d| (PathBuf::from(&d), d))
        .collect();
    if dirs.is_empty() {
        dirs.push((
            std::env::temp_dir().join("hc-engine-bench"),
            "disk (temp dir)".into(),
        ));
        if std::path::Path::new("/dev/shm").is_dir() {
            dirs.push((
                PathBuf::from("/dev/shm/hc-engine-bench"),
                "tmpfs (/dev/shm)".into(),
            ));
        }
    }
    for (d, label) in dirs {
        run(d, &label, &data);
    }
}
