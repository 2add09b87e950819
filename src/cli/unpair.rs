//! `dat-mirror unpair ID`: revokes a pairing (on the mirror: stop following a laptop; on the
//! laptop: forget a mirror). The work is in [`super::peers::unpair`].

use crate::config::{parse_key, Settings};
use crate::model::keys::Key;

/// Revoke a pairing: on the mirror, stop following a laptop; on the laptop, forget a mirror
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  dat-mirror unpair <LAPTOP_ID>     # on the mirror\n  \
dat-mirror unpair <MIRROR_ID>     # on the laptop\n\
On the mirror, the sites the laptop asked for stay mirrored until unmirrored."
)]
pub struct Args {
    /// The peer's id (as `dat-mirror peers` shows it)
    #[arg(value_parser = parse_key)]
    pub id: Key,
}

pub async fn run(args: Args, s: &Settings) -> anyhow::Result<()> {
    super::peers::unpair(&s.data_dir()?, args.id).await
}
