//! `dat-mirror pair CODE`: on the laptop, pairs with a mirror using its invite code. The
//! work is in [`pair`] below.

use crate::config::{on, SettingFlags, Settings};
use std::net::SocketAddr;
use std::path::Path;

use super::peers::{role_of, Role};
use crate::laptop::control_socket::{self as laptop_socket, Answer, Request};
use crate::laptop::{Laptop, LaptopConfig};
use crate::model::invite::Invite;
use crate::net::endpoint::{Identity, NetworkConfig};

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
    pair(
        &s.data_dir()?,
        &args.code,
        s.mount_listen.value,
        s.network(),
    )
    .await
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
    crate::outln!("paired with mirror {} ({peer})", invite.mirror)?;
    crate::noteln!("The mirror now follows this laptop's commands. `dat-mirror mount DIR` keeps it connected; `touch DIR/<key>` mirrors a site.");
    Ok(())
}
