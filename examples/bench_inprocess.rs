//! In-process hypercore ceiling for `scripts/bench/replicate.sh`: the site's own blocks (its
//! db and blobs cores, as `publish` writes them) replicated disk to disk in one process with
//! no network, through hypercore's replication protocol (`hypercore-peer`, as the daemons run
//! it) over `tokio::io::duplex`. What is left is the engine's proof creation/verification and
//! its disk storage (one durable commit per burst of applied proofs) — the bound on real
//! replication.
//!
//! Also generates the benchmark's deterministic site (so the script needs no other tool):
//!   bench_inprocess gen-site SITE_DIR SIZES_OUT [TOTAL_BYTES]   (default 100 MiB)
//!   bench_inprocess replicate SITE_DIR WORK_DIR
//! `replicate` prints `RESULT inproc_publish ...` (import into the author's cores) and
//! `RESULT inproc_replicate bytes=N blocks=B secs=S`; cores live under WORK_DIR.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dat_mirror::laptop::publish::{open_site, publish_dir};
use dat_mirror::store::{Core, CoreStore};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// splitmix64: a deterministic, seedable generator (same site on every machine and run).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Many small pages, some images, a few videos; the videos take up the rest of `total`.
fn gen_site(dir: &Path, sizes_out: &Path, total: u64) -> Result<()> {
    let mut rng = Rng(0xDA7_5EED);
    let mut files: Vec<(String, u64)> = vec![("index.html".into(), 2 * KIB)];
    for i in 0..1400 {
        files.push((
            format!("posts/{:02}/post-{i:04}.html", i / 100),
            rng.range(KIB, 16 * KIB),
        ));
    }
    for i in 0..48 {
        files.push((format!("assets/img-{i:02}.jpg"), rng.range(64 * KIB, MIB)));
    }
    let used: u64 = files.iter().map(|f| f.1).sum();
    let rest = total
        .checked_sub(used)
        .context("TOTAL_BYTES is too small for the mix")?;
    let (j, k) = (rng.range(0, 3 * MIB), rng.range(0, 3 * MIB));
    let quarter = rest / 4;
    if quarter < 4 * MIB {
        bail!("TOTAL_BYTES is too small for the mix");
    }
    let big = [
        quarter + j,
        quarter - j,
        quarter + k,
        rest - 3 * quarter - k,
    ];
    for (i, size) in big.iter().enumerate() {
        files.push((format!("media/video-{i}.mp4"), *size));
    }
    if files.iter().map(|f| f.1).sum::<u64>() != total {
        bail!("internal error: the mix does not add up to {total}");
    }
    let mut sizes = String::new();
    for (i, (path, size)) in files.iter().enumerate() {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap())?;
        let mut r = Rng(i as u64 + 1);
        let mut bytes: Vec<u8> = Vec::with_capacity(*size as usize + 8);
        while (bytes.len() as u64) < *size {
            bytes.extend_from_slice(&r.next().to_le_bytes());
        }
        bytes.truncate(*size as usize);
        std::fs::write(&p, &bytes).with_context(|| format!("cannot write {}", p.display()))?;
        sizes += &format!("{size}\n");
    }
    std::fs::write(sizes_out, sizes)?;
    for (name, lo, hi) in [
        ("1-16 KiB", 0, 16 * KIB),
        ("64 KiB-1 MiB", 16 * KIB + 1, MIB),
        ("8-20 MiB", MIB + 1, u64::MAX),
    ] {
        let class: Vec<u64> = files
            .iter()
            .map(|f| f.1)
            .filter(|s| (lo..=hi).contains(s))
            .collect();
        println!(
            "  {:>5} files of {name:<13} {:>9.2} MiB  (min {} B, max {} B)",
            class.len(),
            class.iter().sum::<u64>() as f64 / MIB as f64,
            class.iter().min().unwrap_or(&0),
            class.iter().max().unwrap_or(&0)
        );
    }
    println!(
        "  {:>5} files in all       {:>9.2} MiB  ({total} bytes)",
        files.len(),
        total as f64 / MIB as f64
    );
    Ok(())
}

/// Serves `writer` to `reader` through an in-memory pipe: a hypercore peer on each store.
fn connect(writer: Arc<Core>, reader: Arc<Core>) {
    dat_mirror::net::engine::replicate_in_memory(writer, reader);
}

async fn replicate(site: &Path, work: &Path) -> Result<()> {
    let author = CoreStore::new(&work.join("author"))?;
    let t = Instant::now();
    let published = publish_dir(&author, site, None).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "RESULT inproc_publish bytes={} secs={secs:.6}",
        published.bytes_appended
    );
    let (db, blobs) = open_site(&author, &published.key)
        .await?
        .context("published site not found")?;

    let mirror = CoreStore::new(&work.join("mirror"))?;
    let t = Instant::now();
    let mut pairs = Vec::new();
    for (name, writer) in [("db", db), ("blobs", blobs)] {
        let reader = mirror.open_or_create_replica(&writer.key()).await?;
        connect(writer.clone(), reader.clone());
        pairs.push((name, writer, reader));
    }
    let (mut blocks, mut bytes) = (0, 0);
    for (name, writer, reader) in &pairs {
        let w = writer.info();
        let mut rx = reader.subscribe();
        tokio::time::timeout(
            Duration::from_secs(600),
            rx.wait_for(|i| i.length == w.length && i.complete()),
        )
        .await
        .with_context(|| format!("{name} core: not replicated within 600 s"))??;
        eprintln!(
            "  in-process: {name} core ({} blocks, {} bytes) complete at {:.3} s",
            w.length,
            w.byte_length,
            t.elapsed().as_secs_f64()
        );
        blocks += w.length;
        bytes += w.byte_length;
    }
    let secs = t.elapsed().as_secs_f64();
    println!("RESULT inproc_replicate bytes={bytes} blocks={blocks} secs={secs:.6}");

    // Spot-check that the copy holds the author's bytes.
    for (name, writer, reader) in &pairs {
        let len = writer.info().length;
        for i in (0..len).step_by(97).chain([len - 1]) {
            if writer.get(i).await? != reader.get(i).await? {
                bail!("{name} block {i} differs between author and copy");
            }
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let a = |i: usize| args.get(i).map(Path::new);
    match (args.get(1).map(String::as_str), a(2), a(3)) {
        (Some("gen-site"), Some(dir), Some(sizes)) => {
            let total = match args.get(4) {
                Some(t) => t.parse().context("TOTAL_BYTES must be a number")?,
                None => 100 * MIB,
            };
            gen_site(dir, sizes, total)
        }
        (Some("replicate"), Some(site), Some(work)) => replicate(site, work).await,
        _ => bail!("usage: bench_inprocess gen-site SITE_DIR SIZES_OUT [TOTAL_BYTES] | replicate SITE_DIR WORK_DIR"),
    }
}
