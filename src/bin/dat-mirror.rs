//! The `dat-mirror` command line: `id`, `serve` (the mirror), `mount` (the laptop side),
//! `publish` (make a folder a site), `config` (the settings in effect) and `completions`.
//! Every subcommand's `--help` explains it with examples. Each setting comes from the command
//! line, else the environment, else the configuration file, else its default (see
//! [`dat_mirror::config`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use dat_mirror::config::{self, Chosen, ChosenNetwork, ConfigFile, Effective, Given, Located};
use dat_mirror::laptop::control_socket::{self, Answer, Request};
use dat_mirror::laptop::publish::{publish_dir, Published};
use dat_mirror::laptop::{Laptop, LaptopConfig};
use dat_mirror::pi::{self, MirrorConfig};
use dat_mirror::sync::discovery::{NetworkConfig, RelayChoice};
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
mirrors a site, `rm` stops it, `ls -l` and `cat` show how each mirror is doing.\n\n\
Every flag can also be set in the configuration file (default \
$XDG_CONFIG_HOME/dat-mirror/config.toml, i.e. ~/.config/dat-mirror/config.toml) or in the \
environment (DAT_MIRROR_DATA, DAT_MIRROR_SERVE_LISTEN, ...). A flag wins over the environment, \
the environment over the file, the file over the default. `dat-mirror config` shows what is in \
effect and why.",
    after_help = "Examples, on one machine:\n  \
dat-mirror --data /tmp/pi serve --listen 127.0.0.1:7070 --http 127.0.0.1:8080 --allow $(dat-mirror --data /tmp/laptop id)\n  \
dat-mirror --data /tmp/laptop mount ~/dat-mirror --mirror $(dat-mirror --data /tmp/pi id)@127.0.0.1:7070\n  \
dat-mirror --data /tmp/laptop publish ./my-site          # prints hyper://<key>\n  \
touch ~/dat-mirror/<key>; cat ~/dat-mirror/<key>\n\n\
The same mirror, configured once in ~/.config/dat-mirror/config.toml:\n  \
[serve]\n  listen = \"0.0.0.0:7070\"\n  http = \"0.0.0.0:8080\"\n  allow = [\"<LAPTOP_ID>\"]\n\
then simply: dat-mirror serve"
)]
struct Cli {
    /// Data folder: identity, hypercores, remembered settings
    /// [default: $XDG_DATA_HOME/dat-mirror; config: data]
    #[arg(long, global = true, env = config::ENV_DATA, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Configuration file [default: $XDG_CONFIG_HOME/dat-mirror/config.toml]
    #[arg(long, global = true, env = config::ENV_CONFIG, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print this node's id (its public key, 64 hex), creating the identity if needed
    #[command(
        after_help = "Example:\n  dat-mirror id        # on the laptop: give this to the mirror's --allow"
    )]
    Id,
    /// Run the mirror: follow allowed laptops' command logs, replicate, seed and serve sites
    #[command(after_help = "Examples:\n  \
dat-mirror serve --listen 0.0.0.0:7070 --http 0.0.0.0:8080 --allow <LAPTOP_ID>\n  \
dat-mirror --data /var/lib/dat-mirror serve        # settings from the config file's [serve] table\n\n\
Config file ([serve] table; environment DAT_MIRROR_SERVE_LISTEN, _HTTP, _ALLOW, _DOMAINS):\n  \
[serve]\n  listen = \"0.0.0.0:7070\"\n  http = \"0.0.0.0:8080\"\n  allow = [\"<LAPTOP_ID>\", \"<OTHER_LAPTOP_ID>\"]\n  \
[serve.domains]\n  \"www.example.org\" = \"<SITE_KEY>\"\n\n\
Finding peers by id ([network] table; environment DAT_MIRROR_NETWORK_MDNS, _DHT, _RELAY):\n  \
[network]\n  mdns = true\n  dht = true\n  relay = \"default\"    # or \"off\", or \"https://your-relay.example.org\"\n\n\
As a service: scripts/install.sh installs dat-mirror-serve.service \
(systemctl enable --now dat-mirror-serve; config in /etc/dat-mirror/config.toml).")]
    Serve {
        /// Address for peer (QUIC) connections [default: 0.0.0.0:7070; config: serve.listen]
        #[arg(long, env = config::ENV_SERVE_LISTEN, value_name = "IP:PORT")]
        listen: Option<SocketAddr>,
        /// Address of the HTTP gateway [default: 127.0.0.1:8080; config: serve.http]
        #[arg(long, env = config::ENV_SERVE_HTTP, value_name = "IP:PORT")]
        http: Option<SocketAddr>,
        /// A laptop id whose command log this mirror follows (repeatable; remembered in the
        /// data folder) [config: serve.allow]
        #[arg(long = "allow", value_name = "ID", value_parser = parse_key,
              env = config::ENV_SERVE_ALLOW, value_delimiter = ',')]
        allow: Vec<Key>,
        /// Serve a site at its own host name: HOST=KEY, e.g. www.example.org=hyper://<key>
        /// (repeatable; point the name's DNS at this machine) [config: [serve.domains]]
        #[arg(long = "domain", value_name = "HOST=KEY", value_parser = config::parse_domain_arg,
              env = config::ENV_SERVE_DOMAINS, value_delimiter = ',')]
        domains: Vec<(String, Key)>,
        /// Also expose every mirrored site as read-only files: DIR/<key>/... and DIR/<alias>
        /// (created if missing; unmounted on exit) [config: serve.mount]
        #[arg(long, env = config::ENV_SERVE_MOUNT, value_name = "DIR")]
        mount: Option<PathBuf>,
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// Run the laptop side: mount the control folder, keep the command log, seed published sites
    #[command(after_help = "Examples:\n  \
dat-mirror mount ~/dat-mirror --mirror <MIRROR_ID>@192.168.1.20:7070\n  \
dat-mirror mount                 # mount point and mirrors from the config file's [mount] table\n\
Stop with Ctrl-C (or SIGTERM): the folder is unmounted cleanly.\n\n\
Config file ([mount] table; environment DAT_MIRROR_MOUNT_MOUNTPOINT, _MIRRORS, _LISTEN):\n  \
[mount]\n  mountpoint = \"~/dat-mirror\"\n  mirrors = [\"<MIRROR_ID>@192.168.1.20:7070\"]\n\n\
As a service: scripts/install.sh installs the user unit dat-mirror-mount.service \
(systemctl --user enable --now dat-mirror-mount).\n\n\
With mDNS, the DHT or a relay on ([network] table, see `dat-mirror serve --help`), \
--mirror <MIRROR_ID> alone finds the mirror.")]
    Mount {
        /// Where to mount the control folder (an empty folder; created if missing)
        /// [config: mount.mountpoint]
        #[arg(env = config::ENV_MOUNT_MOUNTPOINT, value_name = "MOUNTPOINT")]
        mountpoint: Option<PathBuf>,
        /// A mirror to pair with, as ID@IP:PORT, or ID alone to find it by mDNS, the DHT or
        /// a relay (repeatable; remembered in the data folder) [config: mount.mirrors]
        #[arg(long = "mirror", value_name = "ID[@IP:PORT]", env = config::ENV_MOUNT_MIRRORS,
              value_delimiter = ',')]
        mirrors: Vec<PeerAddr>,
        /// Local address for peer connections [default: 0.0.0.0:0; config: mount.listen]
        #[arg(long, env = config::ENV_MOUNT_LISTEN, value_name = "IP:PORT")]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// Publish a folder as a site (or, with --key, a new version of one) and print its link
    #[command(
        after_help = "Examples:\n  dat-mirror publish ./site                 # new site: prints hyper://<key>\n  \
dat-mirror publish ./site --key <key>     # new version of that site\n\
If `dat-mirror mount` is running on this data folder, it does the work (and seeds the new version at once).\n\
The site is a hyperdrive (db + blobs hypercores) that Node's hyperdrive 11 can read."
    )]
    Publish {
        /// The folder to publish
        site_dir: PathBuf,
        /// Publish a new version of this site (created earlier from this data folder)
        #[arg(long, value_parser = parse_key)]
        key: Option<Key>,
    },
    /// Print the settings in effect, and where each comes from, as a configuration file
    #[command(after_help = "Examples:\n  \
dat-mirror config                                   # what serve/mount would use, and why\n  \
dat-mirror config > ~/.config/dat-mirror/config.toml  # start a config file from the current settings\n  \
DAT_MIRROR_SERVE_HTTP=0.0.0.0:80 dat-mirror --config /etc/dat-mirror/config.toml config")]
    Config,
    /// Print a shell completion script
    #[command(after_help = "Examples:\n  \
dat-mirror completions bash > ~/.local/share/bash-completion/completions/dat-mirror\n  \
dat-mirror completions zsh > ~/.zfunc/_dat-mirror     # with fpath+=(~/.zfunc) before compinit\n  \
dat-mirror completions fish > ~/.config/fish/completions/dat-mirror.fish\n\
scripts/install.sh installs all three system-wide.")]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How peers find each other (every command that opens a peer endpoint takes these).
#[derive(clap::Args, Debug, Clone, Default)]
struct NetworkArgs {
    /// Do not find or announce peers on the local network (mDNS)
    /// [default: on; env: DAT_MIRROR_NETWORK_MDNS=false; config: network.mdns]
    #[arg(long = "no-mdns")]
    no_mdns: bool,
    /// Do not use the mainline DHT (publishing this node's address and held sites, looking
    /// up others) [default: on; env: DAT_MIRROR_NETWORK_DHT=false; config: network.dht]
    #[arg(long = "no-dht")]
    no_dht: bool,
    /// Relay servers for peers behind NAT: `default` (iroh's public relays), `off`, or the
    /// URL of your own relay [default: default; env: DAT_MIRROR_NETWORK_RELAY; config: network.relay]
    #[arg(long, value_name = "URL|default|off", value_parser = parse_relay)]
    relay: Option<RelayChoice>,
}

fn parse_relay(s: &str) -> Result<RelayChoice, String> {
    s.parse()
}

/// The discovery routes: flag, then environment, then file, then default.
fn network(args: &NetworkArgs, cfg: &ConfigFile) -> anyhow::Result<ChosenNetwork> {
    let mdns = match args.no_mdns {
        true => Given::Flag(false),
        false => env_given(config::ENV_NETWORK_MDNS, config::parse_switch)?,
    };
    let dht = match args.no_dht {
        true => Given::Flag(false),
        false => env_given(config::ENV_NETWORK_DHT, config::parse_switch)?,
    };
    let relay = match &args.relay {
        Some(r) => Given::Flag(r.clone()),
        None => env_given(config::ENV_NETWORK_RELAY, parse_relay)?,
    };
    let bootstrap = env_given(config::ENV_NETWORK_DHT_BOOTSTRAP, |s| {
        s.split(',')
            .map(config::parse_bootstrap)
            .collect::<Result<Vec<_>, _>>()
    })?;
    Ok(ChosenNetwork::choose(mdns, dht, relay, bootstrap, cfg))
}

fn print_network(n: &NetworkConfig) {
    let on = |b: bool| if b { "on" } else { "off" };
    println!(
        "finding peers by id: mDNS {}, DHT {}, relay {}",
        on(n.mdns),
        on(n.dht),
        n.relay
    );
}

fn parse_key(s: &str) -> Result<Key, String> {
    Key::parse_link(s).map_err(|e| e.to_string())
}

/// Flag or environment, as clap saw it, for [`config::choose`].
fn given<T>(m: &ArgMatches, id: &str, env: &'static str, value: Option<T>) -> Given<T> {
    match (value, m.value_source(id)) {
        (None, _) => Given::Absent,
        (Some(v), Some(ValueSource::EnvVariable)) => Given::Env(env, v),
        (Some(v), _) => Given::Flag(v),
    }
}

fn given_list<T>(m: &ArgMatches, id: &str, env: &'static str, value: Vec<T>) -> Given<Vec<T>> {
    given(m, id, env, (!value.is_empty()).then_some(value))
}

/// Reads (and parses) an environment variable the way clap would for `Given`.
fn env_given<T, E: std::fmt::Display>(
    var: &'static str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> anyhow::Result<Given<T>> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => parse(&v)
            .map(|t| Given::Env(var, t))
            .map_err(|e| anyhow::anyhow!("${var}: {e}")),
        _ => Ok(Given::Absent),
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).map(PathBuf::from)
}

/// The configuration file (empty when there is none) and where it was looked for.
fn load_config(cli: &Cli) -> anyhow::Result<(ConfigFile, Option<(PathBuf, bool)>)> {
    let home = env_path("HOME");
    let (path, required) = match &cli.config {
        Some(p) => (Some(p.clone()), true),
        None => (
            config::default_config_path(env_path("XDG_CONFIG_HOME").as_deref(), home.as_deref()),
            false,
        ),
    };
    let Some(path) = path else {
        return Ok((ConfigFile::default(), None));
    };
    match config::load(&path, required, home.as_deref())? {
        Some(file) => Ok((file, Some((path, true)))),
        None => Ok((ConfigFile::default(), Some((path, false)))),
    }
}

fn choose<T: Clone>(given: Given<T>, file: &Option<Located<T>>, cfg: &ConfigFile, default: T) -> T {
    config::choose(given, file.as_ref(), cfg.path.as_deref(), Some(default))
        .expect("a default is given")
        .value
}

fn data_dir(matches: &ArgMatches, cli: &Cli, cfg: &ConfigFile) -> Option<Chosen<PathBuf>> {
    let given = given(matches, "data", config::ENV_DATA, cli.data.clone());
    let default = config::default_data_dir(
        env_path("XDG_DATA_HOME").as_deref(),
        env_path("HOME").as_deref(),
    );
    config::choose(given, cfg.data.as_ref(), cfg.path.as_deref(), default)
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Cmd::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "dat-mirror",
            &mut std::io::stdout(),
        );
        return;
    }
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
    if let Err(e) = runtime.block_on(run(&matches, cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(matches: &ArgMatches, cli: Cli) -> anyhow::Result<()> {
    let (cfg, cfg_file) = load_config(&cli)?;
    let chosen_data = data_dir(matches, &cli, &cfg);
    let data = || -> anyhow::Result<PathBuf> {
        chosen_data.as_ref().map(|c| c.value.clone()).context(
            "no data folder: pass --data DIR, set `data` in the config file, or set XDG_DATA_HOME or HOME",
        )
    };
    let sub = matches.subcommand().map(|(_, m)| m).unwrap_or(matches);
    match cli.command {
        Cmd::Completions { .. } => unreachable!("handled before the runtime starts"),
        Cmd::Config => {
            let d = |g, f: &Option<Located<SocketAddr>>, default| {
                config::choose(g, f.as_ref(), cfg.path.as_deref(), Some(default))
                    .expect("a default is given")
            };
            let effective = Effective {
                file: cfg_file,
                data: chosen_data,
                serve_listen: d(
                    env_given(config::ENV_SERVE_LISTEN, str::parse::<SocketAddr>)?,
                    &cfg.serve.listen,
                    config::DEFAULT_SERVE_LISTEN,
                ),
                serve_http: d(
                    env_given(config::ENV_SERVE_HTTP, str::parse::<SocketAddr>)?,
                    &cfg.serve.http,
                    config::DEFAULT_SERVE_HTTP,
                ),
                serve_allow: config::choose(
                    env_given(config::ENV_SERVE_ALLOW, |s| {
                        s.split(',').map(parse_key).collect::<Result<Vec<_>, _>>()
                    })?,
                    cfg.serve.allow.as_ref(),
                    cfg.path.as_deref(),
                    Some(vec![]),
                )
                .unwrap(),
                serve_domains: config::choose(
                    env_given(config::ENV_SERVE_DOMAINS, |s| {
                        s.split(',')
                            .map(config::parse_domain_arg)
                            .collect::<Result<BTreeMap<_, _>, _>>()
                    })?,
                    cfg.serve.domains.as_ref(),
                    cfg.path.as_deref(),
                    Some(BTreeMap::new()),
                )
                .unwrap(),
                serve_mount: config::choose(
                    env_given(config::ENV_SERVE_MOUNT, |s| {
                        Ok::<_, String>(PathBuf::from(s))
                    })?,
                    cfg.serve.mount.as_ref(),
                    cfg.path.as_deref(),
                    None,
                ),
                mount_mountpoint: config::choose(
                    env_given(config::ENV_MOUNT_MOUNTPOINT, |s| {
                        Ok::<_, String>(PathBuf::from(s))
                    })?,
                    cfg.mount.mountpoint.as_ref(),
                    cfg.path.as_deref(),
                    None,
                ),
                mount_mirrors: config::choose(
                    env_given(config::ENV_MOUNT_MIRRORS, |s| {
                        s.split(',').map(str::parse).collect::<Result<Vec<_>, _>>()
                    })?,
                    cfg.mount.mirrors.as_ref(),
                    cfg.path.as_deref(),
                    Some(vec![]),
                )
                .unwrap(),
                mount_listen: d(
                    env_given(config::ENV_MOUNT_LISTEN, str::parse::<SocketAddr>)?,
                    &cfg.mount.listen,
                    config::DEFAULT_MOUNT_LISTEN,
                ),
                network: network(&NetworkArgs::default(), &cfg)?,
            };
            print!("{}", effective.render());
            Ok(())
        }
        Cmd::Id => {
            println!("{}", Identity::load_or_create(&data()?)?.key());
            Ok(())
        }
        Cmd::Serve {
            listen,
            http,
            allow,
            domains,
            mount,
            network: net_args,
        } => {
            let net = network(&net_args, &cfg)?.config();
            let mount = config::choose(
                given(sub, "mount", config::ENV_SERVE_MOUNT, mount),
                cfg.serve.mount.as_ref(),
                cfg.path.as_deref(),
                None,
            )
            .map(|c| c.value);
            let listen = choose(
                given(sub, "listen", config::ENV_SERVE_LISTEN, listen),
                &cfg.serve.listen,
                &cfg,
                config::DEFAULT_SERVE_LISTEN,
            );
            let http = choose(
                given(sub, "http", config::ENV_SERVE_HTTP, http),
                &cfg.serve.http,
                &cfg,
                config::DEFAULT_SERVE_HTTP,
            );
            let allow = choose(
                given_list(sub, "allow", config::ENV_SERVE_ALLOW, allow),
                &cfg.serve.allow,
                &cfg,
                vec![],
            );
            let domains = choose(
                given(
                    sub,
                    "domains",
                    config::ENV_SERVE_DOMAINS,
                    (!domains.is_empty()).then(|| domains.into_iter().collect()),
                ),
                &cfg.serve.domains,
                &cfg,
                BTreeMap::new(),
            );
            let mirror = pi::start(MirrorConfig {
                data: data()?,
                listen,
                http: Some(http),
                allow,
                network: net.clone(),
            })
            .await?;
            for (host, key) in &domains {
                println!("custom domain {host} serves {key}");
            }
            mirror.inner.set_domains(domains);
            let tree = match &mount {
                Some(dir) => {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("cannot create the mount point {}", dir.display())
                    })?;
                    let session = dat_mirror::fs::site_tree::mount(mirror.inner.clone(), dir)
                        .with_context(|| {
                            format!("cannot mount the site tree at {}", dir.display())
                        })?;
                    println!("sites mounted read-only at {}", dir.display());
                    Some(session)
                }
                None => None,
            };
            println!("mirror key: {}", mirror.key());
            print_network(&net);
            println!(
                "listening on {} (peers), http://{} (HTTP)",
                mirror.listen,
                mirror.http.unwrap_or(http)
            );
            let allowed = mirror.inner.allowed();
            if allowed.is_empty() {
                println!("no laptop is allowed yet: restart with --allow <LAPTOP_ID> (from `dat-mirror id` on the laptop), or add it to `allow` in the config file's [serve] table");
            } else {
                for a in allowed {
                    println!("following laptop {a}");
                }
            }
            wait_for_shutdown().await;
            if let Some(session) = tree {
                tokio::task::spawn_blocking(move || session.umount_and_join()).await??;
            }
            mirror.shutdown().await;
            Ok(())
        }
        Cmd::Mount {
            mountpoint,
            mirrors,
            listen,
            network: net_args,
        } => {
            let net = network(&net_args, &cfg)?.config();
            let mountpoint = config::choose(
                given(sub, "mountpoint", config::ENV_MOUNT_MOUNTPOINT, mountpoint),
                cfg.mount.mountpoint.as_ref(),
                cfg.path.as_deref(),
                None,
            )
            .map(|c| c.value)
            .context("no mount point: pass one (`dat-mirror mount ~/dat-mirror`) or set `mountpoint` in the config file's [mount] table")?;
            let mirrors = choose(
                given_list(sub, "mirrors", config::ENV_MOUNT_MIRRORS, mirrors),
                &cfg.mount.mirrors,
                &cfg,
                vec![],
            );
            let listen = choose(
                given(sub, "listen", config::ENV_MOUNT_LISTEN, listen),
                &cfg.mount.listen,
                &cfg,
                config::DEFAULT_MOUNT_LISTEN,
            );
            mount(data()?, mountpoint, mirrors, listen, net).await
        }
        Cmd::Publish { site_dir, key } => {
            let data = data()?;
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

async fn mount(
    data: PathBuf,
    mountpoint: PathBuf,
    mirrors: Vec<PeerAddr>,
    listen: SocketAddr,
    network: NetworkConfig,
) -> anyhow::Result<()> {
    let laptop = Laptop::start(LaptopConfig {
        data,
        mirrors,
        listen,
        network: network.clone(),
    })
    .await?;
    if laptop.inner.mirrors().is_empty() {
        anyhow::bail!("no mirror to talk to: pass --mirror <MIRROR_ID>@<IP:PORT>, or --mirror <MIRROR_ID> alone to find it by mDNS, the DHT or a relay (the mirror prints its key on start), or set `mirrors` in the config file's [mount] table");
    }
    let routes_off = !network.mdns && !network.dht && network.relay == RelayChoice::Off;
    for m in laptop.inner.mirrors().iter().filter(|m| m.addr.is_none()) {
        if routes_off {
            anyhow::bail!("no address known for mirror {}: give it as {}@IP:PORT, or enable mDNS, the DHT or a relay ([network] in the config file)", m.id, m.id);
        }
    }
    std::fs::create_dir_all(&mountpoint)
        .with_context(|| format!("cannot create the mount point {}", mountpoint.display()))?;
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
    print_network(&network);
    wait_for_shutdown().await;
    tokio::task::spawn_blocking(move || session.umount_and_join()).await??;
    laptop.shutdown().await;
    Ok(())
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
