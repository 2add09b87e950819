//! Every `dat-mirror` subcommand, one file each, each with one shape: a clap `Args` struct
//! (its flags, help and examples; settings flags come from the settings table, see
//! [`crate::config`]) and `run(args, &Settings) -> anyhow::Result<()>`. The binary only parses
//! and dispatches. `peers.rs` holds the pairing commands' work (`invite.rs`, `pair.rs`,
//! `unpair.rs` are their entry points, and `dat-mirror peers` calls it directly).

pub mod clone;
pub mod completions;
pub mod config;
pub mod id;
pub mod invite;
pub mod mount;
pub mod pair;
pub mod peers;
pub mod publish;
pub mod serve;
pub mod status;
pub mod unpair;

use crate::net::endpoint::NetworkConfig;

/// Waits for Ctrl-C or SIGTERM (what `systemctl stop` sends).
pub(crate) async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch for SIGTERM ({e}); stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    eprintln!("shutting down");
}

/// The discovery routes in use, for the start-up banner.
pub(crate) fn print_network(n: &NetworkConfig) {
    let on = |b: bool| if b { "on" } else { "off" };
    println!(
        "finding peers by id: mDNS {}, DHT {}, relay {}",
        on(n.mdns),
        on(n.dht),
        n.relay
    );
}
