//! The laptop daemon's control socket (`DATA/control.sock`, served by [`crate::ipc`]): the
//! CLI's `publish` hands its work to the running daemon here, and `status` asks it for the
//! status view, because only one process may hold a data folder's hypercores. Also the
//! status view read from disk when no daemon runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::publish::{publish_dir, Published};
use super::LaptopInner;
use crate::model::invite::Invite;
use crate::model::keys::Key;
use crate::model::view::StatusView;
use crate::net::endpoint::PeerAddr;

/// One row of `dat-mirror peers` on a laptop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MirrorRow {
    pub addr: PeerAddr,
    pub online: bool,
    pub last_seen_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Publish {
        dir: PathBuf,
        key: Option<Key>,
    },
    /// The status view, as the control folder shows it now.
    Status,
    /// Pair with a mirror by invite code.
    Pair {
        code: String,
    },
    /// The paired mirrors.
    Mirrors,
    Unpair {
        id: Key,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Published(Published),
    Status(Box<StatusView>),
    Paired(PeerAddr),
    Mirrors(Vec<MirrorRow>),
    Unpaired,
    Error(String),
}

pub fn path(data: &Path) -> PathBuf {
    crate::ipc::socket_path(data)
}

pub fn spawn(inner: &Arc<LaptopInner>) -> anyhow::Result<()> {
    let weak = Arc::downgrade(inner);
    crate::ipc::serve(
        &inner.data,
        &inner.tasks,
        move |request: Result<Request, String>| {
            let inner = weak.upgrade();
            async move {
                match (inner, request) {
                    (None, _) => Answer::Error("the laptop daemon is shutting down".into()),
                    (_, Err(e)) => Answer::Error(e),
                    (Some(inner), Ok(r)) => handle(inner, r).await,
                }
            }
        },
    )
}

async fn handle(inner: Arc<LaptopInner>, request: Request) -> Answer {
    match request {
        Request::Publish { dir, key } => match publish_dir(&inner.store, &dir, key).await {
            Ok(p) => {
                inner.providers.announce(p.key.discovery_key());
                Answer::Published(p)
            }
            Err(e) => Answer::Error(format!("{e:#}")),
        },
        Request::Status => Answer::Status(Box::new(inner.view())),
        Request::Pair { code } => match Invite::decode(&code) {
            Err(e) => Answer::Error(e.to_string()),
            Ok(invite) => match inner.pair(&invite).await {
                Ok(peer) => Answer::Paired(peer),
                Err(e) => Answer::Error(format!("{e:#}")),
            },
        },
        Request::Mirrors => Answer::Mirrors(inner.mirror_rows()),
        Request::Unpair { id } => match inner.remove_mirror(&id) {
            Ok(()) => Answer::Unpaired,
            Err(e) => Answer::Error(format!("{e:#}")),
        },
    }
}

/// Sends a request to the daemon of `data`. `Ok(None)` if no daemon is listening.
pub async fn call(data: &Path, request: &Request) -> anyhow::Result<Option<Answer>> {
    crate::ipc::call(data, request).await
}

/// The status view from what the data folder holds, for `dat-mirror status` when no daemon
/// runs: my command log and the mirrors' status logs as last replicated, every mirror shown
/// offline (this process does not connect). Holds the data folder's lock while it reads, so
/// it fails (saying why) if another dat-mirror process is using the folder. Creates nothing:
/// a folder no laptop has run in is an error.
pub async fn view_from_disk(data: &Path) -> anyhow::Result<StatusView> {
    use crate::host::DataDir;
    use crate::model::view::{fold, note_unreadable, MirrorInput};
    use crate::store::log::TypedLog;
    use crate::store::CoreStore;
    use crate::util::clock::now_ms;

    let dir = DataDir::new(data);
    if !dir.identity().exists() {
        anyhow::bail!(
            "{} holds no laptop yet (no identity): run `dat-mirror --data {} mount MOUNTPOINT --mirror ID@IP:PORT` first",
            data.display(),
            data.display()
        );
    }
    let _lock = crate::host::DataLock::acquire(data)?;
    let me = crate::net::endpoint::Identity::load_or_create(data)?.key();
    let store = CoreStore::new(data)?;
    let loaded = super::logs::ViewInputs::default();
    if let Some(core) = store.open_existing(&me).await? {
        super::logs::load_commands(&loaded, &TypedLog::new(core)).await;
    }
    let commands = loaded.into_cache().commands;
    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    for m in super::load_mirrors(&dir)? {
        let (status, note) = match store.open_existing(&m.id).await? {
            Some(core) => super::logs::read_status(&TypedLog::new(core)).await,
            None => (vec![], None),
        };
        notes.extend(note.map(|n| (m.id, n)));
        inputs.push(MirrorInput {
            mirror: m.id,
            status,
            online: false,
            last_seen_ms: None,
        });
    }
    let mut view = fold(me, &commands, &inputs, now_ms());
    for (m, n) in notes {
        note_unreadable(&mut view, m, n);
    }
    Ok(view)
}
