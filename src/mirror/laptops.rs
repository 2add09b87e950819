//! The laptops a mirror follows: the allow list (`DATA/allow.json`), the unpaired ones
//! (`DATA/revoked.json`), pairing by invite (rate-limited per laptop), unpairing, the
//! followers of their command logs, and the `peers` listing (also offline, for the CLI).
//!
//! Pairing adds a laptop at runtime: its id goes into the allow list, its command log is
//! replicated and followed, and it may read this mirror's status log. Unpairing reverses
//! that but keeps its log on disk: the sites it asked for stay mirrored (the acknowledged
//! part of its log is still folded at start) until a laptop unmirrors them; pairing the same
//! laptop again resumes following where the mirror left off.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::invites::{with_book, RedeemError};
use super::{follow, LogEntry, MirrorInner};
use crate::host::state::StateFile;
use crate::host::{DataDir, DataLock, Tasks};
use crate::model::command::Command;
use crate::model::invite::Invite;
use crate::model::keys::Key;
use crate::net::endpoint::{Identity, PeerAddr};
use crate::net::node::PeerEvent;
use crate::net::pairing;
use crate::store::log::TypedLog;
use crate::util::clock::now_ms;

/// Pairing attempts one laptop may make per [`PAIRING_WINDOW`].
pub const PAIRING_ATTEMPTS: u32 = 5;
pub const PAIRING_WINDOW: Duration = Duration::from_secs(60);

fn allow_file(data: &DataDir) -> StateFile {
    StateFile::new(
        data.allow(),
        "every laptop must pair again with a new invite",
        true,
    )
}

fn addrs_file(data: &DataDir) -> StateFile {
    StateFile::new(
        data.laptop_addrs(),
        "a restarted mirror finds its laptops by id only",
        true,
    )
}

fn revoked_file(data: &DataDir) -> StateFile {
    StateFile::new(
        data.revoked(),
        "unpaired laptops' sites are no longer kept at start",
        true,
    )
}

/// The allow and revoked lists as saved.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    pub allowed: BTreeSet<Key>,
    pub revoked: BTreeSet<Key>,
}

impl Lists {
    pub fn load(data: &DataDir) -> anyhow::Result<Lists> {
        Ok(Lists {
            allowed: allow_file(data).load()?,
            revoked: revoked_file(data).load()?,
        })
    }

    /// Revoked first: a crash in between leaves a laptop kept, never forgotten.
    pub fn save(&self, data: &DataDir) -> anyhow::Result<()> {
        revoked_file(data).save(&self.revoked)?;
        allow_file(data).save(&self.allowed)?;
        Ok(())
    }

    /// At `serve`: the saved lists plus the configured laptops, saved back.
    pub(super) fn load_for_start(data: &DataDir, allow: &[Key]) -> anyhow::Result<Lists> {
        let mut lists = Lists::load(data)?;
        lists.allowed.extend(allow.iter().copied());
        let Lists { allowed, revoked } = &mut lists;
        revoked.retain(|k| !allowed.contains(k));
        lists.save(data)?;
        Ok(lists)
    }
}

/// `dat-mirror unpair ID` with no mirror running (takes the folder's lock).
pub fn unpair_offline(data: &DataDir, id: Key) -> anyhow::Result<()> {
    let _lock = DataLock::acquire(data.root())?;
    let mut lists = Lists::load(data)?;
    if !lists.allowed.remove(&id) {
        anyhow::bail!("{id} is not a paired laptop of this mirror (`dat-mirror peers` lists them)");
    }
    lists.revoked.insert(id);
    lists.save(data)
}

/// `dat-mirror peers` with no mirror running: every laptop, state only.
pub fn rows_offline(data: &DataDir) -> anyhow::Result<Vec<LaptopRow>> {
    let lists = Lists::load(data)?;
    let row = |id, state: &str| LaptopRow {
        id,
        state: state.into(),
        online: false,
        last_seen_ms: None,
        commands: 0,
    };
    Ok(lists
        .allowed
        .into_iter()
        .map(|id| row(id, "paired"))
        .chain(lists.revoked.into_iter().map(|id| row(id, "unpaired")))
        .collect())
}

/// `dat-mirror invite` with no mirror running.
pub fn invite_offline(
    data: &DataDir,
    ttl: Duration,
    addrs: Vec<SocketAddr>,
) -> anyhow::Result<Invite> {
    let identity = Identity::load_or_create(data.root())?;
    make_invite(data, identity.key(), ttl, addrs)
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
    data: &DataDir,
    mirror: Key,
    ttl: Duration,
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

/// Pairing attempts per laptop in the current window (a fixed window: simple, and enough
/// to keep one peer from costing a locked file read per handshake).
#[derive(Debug, Default)]
pub struct PairingLimit {
    seen: HashMap<Key, (Instant, u32)>,
}

impl PairingLimit {
    /// Counts an attempt; false if `laptop` is over the limit.
    pub fn allow(&mut self, laptop: Key, now: Instant) -> bool {
        self.seen
            .retain(|_, (start, _)| now.duration_since(*start) < PAIRING_WINDOW);
        let (_, count) = self.seen.entry(laptop).or_insert((now, 0));
        *count += 1;
        *count <= PAIRING_ATTEMPTS
    }
}

/// The laptops of a running mirror.
pub(super) struct Laptops {
    allowed: Arc<RwLock<BTreeSet<Key>>>,
    /// Unpaired laptops: their logs are kept (and folded up to what was acknowledged, so
    /// the sites they asked for stay) but no longer followed or answered.
    revoked: RwLock<BTreeSet<Key>>,
    /// The follower of each allowed laptop's command log.
    followers: StdMutex<HashMap<Key, (Tasks, JoinHandle<()>)>>,
    /// Where followers send the entries they read (to the controller).
    commands: mpsc::Sender<LogEntry>,
    limit: StdMutex<PairingLimit>,
}

impl Laptops {
    pub(super) fn new(
        allowed: Arc<RwLock<BTreeSet<Key>>>,
        revoked: BTreeSet<Key>,
        commands: mpsc::Sender<LogEntry>,
    ) -> Laptops {
        Laptops {
            allowed,
            revoked: RwLock::new(revoked),
            followers: StdMutex::new(HashMap::new()),
            commands,
            limit: StdMutex::new(PairingLimit::default()),
        }
    }

    pub(super) fn is_allowed(&self, laptop: &Key) -> bool {
        self.allowed.read().unwrap().contains(laptop)
    }

    pub(super) fn allowed(&self) -> Vec<Key> {
        self.allowed.read().unwrap().iter().copied().collect()
    }

    /// Allowed and unpaired laptops.
    pub(super) fn known(&self) -> Vec<Key> {
        let mut all = self.allowed();
        all.extend(self.revoked.read().unwrap().iter().copied());
        all
    }

    fn lists(&self) -> Lists {
        Lists {
            allowed: self.allowed.read().unwrap().clone(),
            revoked: self.revoked.read().unwrap().clone(),
        }
    }

    /// Saves `change` applied to the lists, then makes it current.
    fn change(&self, data: &DataDir, change: impl FnOnce(&mut Lists)) -> anyhow::Result<()> {
        let mut allowed = self.allowed.write().unwrap();
        let mut revoked = self.revoked.write().unwrap();
        let mut lists = Lists {
            allowed: allowed.clone(),
            revoked: revoked.clone(),
        };
        change(&mut lists);
        lists.save(data)?;
        *allowed = lists.allowed;
        *revoked = lists.revoked;
        Ok(())
    }
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
        if !self
            .laptops
            .limit
            .lock()
            .unwrap()
            .allow(laptop, Instant::now())
        {
            tracing::warn!(laptop = %laptop.short(), "pairing refused: too many attempts");
            return Err(format!(
                "too many pairing attempts from this laptop (more than {PAIRING_ATTEMPTS} a \
                 minute); wait a minute and try again"
            ));
        }
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
        if let Err(e) = redeemed {
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
        self.pair_laptop(laptop).await.map_err(|e| {
            tracing::error!(laptop = %laptop.short(), "cannot pair: {e:#}");
            format!("the mirror could not save the pairing: {e}")
        })?;
        tracing::info!(laptop = %laptop, "paired by invite");
        Ok(())
    }

    /// Follows `laptop`'s command log from now on (idempotent).
    pub async fn pair_laptop(self: &Arc<Self>, laptop: Key) -> anyhow::Result<()> {
        if self.laptops.is_allowed(&laptop) {
            return Ok(());
        }
        self.laptops.change(&self.data, |l| {
            l.allowed.insert(laptop);
            l.revoked.remove(&laptop);
        })?;
        let core = self.store.open_or_create_replica(&laptop).await?;
        let log = TypedLog::<Command>::new(core);
        let from = self
            .status
            .acknowledged()
            .await
            .next
            .get(&laptop)
            .copied()
            .unwrap_or(0)
            .min(log.len());
        self.follow_laptop(log, from);
        Ok(())
    }

    /// Stops following `laptop` (its log and what it asked for stay). Errors if it was not
    /// paired.
    pub async fn unpair_laptop(&self, laptop: Key) -> anyhow::Result<()> {
        if !self.laptops.is_allowed(&laptop) {
            anyhow::bail!(
                "{laptop} is not a paired laptop of this mirror (`dat-mirror peers` lists them)"
            );
        }
        self.laptops.change(&self.data, |l| {
            l.allowed.remove(&laptop);
            l.revoked.insert(laptop);
        })?;
        let follower = self.laptops.followers.lock().unwrap().remove(&laptop);
        if let Some((tasks, task)) = follower {
            tasks.cancel();
            let _ = task.await;
        }
        self.node.unwant(&laptop);
        self.node
            .disconnect(&laptop, "unpaired by the mirror's owner");
        tracing::info!(laptop = %laptop, "unpaired");
        Ok(())
    }

    /// Replicates a laptop's command log and feeds its entries from `from` on to the
    /// controller.
    pub(super) fn follow_laptop(&self, log: TypedLog<Command>, from: u64) {
        let key = log.key();
        self.node.want(log.core().clone());
        let tasks = self.tasks.child();
        let task = tasks.spawn(follow(log, from, self.laptops.commands.clone()));
        let old = self
            .laptops
            .followers
            .lock()
            .unwrap()
            .insert(key, (tasks, task));
        if let Some((old, _)) = old {
            old.cancel();
        }
    }

    /// Dials every paired laptop once at start (at the address it was last seen at, else by
    /// id for address lookup), so a laptop still holding a connection to this mirror's
    /// previous process replaces it at once instead of at the idle timeout (iroh's
    /// stateless-reset key is random per process). Then remembers where laptops connect from.
    pub(super) fn dial_known_laptops(self: &Arc<Self>) {
        let seen: BTreeMap<Key, SocketAddr> = addrs_file(&self.data).load().unwrap_or_else(|e| {
            tracing::warn!("{e}");
            BTreeMap::new()
        });
        for laptop in self.laptops.allowed() {
            let node = self.node.clone();
            let addr = PeerAddr {
                id: laptop,
                addr: seen.get(&laptop).copied(),
            };
            self.tasks.spawn(async move {
                if let Err(e) = node.connect(&addr).await {
                    tracing::debug!(laptop = %laptop.short(), "cannot dial at start: {e:#}");
                }
            });
        }
        let inner = Arc::downgrade(self);
        let mut events = self.node.subscribe();
        self.tasks.spawn(async move {
            let mut seen = seen;
            while let Ok(event) = events.recv().await {
                let PeerEvent::Connected(peer) = event else {
                    continue;
                };
                let Some(inner) = inner.upgrade() else { return };
                if !inner.laptops.is_allowed(&peer) {
                    continue;
                }
                let Ok(id) = iroh::EndpointId::from_bytes(&peer.0) else {
                    continue;
                };
                let Some(info) = inner.node.endpoint().remote_info(id).await else {
                    continue;
                };
                let ip = info.addrs().find_map(|a| match a.addr() {
                    iroh::TransportAddr::Ip(ip) => Some(*ip),
                    _ => None,
                });
                if let Some(ip) = ip {
                    if seen.insert(peer, ip) != Some(ip) {
                        if let Err(e) = addrs_file(&inner.data).save(&seen) {
                            tracing::warn!("{e}");
                        }
                    }
                }
            }
        });
    }

    /// Every laptop this mirror knows, paired first.
    pub fn laptop_rows(&self) -> Vec<LaptopRow> {
        let lists = self.laptops.lists();
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
        lists
            .allowed
            .into_iter()
            .map(|id| row(id, "paired"))
            .chain(lists.revoked.into_iter().map(|id| row(id, "unpaired")))
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
mod tests {
    use super::*;

    #[test]
    fn secrets_differ() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let a = make_invite(&data, Key([1; 32]), Duration::from_secs(60), vec![]).unwrap();
        let b = make_invite(&data, Key([1; 32]), Duration::from_secs(60), vec![]).unwrap();
        assert_ne!(a.secret, b.secret);
    }

    #[test]
    fn pairing_attempts_are_limited_per_laptop() {
        let mut limit = PairingLimit::default();
        let t0 = Instant::now();
        for _ in 0..PAIRING_ATTEMPTS {
            assert!(limit.allow(Key([1; 32]), t0));
        }
        assert!(!limit.allow(Key([1; 32]), t0), "one more is refused");
        assert!(limit.allow(Key([2; 32]), t0), "another laptop is not");
        assert!(
            limit.allow(Key([1; 32]), t0 + PAIRING_WINDOW),
            "a minute later"
        );
    }

    #[test]
    fn a_zero_length_allow_list_is_recovered_from_its_last_good_copy() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let lists = Lists::load_for_start(&data, &[Key([1; 32])]).unwrap();
        Lists::load_for_start(&data, &[]).unwrap();
        assert_eq!(lists.allowed.len(), 1);
        std::fs::write(data.allow(), b"").unwrap();
        let again = Lists::load_for_start(&data, &[]).unwrap();
        assert_eq!(again.allowed, lists.allowed);
        // And the file is whole again.
        assert_eq!(Lists::load(&data).unwrap().allowed, lists.allowed);
    }
}
