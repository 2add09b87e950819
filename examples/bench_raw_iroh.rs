//! Raw-transport baseline for `scripts/bench/replicate.sh`: how fast iroh (QUIC, encrypted)
//! moves bytes between two endpoints on 127.0.0.1 with no hypercore, no disk and no protocol
//! of ours. Three shapes, all on one connection (connect time reported apart):
//! - `stream`:   BYTES over one unidirectional flow of one stream, written in 1 MiB chunks;
//! - `messages`: the site's file sizes (SIZES_FILE, one byte count a line) as length-prefixed
//!   messages on one stream — the same bytes, cut like the site's files;
//! - `rr64k`:    BYTES as 64 KiB blocks fetched by request/response, 64 requests in flight
//!   (the shape of `net::replicate`, without proofs or storage).
//!
//! Relays are disabled and the endpoints bind 127.0.0.1 only: nothing leaves the machine.
//! Usage: `bench_raw_iroh BYTES [SIZES_FILE]`. Prints `RESULT <name> bytes=N secs=S` lines.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use iroh::endpoint::{presets, RecvStream, SendStream};
use iroh::{Endpoint, EndpointAddr, RelayMode, SecretKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALPN: &[u8] = b"dat-mirror/bench-raw/0";
const BLOCK: usize = 64 * 1024;
const WINDOW: usize = 64;

async fn endpoint() -> Result<Endpoint> {
    let local: SocketAddr = "127.0.0.1:0".parse()?;
    Endpoint::builder(presets::Minimal)
        .secret_key(SecretKey::from_bytes(&rand::random::<[u8; 32]>()))
        .alpns(vec![ALPN.to_vec()])
        .relay_mode(RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr(local)
        .map_err(|e| anyhow::anyhow!("bind address: {e}"))?
        .bind()
        .await
        .context("bind")
}

/// Deterministic filler, so nothing compresses or repeats in a trivially short cycle.
fn filler(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The receiving side of one test: reads what the sender sends, checks the byte count and
/// acknowledges with one byte so the sender's clock covers delivery, not just buffering.
async fn receive(mode: u8, mut send: SendStream, mut recv: RecvStream) -> Result<u64> {
    let mut total = 0u64;
    match mode {
        b's' => {
            while let Some(chunk) = recv.read_chunk(1 << 20).await? {
                total += chunk.len() as u64;
            }
        }
        b'm' => {
            let mut body = vec![0u8; 32 << 20];
            while let Ok(len) = recv.read_u64().await {
                let len = len as usize;
                if len > body.len() {
                    body.resize(len, 0);
                }
                recv.read_exact(&mut body[..len]).await?;
                total += len as u64;
            }
        }
        _ => {
            // Request/response: answer each 8-byte request with a 64 KiB block.
            let block = filler(BLOCK);
            while let Ok(_index) = recv.read_u64().await {
                send.write_all(&block).await?;
                total += BLOCK as u64;
            }
        }
    }
    send.write_all(&[1]).await?;
    send.finish()?;
    Ok(total)
}

async fn run(
    conn: &iroh::endpoint::Connection,
    mode: u8,
    bytes: u64,
    sizes: &[u64],
) -> Result<f64> {
    let started = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&[mode]).await?;
    match mode {
        b's' => {
            let chunk = filler(1 << 20);
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                send.write_all(&chunk[..n]).await?;
                left -= n as u64;
            }
        }
        b'm' => {
            let body = filler(sizes.iter().copied().max().unwrap_or(0) as usize);
            for &len in sizes {
                send.write_u64(len).await?;
                send.write_all(&body[..len as usize]).await?;
            }
        }
        _ => {
            let blocks = bytes.div_ceil(BLOCK as u64);
            let mut buf = vec![0u8; BLOCK];
            let mut sent = 0u64;
            let mut got = 0u64;
            while got < blocks {
                while sent < blocks && sent - got < WINDOW as u64 {
                    send.write_u64(sent).await?;
                    sent += 1;
                }
                recv.read_exact(&mut buf).await?;
                got += 1;
            }
        }
    }
    send.finish()?;
    let mut ack = [0u8; 1];
    recv.read_exact(&mut ack)
        .await
        .context("no acknowledgement")?;
    Ok(started.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(bytes) = args.get(1).and_then(|b| b.parse::<u64>().ok()) else {
        bail!("usage: bench_raw_iroh BYTES [SIZES_FILE]");
    };
    let sizes: Vec<u64> = match args.get(2) {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {path}"))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim()
                    .parse::<u64>()
                    .context("SIZES_FILE: one byte count a line")
            })
            .collect::<Result<_>>()?,
        None => vec![],
    };

    let server = endpoint().await?;
    let client = endpoint().await?;
    let server_addr = EndpointAddr::new(server.id()).with_ip_addr(server.bound_sockets()[0]);
    let accept = server.clone();
    let serving = tokio::spawn(async move {
        let conn = accept.accept().await.context("endpoint closed")?.await?;
        let mut results = Vec::new();
        while let Ok((send, mut recv)) = conn.accept_bi().await {
            let mode = recv.read_u8().await?;
            results.push((mode, receive(mode, send, recv).await?));
        }
        anyhow::Ok(results)
    });

    let t = Instant::now();
    let conn = client.connect(server_addr, ALPN).await?;
    let connect = t.elapsed().as_secs_f64();
    println!("RESULT raw_connect bytes=0 secs={connect:.6}");
    let mut modes = vec![(b's', "raw_stream", bytes)];
    if !sizes.is_empty() {
        modes.push((b'm', "raw_messages", sizes.iter().sum()));
    }
    modes.push((
        b'r',
        "raw_rr64k",
        bytes.div_ceil(BLOCK as u64) * BLOCK as u64,
    ));
    for (mode, name, n) in &modes {
        let secs = run(&conn, *mode, bytes, &sizes).await?;
        println!("RESULT {name} bytes={n} secs={secs:.6}");
    }
    conn.close(0u32.into(), b"done");
    let received = serving.await??;
    for ((mode, got), (want_mode, name, n)) in received.iter().zip(&modes) {
        if got != n || mode != want_mode {
            bail!("{name}: the receiver got {got} bytes, expected {n}");
        }
    }
    client.close().await;
    server.close().await;
    Ok(())
}
