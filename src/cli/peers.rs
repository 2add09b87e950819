//! `dat-mirror peers`: the mirror's laptops (or the laptop's mirrors), online and last seen;
//! and which side a data folder belongs to ([`role_of`]), which `invite`, `pair` and
//! `unpair` ask too. Like them it goes through the running daemon's control socket when one
//! holds the data folder, and reads the folder's files directly when none does.

use std::path::Path;

use crate::host::DataDir;
use crate::ipc;
use crate::laptop::control_socket::{self as laptop_socket, Answer, MirrorRow, Request};
use crate::laptop::load_mirrors;
use crate::mirror::control_socket::{MirrorAnswer, MirrorRequest};
use crate::mirror::laptops::{self, LaptopRow};
use crate::model::view::ago;
use crate::util::clock::now_ms;

/// Which side a data folder belongs to, from the files its daemon keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Laptop,
    Mirror,
    /// Neither `serve` nor `mount` (nor `pair`) has used it yet.
    Fresh,
}

pub fn role_of(data: &Path) -> anyhow::Result<Role> {
    let dir = DataDir::new(data);
    let laptop = dir.has_laptop_files();
    let mirror = dir.has_mirror_files();
    match (laptop, mirror) {
        (true, true) => anyhow::bail!(
            "{} holds both a laptop's and a mirror's files (mirrors.json and allow.json); \
             give the laptop and the mirror separate data folders",
            data.display()
        ),
        (true, false) => Ok(Role::Laptop),
        (false, true) => Ok(Role::Mirror),
        (false, false) => Ok(Role::Fresh),
    }
}

/// `dat-mirror peers`.
pub async fn peers(data: &Path) -> anyhow::Result<()> {
    let now = now_ms();
    match role_of(data)? {
        Role::Fresh => crate::outln!(
            "no peers: this data folder has not been used yet (`dat-mirror invite` on a mirror, `dat-mirror pair CODE` on a laptop)"
        )?,
        Role::Mirror => {
            let rows = match ipc::call::<_, MirrorAnswer>(data, &MirrorRequest::Laptops).await? {
                Some(MirrorAnswer::Laptops(rows)) => Some(rows),
                Some(MirrorAnswer::Error(e)) => anyhow::bail!("{e}"),
                Some(other) => anyhow::bail!("unexpected answer from the mirror: {other:?}"),
                None => None,
            };
            crate::out!("{}", render_laptops(data, rows, now)?)?;
        }
        Role::Laptop => {
            let rows = match laptop_socket::call(data, &Request::Mirrors).await? {
                Some(Answer::Mirrors(rows)) => Some(rows),
                Some(Answer::Error(e)) => anyhow::bail!("{e}"),
                Some(other) => anyhow::bail!("unexpected answer from the laptop daemon: {other:?}"),
                None => None,
            };
            crate::out!("{}", render_mirrors(data, rows, now)?)?;
        }
    }
    Ok(())
}

fn seen(online: Option<bool>, last: Option<u64>, now: u64) -> (String, String) {
    match online {
        None => ("?".into(), "(daemon not running)".into()),
        Some(true) => ("yes".into(), "now".into()),
        Some(false) => (
            "no".into(),
            last.map_or_else(|| "never".into(), |t| ago(now, t)),
        ),
    }
}

fn render_laptops(data: &Path, rows: Option<Vec<LaptopRow>>, now: u64) -> anyhow::Result<String> {
    let running = rows.is_some();
    let rows = match rows {
        Some(r) => r,
        None => laptops::rows_offline(&DataDir::new(data))?,
    };
    let mut out = format!("LAPTOPS ({})\n", rows.len());
    for r in &rows {
        let (online, last) = seen(running.then_some(r.online), r.last_seen_ms, now);
        out += &format!(
            "{}  {:<8}  online: {online:<3}  last seen: {last}{}\n",
            r.id,
            r.state,
            if running {
                format!("  commands: {}", r.commands)
            } else {
                String::new()
            }
        );
    }
    if rows.is_empty() {
        out += "(none: `dat-mirror invite` prints a code for a laptop to pair with)\n";
    }
    Ok(out)
}

fn render_mirrors(data: &Path, rows: Option<Vec<MirrorRow>>, now: u64) -> anyhow::Result<String> {
    let running = rows.is_some();
    let rows = match rows {
        Some(r) => r,
        None => load_mirrors(&DataDir::new(data))?
            .into_iter()
            .map(|addr| MirrorRow {
                addr,
                online: false,
                last_seen_ms: None,
            })
            .collect(),
    };
    let mut out = format!("MIRRORS ({})\n", rows.len());
    for r in &rows {
        let (online, last) = seen(running.then_some(r.online), r.last_seen_ms, now);
        out += &format!("{}  online: {online:<3}  last seen: {last}\n", r.addr);
    }
    if rows.is_empty() {
        out += "(none: run `dat-mirror invite` on the mirror, then `dat-mirror pair CODE` here)\n";
    }
    Ok(out)
}
