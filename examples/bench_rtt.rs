//! Raw-transport latency baseline for `scripts/bench/delivered.sh`: two iroh endpoints on
//! 127.0.0.1 (relays disabled, nothing leaves the machine), N fresh connections (connect
//! time each) and N small request/response round trips on one stream of one connection.
//! No hypercore, no disk, no protocol of ours: the floor under "touch → delivered".
//!
//! Usage: `bench_rtt [N]` (default 50). Prints `RESULT <name> n=N median=S p90=S min=S max=S`
//! lines (seconds) for `rtt` and `connect`.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, Result};
use iroh::endpoint::presets;
use iroh::{Endpoint, EndpointAddr, RelayMode, SecretKey};

const ALPN: &[u8] = b"dat-mirror/bench-rtt/0";

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

fn summary(name: &str, mut secs: Vec<f64>) {
    secs.sort_by(f64::total_cmp);
    let at = |q: f64| secs[((secs.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "RESULT {name} n={} median={:.6} p90={:.6} min={:.6} max={:.6}",
        secs.len(),
        at(0.5),
        at(0.9),
        secs[0],
        secs[secs.len() - 1]
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().context("usage: bench_rtt [N]")?,
        None => 50,
    }
    .max(1);
    let server = endpoint().await?;
    let client = endpoint().await?;
    let server_addr = EndpointAddr::new(server.id()).with_ip_addr(server.bound_sockets()[0]);
    let accept = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            tokio::spawn(async move {
                let conn = incoming.await?;
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    // Echo 64-byte messages until the stream ends.
                    let mut buf = [0u8; 64];
                    while recv.read_exact(&mut buf).await.is_ok() {
                        send.write_all(&buf).await?;
                    }
                }
                anyhow::Ok(())
            });
        }
    });

    let mut connects = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let conn = client.connect(server_addr.clone(), ALPN).await?;
        connects.push(t.elapsed().as_secs_f64());
        conn.close(0u32.into(), b"done");
    }

    let conn = client.connect(server_addr.clone(), ALPN).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut rtts = Vec::with_capacity(n);
    let mut buf = [7u8; 64];
    for i in 0..n + 5 {
        let t = Instant::now();
        send.write_all(&buf).await?;
        recv.read_exact(&mut buf).await?;
        if i >= 5 {
            rtts.push(t.elapsed().as_secs_f64());
        }
    }
    send.finish()?;
    conn.close(0u32.into(), b"done");
    summary("rtt", rtts);
    summary("connect", connects);
    client.close().await;
    server.close().await;
    Ok(())
}
