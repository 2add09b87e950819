//! `/metrics`: the mirror's numbers in the Prometheus text format (version 0.0.4), under the
//! same access rule as the status page. Sites by state, bytes and blocks held and expected,
//! peers, laptops, replication counters (bytes and blocks served and received, proofs
//! rejected: [`crate::net::counters`]), and the gateway's own counters (requests by status
//! class, bytes sent, connections open/accepted/shed by reason).
//!
//! Written by hand rather than with a metrics crate: a dozen gauges and counters read from
//! state the mirror already keeps, in a format of one line per sample; label values here
//! are fixed words, so there is nothing to escape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::pages::site_statuses;
use crate::mirror::MirrorInner;

/// Why the gateway closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The gateway was full: the connection that had gone longest without progress.
    Capacity,
    /// Its address had the most connections allowed to one address.
    PerAddress,
    /// Its client stopped reading a response.
    WriteStalled,
    /// Nothing moved for the idle timeout.
    Idle,
}

impl Shed {
    const ALL: [Shed; 4] = [
        Shed::Capacity,
        Shed::PerAddress,
        Shed::WriteStalled,
        Shed::Idle,
    ];

    fn label(self) -> &'static str {
        match self {
            Shed::Capacity => "capacity",
            Shed::PerAddress => "per_address",
            Shed::WriteStalled => "write_stalled",
            Shed::Idle => "idle",
        }
    }
}

/// The gateway's counters (monotonic, except `open`).
#[derive(Debug, Default)]
pub struct HttpCounters {
    accepted: AtomicU64,
    open: AtomicU64,
    shed: [AtomicU64; 4],
    /// Responses by status class: 1xx..5xx at index 0..4.
    responses: [AtomicU64; 5],
    bytes_sent: AtomicU64,
}

impl HttpCounters {
    pub fn connection_opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub fn shed(&self, why: Shed) {
        let i = Shed::ALL.iter().position(|s| *s == why).unwrap_or(0);
        self.shed[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn shed_count(&self, why: Shed) -> u64 {
        let i = Shed::ALL.iter().position(|s| *s == why).unwrap_or(0);
        self.shed[i].load(Ordering::Relaxed)
    }

    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The whole exposition.
pub fn render(mirror: &MirrorInner, http: &HttpCounters) -> String {
    let mut out = String::new();
    let sites = site_statuses(mirror, None);

    family(
        &mut out,
        "dat_mirror_sites",
        "gauge",
        "Sites in the mirror set, by state.",
    );
    for state in ["mirrored", "syncing", "waiting"] {
        let n = sites.iter().filter(|s| s.state == state).count();
        let _ = writeln!(out, "dat_mirror_sites{{state=\"{state}\"}} {n}");
    }
    let sum = |f: fn(&super::pages::SiteStatus) -> u64| {
        sites.iter().fold(0u64, |a, s| a.saturating_add(f(s)))
    };
    for (name, help, value) in [
        (
            "dat_mirror_bytes_held",
            "Bytes of site data held and verified, all sites.",
            sum(|s| s.bytes),
        ),
        (
            "dat_mirror_bytes_expected",
            "Bytes of site data the sites' current versions need, all sites.",
            sum(|s| s.total_bytes),
        ),
        (
            "dat_mirror_blocks_held",
            "Blocks held and verified, all sites.",
            sum(|s| s.blocks),
        ),
        (
            "dat_mirror_blocks_expected",
            "Blocks the sites' current versions need, all sites.",
            sum(|s| s.total_blocks),
        ),
        (
            "dat_mirror_site_peers",
            "Peer connections replicating a site, summed over sites.",
            sum(|s| u64::from(s.peers)),
        ),
        (
            "dat_mirror_peers_connected",
            "Peers connected to the mirror's endpoint.",
            mirror.node.connected_peers().len() as u64,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        &mut out,
        "dat_mirror_laptops",
        "gauge",
        "Paired laptops, by connection state.",
    );
    let laptops = mirror.allowed();
    let online = laptops
        .iter()
        .filter(|k| mirror.node.is_connected(k))
        .count();
    let _ = writeln!(out, "dat_mirror_laptops{{state=\"online\"}} {online}");
    let _ = writeln!(
        out,
        "dat_mirror_laptops{{state=\"offline\"}} {}",
        laptops.len() - online
    );

    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let r = mirror.node.replication_counters();
    for (name, help, value) in [
        (
            "dat_mirror_replication_served_bytes_total",
            "Bytes sent to peers replicating cores from this mirror (frames and proofs).",
            &r.bytes_served,
        ),
        (
            "dat_mirror_replication_served_blocks_total",
            "Blocks sent to peers replicating cores from this mirror.",
            &r.blocks_served,
        ),
        (
            "dat_mirror_replication_received_bytes_total",
            "Bytes received from peers this mirror replicates cores from.",
            &r.bytes_received,
        ),
        (
            "dat_mirror_replication_received_blocks_total",
            "Blocks received from peers this mirror replicates cores from.",
            &r.blocks_received,
        ),
        (
            "dat_mirror_replication_rejected_proofs_total",
            "Proofs received that did not verify (the sending peer was disconnected).",
            &r.proofs_rejected,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", load(value));
    }
    family(
        &mut out,
        "dat_mirror_http_connections_open",
        "gauge",
        "HTTP connections open now.",
    );
    let _ = writeln!(out, "dat_mirror_http_connections_open {}", load(&http.open));
    family(
        &mut out,
        "dat_mirror_http_connections_accepted_total",
        "counter",
        "HTTP connections accepted.",
    );
    let _ = writeln!(
        out,
        "dat_mirror_http_connections_accepted_total {}",
        load(&http.accepted)
    );
    family(
        &mut out,
        "dat_mirror_http_connections_shed_total",
        "counter",
        "HTTP connections the gateway closed itself, by reason.",
    );
    for (i, s) in Shed::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "dat_mirror_http_connections_shed_total{{reason=\"{}\"}} {}",
            s.label(),
            load(&http.shed[i])
        );
    }
    family(
        &mut out,
        "dat_mirror_http_responses_total",
        "counter",
        "HTTP responses, by status class.",
    );
    for (i, n) in http.responses.iter().enumerate() {
        let _ = writeln!(
            out,
            "dat_mirror_http_responses_total{{code=\"{}xx\"}} {}",
            i + 1,
            load(n)
        );
    }
    family(
        &mut out,
        "dat_mirror_http_sent_bytes_total",
        "counter",
        "Bytes written to HTTP clients (heads and bodies).",
    );
    let _ = writeln!(
        out,
        "dat_mirror_http_sent_bytes_total {}",
        load(&http.bytes_sent)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters() {
        let c = HttpCounters::default();
        c.connection_opened();
        c.connection_opened();
        c.connection_closed();
        c.connection_closed();
        c.connection_closed(); // never below zero
        assert_eq!(c.open.load(Ordering::Relaxed), 0);
        assert_eq!(c.accepted.load(Ordering::Relaxed), 2);
        c.response(200);
        c.response(404);
        c.response(999);
        c.response(0);
        assert_eq!(c.responses[1].load(Ordering::Relaxed), 1);
        assert_eq!(c.responses[3].load(Ordering::Relaxed), 1);
        assert_eq!(c.responses[4].load(Ordering::Relaxed), 1);
        assert_eq!(c.responses[0].load(Ordering::Relaxed), 1);
        c.shed(Shed::Idle);
        assert_eq!(c.shed_count(Shed::Idle), 1);
    }
}
