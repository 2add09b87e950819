//! Measures the storage layout choice on its own (no hashing, no proofs): the same writes —
//! ~100 MiB of blocks shaped like the bench's site, two tree nodes per block, a metadata
//! record per batch — either as (A) block bytes in an append-only data file (fdatasync'ed)
//! plus one redb transaction for nodes/locations/metadata, or (B) everything in redb.
//! Batches of 64 blocks (replication) and one batch per file (publishing), disk and tmpfs.
//!
//! `cargo run --release -p hypercore-engine --example storage_alternatives [-- DIR...]`

use redb::{Database, TableDefinition};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

const NODES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("nodes");
const LOCS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("blocks");
const DATA: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("data");
const META: TableDefinition<u64, &[u8]> = TableDefinition::new("meta");

fn sizes() -> Vec<Vec<usize>> {
    let mut files = Vec::new();
    let split = |n: usize| -> Vec<usize> {
        (0..n.div_ceil(65536))
            .map(|i| (n - i * 65536).min(65536))
            .collect()
    };
    for _ in 0..4 {
        files.push(split(16 << 20));
    }
    for i in 0..48 {
        files.push(split(500 * 1024 + i * 3000));
    }
    for i in 0..1400 {
        files.push(split(2000 + (i * 37) % 9000));
    }
    files
}

fn batches(per_file: bool) -> Vec<Vec<usize>> {
    let files = sizes();
    if per_file {
        return files;
    }
    let all: Vec<usize> = files.into_iter().flatten().collect();
    all.chunks(64).map(|c| c.to_vec()).collect()
}

fn run(dir: &Path, all_in_redb: bool, per_file: bool) -> (f64, f64, usize) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("dir");
    let db = Database::create(dir.join("db.redb")).expect("db");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("data"))
        .expect("file");
    let payload = vec![0x5au8; 65536];
    let batches = batches(per_file);
    let mut index = 0u64;
    let mut end = 0u64;
    let mut bytes = 0usize;
    let t = Instant::now();
    for b in &batches {
        if !all_in_redb {
            let mut buf = Vec::new();
            for &n in b {
                buf.extend_from_slice(&payload[..n]);
            }
            file.write_all_at(&buf, end).expect("write");
            file.sync_data().expect("sync");
        }
        let tx = db.begin_write().expect("tx");
        {
            let mut nodes = tx.open_table(NODES).expect("t");
            let mut locs = tx.open_table(LOCS).expect("t");
            let mut data = tx.open_table(DATA).expect("t");
            let mut meta = tx.open_table(META).expect("t");
            for &n in b {
                let node = [index as u8; 40];
                nodes.insert((1, 2 * index), &node[..]).expect("i");
                nodes.insert((1, 2 * index + 1), &node[..]).expect("i");
                if all_in_redb {
                    data.insert((1, index), &payload[..n]).expect("i");
                } else {
                    let mut loc = [0u8; 16];
                    loc[..8].copy_from_slice(&end.to_le_bytes());
                    loc[8..].copy_from_slice(&(n as u64).to_le_bytes());
                    locs.insert((1, index), &loc[..]).expect("i");
                    end += n as u64;
                }
                index += 1;
                bytes += n;
            }
            meta.insert(1, &[0u8; 200][..]).expect("i");
        }
        tx.commit().expect("commit");
    }
    let dt = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(dir);
    (dt, bytes as f64 / (1 << 20) as f64, batches.len())
}

fn main() {
    let mut dirs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(std::env::temp_dir().join("hc-engine-layout"));
        dirs.push(PathBuf::from("/dev/shm/hc-engine-layout"));
    }
    for d in dirs {
        for per_file in [false, true] {
            for all_in_redb in [false, true] {
                let (dt, mib, n) = run(&d, all_in_redb, per_file);
                println!(
                    "{}: {} ({n} commits, {}): {dt:.2} s = {:.0} MiB/s",
                    d.display(),
                    if all_in_redb {
                        "all in redb          "
                    } else {
                        "data file + redb meta"
                    },
                    if per_file {
                        "one per file"
                    } else {
                        "64 blocks each"
                    },
                    mib / dt
                );
            }
        }
    }
}
