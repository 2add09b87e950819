//! The laptop side (`dat-mirror mount`): keeps the command log (a hypercore this laptop
//! signs), follows the status log of every paired mirror, stays connected to the mirrors
//! (dialling again whenever a connection drops, so a command written offline is delivered
//! when the mirror is back), seeds the sites published here, and answers `publish` requests
//! from the CLI on the control socket ([`crate::ipc`]). Start-up and shutdown are the shared
//! ones of [`crate::host`].
//!
//! It is the control folder's backend: [`LaptopInner::view`] folds the logs into the status
//! view the folder shows, [`LaptopInner::append`] writes a command.

pub mod backend;
pub mod control_socket;
pub mod logs;
pub mod mirrors;
pub mod publish;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::host::{DataDir, DataLock, Host, Tasks};
use crate::model::command::Command;
use crate::model::invite::Invite;
use crate::model::keys::Key;
use crate::model::view::{self, MirrorInput, StatusView};
use crate::net::endpoint::{Identity, NetworkConfig, PeerAddr};
use crate::net::node::{Node, Policy};
use crate::net::pairing;
use crate::net::providers::Providers;
use crate::store::log::TypedLog;
use crate::store::{CoreStore, StoreError};
use crate::util::clock::now_ms;
use logs::{CommandLog, ViewInputs};
pub use mirrors::{load_mirrors, save_mirrors};

#[derive(Debug, Clone)]
pub struct LaptopConfig {
    pub data: PathBuf,
    /// Mirrors to pair with and dial (saved in the data folder for next time).
    pub mirrors: Vec<PeerAddr>,
    /// Local address for the peer endpoint (`0.0.0.0:0`: any).
    pub listen: SocketAddr,
    /// Discovery routes (mDNS, DHT, relays); `NetworkConfig::offline()` for none.
    pub network: NetworkConfig,
}

/// Who may read what from a laptop: its command log only to its paired mirrors, the sites
/// published here to anyone who knows their key, nothing else.
struct LaptopPolicy {
    own: Key,
    mirrors: Arc<RwLock<Vec<PeerAddr>>>,
    store: Arc<CoreStore>,
}

impl Policy for LaptopPolicy {
    fn may_serve(&self, peer: &Key, core: &Key) -> bool {
        if *core == self.own {
            return self.mirrors.read().unwrap().iter().any(|m| m.id == *peer);
        }
        // Published sites are the writable cores other than the command log.
        self.store.get_open(core).is_some_and(|c| c.info().writable)
    }

    /// A paired mirror's status log (keyed by the mirror's id): fetched only from that
    /// mirror ([`Policy::may_fetch`]).
    fn is_log(&self, core: &Key) -> bool {
        self.mirrors.read().unwrap().iter().any(|m| m.id == *core)
    }
}

pub struct LaptopInner {
    pub identity: Identity,
    pub store: Arc<CoreStore>,
    pub node: Arc<Node>,
    /// Announces the sites published here (DHT) and finds who holds a site.
    pub providers: Arc<Providers>,
    pub data: DataDir,
    commands: CommandLog,
    mirrors: Arc<RwLock<Vec<PeerAddr>>>,
    /// What the view is folded from.
    inputs: Arc<ViewInputs>,
    /// Per paired mirror: the tasks following its status log and keeping it connected.
    mirror_tasks: std::sync::Mutex<HashMap<Key, Tasks>>,
    /// The last view computed, with the inputs' fingerprint.
    last_view: std::sync::Mutex<Option<(Vec<u64>, Arc<StatusView>)>>,
    tasks: Tasks,
}

pub struct Laptop {
    pub inner: Arc<LaptopInner>,
    _lock: DataLock,
}

impl Laptop {
    pub async fn start(config: LaptopConfig) -> anyhow::Result<Laptop> {
        let data = DataDir::new(&config.data);
        let opened = Host::open(data.clone()).await?;
        let mut mirrors = load_mirrors(&data)?;
        for m in &config.mirrors {
            mirrors.retain(|x| x.id != m.id);
            mirrors.push(m.clone());
        }
        save_mirrors(&data, &mirrors)?;
        let mirrors = Arc::new(RwLock::new(mirrors));

        // Open every site published here so the policy (and seeding) knows them.
        for key in opened.store.keys_on_disk() {
            if let Err(e) = opened.store.open_existing(&key).await {
                tracing::warn!("cannot open core {key}: {e}");
            }
        }
        let policy = LaptopPolicy {
            own: opened.identity.key(),
            mirrors: mirrors.clone(),
            store: opened.store.clone(),
        };
        let Host {
            data,
            lock,
            identity,
            store,
            own_log,
            node,
            providers,
            tasks,
            ..
        } = opened
            .connect(config.listen, &config.network, Arc::new(policy), |node| {
                node
            })
            .await?;
        let commands = CommandLog::new(own_log);
        let inner = Arc::new(LaptopInner {
            identity,
            store,
            node,
            providers,
            data,
            commands: commands.clone(),
            mirrors: mirrors.clone(),
            inputs: Arc::new(ViewInputs::default()),
            mirror_tasks: std::sync::Mutex::new(HashMap::new()),
            last_view: std::sync::Mutex::new(None),
            tasks,
        });

        // The whole log is in the view before anyone can look (the folder is mounted after
        // this returns): a listing right after a restart shows every command written.
        logs::load_commands(&inner.inputs, commands.typed()).await;
        inner.tasks.spawn(logs::watch_commands(
            inner.inputs.clone(),
            commands.typed().clone(),
        ));
        let list: Vec<PeerAddr> = mirrors.read().unwrap().clone();
        for m in list {
            inner.start_mirror_tasks(m).await?;
        }
        inner.announce_published().await;
        control_socket::spawn(&inner)?;
        Ok(Laptop { inner, _lock: lock })
    }

    /// Stops every task, removes the control socket and closes the endpoint.
    pub async fn shutdown(self) {
        self.inner.tasks.shutdown().await;
        let _ = std::fs::remove_file(self.inner.data.control_socket());
        self.inner.node.shutdown().await;
        self.inner.node.endpoint().close().await;
        if let Err(e) = self.inner.store.checkpoint().await {
            tracing::warn!("{e} (the next start replays the write-ahead log)");
        }
    }
}

impl LaptopInner {
    /// Follows `m`'s status log and keeps a connection to it.
    async fn start_mirror_tasks(self: &Arc<Self>, m: PeerAddr) -> anyhow::Result<()> {
        let status = self.store.open_or_create_replica(&m.id).await?;
        self.node.want(status.clone());
        let tasks = self.tasks.child();
        tasks.spawn(logs::watch_status(
            self.inputs.clone(),
            TypedLog::new(status),
        ));
        tasks.abort_on_cancel(self.node.keep_connected(m.clone()));
        if let Some(old) = self.mirror_tasks.lock().unwrap().insert(m.id, tasks) {
            old.cancel();
        }
        Ok(())
    }

    /// Pairs with the mirror of `invite` (the mirror checks the invite), then follows it.
    pub async fn pair(self: &Arc<Self>, invite: &Invite) -> anyhow::Result<PeerAddr> {
        let worked = pairing::request(self.node.endpoint(), invite, now_ms() / 1000).await?;
        // The address that worked (none: found by id, which the next dial does again).
        let peer = PeerAddr {
            id: invite.mirror,
            addr: worked,
        };
        self.add_mirror(peer.clone()).await?;
        Ok(peer)
    }

    /// Adds (or updates the address of) a paired mirror, saved for next time.
    pub async fn add_mirror(self: &Arc<Self>, peer: PeerAddr) -> anyhow::Result<()> {
        {
            let mut mirrors = self.mirrors.write().unwrap();
            let mut list = mirrors.clone();
            list.retain(|m| m.id != peer.id);
            list.push(peer.clone());
            save_mirrors(&self.data, &list)?;
            *mirrors = list;
        }
        self.start_mirror_tasks(peer).await
    }

    /// Forgets a paired mirror: stops dialling it and following its status log.
    pub fn remove_mirror(&self, id: &Key) -> anyhow::Result<()> {
        {
            let mut mirrors = self.mirrors.write().unwrap();
            if !mirrors.iter().any(|m| m.id == *id) {
                anyhow::bail!(
                    "{id} is not a paired mirror of this laptop (`dat-mirror peers` lists them)"
                );
            }
            let list: Vec<PeerAddr> = mirrors.iter().filter(|m| m.id != *id).cloned().collect();
            save_mirrors(&self.data, &list)?;
            *mirrors = list;
        }
        if let Some(tasks) = self.mirror_tasks.lock().unwrap().remove(id) {
            tasks.cancel();
        }
        self.node.unwant(id);
        self.node.disconnect(id, "unpaired");
        self.inputs.update(|cache| {
            cache.status.remove(id);
            cache.notes.remove(id);
        });
        Ok(())
    }

    /// The paired mirrors with their connection state (`dat-mirror peers`).
    pub fn mirror_rows(&self) -> Vec<control_socket::MirrorRow> {
        self.mirrors()
            .into_iter()
            .map(|m| control_socket::MirrorRow {
                online: self.node.is_connected(&m.id),
                last_seen_ms: self.node.last_seen(&m.id),
                addr: m,
            })
            .collect()
    }

    pub fn key(&self) -> Key {
        self.identity.key()
    }

    /// Announces every site published from this data folder (see [`Providers::announce`]);
    /// called at start and after each publish.
    pub async fn announce_published(&self) {
        let own = self.identity.key();
        for key in self.store.keys_on_disk() {
            if key == own {
                continue;
            }
            if let Ok(Some((db, _))) = publish::open_site(&self.store, &key).await {
                if db.info().writable {
                    self.providers.announce(key.discovery_key());
                }
            }
        }
    }

    pub fn mirrors(&self) -> Vec<PeerAddr> {
        self.mirrors.read().unwrap().clone()
    }

    /// The status view: the command log folded with every mirror's status log.
    pub fn view(&self) -> StatusView {
        (*self.view_shared()).clone()
    }

    /// [`LaptopInner::view`], shared: the same `Arc` until an input changes.
    pub fn view_shared(&self) -> Arc<StatusView> {
        let now = now_ms();
        let cache = self.inputs.read();
        let mirrors = self.mirrors.read().unwrap().clone();
        // The fold reads every log entry; the folder asks for the view on every callback
        // (`ls -l` several times per entry), so it is recomputed only when an input changed
        // or a second passed (the rendered "ago" times have one-second resolution).
        let online: Vec<(bool, Option<u64>)> = mirrors
            .iter()
            .map(|m| (self.node.is_connected(&m.id), self.node.last_seen(&m.id)))
            .collect();
        let notes = cache.notes.len() as u64 + u64::from(cache.command_note.is_some());
        let fingerprint: Vec<u64> = [cache.commands.len() as u64, now / 1000, notes]
            .into_iter()
            .chain(mirrors.iter().zip(&online).flat_map(|(m, (on, seen))| {
                let len = cache.status.get(&m.id).map_or(0, |s| s.len() as u64);
                [len, *on as u64, seen.map_or(0, |t| t / 1000 + 1)]
            }))
            .collect();
        if let Some((fp, view)) = &*self.last_view.lock().unwrap() {
            if *fp == fingerprint {
                return view.clone();
            }
        }
        let inputs: Vec<MirrorInput> = mirrors
            .iter()
            .zip(online)
            .map(|(m, (online, last_seen_ms))| MirrorInput {
                mirror: m.id,
                status: cache.status.get(&m.id).cloned().unwrap_or_default(),
                online,
                last_seen_ms,
            })
            .collect();
        // Fold a copy, not under the lock: a new entry (the mirror's acknowledgement) waits
        // for the write lock while a fold holds the read lock, and the folder folds on every
        // read of a changed view (seen: 250 µs of the ~2 ms from `touch` to `delivered`).
        let commands = cache.commands.clone();
        let notes = cache.notes.clone();
        let command_note = cache.command_note.clone();
        drop(cache);
        let mut view = view::fold(self.key(), &commands, &inputs, now);
        for (m, note) in notes {
            view::note_unreadable(&mut view, m, note);
        }
        if let Some(note) = &command_note {
            for m in &mirrors {
                view::note_unreadable(&mut view, m.id, note.clone());
            }
        }
        let view = Arc::new(view);
        *self.last_view.lock().unwrap() = Some((fingerprint, view.clone()));
        view
    }

    /// Appends a command, and shows it in the view at once.
    pub async fn append(&self, command: Command) -> anyhow::Result<u64> {
        let seq = self.commands.append(&command).await?;
        self.appended(seq, command);
        Ok(seq)
    }

    /// [`LaptopInner::append`] on the calling thread, which may block and is not a tokio
    /// worker (the control folder's FUSE threads): the commit runs right there.
    pub fn append_in_place(&self, command: Command) -> Result<u64, StoreError> {
        tracing::debug!(target: "latency", "append start");
        let seq = self.commands.append_in_place(&command)?;
        self.appended(seq, command);
        Ok(seq)
    }

    fn appended(&self, seq: u64, command: Command) {
        tracing::info!(seq, "command appended: {command:?}");
        self.inputs
            .update(|cache| logs::push_command(cache, seq, Ok(command)));
    }
}

impl backend::ControlBackend for LaptopInner {
    fn view(&self) -> Arc<StatusView> {
        LaptopInner::view_shared(self)
    }

    fn changes(&self) -> Arc<backend::Changes> {
        self.inputs.changes()
    }

    fn append(&self, command: Command) -> Result<u64, backend::AppendError> {
        self.append_in_place(command).map_err(|e| {
            backend::AppendError::from_chain(&e, format!("cannot write to the command log: {e}"))
        })
    }
}
