//! The settings on the command line: clap arguments built from the settings table (one per
//! setting that has a [`Flag`]), and the raw values given, by setting key. Nothing is parsed
//! here; [`super::Inputs::resolve`] parses flag, environment and file values by one path.

use std::collections::BTreeMap;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

use super::setting::{on, Flag, FlagStyle};
use super::TABLE;

/// The raw values of the settings given on the command line, by setting key (`serve.listen`).
/// A switch turned off by its flag (`--no-mdns`) is recorded as `"false"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags(BTreeMap<&'static str, Vec<String>>);

impl Flags {
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// Sets a setting's raw values (as if given on the command line).
    pub fn set(&mut self, key: &'static str, values: Vec<String>) {
        self.0.insert(key, values);
    }

    /// These flags and `other`'s (`other` wins where both give a setting).
    pub fn merged(mut self, other: &Flags) -> Flags {
        for (k, v) in &other.0 {
            self.0.insert(k, v.clone());
        }
        self
    }

    /// The settings `cmd` (one of [`on`]) takes, as given in `m`.
    pub fn from_matches(m: &ArgMatches, cmd: u8) -> Flags {
        let mut out = Flags::default();
        for s in TABLE {
            let Some(flag) = s.flag().filter(|f| f.on & cmd != 0) else {
                continue;
            };
            let id = s.key();
            match flag.style {
                FlagStyle::SwitchOff => {
                    let set = matches!(m.try_get_one::<bool>(id), Ok(Some(true)))
                        && m.value_source(id) == Some(ValueSource::CommandLine);
                    if set {
                        out.set(id, vec!["false".into()]);
                    }
                }
                FlagStyle::Value | FlagStyle::Positional => {
                    if m.value_source(id) != Some(ValueSource::CommandLine) {
                        continue;
                    }
                    if let Ok(Some(values)) = m.try_get_many::<String>(id) {
                        out.set(id, values.cloned().collect());
                    }
                }
            }
        }
        out
    }
}

/// How an error names the flag: `--listen`, or the positional `MOUNTPOINT`.
pub fn flag_name(flag: Option<Flag>, value_name: &str) -> String {
    match flag {
        Some(Flag {
            style: FlagStyle::Positional,
            ..
        }) => value_name.to_string(),
        Some(f) => format!("--{}", f.name),
        None => "the command line".into(),
    }
}

/// Adds the flags of the settings `cmd` (one of [`on`]) takes to `command`.
pub fn augment(mut command: Command, cmd: u8) -> Command {
    for s in TABLE {
        let Some(flag) = s.flag().filter(|f| f.on & cmd != 0) else {
            continue;
        };
        let mut arg = Arg::new(s.key()).help(s.help_line());
        arg = match flag.style {
            FlagStyle::Value if s.repeat() => arg
                .long(flag.name)
                .value_name(s.value_name())
                .action(ArgAction::Append)
                .value_delimiter(','),
            FlagStyle::Value => arg
                .long(flag.name)
                .value_name(s.value_name())
                .action(ArgAction::Set),
            FlagStyle::Positional => arg.value_name(s.value_name()).action(ArgAction::Set),
            FlagStyle::SwitchOff => arg.long(flag.name).action(ArgAction::SetTrue),
        };
        if cmd == on::GLOBAL {
            arg = arg.global(true);
        }
        command = command.arg(arg);
    }
    command
}

/// The settings flags of one kind of subcommand (`ON` is a bit of [`on`]), for
/// `#[command(flatten)]` in a clap derive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingFlags<const ON: u8>(pub Flags);

impl<const ON: u8> clap::FromArgMatches for SettingFlags<ON> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(SettingFlags(Flags::from_matches(m, ON)))
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl<const ON: u8> clap::Args for SettingFlags<ON> {
    fn augment_args(cmd: Command) -> Command {
        augment(cmd, ON)
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        augment(cmd, ON)
    }
}
