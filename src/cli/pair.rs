//! `dat-mirror pair CODE`: on the laptop, pairs with a mirror using its invite code. The
//! work is in [`super::peers::pair`].

use crate::config::{on, SettingFlags, Settings};

/// On the laptop: pair with a mirror using the code `dat-mirror invite` printed there
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  dat-mirror pair dmi1…\n\
Afterwards the mirror follows this laptop's commands and `dat-mirror mount` keeps it connected; \
no --mirror flag needed. Works with or without `dat-mirror mount` running.")]
pub struct Args {
    /// The invite code (dmi1…, printed by `dat-mirror invite` on the mirror)
    pub code: String,
    #[command(flatten)]
    pub settings: SettingFlags<{ on::PAIR }>,
}

pub async fn run(args: Args, s: &Settings) -> anyhow::Result<()> {
    super::peers::pair(
        &s.data_dir()?,
        &args.code,
        s.mount_listen.value,
        s.network(),
    )
    .await
}
