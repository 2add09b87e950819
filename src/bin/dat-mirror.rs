//! The `dat-mirror` command line: `id`, `serve` (the mirror), `mount` (the laptop side),
//! `publish` (make a folder a site). Every subcommand's `--help` explains it with examples.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use dat_mirror::laptop::control_socket::{self, Answer, Request};
use dat_mirror::laptop::publish::{publish_dir, Published};
use dat_mirror::laptop::{Laptop, LaptopConfig};
use dat_mirror::pi::{self, MirrorConfig};
use dat_mirror::sync::keys::Key;
use dat_mirror::sync::store::CoreStore;
use dat_mirror::sync::transport::{DataLock, Identity, PeerAddr};

#[derive(Parser, Debug)]
#[command(
    name = "dat-mirror",
    version,
    about = "Keep your peer-to-peer websites online while your laptop is closed",
    long_about = "dat-mirror keeps peer-to-peer websites (hyperdrives) online while their author's \
laptop is closed. An always-on machine runs `dat-mirror serve` and mirrors the sites; the laptop \
runs `dat-mirror mount ~/dat-mirror` and steers it through that folder: `touch ~/dat-mirror/<key>` \
mirrors a site, `rm` stops it, `ls -l` and `cat` show how each mirror is doing.",
    after_help = "Example, on one machine:\n  \
dat-mirror --data /tmp/pi serve --listen 127.0.0.1:7070 --http 127.0.0.1:8080 --allow $(dat-mirror --data /tmp/laptop id)\n  \
dat-mirror --data /tmp/laptop mount ~/dat-mirror --mirror $(dat-mirror --data /tmp/pi id)@127.0.0.1:7070\n  \
dat-mirror --data /tmp/laptop publish ./my-site          # prints hyper://<key>\n  \
touch ~/dat-mirror/<key>; cat ~/dat-mirror/<key>"
)]
struct Cli {
    /// Data folder: identity, hypercores, settings [default: $XDG_DATA_HOME/dat-mirror]
    #[arg(long, global = true, env = "DAT_MIRROR_DATA")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print this node's id (its public key, 64 hex), creating the identity if needed
    Id,
    /// Run the mirror: follow allowed laptops' command logs, replicate, seed and serve sites
    #[command(
        after_help = "Example:\n  dat-mirror --data /var/lib/dat-mirror serve --listen 0.0.0.0:7070 --http 0.0.0.0:8080 --allow <LAPTOP_ID>"
    )]
    Serve {
        /// Address for peer (QUIC) connections
        #[arg(long, default_value = "0.0.0.0:7070")]
        listen: SocketAddr,
        /// Address of the HTTP gateway
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// A laptop id whose command log this mirror follows (repeatable; remembered)
        #[arg(long = "allow", value_name = "ID", value_parser = parse_key)]
        allow: Vec<Key>,
    },
    /// Run the laptop side: mount the control folder, keep the command log, seed published sites
    #[command(
        after_help = "Example:\n  dat-mirror mount ~/dat-mirror --mirror <MIRROR_ID>@192.168.1.20:7070\n\
Stop with Ctrl-C (or SIGTERM): the folder is unmounted cleanly."
    )]
    Mount {
        /// Where to mount the control folder (an empty folder; created if missing)
        mountpoint: PathBuf,
        /// A mirror to pair with, as ID@IP:PORT (repeatable; remembered)
        #[arg(long = "mirror", value_name = "ID@IP:PORT")]
        mirrors: Vec<PeerAddr>,
        /// Local address for peer connections
        #[arg(long, default_value = "0.0.0.0:0")]
        listen: SocketAddr,
    },
    /// Publish a folder as a site (or, with --key, a new version of one) and print its link
    #[command(
        after_help = "Examples:\n  dat-mirror publish ./site                 # new site: prints hyper://<key>\n  \
dat-mirror publish ./site --key <key>     # new version of that site\n\
If `dat-mirror mount` is running on this data folder, it does the work (and seeds the new version at once)."
    )]
    Publish {
        /// The folder to publish
        site_dir: PathBuf,
        /// Publish a new version of this site (created earlier from this data folder)
        #[arg(long, value_parser = parse_key)]
        key: Option<Key>,
    },
}

fn parse_key(s: &str) -> Result<Key, String> {
    Key::parse_link(s).map_err(|e| e.to_string())
}

fn data_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(d) = &cli.data {
        return Ok(d.clone());
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context("no --data given and neither XDG_DATA_HOME nor HOME is set")?;
    Ok(base.join("dat-mirror"))
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "dat_mirror=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let data = data_dir(&cli)?;
    match cli.command {
        Cmd::Id => {
            println!("{}", Identity::load_or_create(&data)?.key());
            Ok(())
        }
        Cmd::Serve {
            listen,
            http,
            allow,
        } => {
            let mirror = pi::start(MirrorConfig {
                data,
                listen,
                http: Some(http),
                allow,
            })
            .await?;
            println!("mirror key: {}", mirror.key());
            println!(
                "listening on {} (peers), http://{} (HTTP)",
                mirror.listen,
                mirror.http.unwrap_or(http)
            );
            let allowed = mirror.inner.allowed();
            if allowed.is_empty() {
                println!("no laptop is allowed yet: restart with --allow <LAPTOP_ID> (from `dat-mirror id` on the laptop)");
            } else {
                for a in allowed {
                    println!("following laptop {a}");
                }
            }
            wait_for_shutdown().await;
            mirror.shutdown().await;
            Ok(())
        }
        Cmd::Mount {
            mountpoint,
            mirrors,
            listen,
        } => {
            let laptop = Laptop::start(LaptopConfig {
                data,
                mirrors,
                listen,
            })
            .await?;
            if laptop.inner.mirrors().is_empty() {
                anyhow::bail!("no mirror to talk to: pass --mirror <MIRROR_ID>@<IP:PORT> (the mirror prints its key on start)");
            }
            std::fs::create_dir_all(&mountpoint).with_context(|| {
                format!("cannot create the mount point {}", mountpoint.display())
            })?;
            let backend: Arc<dyn dat_mirror::fs::ControlBackend> = laptop.inner.clone();
            let mp = mountpoint.clone();
            let session = tokio::task::spawn_blocking(move || dat_mirror::fs::mount(&mp, backend))
                .await?
                .with_context(|| {
                    format!(
                        "cannot mount the control folder at {}",
                        mountpoint.display()
                    )
                })?;
            println!("laptop key: {}", laptop.inner.key());
            println!("control folder mounted at {}", mountpoint.display());
            wait_for_shutdown().await;
            tokio::task::spawn_blocking(move || session.umount_and_join()).await??;
            laptop.shutdown().await;
            Ok(())
        }
        Cmd::Publish { site_dir, key } => {
            let dir = std::fs::canonicalize(&site_dir)
                .with_context(|| format!("cannot find the folder {}", site_dir.display()))?;
            let published = match control_socket::call(
                &data,
                &Request::Publish {
                    dir: dir.clone(),
                    key,
                },
            )
            .await?
            {
                Some(Answer::Published(p)) => p,
                Some(Answer::Error(e)) => anyhow::bail!("{e}"),
                None => {
                    let _lock = DataLock::acquire(&data)?;
                    let store = CoreStore::new(&data)?;
                    publish_dir(&store, &dir, key).await?
                }
            };
            print_published(&published);
            Ok(())
        }
    }
}

fn print_published(p: &Published) {
    println!("{}", p.key.to_link());
    eprintln!(
        "version {}: {} files ({} added, {} changed, {} removed, {} bytes new)",
        p.version, p.files, p.added, p.changed, p.removed, p.bytes_appended
    );
}

async fn wait_for_shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("shutting down");
}
