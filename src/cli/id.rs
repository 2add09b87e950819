//! `dat-mirror id`: prints this node's id (its public key), creating the identity if needed.

use crate::config::Settings;
use crate::net::endpoint::Identity;

/// Print this node's id (its public key, 64 hex), creating the identity if needed
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  dat-mirror id        # on the laptop: give this to the mirror's --allow"
)]
pub struct Args {}

pub async fn run(_args: Args, s: &Settings) -> anyhow::Result<()> {
    crate::outln!("{}", Identity::load_or_create(&s.data_dir()?)?.key())?;
    Ok(())
}
