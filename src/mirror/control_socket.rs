//! The mirror daemon's control socket (`DATA/control.sock`, see [`crate::ipc`]): `invite`,
//! `peers`, `unpair`, `trash [empty]` and `status-link [--rotate]` run by the CLI while
//! `serve` holds the data folder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::laptops::{make_invite, LaptopRow};
use super::leftovers::{self, TrashItem};
use super::MirrorInner;
use crate::model::keys::Key;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorRequest {
    /// Make an invite valid for `ttl_secs`; `addrs` replace the mirror's own addresses.
    Invite {
        ttl_secs: u64,
        addrs: Vec<SocketAddr>,
    },
    Laptops,
    Unpair {
        id: Key,
    },
    /// Delete everything in `DATA/trash/` now.
    EmptyTrash,
    /// What is in `DATA/trash/`, and problems found at start.
    Trash,
    /// The owner's secret link to the status pages; a new one first if `rotate`.
    StatusLink {
        rotate: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorAnswer {
    Invite {
        code: String,
        expires: u64,
    },
    Laptops(Vec<LaptopRow>),
    Unpaired,
    TrashEmptied(usize),
    Trash {
        items: Vec<TrashItem>,
        problems: Vec<String>,
        trash_days: u64,
    },
    StatusLink {
        /// `http://HOST:PORT/?token=…` (the gateway's listen address as HOST).
        url: String,
        rotated: bool,
    },
    Error(String),
}

pub fn spawn(inner: &Arc<MirrorInner>) -> anyhow::Result<()> {
    let weak = Arc::downgrade(inner);
    crate::ipc::serve(
        &inner.data,
        &inner.tasks,
        move |request: Result<MirrorRequest, String>| {
            let inner = weak.upgrade();
            async move {
                let Some(inner) = inner else {
                    return MirrorAnswer::Error("the mirror is shutting down".into());
                };
                match request {
                    Err(e) => MirrorAnswer::Error(e),
                    Ok(r) => handle(&inner, r).await,
                }
            }
        },
    )
}

async fn handle(inner: &Arc<MirrorInner>, request: MirrorRequest) -> MirrorAnswer {
    let result = match request {
        MirrorRequest::Invite { ttl_secs, addrs } => {
            let addrs = if addrs.is_empty() {
                inner.invite_addrs()
            } else {
                addrs
            };
            make_invite(
                &inner.data,
                inner.identity.key(),
                Duration::from_secs(ttl_secs),
                addrs,
            )
            .map(|inv| MirrorAnswer::Invite {
                code: inv.encode(),
                expires: inv.expires,
            })
        }
        MirrorRequest::Laptops => Ok(MirrorAnswer::Laptops(inner.laptop_rows())),
        MirrorRequest::Unpair { id } => inner
            .unpair_laptop(id)
            .await
            .map(|()| MirrorAnswer::Unpaired),
        MirrorRequest::EmptyTrash => {
            leftovers::empty_trash(&inner.data, None).map(MirrorAnswer::TrashEmptied)
        }
        MirrorRequest::Trash => leftovers::trash_contents(&inner.data)
            .map(|items| MirrorAnswer::Trash {
                items,
                problems: inner.problems(),
                trash_days: inner.trash_days,
            })
            .map_err(Into::into),
        MirrorRequest::StatusLink { rotate } => status_link(inner, rotate),
    };
    result.unwrap_or_else(|e| MirrorAnswer::Error(format!("{e:#}")))
}

fn status_link(inner: &MirrorInner, rotate: bool) -> anyhow::Result<MirrorAnswer> {
    let (Some(link), Some(base)) = (&inner.status_link, &inner.http_url) else {
        anyhow::bail!("this mirror runs no HTTP gateway, so it has no status page");
    };
    let token = if rotate {
        let token = link.rotate()?;
        tracing::info!("the owner's secret status link was rotated: old links answer 404");
        token
    } else {
        link.current()
    };
    Ok(MirrorAnswer::StatusLink {
        url: format!(
            "{base}/?{}={}",
            super::http::access::TOKEN_PARAM,
            token.as_str()
        ),
        rotated: rotate,
    })
}
