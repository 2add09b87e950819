//! The `dat-mirror` command line: parses the arguments, chooses the settings (command line,
//! environment, configuration file, default; see [`dat_mirror::config`]) and dispatches to
//! the subcommand, each in its own file under `src/cli/`. Nothing else lives here.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use dat_mirror::cli;
use dat_mirror::config::{self, on, Flags, SettingFlags, Settings};

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
    /// `--data` (every setting with a global flag).
    #[command(flatten)]
    settings: SettingFlags<{ on::GLOBAL }>,
    /// Configuration file [default: $XDG_CONFIG_HOME/dat-mirror/config.toml; env: DAT_MIRROR_CONFIG]
    #[arg(long, global = true, env = config::ENV_CONFIG, value_name = "PATH", hide_env = true)]
    config: Option<PathBuf>,
    /// Write logs to this file instead of stderr, rotated at 10 MiB, 5 old files kept
    /// [default: stderr; env: DAT_MIRROR_LOG_FILE]
    #[arg(
        long,
        global = true,
        env = "DAT_MIRROR_LOG_FILE",
        value_name = "PATH",
        hide_env = true
    )]
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
    Id(cli::id::Args),
    /// Run the mirror: follow allowed laptops' command logs, replicate, seed and serve sites
    Serve(cli::serve::Args),
    /// Run the laptop side: mount the control folder, keep the command log, seed published sites
    Mount(cli::mount::Args),
    /// Publish a folder as a site (or, with --key, a new version of one) and print its link
    Publish(cli::publish::Args),
    /// Show every site and mirror (the control folder's STATUS), or wait until a site is mirrored
    Status(cli::status::Args),
    /// On the mirror: print a one-time invite code for one laptop to pair with
    Invite(cli::invite::Args),
    /// On the laptop: pair with a mirror using the code `dat-mirror invite` printed there
    Pair(cli::pair::Args),
    /// List paired peers: the mirror's laptops, or the laptop's mirrors
    Peers,
    /// Revoke a pairing: on the mirror, stop following a laptop; on the laptop, forget a mirror
    Unpair(cli::unpair::Args),
    /// On the mirror: show or empty the trash (site data no command asked for, moved aside)
    Trash(cli::trash::Args),
    /// On the mirror: print the owner's secret link to the status page, or replace it
    StatusLink(cli::status_link::Args),
    /// Fetch a site as a reader would (verified, whole history) and write it into a folder
    Clone(cli::clone::Args),
    /// Print the settings in effect, and where each comes from, as a configuration file
    Config(cli::config::Args),
    /// Print a shell completion script
    Completions(cli::completions::Args),
}

impl Cmd {
    /// The settings given as this subcommand's flags.
    fn setting_flags(&self) -> Flags {
        match self {
            Cmd::Serve(a) => a.settings.0.clone(),
            Cmd::Mount(a) => a.settings.0.clone(),
            Cmd::Pair(a) => a.settings.0.clone(),
            Cmd::Clone(a) => a.settings.0.clone(),
            _ => Flags::default(),
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let flags = cli.settings.0.merged(&cli.command.setting_flags());
    let s = Settings::from_process(cli.config.as_deref(), &flags)?;
    match cli.command {
        Cmd::Id(args) => cli::id::run(args, &s).await,
        Cmd::Serve(args) => cli::serve::run(args, &s).await,
        Cmd::Mount(args) => cli::mount::run(args, &s).await,
        Cmd::Publish(args) => cli::publish::run(args, &s).await,
        Cmd::Status(args) => cli::status::run(args, &s).await,
        Cmd::Invite(args) => cli::invite::run(args, &s).await,
        Cmd::Pair(args) => cli::pair::run(args, &s).await,
        Cmd::Peers => cli::peers::peers(&s.data_dir()?).await,
        Cmd::Unpair(args) => cli::unpair::run(args, &s).await,
        Cmd::Trash(args) => cli::trash::run(args, &s).await,
        Cmd::StatusLink(args) => cli::status_link::run(args, &s).await,
        Cmd::Clone(args) => cli::clone::run(args, &s).await,
        Cmd::Config(args) => cli::config::run(args, &s).await,
        Cmd::Completions(args) => cli::completions::run(&args, Cli::command()),
    }
}

fn main() {
    let cli = Cli::parse();
    // Completions need no settings, logging or runtime.
    if let Cmd::Completions(args) = &cli.command {
        if let Err(e) = cli::completions::run(args, Cli::command()) {
            dat_mirror::noteln!("error: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let log_guard = match dat_mirror::logging::init(cli.log_file.as_deref(), cli.log_format) {
        Ok(g) => g,
        Err(e) => {
            dat_mirror::noteln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            dat_mirror::noteln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let logs_to_file = cli.log_file.is_some();
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<cli::status::StatusExit>() {
            Some(exit) => {
                dat_mirror::noteln!("{}", exit.message);
                exit.code
            }
            None => {
                if logs_to_file {
                    tracing::error!("{e:#}");
                }
                dat_mirror::noteln!("error: {e:#}");
                1
            }
        },
    };
    drop(runtime);
    drop(log_guard);
    if code != 0 {
        std::process::exit(code);
    }
}
