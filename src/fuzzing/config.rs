//! Fuzz entry point for the TOML configuration file: parsed as `dat-mirror` parses it; a
//! file that parses is rendered the way `dat-mirror config` prints it, and that output
//! (documented as "a valid starting point") must parse back to the same settings.

use std::path::Path;

use crate::config::{
    choose, parse, Chosen, ChosenNetwork, ConfigFile, Effective, Given, Located,
    DEFAULT_MOUNT_LISTEN, DEFAULT_SERVE_HTTP, DEFAULT_SERVE_LISTEN,
};

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
    let rendered = effective(&file).render();
    let again = parse(&rendered, Path::new(PATH), Some(Path::new(HOME)))
        .unwrap_or_else(|e| panic!("`dat-mirror config` output does not parse: {e}\n{rendered}"));
    assert_eq!(
        effective(&again).render(),
        rendered,
        "settings changed on the way through `dat-mirror config`"
    );
}

fn pick<T: Clone>(file: Option<&Located<T>>, default: T) -> Chosen<T> {
    choose(Given::Absent, file, Some(Path::new(PATH)), Some(default)).expect("a default")
}

fn opt<T: Clone>(file: Option<&Located<T>>) -> Option<Chosen<T>> {
    choose(Given::Absent, file, Some(Path::new(PATH)), None)
}

/// The settings `dat-mirror config` would print for this file and no flags.
fn effective(file: &ConfigFile) -> Effective {
    let chosen = Effective {
        file: Some((PATH.into(), true)),
        data: opt(file.data.as_ref()),
        serve_listen: pick(file.serve.listen.as_ref(), DEFAULT_SERVE_LISTEN),
        serve_http: pick(file.serve.http.as_ref(), DEFAULT_SERVE_HTTP),
        serve_allow: pick(file.serve.allow.as_ref(), Vec::new()),
        serve_domains: pick(file.serve.domains.as_ref(), Default::default()),
        serve_mount: opt(file.serve.mount.as_ref()),
        serve_max_storage: opt(file.serve.max_storage.as_ref()),
        mount_mountpoint: opt(file.mount.mountpoint.as_ref()),
        mount_mirrors: pick(file.mount.mirrors.as_ref(), Vec::new()),
        mount_listen: pick(file.mount.listen.as_ref(), DEFAULT_MOUNT_LISTEN),
        network: ChosenNetwork::choose(
            Given::Absent,
            Given::Absent,
            Given::Absent,
            Given::Absent,
            file,
        ),
    };
    // Where each value came from (line numbers) differs between the two files; the
    // values must not.
    forget_sources(chosen)
}

fn forget_sources(mut e: Effective) -> Effective {
    use crate::config::Source;
    let plain = |s: &mut Source| *s = Source::Default;
    if let Some(c) = e.data.as_mut() {
        plain(&mut c.source)
    }
    plain(&mut e.serve_listen.source);
    plain(&mut e.serve_http.source);
    plain(&mut e.serve_allow.source);
    plain(&mut e.serve_domains.source);
    if let Some(c) = e.serve_mount.as_mut() {
        plain(&mut c.source)
    }
    if let Some(c) = e.serve_max_storage.as_mut() {
        plain(&mut c.source)
    }
    if let Some(c) = e.mount_mountpoint.as_mut() {
        plain(&mut c.source)
    }
    plain(&mut e.mount_mirrors.source);
    plain(&mut e.mount_listen.source);
    plain(&mut e.network.mdns.source);
    plain(&mut e.network.dht.source);
    plain(&mut e.network.relay.source);
    plain(&mut e.network.dht_bootstrap.source);
    e
}
