//! `dat-mirror config`: prints every setting in effect, and where each comes from, as a
//! configuration file (see [`crate::config`]; chosen by the same path as every subcommand).

use crate::config::Settings;

/// Print the settings in effect, and where each comes from, as a configuration file
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
dat-mirror config                                   # what serve/mount would use, and why\n  \
dat-mirror config > ~/.config/dat-mirror/config.toml  # start a config file from the current settings\n  \
DAT_MIRROR_SERVE_HTTP=0.0.0.0:80 dat-mirror --config /etc/dat-mirror/config.toml config")]
pub struct Args {}

pub async fn run(_args: Args, s: &Settings) -> anyhow::Result<()> {
    crate::out!("{}", s.render())?;
    Ok(())
}
