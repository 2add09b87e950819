//! Fuzz entry point for the TOML configuration file: parsed as `dat-mirror` parses it; a
//! file that parses is rendered the way `dat-mirror config` prints it, and that output
//! (documented as "a valid starting point") must parse back to the same settings.

use std::path::Path;

use crate::config::setting::Shown;
use crate::config::{parse, ConfigFile, Flags, Host, Inputs, Settings};

const PATH: &str = "/etc/dat-mirror/config.toml";
const HOME: &str = "/home/fuzz";

/// A configuration file's text.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match parse(text, Path::new(PATH), Some(Path::new(HOME))) {
        Ok(file) => file,
        Err(e) => {
            let lines = text.lines().count() + 1;
            assert!(e.line.is_none_or(|l| l >= 1 && l <= lines), "{e}");
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let first = effective(&file);
    let rendered = first.render();
    let again = parse(&rendered, Path::new(PATH), Some(Path::new(HOME)))
        .unwrap_or_else(|e| panic!("`dat-mirror config` output does not parse: {e}\n{rendered}"));
    // Where each value came from (line numbers) differs between the two files; the values
    // must not.
    assert_eq!(
        values(&effective(&again)),
        values(&first),
        "settings changed on the way through `dat-mirror config`:\n{rendered}"
    );
}

/// The settings `dat-mirror config` would print for this file, no flags and no environment.
fn effective(file: &ConfigFile) -> Settings {
    Settings::resolve(&Inputs {
        flags: &Flags::default(),
        env: &|_| None,
        file,
        file_info: Some((PATH.into(), true)),
        host: Host::default(),
    })
    .unwrap_or_else(|e| panic!("a parsed file must resolve: {e}"))
}

/// Every setting's value as the file would say it.
fn values(s: &Settings) -> Vec<(&'static str, Option<Shown>)> {
    s.each()
        .into_iter()
        .map(|(setting, chosen)| (setting.key(), chosen.and_then(|(v, _)| setting.show(v))))
        .collect()
}
