//! `dat-mirror config`'s output: every setting in effect as a configuration file, each line
//! saying where its value came from. `dat-mirror config > config.toml` is a valid start (the
//! fuzz target `config_toml` checks that the output parses back to the same settings).

use std::fmt;

use super::setting::Shown;
use super::Settings;

const WIDTH: usize = 54;

fn line(out: &mut String, setting: &str, source: &dyn fmt::Display) {
    out.push_str(&format!("{setting:<WIDTH$} # {source}\n"));
}

impl Settings {
    /// The settings as a configuration file, in table order: top-level keys, then one
    /// `[section]` each, a table-valued setting as its own `[section.key]` after its section.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.file {
            Some((p, true)) => line(
                &mut out,
                &format!("# config file: {}", p.display()),
                &"read",
            ),
            Some((p, false)) => line(
                &mut out,
                &format!("# config file: {}", p.display()),
                &"not found",
            ),
            None => line(&mut out, "# config file: none", &"HOME is not set"),
        }
        let mut section = "";
        let mut tables = String::new();
        for (setting, chosen) in self.each() {
            let (sec, name) = setting.key().split_once('.').unwrap_or(("", setting.key()));
            if sec != section {
                out.push_str(&std::mem::take(&mut tables));
                out.push_str(&format!("\n[{sec}]\n"));
                section = sec;
            }
            let shown = chosen.and_then(|(v, src)| setting.show(v).map(|s| (s, src)));
            match shown {
                None => {
                    let (text, note) = setting.unset();
                    line(&mut out, text, &note);
                }
                Some((Shown::Inline(v), src)) => line(&mut out, &format!("{name} = {v}"), src),
                Some((Shown::Table(rows), src)) => {
                    tables.push('\n');
                    line(&mut tables, &format!("[{}]", setting.key()), src);
                    for (k, v) in rows {
                        tables.push_str(&format!("{k} = {v}\n"));
                    }
                }
            }
        }
        out.push_str(&tables);
        out
    }
}
