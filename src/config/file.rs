//! The configuration file: TOML read with spans, every key looked up in the settings table
//! and read by its setting's kind, so every error names the file, the line and the key.
//! [`parse`] is pure; [`load`] reads the file.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

use super::setting::{AnySetting, FileCx, Located, Setting};
use super::TABLE;

/// A configuration file that cannot be used: which file, which line, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}: {message}", path.display(), at_line(*line), at_key(key))]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    /// Dotted key, e.g. `serve.listen`.
    pub key: Option<String>,
    pub message: String,
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

fn at_key(key: &Option<String>) -> String {
    key.as_ref()
        .map(|k| format!(": key `{k}`"))
        .unwrap_or_default()
}

type Erased = Arc<dyn Any + Send + Sync>;

/// The parsed configuration file: the settings it sets, each with its line. Unset means "not
/// configured". Read a value with [`ConfigFile::get`].
#[derive(Clone, Default)]
pub struct ConfigFile {
    /// The file it was read from (`None`: there is no file).
    pub path: Option<PathBuf>,
    values: BTreeMap<&'static str, Located<Erased>>,
}

impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: BTreeMap<_, _> = self.values.iter().map(|(k, v)| (k, v.line)).collect();
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field("lines", &lines)
            .finish()
    }
}

impl ConfigFile {
    /// The file's value of `setting`, if it sets one.
    pub fn get<T: Clone + 'static>(&self, setting: &Setting<T>) -> Option<Located<T>> {
        let v = self.values.get(setting.key)?;
        Some(Located {
            value: v.value.downcast_ref::<T>()?.clone(),
            line: v.line,
        })
    }

    /// Whether the file sets nothing.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// 1-based line of byte offset `at` in `text`.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key a TOML syntax error at `span` is about, read from the text around it: the
/// nearest `[table]` header above, and the key on the line (or the nearest line above with a
/// `key =`, for values spread over several lines).
fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = line_of(text, span.start).checked_sub(1)?;
    let clean = |s: &str| s.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
    let header = |l: &str| {
        let t = l.trim();
        (t.starts_with('[') && !t.contains('='))
            .then(|| clean(t.trim_start_matches('[').split(']').next().unwrap_or("")))
    };
    if let Some(h) = lines.get(idx).and_then(|l| header(l)) {
        return Some(h);
    }
    let mut key = None;
    let mut table = None;
    for l in lines[..=idx.min(lines.len().saturating_sub(1))]
        .iter()
        .rev()
    {
        if let Some(h) = header(l) {
            table = Some(h);
            break;
        }
        if key.is_none() {
            let t = l.split('#').next().unwrap_or("");
            if let Some((k, _)) = t.split_once('=') {
                key = Some(clean(k));
            }
        }
    }
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

/// The names allowed inside `section` (`""`: the top level, where section names count too).
fn names_in(section: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for s in TABLE {
        let name = match (section, s.key().split_once('.')) {
            ("", Some((sec, _))) => sec,
            ("", None) => s.key(),
            (_, Some((sec, name))) if sec == section => name,
            _ => continue,
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

fn setting(key: &str) -> Option<&'static dyn AnySetting> {
    TABLE.iter().copied().find(|s| s.key() == key)
}

/// Parses the text of a configuration file. `path` is only used in errors; `home` expands
/// paths that start with `~/`.
pub fn parse(text: &str, path: &Path, home: Option<&Path>) -> Result<ConfigFile, ConfigError> {
    let err = |span: Option<Range<usize>>, key: Option<String>, message: String| ConfigError {
        path: path.to_path_buf(),
        line: span.map(|s| line_of(text, s.start)),
        key,
        message,
    };
    let root = DeTable::parse(text).map_err(|e| {
        let span = e.span();
        let key = span.as_ref().and_then(|s| key_at(text, s));
        err(span, key, e.message().trim().to_string())
    })?;
    let cx = FileCx { home };
    let unknown = |name: &str, section: &str| {
        let known: Vec<String> = names_in(section).iter().map(|n| format!("`{n}`")).collect();
        format!(
            "unknown field `{name}`, expected one of {} (see `dat-mirror config` for every setting)",
            known.join(", ")
        )
    };
    let mut values = BTreeMap::new();
    let mut read = |s: &'static dyn AnySetting,
                    key_span: Range<usize>,
                    v: &toml::Spanned<DeValue<'_>>|
     -> Result<(), ConfigError> {
        let value = s.read_file(v, cx).map_err(|bad| {
            let key = bad.key.unwrap_or_else(|| s.key().to_string());
            err(Some(bad.span), Some(key), bad.message)
        })?;
        values.insert(
            s.key(),
            Located {
                value: Erased::from(value),
                line: line_of(text, key_span.start),
            },
        );
        Ok(())
    };
    for (name, value) in root.get_ref().iter() {
        let name_str: &str = name.get_ref();
        // Top-level settings only: a quoted `"serve.listen" = …` is not `[serve] listen`.
        if let Some(s) = setting(name_str).filter(|_| !name_str.contains('.')) {
            read(s, name.span(), value)?;
            continue;
        }
        if !names_in("").contains(&name_str) {
            return Err(err(
                Some(name.span()),
                Some(name_str.to_string()),
                unknown(name_str, ""),
            ));
        }
        let DeValue::Table(section) = value.get_ref() else {
            return Err(err(
                Some(value.span()),
                Some(name_str.to_string()),
                format!("invalid type: expected a table `[{name_str}]`"),
            ));
        };
        for (key, v) in section.iter() {
            let dotted = format!("{name_str}.{}", key.get_ref());
            match setting(&dotted) {
                Some(s) => read(s, key.span(), v)?,
                None => {
                    return Err(err(
                        Some(key.span()),
                        Some(dotted),
                        unknown(key.get_ref(), name_str),
                    ))
                }
            }
        }
    }
    Ok(ConfigFile {
        path: Some(path.to_path_buf()),
        values,
    })
}

/// Reads and parses the file at `path`. A missing file is `Ok(None)` unless `required` (it
/// was named explicitly).
pub fn load(
    path: &Path,
    required: bool,
    home: Option<&Path>,
) -> Result<Option<ConfigFile>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path, home).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) => Err(ConfigError {
            path: path.to_path_buf(),
            line: None,
            key: None,
            message: format!(
                "cannot read the configuration file: {e} (check the path given by --config or \
                 $DAT_MIRROR_CONFIG)"
            ),
        }),
    }
}

/// Where the configuration file is looked for when no `--config` is given:
/// `$XDG_CONFIG_HOME/dat-mirror/config.toml`, else `$HOME/.config/dat-mirror/config.toml`.
pub fn default_config_path(xdg_config_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let base = xdg_config_home
        .filter(|p| p.is_absolute())
        .map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join(".config")))?;
    Some(base.join("dat-mirror").join("config.toml"))
}

/// The default data folder: `$XDG_DATA_HOME/dat-mirror`, else `$HOME/.local/share/dat-mirror`.
pub fn default_data_dir(xdg_data_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let base = xdg_data_home
        .filter(|p| p.is_absolute())
        .map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join(".local/share")))?;
    Some(base.join("dat-mirror"))
}
