//! `dat-mirror unpair ID`: revokes a pairing (on the mirror: stop following a laptop; on the
//! laptop: forget a mirror). The work is in [`unpair`] below.

use crate::config::{parse_key, Settings};
use crate::model::keys::Key;
use std::path::Path;

use super::peers::{role_of, Role};
use crate::host::DataDir;
use crate::ipc;
use crate::laptop::control_socket::{self as laptop_socket, Answer, Request};
use crate::mirror::control_socket::{MirrorAnswer, MirrorRequest};
use crate::mirror::laptops;

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
    unpair(&s.data_dir()?, args.id).await
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
            crate::outln!("unpaired laptop {id}")?;
            crate::noteln!("The mirror no longer follows its commands nor shows it its status; the sites it asked for stay until unmirrored. If `serve` is started with --allow {} (or the config's allow list names it), it is paired again.", id.short());
        }
        Role::Laptop => {
            match laptop_socket::call(data, &Request::Unpair { id }).await? {
                Some(Answer::Unpaired) => {}
                Some(Answer::Error(e)) => anyhow::bail!("{e}"),
                Some(other) => anyhow::bail!("unexpected answer from the laptop daemon: {other:?}"),
                None => crate::laptop::mirrors::unpair_offline(&DataDir::new(data), id)?,
            }
            crate::outln!("unpaired mirror {id}")?;
            crate::noteln!("This laptop no longer dials it nor lets it read its commands; run `dat-mirror unpair` on the mirror too to drop this laptop there.");
        }
    }
    Ok(())
}
