//! `dat-mirror mount`: runs the laptop side (the command log, the connections to the mirrors,
//! seeding published sites) and mounts the control folder until Ctrl-C or SIGTERM.

use std::sync::Arc;

use anyhow::Context;

use crate::config::{on, SettingFlags, Settings};
use crate::laptop::{Laptop, LaptopConfig};
use crate::net::endpoint::RelayChoice;

/// Run the laptop side: mount the control folder, keep the command log, seed published sites
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
dat-mirror mount ~/dat-mirror --mirror <MIRROR_ID>@192.168.1.20:7070\n  \
dat-mirror mount                 # mount point and mirrors from the config file's [mount] table\n\
Stop with Ctrl-C (or SIGTERM): the folder is unmounted cleanly.\n\n\
Config file ([mount] table; environment DAT_MIRROR_MOUNT_MOUNTPOINT, DAT_MIRROR_MOUNT_MIRRORS, \
DAT_MIRROR_MOUNT_LISTEN):\n  \
[mount]\n  mountpoint = \"~/dat-mirror\"\n  mirrors = [\"<MIRROR_ID>@192.168.1.20:7070\"]\n\n\
As a service: scripts/install.sh installs the user unit dat-mirror-mount.service \
(systemctl --user enable --now dat-mirror-mount).\n\n\
With mDNS, the DHT or a relay on ([network] table, see `dat-mirror serve --help`), \
--mirror <MIRROR_ID> alone finds the mirror.")]
pub struct Args {
    #[command(flatten)]
    pub settings: SettingFlags<{ on::MOUNT }>,
}

/// Starts the laptop daemon, mounts the control folder, and runs until Ctrl-C or SIGTERM.
pub async fn run(_args: Args, s: &Settings) -> anyhow::Result<()> {
    let shutdown = super::ShutdownSignal::install();
    let network = s.network();
    let mountpoint = s.mount_mountpoint.as_ref().map(|c| c.value.clone()).context(
        "no mount point: pass one (`dat-mirror mount ~/dat-mirror`) or set `mountpoint` in the config file's [mount] table",
    )?;
    let laptop = Laptop::start(LaptopConfig {
        data: s.data_dir()?,
        mirrors: s.mount_mirrors.value.clone(),
        listen: s.mount_listen.value,
        network: network.clone(),
    })
    .await?;
    if laptop.inner.mirrors().is_empty() {
        crate::noteln!("note: no mirror paired yet: run `dat-mirror invite` on the mirror and `dat-mirror pair CODE` here (or pass --mirror <MIRROR_ID>@<IP:PORT>); commands written meanwhile are delivered once a mirror is paired");
    }
    let routes_off = !network.mdns && !network.dht && network.relay == RelayChoice::Off;
    if routes_off {
        if let Some(m) = laptop.inner.mirrors().iter().find(|m| m.addr.is_none()) {
            anyhow::bail!("no address known for mirror {}: give it as {}@IP:PORT, or enable mDNS, the DHT or a relay ([network] in the config file)", m.id, m.id);
        }
    }
    crate::fs::detach_stale(&mountpoint);
    std::fs::create_dir_all(&mountpoint).with_context(|| {
        format!(
            "cannot create the mount point {}: create it yourself, or choose another folder",
            mountpoint.display()
        )
    })?;
    let backend: Arc<dyn crate::fs::ControlBackend> = laptop.inner.clone();
    let mp = mountpoint.clone();
    let session = tokio::task::spawn_blocking(move || crate::fs::mount(&mp, backend))
        .await?
        .with_context(|| {
            format!(
                "cannot mount the control folder at {}",
                mountpoint.display()
            )
        })?;
    crate::bannerln!("laptop key: {}", laptop.inner.key());
    crate::bannerln!("control folder mounted at {}", mountpoint.display());
    super::print_network(&network);
    shutdown.wait().await;
    let mp = mountpoint.clone();
    tokio::task::spawn_blocking(move || crate::fs::fuse::unmount(session, &mp)).await??;
    laptop.shutdown().await;
    Ok(())
}
