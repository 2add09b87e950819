//! `dat-mirror invite`: on the mirror, prints a one-time invite code for one laptop. The
//! work is in [`super::peers::invite`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Settings;

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
    super::peers::invite(&s.data_dir()?, args.expires, args.addrs).await
}
