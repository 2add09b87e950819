//! Every `dat-mirror` subcommand, one file each, each with one shape: a clap `Args` struct
//! (its flags, help and examples; settings flags come from the settings table, see
//! [`crate::config`]) and `run(args, &Settings) -> anyhow::Result<()>`. The binary only parses
//! and dispatches. `peers.rs` holds the pairing commands' work (`invite.rs`, `pair.rs`,
//! `unpair.rs` are their entry points, and `dat-mirror peers` calls it directly). `trash.rs`
//! and `status_link.rs` are the mirror owner's commands.

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
pub mod status_link;
pub mod trash;
pub mod unpair;

use crate::net::endpoint::NetworkConfig;

/// Ctrl-C and SIGTERM (what `systemctl stop` sends), watched from the moment it is made:
/// make it before starting a daemon, so a SIGTERM that arrives while the daemon starts
/// stops it cleanly instead of killing the process (the default action).
pub(crate) struct ShutdownSignal {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignal {
    /// Installs the handlers (needs a tokio runtime).
    pub(crate) fn install() -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let watch = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot watch for {name} ({e}); stop with the other signal");
                None
            }
        };
        ShutdownSignal {
            term: watch(SignalKind::terminate(), "SIGTERM"),
            int: watch(SignalKind::interrupt(), "Ctrl-C"),
        }
    }

    /// Waits for either signal.
    pub(crate) async fn wait(mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        if self.term.is_none() && self.int.is_none() {
            let _ = tokio::signal::ctrl_c().await;
        } else {
            tokio::select! {
                _ = recv(&mut self.term) => {}
                _ = recv(&mut self.int) => {}
            }
        }
        crate::noteln!("shutting down");
    }
}

/// The discovery routes in use, for the start-up banner.
pub(crate) fn print_network(n: &NetworkConfig) {
    let on = |b: bool| if b { "on" } else { "off" };
    crate::bannerln!(
        "finding peers by id: mDNS {}, DHT {}, relay {}",
        on(n.mdns),
        on(n.dht),
        n.relay
    );
}
