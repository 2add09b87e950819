//! Unit tests of the settings: the file (values, lines, errors), the choice between flag,
//! environment, file and default, `dat-mirror config`'s output, the new settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::defs;
use super::*;

const LAPTOP: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

fn p(text: &str) -> Result<ConfigFile, ConfigError> {
    parse(
        text,
        Path::new("/etc/dat-mirror/config.toml"),
        Some(Path::new("/home/me")),
    )
}

/// Settings chosen from these flags, this environment and this file text.
fn resolve(flags: &Flags, env: &[(&str, &str)], text: &str) -> Result<Settings, SettingsError> {
    let file = p(text)?;
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = |k: &str| env.get(k).cloned();
    Settings::resolve(&Inputs {
        flags,
        env: &lookup,
        file: &file,
        file_info: Some(("/etc/dat-mirror/config.toml".into(), true)),
        host: Host {
            home: Some("/home/me".into()),
            xdg_data_home: None,
        },
    })
}

#[test]
fn parses_every_setting() {
    let text = format!(
        "data = \"/srv/dat\"\n\n[serve]\nlisten = \"0.0.0.0:7071\"\nhttp = \"[::]:80\"\n\
         allow = [\n  \"{LAPTOP}\",\n]\n\n[serve.domains]\n\"WWW.Example.org.\" = \"hyper://{LAPTOP}\"\n\n[mount]\nmountpoint = \"~/dm\"\n\
         mirrors = [\"{LAPTOP}@192.168.1.20:7070\"]\nlisten = \"0.0.0.0:7000\"\n"
    );
    let c = p(&text).unwrap();
    assert_eq!(
        c.get(&defs::data),
        Some(Located {
            value: "/srv/dat".into(),
            line: 1
        })
    );
    let listen = c.get(&defs::serve_listen).unwrap();
    assert_eq!((listen.value.port(), listen.line), (7071, 4));
    assert_eq!(
        c.get(&defs::serve_http).unwrap().value,
        "[::]:80".parse().unwrap()
    );
    let allow = c.get(&defs::serve_allow).unwrap();
    assert_eq!(allow.line, 6);
    assert_eq!(allow.value, vec![Key::parse(LAPTOP).unwrap()]);
    let domains = c.get(&defs::serve_domains).unwrap();
    assert_eq!(domains.line, 10);
    assert_eq!(
        domains.value,
        BTreeMap::from([("www.example.org".to_string(), Key::parse(LAPTOP).unwrap())])
    );
    assert_eq!(
        c.get(&defs::mount_mountpoint).unwrap().value,
        PathBuf::from("/home/me/dm")
    );
    let mirrors = c.get(&defs::mount_mirrors).unwrap().value;
    assert_eq!(mirrors[0].addr, Some("192.168.1.20:7070".parse().unwrap()));
    assert_eq!(c.get(&defs::mount_listen).unwrap().value.port(), 7000);
}

#[test]
fn an_empty_file_sets_nothing() {
    let c = p("# nothing here\n").unwrap();
    assert!(c.is_empty());
    assert_eq!(c.get(&defs::data), None);
}

#[test]
fn the_shipped_example_parses() {
    let text = include_str!("../../dist/config.example.toml");
    let c = p(text).unwrap();
    assert!(c.get(&defs::serve_listen).is_some() && c.get(&defs::serve_http).is_some());
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let e = p("[serve]\nlisten = \"0.0.0.0:1\"\nlisen = \"x\"\n").unwrap_err();
    assert_eq!(e.line, Some(3));
    assert_eq!(e.key.as_deref(), Some("serve.lisen"));
    assert!(e.message.contains("unknown field `lisen`"), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with("/etc/dat-mirror/config.toml:3: key `serve.lisen`: "),
        "{shown}"
    );

    let e = p("data = \"/x\"\n[srve]\nlisten = \"0.0.0.0:1\"\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert_eq!(e.key.as_deref(), Some("srve"), "{e}");

    // A quoted dotted key is one key, not a section and a key.
    let e = p("\"serve.listen\" = \"0.0.0.0:1\"\n").unwrap_err();
    assert!(e.message.contains("unknown field"), "{e}");
    // A section must be a table.
    let e = p("serve = 1\n").unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("serve")), "{e}");
}

#[test]
fn wrong_types_name_the_key() {
    let e = p("\n[serve]\nhttp = 8080\n").unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("serve.http")),
        "{e}"
    );
    let e = p("[mount]\nmirrors = \"one\"\n").unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("mount.mirrors")),
        "{e}"
    );
}

#[test]
fn bad_values_name_the_key_and_the_line_of_the_value() {
    let e = p("[serve]\nlisten = \"7070\"\n").unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("serve.listen")));
    assert!(e.message.contains("IP:PORT"), "{e}");

    let e = p(&format!(
        "[serve]\nallow = [\n  \"{LAPTOP}\",\n  \"nope\",\n]\n"
    ))
    .unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(4), Some("serve.allow")),
        "{e}"
    );

    let e = p("[mount]\nmirrors = [\"abc\"]\n").unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("mount.mirrors")));
    assert!(e.message.contains("ID@IP:PORT"), "{e}");

    let e = p("[serve.domains]\n\"a.org\" = \"nokey\"\n").unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("serve.domains.a.org")),
        "{e}"
    );
    let e = p(&format!("[serve.domains]\n\"a b\" = \"{LAPTOP}\"\n")).unwrap_err();
    assert!(e.message.contains("host name"), "{e}");

    let e = p("data = \"relative/dir\"\n").unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("data")));
    assert!(e.message.contains("relative"), "{e}");
}

#[test]
fn syntax_errors_have_a_line() {
    let e = p("[serve]\nlisten = \"0.0.0.0:1\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn domain_arguments() {
    let (h, key) = parse_domain_arg(&format!("Blog.Example.org=hyper://{LAPTOP}")).unwrap();
    assert_eq!(
        (h.as_str(), key),
        ("blog.example.org", Key::parse(LAPTOP).unwrap())
    );
    assert!(parse_domain_arg("blog.example.org").is_err());
    assert!(parse_domain_arg(&format!("http://x.org/={LAPTOP}")).is_err());
    assert!(parse_domain_arg("x.org=nokey").is_err());
}

#[test]
fn home_expansion() {
    let home = Some(Path::new("/home/me"));
    assert_eq!(expand_path("~", home).unwrap(), PathBuf::from("/home/me"));
    assert_eq!(
        expand_path("~/a", home).unwrap(),
        PathBuf::from("/home/me/a")
    );
    assert_eq!(expand_path("/abs", None).unwrap(), PathBuf::from("/abs"));
    assert!(expand_path("~/a", None).is_err());
    assert!(expand_path("~other/a", home).is_err());
}

#[test]
fn default_locations_follow_xdg() {
    let home = Some(Path::new("/home/me"));
    assert_eq!(
        default_config_path(None, home).unwrap(),
        PathBuf::from("/home/me/.config/dat-mirror/config.toml")
    );
    assert_eq!(
        default_config_path(Some(Path::new("/etc")), home).unwrap(),
        PathBuf::from("/etc/dat-mirror/config.toml")
    );
    // A relative XDG variable is invalid per the spec and ignored.
    assert_eq!(
        default_config_path(Some(Path::new("rel")), home).unwrap(),
        PathBuf::from("/home/me/.config/dat-mirror/config.toml")
    );
    assert_eq!(default_config_path(None, None), None);
    assert_eq!(
        default_data_dir(None, home).unwrap(),
        PathBuf::from("/home/me/.local/share/dat-mirror")
    );
    assert_eq!(
        default_data_dir(Some(Path::new("/var/lib")), home).unwrap(),
        PathBuf::from("/var/lib/dat-mirror")
    );
}

#[test]
fn precedence_is_flag_env_file_default() {
    let file = Located { value: 3, line: 7 };
    let path = Some(Path::new("/c.toml"));
    let c = |g| choose(g, Some(&file), path, Some(4)).unwrap();
    assert_eq!(c(Given::Flag(1)).source, Source::Flag);
    assert_eq!(c(Given::Flag(1)).value, 1);
    assert_eq!(c(Given::Env("V", 2)).value, 2);
    assert_eq!(c(Given::Env("V", 2)).source, Source::Env("V"));
    let from_file = c(Given::Absent);
    assert_eq!(from_file.value, 3);
    assert_eq!(from_file.source.to_string(), "/c.toml:7");
    let d = choose(Given::Absent, None, path, Some(4)).unwrap();
    assert_eq!((d.value, d.source), (4, Source::Default));
    assert_eq!(choose::<i32>(Given::Absent, None, path, None), None);
}

/// `config` and `serve` choose by one path: the same flags, environment and file give the
/// same settings, each from the place that wins.
#[test]
fn resolve_layers_every_setting_by_one_path() {
    let mut flags = Flags::default();
    flags.set("serve.http", vec!["127.0.0.1:9001".into()]);
    flags.set("network.mdns", vec!["false".into()]);
    let env = [
        ("DAT_MIRROR_SERVE_HTTP", "127.0.0.1:9002"),
        ("DAT_MIRROR_SERVE_LISTEN", "127.0.0.1:7002"),
        ("DAT_MIRROR_SERVE_ALLOW", &format!("{LAPTOP},{LAPTOP}")),
        ("DAT_MIRROR_NETWORK_DHT", ""),
    ];
    let s = resolve(
        &flags,
        &env,
        "[serve]\nlisten = \"0.0.0.0:7003\"\nmax_storage = \"1G\"\n[network]\ndht = false\n",
    )
    .unwrap();
    assert_eq!(s.serve_http.source, Source::Flag);
    assert_eq!(s.serve_http.value.port(), 9001);
    assert_eq!(
        s.serve_listen.source,
        Source::Env("DAT_MIRROR_SERVE_LISTEN")
    );
    assert_eq!(s.serve_allow.value.len(), 2);
    let cap = s.serve_max_storage.clone().unwrap();
    assert_eq!(
        (cap.value, cap.source.to_string()),
        (1 << 30, "/etc/dat-mirror/config.toml:3".into())
    );
    // An empty variable is not given.
    assert!(matches!(s.network_dht.source, Source::File { line: 5, .. }));
    assert!(!s.network().dht && !s.network().mdns);
    assert_eq!(s.mount_listen.source, Source::Default);
    assert_eq!(
        s.data.unwrap().value,
        PathBuf::from("/home/me/.local/share/dat-mirror")
    );
    assert_eq!(s.serve_mount, None);

    let e = resolve(&Flags::default(), &[("DAT_MIRROR_SERVE_HTTP", "8080")], "").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("$DAT_MIRROR_SERVE_HTTP: \"8080\" is not an IP:PORT"),
        "{e}"
    );
    let mut bad = Flags::default();
    bad.set("serve.max_storage", vec!["2X".into()]);
    let e = resolve(&bad, &[], "").unwrap_err();
    assert!(e.to_string().starts_with("--max-storage: "), "{e}");
}

#[test]
fn max_storage_parses_with_units_and_errors_point_at_the_line() {
    let c = p("[serve]\nmax_storage = \"1.5GiB\"\n").unwrap();
    let cap = c.get(&defs::serve_max_storage).unwrap();
    assert_eq!((cap.value, cap.line), (3 << 29, 2));
    let e = p("[serve]\nlisten = \"0.0.0.0:1\"\nmax_storage = \"2X\"\n").unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("serve.max_storage"))
    );
    assert!(e.message.contains("e.g. 500M"), "{}", e.message);
}

#[test]
fn trash_days_is_a_whole_number_of_days() {
    let c = p("[serve]\ntrash_days = 3\n").unwrap();
    assert_eq!(c.get(&defs::serve_trash_days).unwrap().value, 3);
    let e = p("[serve]\ntrash_days = -1\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("serve.trash_days"));
    assert!(e.message.contains("number of days"), "{}", e.message);
}

#[test]
fn render_round_trips_through_parse() {
    let key = Key::parse(LAPTOP).unwrap();
    let mut flags = Flags::default();
    flags.set("serve.http", vec!["[::1]:8081".into()]);
    flags.set("serve.domains", vec![format!("blog.example.org={LAPTOP}")]);
    flags.set("serve.mount", vec!["/srv/sites".into()]);
    flags.set("serve.max_storage", vec!["1.5GiB".into()]);
    flags.set("network.relay", vec!["http://10.0.0.9:3340".into()]);
    flags.set(
        "network.hyperswarm_bootstrap",
        vec!["127.0.0.1:49737".into()],
    );
    let env = [
        ("DAT_MIRROR_DATA", "/var/lib/dat \"mirror\""),
        ("DAT_MIRROR_NETWORK_MDNS", "false"),
        ("DAT_MIRROR_NETWORK_DHT_BOOTSTRAP", "127.0.0.1:6881"),
        ("DAT_MIRROR_SERVE_STATUS", "public"),
        (
            "DAT_MIRROR_MOUNT_MIRRORS",
            &format!("{LAPTOP}@10.0.0.2:7070"),
        ),
    ];
    let file = format!("[serve]\nallow = [\"{LAPTOP}\", \"{LAPTOP}\"]\n");
    let eff = resolve(&flags, &env, &file).unwrap();
    let text = eff.render();
    assert!(text.contains("# $DAT_MIRROR_DATA"), "{text}");
    assert!(text.contains("# /etc/dat-mirror/config.toml:2"), "{text}");
    let back = p(&text).unwrap();
    assert_eq!(
        back.get(&defs::data).unwrap().value,
        eff.data.unwrap().value
    );
    assert_eq!(
        back.get(&defs::serve_http).unwrap().value,
        eff.serve_http.value
    );
    assert_eq!(back.get(&defs::serve_allow).unwrap().value, vec![key, key]);
    assert_eq!(
        back.get(&defs::serve_domains).unwrap().value,
        eff.serve_domains.value
    );
    assert_eq!(back.get(&defs::serve_max_storage).unwrap().value, 3 << 29);
    assert_eq!(back.get(&defs::mount_mountpoint), None);
    assert_eq!(
        back.get(&defs::mount_mirrors).unwrap().value,
        eff.mount_mirrors.value
    );
    assert!(!back.get(&defs::network_mdns).unwrap().value);
    assert!(back.get(&defs::network_dht).unwrap().value);
    assert_eq!(
        back.get(&defs::network_relay).unwrap().value,
        eff.network_relay.value
    );
    assert_eq!(
        back.get(&defs::network_dht_bootstrap).unwrap().value,
        eff.network_dht_bootstrap.value
    );
    assert_eq!(
        back.get(&defs::serve_status).unwrap().value,
        StatusAccess::Public
    );
    assert_eq!(
        back.get(&defs::network_hyperswarm_bootstrap).unwrap().value,
        vec!["127.0.0.1:49737".to_string()]
    );
}

#[test]
fn network_section_parses_and_layers() {
    let f = "[network]\nmdns = false\nrelay = \"off\"\ndht_bootstrap = [\"127.0.0.1:7000\"]\n";
    assert_eq!(p(f).unwrap().get(&defs::network_mdns).unwrap().line, 2);
    let mut flags = Flags::default();
    flags.set("network.relay", vec!["default".into()]);
    let n = resolve(&flags, &[("DAT_MIRROR_NETWORK_DHT", "false")], f).unwrap();
    assert!(!n.network_mdns.value);
    assert!(matches!(
        n.network_mdns.source,
        Source::File { line: 2, .. }
    ));
    assert_eq!(n.network_dht.source, Source::Env("DAT_MIRROR_NETWORK_DHT"));
    assert_eq!(n.network_relay.value, RelayChoice::Default);
    assert_eq!(
        n.network_dht_bootstrap.value,
        vec!["127.0.0.1:7000".to_string()]
    );
    let defaults = resolve(&Flags::default(), &[], "").unwrap();
    assert_eq!(defaults.network(), NetworkConfig::public_defaults());

    let e = p("[network]\nrelay = \"relay.example.org\"\n").unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("network.relay")));
    let e = p("[network]\ndht_bootstrap = [\"nohost\"]\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("network.dht_bootstrap"));
    let e = p("[network]\nmdns = \"maybe\"\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("network.mdns"), "{e}");
    assert!(parse_switch("FALSE") == Ok(false) && parse_switch("1") == Ok(true));
    assert!(parse_switch("maybe").is_err());
}

#[test]
fn new_settings_status_and_hyperswarm() {
    let d = resolve(&Flags::default(), &[], "").unwrap();
    assert_eq!(d.serve_status.value, StatusAccess::Local);
    assert!(d.network_hyperswarm.value);
    assert!(d.network_hyperswarm_bootstrap.value.is_empty());

    let f = "[serve]\nstatus = \"off\"\n\n[network]\nhyperswarm = false\n\
             hyperswarm_bootstrap = [\"10.0.0.1:49737\", \"boot.example.org:49737\"]\n";
    let s = resolve(&Flags::default(), &[], f).unwrap();
    assert_eq!(s.serve_status.value, StatusAccess::Off);
    assert!(!s.network_hyperswarm.value);
    assert!(matches!(
        s.network_hyperswarm.source,
        Source::File { line: 5, .. }
    ));
    assert_eq!(s.network_hyperswarm_bootstrap.value.len(), 2);

    // Environment and flags, by the same path as every setting.
    let mut flags = Flags::default();
    flags.set("network.hyperswarm", vec!["false".into()]);
    let env = [
        ("DAT_MIRROR_SERVE_STATUS", "public"),
        (
            "DAT_MIRROR_NETWORK_HYPERSWARM_BOOTSTRAP",
            "127.0.0.1:1,127.0.0.1:2",
        ),
    ];
    let s = resolve(&flags, &env, "").unwrap();
    assert_eq!(s.serve_status.value, StatusAccess::Public);
    assert_eq!(s.network_hyperswarm.source, Source::Flag);
    assert_eq!(
        s.network_hyperswarm_bootstrap.value,
        vec!["127.0.0.1:1", "127.0.0.1:2"]
    );

    // Errors name the file, the line and the key.
    let e = p("[serve]\nhttp = \"127.0.0.1:1\"\nstatus = \"private\"\n").unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("serve.status")));
    assert!(e.message.contains("\"local\""), "{e}");
    let e = p("[network]\nhyperswarm = \"yes\"\n").unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("network.hyperswarm"))
    );
    let e = p("[network]\nhyperswarm_bootstrap = [\n  \"10.0.0.1:1\",\n  \"nohost\",\n]\n")
        .unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(4), Some("network.hyperswarm_bootstrap"))
    );
    assert!(e.message.contains("HOST:PORT"), "{e}");
    let e = resolve(&Flags::default(), &[("DAT_MIRROR_SERVE_STATUS", "all")], "").unwrap_err();
    assert!(e.to_string().contains("$DAT_MIRROR_SERVE_STATUS"), "{e}");
}

/// Every setting's flag, variable and key are unique, and every variable is
/// `DAT_MIRROR_<SECTION>_<KEY>`.
#[test]
fn the_table_is_consistent() {
    let mut envs = std::collections::BTreeSet::new();
    for s in TABLE {
        let want = format!(
            "DAT_MIRROR_{}",
            s.key().replace('.', "_").to_ascii_uppercase()
        );
        assert_eq!(s.env(), want);
        assert!(envs.insert(s.env()), "{} twice", s.env());
    }
}
