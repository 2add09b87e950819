//! `dat-mirror status-link [--rotate]`, on the mirror: the owner's secret link to the HTTP
//! status pages (which `[serve] status = "local"` hides from other machines), and a new one
//! that ends the old at once. Asks the running `serve` through its control socket, so a
//! rotation needs no restart; with no mirror running, reads or replaces the token file,
//! which the next start uses.

use std::path::Path;

use crate::config::Settings;
use crate::host::DataLock;
use crate::ipc;
use crate::mirror::control_socket::{MirrorAnswer, MirrorRequest};
use crate::mirror::http::access::{StatusToken, TOKEN_PARAM};

/// On the mirror: print the owner's secret link to the status page, or replace it
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
dat-mirror status-link             # print it (open it from any machine)\n  \
dat-mirror status-link --rotate    # a new link; the old one answers 404 from now on")]
pub struct Args {
    /// Make a new link; the old one stops working at once (no restart)
    #[arg(long)]
    pub rotate: bool,
}

pub async fn run(args: Args, s: &Settings) -> anyhow::Result<()> {
    link(&s.data_dir()?, args.rotate).await
}

pub async fn link(data: &Path, rotate: bool) -> anyhow::Result<()> {
    let request = MirrorRequest::StatusLink { rotate };
    match ipc::call::<_, MirrorAnswer>(data, &request).await? {
        Some(MirrorAnswer::StatusLink { url, rotated }) => {
            crate::outln!("{url}")?;
            if rotated {
                crate::noteln!("The old link answers 404 from now on.");
            }
        }
        Some(MirrorAnswer::Error(e)) => anyhow::bail!("{e}"),
        Some(other) => anyhow::bail!("unexpected answer from the mirror: {other:?}"),
        None => {
            let token = if rotate {
                let _lock = DataLock::acquire(data)?;
                StatusToken::rotate(data)?
            } else {
                StatusToken::load_or_create(data)?
            };
            crate::outln!(
                "http://<mirror>:<http port>/?{TOKEN_PARAM}={}",
                token.as_str()
            )?;
            crate::noteln!(
                "(no mirror running on {}: the next `dat-mirror serve` uses this token)",
                data.display()
            );
        }
    }
    Ok(())
}
