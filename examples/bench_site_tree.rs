//! The mirror side of `scripts/bench/fuse.sh`: a mirror with its read-only site tree
//! mounted, and a laptop that publishes a folder holding one big file and asks the mirror to
//! keep it — all in this process, on 127.0.0.1, through the library.
//!
//!   bench_site_tree WORK_DIR [BYTES]     (default 1 GiB)
//!
//! Writes WORK_DIR/site/big.bin (deterministic bytes; the plain-file baseline), publishes
//! it, waits until the mirror holds every block, mounts the tree at WORK_DIR/tree and waits
//! until it shows the file, then prints `FILE <path in the tree>`, `PLAIN <path on disk>`
//! and `READY`, and serves until SIGTERM/SIGINT (then unmounts cleanly).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dat_mirror::laptop::publish::publish_dir;
use dat_mirror::laptop::{Laptop, LaptopConfig};
use dat_mirror::mirror::{self, MirrorConfig};
use dat_mirror::model::command::Command;
use dat_mirror::net::endpoint::{Identity, NetworkConfig, PeerAddr};

const LIMIT: Duration = Duration::from_secs(1800);

/// Deterministic incompressible bytes, written in 1 MiB chunks.
fn write_big(path: &Path, bytes: u64) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.into_inner()?.sync_all()?;
    Ok(())
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + LIMIT;
    while !ok() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "dat_mirror=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let work = std::path::PathBuf::from(
        args.next()
            .context("usage: bench_site_tree WORK_DIR [BYTES]")?,
    );
    let bytes: u64 = match args.next() {
        Some(b) => b.parse().context("BYTES must be a number")?,
        None => 1 << 30,
    };
    let (site, pi_dir, lap_dir, tree) = (
        work.join("site"),
        work.join("pi"),
        work.join("lap"),
        work.join("tree"),
    );
    std::fs::create_dir_all(&site)?;
    std::fs::create_dir_all(&tree)?;
    let (tree_copies, copies_dir) = (work.join("tree-copies"), work.join("copies"));
    std::fs::create_dir_all(&tree_copies)?;
    let plain = site.join("big.bin");
    let t = Instant::now();
    write_big(&plain, bytes)?;
    eprintln!("wrote {bytes} bytes in {:.1} s", t.elapsed().as_secs_f64());

    let laptop_id = Identity::load_or_create(&lap_dir)?.key();
    let mirror = mirror::start(MirrorConfig {
        data: pi_dir,
        listen: "127.0.0.1:0".parse()?,
        http: None,
        allow: vec![laptop_id],
        network: NetworkConfig::offline(),
        ..Default::default()
    })
    .await?;
    let laptop = Laptop::start(LaptopConfig {
        data: lap_dir,
        mirrors: vec![PeerAddr::new(mirror.key(), mirror.listen)],
        listen: "127.0.0.1:0".parse()?,
        network: NetworkConfig::offline(),
    })
    .await?;

    let t = Instant::now();
    let published = publish_dir(&laptop.inner.store, &site, None).await?;
    eprintln!("published in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    laptop
        .inner
        .append(Command::Mirror {
            key: published.key,
            alias: Some("bench".into()),
        })
        .await?;
    let inner = mirror.inner.clone();
    let key = published.key;
    wait_for("the mirror to hold the whole site", || {
        let Some((db, Some(blobs))) = inner.site(&key) else {
            return false;
        };
        let (d, b) = (db.info(), blobs.info());
        d.length >= published.version
            && d.contiguous_length == d.length
            && b.length > 0
            && b.complete()
            && b.byte_length >= bytes
    })
    .await?;
    eprintln!("mirrored in {:.1} s", t.elapsed().as_secs_f64());

    let (inner, mnt) = (mirror.inner.clone(), tree.clone());
    let session =
        tokio::task::spawn_blocking(move || dat_mirror::fs::site_tree::mount(inner, &mnt, None))
            .await??;
    // the same tree again, with copies for passthrough reads (as `serve --mount` has them)
    let (inner, mnt, at) = (
        mirror.inner.clone(),
        tree_copies.clone(),
        copies_dir.clone(),
    );
    let copies_session = tokio::task::spawn_blocking(move || {
        let copies = dat_mirror::fs::site_tree::Checkouts::new(
            &at,
            dat_mirror::fs::site_tree::DEFAULT_MOUNT_CACHE,
        )?;
        dat_mirror::fs::site_tree::mount(inner, &mnt, Some(copies))
    })
    .await??;
    let file = tree.join(key.to_hex()).join("big.bin");
    let file_copies = tree_copies.join(key.to_hex()).join("big.bin");
    let (f2, f3) = (file.clone(), file_copies.clone());
    wait_for("the trees to show the file", || {
        std::fs::metadata(&f2).is_ok_and(|m| m.len() == bytes)
            && std::fs::metadata(&f3).is_ok_and(|m| m.len() == bytes)
    })
    .await?;
    println!("FILE {}", file.display());
    println!("FILE_COPIES {}", file_copies.display());
    println!("COPIES {}", copies_dir.display());
    println!("PLAIN {}", plain.display());
    println!("READY");
    std::io::stdout().flush()?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("stopping: unmounting {}", tree.display());
    tokio::task::spawn_blocking(move || session.umount_and_join()).await??;
    tokio::task::spawn_blocking(move || copies_session.umount_and_join()).await??;
    laptop.shutdown().await;
    mirror.shutdown().await;
    eprintln!("stopped");
    Ok(())
}
