//! What one setting is ([`Setting`]: its key, environment variable, flag, help, default and
//! value [`Kind`]), and how one value is chosen from the four places a setting can come from
//! ([`choose`]: command line, environment, file, default), with where it came from
//! ([`Source`], [`Chosen`]). Pure: no I/O; the environment is passed in as a function.

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeValue;
use toml::Spanned;

/// Subcommands that take a setting's flag (a bit set; see [`Flag::on`]).
pub mod on {
    /// Every subcommand (`--data`).
    pub const GLOBAL: u8 = 1;
    pub const SERVE: u8 = 2;
    pub const MOUNT: u8 = 4;
    pub const PAIR: u8 = 8;
    pub const CLONE: u8 = 16;
    /// Every command that opens a peer endpoint.
    pub const NETWORK: u8 = SERVE | MOUNT | PAIR | CLONE;
}

/// How a setting appears on the command line.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// `--NAME VALUE`, `--NAME` alone (for [`FlagStyle::SwitchOff`]) or a positional `NAME`.
    pub name: &'static str,
    pub style: FlagStyle,
    /// The subcommands that take it (bits of [`on`]).
    pub on: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagStyle {
    /// `--name VALUE`.
    Value,
    /// The positional argument `NAME`.
    Positional,
    /// `--name` alone turns a switch off (`--no-mdns`).
    SwitchOff,
}

/// One value of a setting as the file gave it, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
}

/// A value in the file that cannot be used: where (a byte span of the text), why, and which
/// key when it is more precise than the setting's (`serve.domains.www.example.org`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub span: Range<usize>,
    pub message: String,
    pub key: Option<String>,
}

impl Bad {
    pub fn at<T>(v: &Spanned<T>, message: impl Into<String>) -> Bad {
        Bad {
            span: v.span(),
            message: message.into(),
            key: None,
        }
    }
}

/// What reading a file value needs besides the value: the home folder, for `~/` paths.
#[derive(Debug, Clone, Copy)]
pub struct FileCx<'a> {
    pub home: Option<&'a Path>,
}

/// How a TOML file shows a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// `key = VALUE` (VALUE already in TOML syntax).
    Inline(String),
    /// A table of its own, `[section.key]`, with these `"name" = VALUE` lines.
    Table(Vec<(String, String)>),
}

/// The type of a setting's value and how it is read and written. Function pointers, not a
/// trait on `T`: two settings of one Rust type can read differently (a DHT bootstrap list vs
/// a HyperDHT one, a path from the file vs from a flag).
pub struct Kind<T: 'static> {
    /// From the command line or the environment: every value given (several for a repeated
    /// flag or a comma-separated variable, see `repeat`).
    pub from_args: fn(&[String]) -> Result<T, String>,
    /// From the file.
    pub from_toml: fn(&Spanned<DeValue<'_>>, FileCx<'_>) -> Result<T, Bad>,
    /// As `dat-mirror config` prints it (must read back through `from_toml`).
    pub to_toml: fn(&T) -> Shown,
    /// The flag may be repeated and the environment variable is a comma-separated list.
    pub repeat: bool,
}

/// Machine facts defaults may depend on (the data folder follows XDG).
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub home: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
}

/// One setting: everything the flag, the environment, the file, `dat-mirror config` and the
/// help text need to know about it. The table is in `config/mod.rs`.
pub struct Setting<T: 'static> {
    /// Dotted key in the file: `serve.listen`, `data`.
    pub key: &'static str,
    /// `DAT_MIRROR_<SECTION>_<KEY>`.
    pub env: &'static str,
    pub flag: Option<Flag>,
    /// `--help` text: what it does (the default, environment and file key are appended).
    pub help: &'static str,
    pub value_name: &'static str,
    /// The default as the help shows it (empty: none shown).
    pub default_help: &'static str,
    pub kind: Kind<T>,
    /// The value when nothing sets it (`None`: unset).
    pub default: fn(&Host) -> Option<T>,
    /// When unset, `dat-mirror config` prints this commented line and note.
    pub unset: (&'static str, &'static str),
}

/// Where a chosen value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File { path: PathBuf, line: usize },
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("command line"),
            Source::Env(v) => write!(f, "${v}"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A chosen value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen<T> {
    pub value: T,
    pub source: Source,
}

/// What the command line or the environment says about a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Given<T> {
    /// Given as a flag or argument.
    Flag(T),
    /// Taken from this environment variable.
    Env(&'static str, T),
    /// Not given.
    Absent,
}

/// Chooses a setting: command line, then environment, then file, then `default`.
pub fn choose<T: Clone>(
    given: Given<T>,
    file: Option<&Located<T>>,
    file_path: Option<&Path>,
    default: Option<T>,
) -> Option<Chosen<T>> {
    match given {
        Given::Flag(value) => Some(Chosen {
            value,
            source: Source::Flag,
        }),
        Given::Env(var, value) => Some(Chosen {
            value,
            source: Source::Env(var),
        }),
        Given::Absent => match file {
            Some(l) => Some(Chosen {
                value: l.value.clone(),
                source: Source::File {
                    path: file_path.map(Path::to_path_buf).unwrap_or_default(),
                    line: l.line,
                },
            }),
            None => default.map(|value| Chosen {
                value,
                source: Source::Default,
            }),
        },
    }
}

/// A setting without its value type: what the file reader, the flag builder and the renderer
/// walk over.
pub trait AnySetting: Sync {
    fn key(&self) -> &'static str;
    fn env(&self) -> &'static str;
    fn flag(&self) -> Option<Flag>;
    fn repeat(&self) -> bool;
    /// The flag's help line: what it does, its default, its variable and its file key.
    fn help_line(&self) -> String;
    fn value_name(&self) -> &'static str;
    /// Reads the file's value (type-erased; [`crate::config::ConfigFile::get`] restores it).
    fn read_file(
        &self,
        v: &Spanned<DeValue<'_>>,
        cx: FileCx<'_>,
    ) -> Result<Box<dyn Any + Send + Sync>, Bad>;
    /// Renders a chosen value of this setting (type-erased) as the file would say it.
    fn show(&self, value: &(dyn Any + Send + Sync)) -> Option<Shown>;
    fn unset(&self) -> (&'static str, &'static str);
}

impl<T: Clone + Send + Sync + 'static> AnySetting for Setting<T> {
    fn key(&self) -> &'static str {
        self.key
    }
    fn env(&self) -> &'static str {
        self.env
    }
    fn flag(&self) -> Option<Flag> {
        self.flag
    }
    fn repeat(&self) -> bool {
        self.kind.repeat
    }
    fn help_line(&self) -> String {
        let mut notes = Vec::new();
        if !self.default_help.is_empty() {
            notes.push(format!("default: {}", self.default_help));
        }
        notes.push(format!("env: {}", self.env));
        notes.push(format!("config: {}", self.key));
        let repeat = if self.kind.repeat {
            " (repeatable, or comma-separated)"
        } else {
            ""
        };
        format!("{}{repeat} [{}]", self.help, notes.join("; "))
    }
    fn value_name(&self) -> &'static str {
        self.value_name
    }
    fn read_file(
        &self,
        v: &Spanned<DeValue<'_>>,
        cx: FileCx<'_>,
    ) -> Result<Box<dyn Any + Send + Sync>, Bad> {
        (self.kind.from_toml)(v, cx).map(|t| Box::new(t) as Box<dyn Any + Send + Sync>)
    }
    fn show(&self, value: &(dyn Any + Send + Sync)) -> Option<Shown> {
        value.downcast_ref::<T>().map(self.kind.to_toml)
    }
    fn unset(&self) -> (&'static str, &'static str) {
        self.unset
    }
}
