//! `dat-mirror completions SHELL`: prints a shell completion script (bash, zsh, fish, ...).
//! Runs before settings are read and before logging starts: it needs neither.

/// Print a shell completion script
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
dat-mirror completions bash > ~/.local/share/bash-completion/completions/dat-mirror\n  \
dat-mirror completions zsh > ~/.zfunc/_dat-mirror     # with fpath+=(~/.zfunc) before compinit\n  \
dat-mirror completions fish > ~/.config/fish/completions/dat-mirror.fish\n\
scripts/install.sh installs all three system-wide.")]
pub struct Args {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the script for `command` (the whole command line, `Cli::command()`) to stdout.
pub fn run(args: &Args, mut command: clap::Command) -> anyhow::Result<()> {
    clap_complete::generate(
        args.shell,
        &mut command,
        "dat-mirror",
        &mut std::io::stdout(),
    );
    Ok(())
}
