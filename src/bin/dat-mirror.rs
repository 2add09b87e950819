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
use dat_mirror::mirror::{self, MirrorConfig};
use dat_mirror::model::keys::Key;
use dat_mirror::net::endpoint::{DataLock, Identity, PeerAddr};
use dat_mirror::net::endpoint::{NetworkConfig, RelayChoice};
use dat_mirror::store::CoreStore;

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
    /// Write logs to this file instead of stderr, rotated at 10 MiB, 5 old files kept
    #[arg(long, global = true, env = "DAT_MIRROR_LOG_FILE", value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Log format: text (for people) or json (one object per event, for collectors)
    #[arg(
        long,
        global = true,
        env = "DAT_MIRROR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: dat_mirror::logging::LogFormat,
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
        /// Stop fetching when stored site data reaches SIZE (e.g. 500M, 2G, 1.5GiB): new
        /// sites wait and show `storage cap reached` [default: no cap; config: serve.max_storage]
        #[arg(long, env = config::ENV_SERVE_MAX_STORAGE, value_name = "SIZE",
              value_parser = dat_mirror::model::units::parse_size)]
        max_storage: Option<u64>,
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
    /// Show every site and mirror (the control folder's STATUS), or wait until a site is mirrored
    #[command(after_help = "Examples:\n  \
dat-mirror status                          # the STATUS table, from the running `dat-mirror mount`\n  \
dat-mirror status --json                   # the same as JSON\n  \
dat-mirror status --wait blog --timeout 600   # progress bar until `blog` is mirrored\n\
Without a running `dat-mirror mount`, it prints what the data folder last heard (mirrors shown offline);\n\
--wait needs the daemon.\n\
Exit codes: 0 ok / mirrored; 1 cannot ask; 2 the site errored, was removed or is not in the folder; 3 --timeout.")]
    Status {
        /// Wait until this site (key, link or alias) is mirrored on at least one mirror
        #[arg(long, value_name = "SITE")]
        wait: Option<String>,
        /// With --wait: give up after this many seconds (exit code 3)
        #[arg(long, value_name = "SECS", requires = "wait")]
        timeout: Option<u64>,
        /// Print JSON (the whole view; with --wait, the site once mirrored)
        #[arg(long)]
        json: bool,
    },
    /// On the mirror: print a one-time invite code for one laptop to pair with
    #[command(after_help = "Examples:\n  \
dat-mirror invite                         # valid for 1 hour; prints dmi1...\n  \
dat-mirror invite --expires 7d --addr 203.0.113.7:7070\n\
Then on the laptop: dat-mirror pair <CODE>. The code carries the mirror's id, a one-time secret, \
its expiry and the mirror's addresses (those of the running `serve`, or --addr).")]
    Invite {
        /// How long the code stays valid: 90s, 30m, 1h, 7d
        #[arg(long, default_value = "1h", value_parser = dat_mirror::model::invite::parse_duration)]
        expires: std::time::Duration,
        /// Address the laptop should dial (repeatable; default: the running mirror's own)
        #[arg(long = "addr", value_name = "IP:PORT")]
        addrs: Vec<SocketAddr>,
    },
    /// On the laptop: pair with a mirror using the code `dat-mirror invite` printed there
    #[command(after_help = "Example:\n  dat-mirror pair dmi1…\n\
Afterwards the mirror follows this laptop's commands and `dat-mirror mount` keeps it connected; \
no --mirror flag needed. Works with or without `dat-mirror mount` running.")]
    Pair {
        /// The invite code
        code: String,
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// List paired peers: the mirror's laptops, or the laptop's mirrors
    Peers,
    /// Revoke a pairing: on the mirror, stop following a laptop; on the laptop, forget a mirror
    #[command(
        after_help = "Examples:\n  dat-mirror unpair <LAPTOP_ID>     # on the mirror\n  \
dat-mirror unpair <MIRROR_ID>     # on the laptop\n\
On the mirror, the sites the laptop asked for stay mirrored until unmirrored."
    )]
    Unpair {
        /// The peer's id (as `dat-mirror peers` shows it)
        #[arg(value_parser = parse_key)]
        id: Key,
    },
    /// Fetch a site as a reader would (verified, whole history) and write it into a folder
    #[command(after_help = "Examples:\n  \
dat-mirror clone hyper://<KEY> ./site --from <MIRROR_ID>@192.168.1.20:7070\n\
The site's hypercores are kept in this data folder (every block verified against the site's \
signature); OUT_DIR gets the files of its latest version.")]
    Clone {
        /// The site: its key or hyper:// link
        #[arg(value_parser = parse_key)]
        key: Key,
        /// Folder to write the files into (created; must be empty if it exists)
        out_dir: PathBuf,
        /// A peer that has the site: <ID>@<IP:PORT> (repeatable)
        #[arg(long = "from", value_name = "ID@IP:PORT")]
        from: Vec<PeerAddr>,
        /// Give up after this long: 90s, 10m, 1h
        #[arg(long, default_value = "10m", value_parser = dat_mirror::model::invite::parse_duration)]
        timeout: std::time::Duration,
        #[command(flatten)]
        network: NetworkArgs,
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
    let _log_guard = match dat_mirror::logging::init(cli.log_file.as_deref(), cli.log_format) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let logs_to_file = cli.log_file.is_some();
    if let Err(e) = runtime.block_on(run(&matches, cli)) {
        if let Some(exit) = e.downcast_ref::<dat_mirror::cli::status::StatusExit>() {
            eprintln!("{}", exit.message);
            drop(runtime);
            drop(_log_guard);
            std::process::exit(exit.code);
        }
        if logs_to_file {
            tracing::error!("{e:#}");
        }
        eprintln!("error: {e:#}");
        drop(runtime);
        drop(_log_guard);
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
                serve_max_storage: config::choose(
                    env_given(
                        config::ENV_SERVE_MAX_STORAGE,
                        dat_mirror::model::units::parse_size,
                    )?,
                    cfg.serve.max_storage.as_ref(),
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
            max_storage,
            network: net_args,
        } => {
            let net = network(&net_args, &cfg)?.config();
            let max_storage = config::choose(
                given(
                    sub,
                    "max_storage",
                    config::ENV_SERVE_MAX_STORAGE,
                    max_storage,
                ),
                cfg.serve.max_storage.as_ref(),
                cfg.path.as_deref(),
                None,
            )
            .map(|c| c.value);
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
            let mirror = mirror::start(MirrorConfig {
                data: data()?,
                listen,
                http: Some(http),
                allow,
                network: net.clone(),
                domains: domains.clone(),
                max_storage,
            })
            .await?;
            for (host, key) in &domains {
                println!("custom domain {host} serves {key}");
            }
            if let Some(cap) = max_storage {
                println!(
                    "storage cap: {} (new sites wait while stored data is over it)",
                    dat_mirror::model::units::format_size(cap)
                );
            }
            let tree = match &mount {
                Some(dir) => {
                    dat_mirror::fs::detach_stale(dir);
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
        Cmd::Status {
            wait,
            timeout,
            json,
        } => {
            let timeout = timeout.map(std::time::Duration::from_secs);
            dat_mirror::cli::status::run(&data()?, wait.as_deref(), timeout, json).await
        }
        Cmd::Invite { expires, addrs } => {
            dat_mirror::cli::peers::invite(&data()?, expires, addrs).await
        }
        Cmd::Pair {
            code,
            network: net_args,
        } => {
            let net = network(&net_args, &cfg)?.config();
            let listen = choose(
                Given::Absent,
                &cfg.mount.listen,
                &cfg,
                config::DEFAULT_MOUNT_LISTEN,
            );
            dat_mirror::cli::peers::pair(&data()?, &code, listen, net).await
        }
        Cmd::Peers => dat_mirror::cli::peers::peers(&data()?).await,
        Cmd::Unpair { id } => dat_mirror::cli::peers::unpair(&data()?, id).await,
        Cmd::Clone {
            key,
            out_dir,
            from,
            timeout,
            network: net_args,
        } => {
            let net = network(&net_args, &cfg)?.config();
            let report = dat_mirror::cli::clone::clone_site(dat_mirror::cli::clone::CloneOptions {
                data: data()?,
                key,
                out: out_dir.clone(),
                from,
                listen: "0.0.0.0:0".parse().expect("a valid address"),
                timeout,
                network: net,
            })
            .await?;
            println!(
                "cloned {} version {} into {}: {} files, {} bytes ({} blocks verified)",
                key.to_link(),
                report.version,
                out_dir.display(),
                report.files,
                report.bytes,
                report.blocks
            );
            for s in &report.skipped_links {
                eprintln!("skipped {s} (it would point outside the folder)");
            }
            Ok(())
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
                Some(other) => anyhow::bail!("unexpected answer from the laptop daemon: {other:?}"),
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
        eprintln!("note: no mirror paired yet: run `dat-mirror invite` on the mirror and `dat-mirror pair CODE` here (or pass --mirror <MIRROR_ID>@<IP:PORT>); commands written meanwhile are delivered once a mirror is paired");
    }
    let routes_off = !network.mdns && !network.dht && network.relay == RelayChoice::Off;
    for m in laptop.inner.mirrors().iter().filter(|m| m.addr.is_none()) {
        if routes_off {
            anyhow::bail!("no address known for mirror {}: give it as {}@IP:PORT, or enable mDNS, the DHT or a relay ([network] in the config file)", m.id, m.id);
        }
    }
    dat_mirror::fs::detach_stale(&mountpoint);
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
