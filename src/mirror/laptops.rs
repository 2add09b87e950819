//! The laptops a mirror follows: the allow list (`DATA/allow.json`), the unpaired ones
//! (`DATA/revoked.json`), pairing by invite, unpairing, and the `peers` listing.
//!
//! Pairing adds a laptop at runtime: its id goes into the allow list, its command log is
//! replicated and followed, and it may read this mirror's status log. Unpairing reverses
//! that but keeps its log on disk: the sites it asked for stay mirrored (the acknowledged
//! part of its log is still folded at start) until a laptop unmirrors them; pairing the same
//! laptop again resumes following where the mirror left off.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::invites::{with_book, RedeemError};
use super::{follow, MirrorInner};
use crate::model::invite::Invite;
use crate::model::keys::Key;
use crate::net::pairing;
use crate::store::Core;
use crate::util::clock::now_ms;

pub const ALLOW_FILE: &str = "allow.json";
pub const REVOKED_FILE: &str = "revoked.json";

/// Reads a list of laptop ids (empty if the file does not exist).
pub fn load_list(data: &Path, name: &str) -> anyhow::Result<BTreeSet<Key>> {
    let path = data.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<BTreeSet<Key>>(&bytes).with_context(|| {
            format!(
                "{} is not a list of laptop ids; fix or delete it",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn save_list(data: &Path, name: &str, list: &BTreeSet<Key>) -> anyhow::Result<()> {
    let path = data.join(name);
    let tmp = data.join(format!("{name}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(list)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// One row of `dat-mirror peers` on a mirror.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaptopRow {
    pub id: Key,
    /// `paired` or `unpaired` (log kept, not followed).
    pub state: String,
    pub online: bool,
    pub last_seen_ms: Option<u64>,
    /// Commands read from its log.
    pub commands: u64,
}

/// Makes an invite and records it in the book. `addrs`: where laptops should dial.
pub fn make_invite(
    data: &Path,
    mirror: Key,
    ttl: std::time::Duration,
    addrs: Vec<SocketAddr>,
) -> anyhow::Result<Invite> {
    let now = now_ms() / 1000;
    let invite = Invite::new(
        mirror,
        rand::random(),
        now.saturating_add(ttl.as_secs()),
        addrs,
    );
    with_book(data, |book| {
        book.prune(now);
        book.add(&invite, now);
        Ok(())
    })?;
    Ok(invite)
}

/// Answers pairing requests (arriving through `pairing`, the handler on the node's router)
/// from the invite book.
pub fn accept_pairings(inner: &Arc<MirrorInner>, pairing: &pairing::Pairing) {
    let weak = Arc::downgrade(inner);
    pairing.answer_with(move |laptop, secret| {
        let weak = weak.clone();
        async move {
            match weak.upgrade() {
                Some(inner) => inner.redeem_invite(laptop, secret).await,
                None => Err("the mirror is shutting down".into()),
            }
        }
    });
}

impl MirrorInner {
    /// Checks `secret` against the invite book and, if it is good, pairs `laptop`.
    async fn redeem_invite(self: &Arc<Self>, laptop: Key, secret: [u8; 16]) -> Result<(), String> {
        let me = self.identity.key();
        let data = self.data.clone();
        let redeemed = tokio::task::spawn_blocking(move || {
            with_book(&data, |book| {
                book.redeem(&me, &secret, laptop, now_ms() / 1000)
                    .map_err(anyhow::Error::from)
            })
        })
        .await
        .map_err(|e| format!("internal error: {e}"))?;
        match redeemed {
            Ok(()) => {}
            Err(e) => {
                let reason = match e.downcast_ref::<RedeemError>() {
                    Some(r) => r.to_string(),
                    None => {
                        tracing::error!("invite book: {e:#}");
                        "the mirror cannot read its invite book; see its log".to_string()
                    }
                };
                tracing::warn!(laptop = %laptop.short(), "pairing refused: {reason}");
                return Err(reason);
            }
        }
        self.pair_laptop(laptop).await.map_err(|e| {
            tracing::error!(laptop = %laptop.short(), "cannot pair: {e:#}");
            format!("the mirror could not save the pairing: {e}")
        })?;
        tracing::info!(laptop = %laptop, "paired by invite");
        Ok(())
    }

    /// Follows `laptop`'s command log from now on (idempotent).
    pub async fn pair_laptop(self: &Arc<Self>, laptop: Key) -> anyhow::Result<()> {
        {
            let mut allowed = self.allowed.write().unwrap();
            let mut revoked = self.revoked.write().unwrap();
            if allowed.contains(&laptop) {
                return Ok(());
            }
            let mut new_allowed = allowed.clone();
            new_allowed.insert(laptop);
            let mut new_revoked = revoked.clone();
            new_revoked.remove(&laptop);
            save_list(&self.data, ALLOW_FILE, &new_allowed)?;
            save_list(&self.data, REVOKED_FILE, &new_revoked)?;
            *allowed = new_allowed;
            *revoked = new_revoked;
        }
        let core = self.store.open_or_create_replica(&laptop).await?;
        let from = self
            .status
            .next_unacked()
            .await?
            .get(&laptop)
            .copied()
            .unwrap_or(0)
            .min(core.info().contiguous_length);
        self.follow_laptop(core, from);
        Ok(())
    }

    /// Stops following `laptop` (its log and what it asked for stay). Errors if it was not
    /// paired.
    pub async fn unpair_laptop(&self, laptop: Key) -> anyhow::Result<()> {
        {
            let mut allowed = self.allowed.write().unwrap();
            let mut revoked = self.revoked.write().unwrap();
            if !allowed.contains(&laptop) {
                anyhow::bail!(
                    "{} is not a paired laptop of this mirror (`dat-mirror peers` lists them)",
                    laptop
                );
            }
            let mut new_allowed = allowed.clone();
            new_allowed.remove(&laptop);
            let mut new_revoked = revoked.clone();
            new_revoked.insert(laptop);
            // Revoked first: a crash in between leaves it kept, never deleted.
            save_list(&self.data, REVOKED_FILE, &new_revoked)?;
            save_list(&self.data, ALLOW_FILE, &new_allowed)?;
            *allowed = new_allowed;
            *revoked = new_revoked;
        }
        if let Some(f) = self.followers.lock().unwrap().remove(&laptop) {
            f.abort();
        }
        self.node.unwant(&laptop);
        self.node
            .disconnect(&laptop, "unpaired by the mirror's owner");
        tracing::info!(laptop = %laptop, "unpaired");
        Ok(())
    }

    /// Replicates `core` (a laptop's command log) and feeds its entries from `from` on to
    /// the controller.
    pub(super) fn follow_laptop(&self, core: Arc<Core>, from: u64) {
        let log = core.key();
        self.node.want(core.clone());
        let task = tokio::spawn(follow(core, from, self.entries.clone()));
        if let Some(old) = self.followers.lock().unwrap().insert(log, task) {
            old.abort();
        }
    }

    /// Every laptop this mirror knows, paired first.
    pub fn laptop_rows(&self) -> Vec<LaptopRow> {
        let allowed = self.allowed.read().unwrap().clone();
        let revoked = self.revoked.read().unwrap().clone();
        let row = |id: Key, state: &str| LaptopRow {
            id,
            state: state.to_string(),
            online: self.node.is_connected(&id),
            last_seen_ms: self.node.last_seen(&id),
            commands: self
                .store
                .get_open(&id)
                .map_or(0, |c| c.info().contiguous_length),
        };
        allowed
            .into_iter()
            .map(|id| row(id, "paired"))
            .chain(revoked.into_iter().map(|id| row(id, "unpaired")))
            .collect()
    }

    /// Addresses to put in an invite: the endpoint's current direct addresses.
    pub fn invite_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self
            .node
            .endpoint()
            .addr()
            .ip_addrs()
            .copied()
            .filter(|a| !a.ip().is_unspecified())
            .collect();
        // Loopback last: it only works when both sides are on this machine.
        addrs.sort_by_key(|a| (a.ip().is_loopback(), a.is_ipv6()));
        addrs
    }
}

#[cfg(test)]
mod invite_tests {
    use super::*;

    #[test]
    fn secrets_differ() {
        let dir = tempfile::tempdir().unwrap();
        let a = make_invite(
            dir.path(),
            Key([1; 32]),
            std::time::Duration::from_secs(60),
            vec![],
        )
        .unwrap();
        let b = make_invite(
            dir.path(),
            Key([1; 32]),
            std::time::Duration::from_secs(60),
            vec![],
        )
        .unwrap();
        assert_ne!(a.secret, b.secret);
    }
}
