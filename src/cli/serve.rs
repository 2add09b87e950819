//! `dat-mirror serve`: runs the mirror (follows allowed laptops' command logs, replicates,
//! seeds and serves sites over HTTP), optionally mounts the read-only site tree, and stops
//! cleanly on Ctrl-C or SIGTERM.

use anyhow::Context;

use crate::config::{on, SettingFlags, Settings};
use crate::mirror::{self, MirrorConfig};
use crate::model::units::format_size;

/// Run the mirror: follow allowed laptops' command logs, replicate, seed and serve sites
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
dat-mirror serve --listen 0.0.0.0:7070 --http 0.0.0.0:8080 --allow <LAPTOP_ID>\n  \
dat-mirror --data /var/lib/dat-mirror serve        # settings from the config file's [serve] table\n\n\
Config file ([serve] table; environment DAT_MIRROR_SERVE_LISTEN, _HTTP, _ALLOW, _DOMAINS, _STATUS):\n  \
[serve]\n  listen = \"0.0.0.0:7070\"\n  http = \"0.0.0.0:8080\"\n  allow = [\"<LAPTOP_ID>\", \"<OTHER_LAPTOP_ID>\"]\n  \
status = \"local\"     # who sees the status page: local, public or off\n  \
[serve.domains]\n  \"www.example.org\" = \"<SITE_KEY>\"\n\n\
Finding peers by id ([network] table; environment DAT_MIRROR_NETWORK_MDNS, _DHT, _RELAY, _HYPERSWARM):\n  \
[network]\n  mdns = true\n  dht = true\n  relay = \"default\"    # or \"off\", or \"https://your-relay.example.org\"\n  \
hyperswarm = true     # the hypercore network, where hyper:// browsers look\n\n\
As a service: scripts/install.sh installs dat-mirror-serve.service \
(systemctl enable --now dat-mirror-serve; config in /etc/dat-mirror/config.toml).")]
pub struct Args {
    #[command(flatten)]
    pub settings: SettingFlags<{ on::SERVE }>,
}

/// Starts the mirror with `s` and runs it until Ctrl-C or SIGTERM.
pub async fn run(_args: Args, s: &Settings) -> anyhow::Result<()> {
    let shutdown = super::ShutdownSignal::install();
    let net = s.network();
    let http = s.serve_http.value;
    let domains = s.serve_domains.value.clone();
    let max_storage = s.serve_max_storage.as_ref().map(|c| c.value);
    let data = s.data_dir()?;
    let mirror = mirror::start(MirrorConfig {
        data: data.clone(),
        listen: s.serve_listen.value,
        http: Some(http),
        allow: s.serve_allow.value.clone(),
        network: net.clone(),
        domains: domains.clone(),
        max_storage,
        status: s.serve_status.value,
        base_host: s.serve_base_host.as_ref().map(|c| c.value.clone()),
        trash_days: s.serve_trash_days.value,
    })
    .await?;
    for (host, key) in &domains {
        crate::bannerln!("custom domain {host} serves {key}");
    }
    if let Some(cap) = max_storage {
        crate::bannerln!(
            "storage cap: {} (new sites wait while stored data is over it)",
            format_size(cap)
        );
    }
    let tree = match &s.serve_mount {
        Some(dir) => {
            let dir = &dir.value;
            crate::fs::detach_stale(dir);
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create the mount point {}: create it yourself, or choose another \
                     with --mount DIR",
                    dir.display()
                )
            })?;
            let budget = s.serve_mount_cache.value;
            let at = data.join(crate::fs::site_tree::CHECKOUT_DIR);
            let copies = if budget == 0 {
                crate::fs::site_tree::Checkouts::remove_all(&at).with_context(|| {
                    format!(
                        "cannot remove the copies in {} (--mount-cache 0)",
                        at.display()
                    )
                })?;
                None
            } else {
                Some(
                    crate::fs::site_tree::Checkouts::new(&at, budget)
                        .with_context(|| format!("cannot use {} for copies of large files: fix its permissions, or turn them off with --mount-cache 0", at.display()))?,
                )
            };
            let session = crate::fs::site_tree::mount(mirror.inner.clone(), dir, copies)
                .with_context(|| format!("cannot mount the site tree at {}", dir.display()))?;
            crate::bannerln!("sites mounted read-only at {}", dir.display());
            Some((session, dir.clone()))
        }
        None => None,
    };
    crate::bannerln!("mirror key: {}", mirror.key());
    super::print_network(&net);
    crate::bannerln!(
        "listening on {} (peers), http://{} (HTTP)",
        mirror.listen,
        mirror.http.unwrap_or(http)
    );
    let allowed = mirror.inner.allowed();
    if allowed.is_empty() {
        crate::bannerln!("no laptop is allowed yet: restart with --allow <LAPTOP_ID> (from `dat-mirror id` on the laptop), or add it to `allow` in the config file's [serve] table");
    } else {
        for a in allowed {
            crate::bannerln!("following laptop {a}");
        }
    }
    shutdown.wait().await;
    if let Some((session, dir)) = tree {
        tokio::task::spawn_blocking(move || crate::fs::fuse::unmount(session, &dir)).await??;
    }
    mirror.shutdown().await;
    Ok(())
}
