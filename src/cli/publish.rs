//! `dat-mirror publish DIR [--key KEY]`: makes a folder a site (or a new version of one) and
//! prints its link. If `dat-mirror mount` runs on this data folder it does the work over its
//! control socket (and seeds the new version at once); otherwise this process does it on the
//! data folder directly.

use std::path::PathBuf;

use anyhow::Context;

use crate::config::{parse_key, Settings};
use crate::host::DataLock;
use crate::laptop::control_socket::{self, Answer, Request};
use crate::laptop::publish::{publish_dir, Published};
use crate::model::keys::Key;
use crate::store::CoreStore;

/// Publish a folder as a site (or, with --key, a new version of one) and print its link
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  dat-mirror publish ./site                 # new site: prints hyper://<key>\n  \
dat-mirror publish ./site --key <key>     # new version of that site\n\
If `dat-mirror mount` is running on this data folder, it does the work (and seeds the new version at once).\n\
The site is a hyperdrive (db + blobs hypercores) that Node's hyperdrive 11 can read."
)]
pub struct Args {
    /// The folder to publish
    pub site_dir: PathBuf,
    /// Publish a new version of this site (created earlier from this data folder)
    /// [default: a new site]
    #[arg(long, value_parser = parse_key)]
    pub key: Option<Key>,
}

/// Publishes through the running daemon, or directly when none runs.
pub async fn run(args: Args, s: &Settings) -> anyhow::Result<()> {
    let data = s.data_dir()?;
    let dir = std::fs::canonicalize(&args.site_dir).with_context(|| {
        format!(
            "cannot find the folder {}: check the path",
            args.site_dir.display()
        )
    })?;
    let request = Request::Publish {
        dir: dir.clone(),
        key: args.key,
    };
    let published = match control_socket::call(&data, &request).await? {
        Some(Answer::Published(p)) => p,
        Some(Answer::Error(e)) => anyhow::bail!("{e}"),
        Some(other) => anyhow::bail!(
            "unexpected answer from the laptop daemon: {other:?}; is the running `dat-mirror \
             mount` the same version as this one?"
        ),
        None => {
            let _lock = DataLock::acquire(&data)?;
            crate::host::migrate_old_layout(&data).await?;
            let store = CoreStore::new(&data)?;
            publish_dir(&store, &dir, args.key).await?
        }
    };
    print_published(&published)?;
    Ok(())
}

fn print_published(p: &Published) -> std::io::Result<()> {
    crate::outln!("{}", p.key.to_link())?;
    crate::noteln!(
        "version {}: {} files ({} added, {} changed, {} removed, {} bytes new)",
        p.version,
        p.files,
        p.added,
        p.changed,
        p.removed,
        p.bytes_appended
    );
    for skipped in &p.skipped {
        crate::noteln!(
            "skipped {} (neither a file, a folder nor a symlink)",
            skipped.display()
        );
    }
    Ok(())
}
