//! `dat-mirror invite`: on the mirror, prints a one-time invite code for one laptop. The
//! work is in [`invite`] below.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Settings;
use std::path::Path;

use super::peers::{role_of, Role};
use crate::host::DataDir;
use crate::ipc;
use crate::mirror::control_socket::{MirrorAnswer, MirrorRequest};
use crate::mirror::laptops;
use crate::model::invite::Invite;
use crate::model::units::format_utc;

/// On the mirror: print a one-time invite code for one laptop to pair with
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
dat-mirror invite                         # valid for 1 hour; prints dmi1...\n  \
dat-mirror invite --expires 7d --addr 203.0.113.7:7070\n\
Then on the laptop: dat-mirror pair <CODE>. The code carries the mirror's id, a one-time secret, \
its expiry and the mirror's addresses (those of the running `serve`, or --addr).")]
pub struct Args {
    /// How long the code stays valid: 90s, 30m, 1h, 7d
    #[arg(long, default_value = "1h", value_parser = crate::model::invite::parse_duration)]
    pub expires: Duration,
    /// Address the laptop should dial (repeatable) [default: the running mirror's own]
    #[arg(long = "addr", value_name = "IP:PORT")]
    pub addrs: Vec<SocketAddr>,
}

pub async fn run(args: Args, s: &Settings) -> anyhow::Result<()> {
    invite(&s.data_dir()?, args.expires, args.addrs).await
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
            crate::noteln!("note: no mirror is running on {}; start `dat-mirror serve` before the laptop pairs.", data.display());
            if addrs.is_empty() {
                crate::noteln!("note: the code carries no address (the mirror is not running); the laptop will look the mirror up by id. Pass --addr IP:PORT to include one.");
            }
            (inv.encode(), inv.expires)
        }
    };
    crate::outln!("{code}")?;
    let invite = Invite::decode(&code)?;
    crate::noteln!(
        "Invite for one laptop to pair with mirror {}, valid until {} (single use).\n\
         On the laptop: dat-mirror pair {code}",
        invite.mirror.short(),
        format_utc(expires.saturating_mul(1000))
    );
    if !invite.addrs.is_empty() {
        let list: Vec<String> = invite.addrs.iter().map(|a| a.to_string()).collect();
        crate::noteln!("The laptop will dial: {}", list.join(", "));
    }
    Ok(())
}
