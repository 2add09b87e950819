//! `invite`, `pair`, `peers` and `unpair`: who a mirror follows and which mirrors a laptop
//! uses. Each goes through the running daemon's control socket when one holds the data
//! folder, and works on the folder's files directly (under its lock) when none does.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::host::DataDir;
use crate::ipc;
use crate::laptop::control_socket::{self as laptop_socket, Answer, MirrorRow, Request};
use crate::laptop::{load_mirrors, Laptop, LaptopConfig};
use crate::mirror::control_socket::{MirrorAnswer, MirrorRequest};
use crate::mirror::laptops::{self, LaptopRow};
use crate::model::invite::Invite;
use crate::model::keys::Key;
use crate::model::view::{ago, format_utc};
use crate::net::endpoint::Identity;
use crate::net::endpoint::NetworkConfig;
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

/// `dat-mirror invite`: prints a one-time code for one laptop.
pub async fn invite(data: &Path, ttl: Duration, addrs: Vec<SocketAddr>) -> anyhow::Result<()> {
    if role_of(data)? == Role::Laptop {
        anyhow::bail!(
            "{} is a laptop's data folder; run `dat-mirror invite` on the mirror, then \
             `dat-mirror pair CODE` here",
            data.display()
        );
    }
    let request = MirrorRequest::Invite {
        ttl_secs: ttl.as_secs(),
        addrs: addrs.clone(),
    };
    let (code, expires) = match ipc::call::<_, MirrorAnswer>(data, &request).await? {
        Some(MirrorAnswer::Invite { code, expires }) => (code, expires),
        Some(MirrorAnswer::Error(e)) => anyhow::bail!("{e}"),
        Some(other) => anyhow::bail!("unexpected answer from the mirror: {other:?}"),
        None => {
            let inv = laptops::invite_offline(&DataDir::new(data), ttl, addrs.clone())?;
            eprintln!("note: no mirror is running on {}; start `dat-mirror serve` before the laptop pairs.", data.display());
            if addrs.is_empty() {
                eprintln!("note: the code carries no address (the mirror is not running); the laptop will look the mirror up by id. Pass --addr IP:PORT to include one.");
            }
            (inv.encode(), inv.expires)
        }
    };
    println!("{code}");
    let invite = Invite::decode(&code)?;
    eprintln!(
        "Invite for one laptop to pair with mirror {}, valid until {} (single use).\n\
         On the laptop: dat-mirror pair {code}",
        invite.mirror.short(),
        format_utc(expires.saturating_mul(1000))
    );
    if !invite.addrs.is_empty() {
        let list: Vec<String> = invite.addrs.iter().map(|a| a.to_string()).collect();
        eprintln!("The laptop will dial: {}", list.join(", "));
    }
    Ok(())
}

/// `dat-mirror pair CODE` (on the laptop).
pub async fn pair(
    data: &Path,
    code: &str,
    listen: SocketAddr,
    network: NetworkConfig,
) -> anyhow::Result<()> {
    let invite = Invite::decode(code)?;
    if role_of(data)? == Role::Mirror {
        anyhow::bail!(
            "{} is a mirror's data folder; run `dat-mirror pair` on the laptop",
            data.display()
        );
    }
    let me = Identity::load_or_create(data)?.key();
    if invite.mirror == me {
        anyhow::bail!("this invite is this node's own; run `dat-mirror pair` on the laptop, with the laptop's data folder");
    }
    let request = Request::Pair {
        code: code.to_string(),
    };
    let peer = match laptop_socket::call(data, &request).await? {
        Some(Answer::Paired(p)) => p,
        Some(Answer::Error(e)) => anyhow::bail!("{e}"),
        Some(other) => anyhow::bail!("unexpected answer from the laptop daemon: {other:?}"),
        None => {
            let laptop = Laptop::start(LaptopConfig {
                data: data.to_path_buf(),
                mirrors: vec![],
                listen,
                network,
            })
            .await?;
            let result = laptop.inner.pair(&invite).await;
            laptop.shutdown().await;
            result?
        }
    };
    println!("paired with mirror {} ({peer})", invite.mirror);
    eprintln!("The mirror now follows this laptop's commands. `dat-mirror mount DIR` keeps it connected; `touch DIR/<key>` mirrors a site.");
    Ok(())
}

/// `dat-mirror peers`.
pub async fn peers(data: &Path) -> anyhow::Result<()> {
    let now = now_ms();
    match role_of(data)? {
        Role::Fresh => println!(
            "no peers: this data folder has not been used yet (`dat-mirror invite` on a mirror, `dat-mirror pair CODE` on a laptop)"
        ),
        Role::Mirror => {
            let rows = match ipc::call::<_, MirrorAnswer>(data, &MirrorRequest::Laptops).await? {
                Some(MirrorAnswer::Laptops(rows)) => Some(rows),
                Some(MirrorAnswer::Error(e)) => anyhow::bail!("{e}"),
                Some(other) => anyhow::bail!("unexpected answer from the mirror: {other:?}"),
                None => None,
            };
            print!("{}", render_laptops(data, rows, now)?);
        }
        Role::Laptop => {
            let rows = match laptop_socket::call(data, &Request::Mirrors).await? {
                Some(Answer::Mirrors(rows)) => Some(rows),
                Some(Answer::Error(e)) => anyhow::bail!("{e}"),
                Some(other) => anyhow::bail!("unexpected answer from the laptop daemon: {other:?}"),
                None => None,
            };
            print!("{}", render_mirrors(data, rows, now)?);
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

/// `dat-mirror unpair ID`.
pub async fn unpair(data: &Path, id: Key) -> anyhow::Result<()> {
    match role_of(data)? {
        Role::Fresh => anyhow::bail!("{id} is not paired: this data folder has no peers yet"),
        Role::Mirror => {
            match ipc::call::<_, MirrorAnswer>(data, &MirrorRequest::Unpair { id }).await? {
                Some(MirrorAnswer::Unpaired) => {}
                Some(MirrorAnswer::Error(e)) => anyhow::bail!("{e}"),
                Some(other) => anyhow::bail!("unexpected answer from the mirror: {other:?}"),
                None => laptops::unpair_offline(&DataDir::new(data), id)?,
            }
            println!("unpaired laptop {id}");
            eprintln!("The mirror no longer follows its commands nor shows it its status; the sites it asked for stay until unmirrored. If `serve` is started with --allow {} (or the config's allow list names it), it is paired again.", id.short());
        }
        Role::Laptop => {
            match laptop_socket::call(data, &Request::Unpair { id }).await? {
                Some(Answer::Unpaired) => {}
                Some(Answer::Error(e)) => anyhow::bail!("{e}"),
                Some(other) => anyhow::bail!("unexpected answer from the laptop daemon: {other:?}"),
                None => crate::laptop::mirrors::unpair_offline(&DataDir::new(data), id)?,
            }
            println!("unpaired mirror {id}");
            eprintln!("This laptop no longer dials it nor lets it read its commands; run `dat-mirror unpair` on the mirror too to drop this laptop there.");
        }
    }
    Ok(())
}
