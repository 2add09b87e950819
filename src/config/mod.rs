//! Settings: one table defines every setting, and that table feeds the command-line flags,
//! the environment variables, the TOML file, `dat-mirror config`'s provenance output and the
//! daemons' settings ([`Settings`]).
//!
//! A setting is taken from, in order: the command line, the environment
//! (`DAT_MIRROR_<SECTION>_<KEY>`), the file (by default `$XDG_CONFIG_HOME/dat-mirror/config.toml`,
//! or the file named by `--config PATH` / `$DAT_MIRROR_CONFIG`), the built-in default. Every
//! subcommand, `config` included, chooses by the same path ([`Inputs::resolve`]). Errors name
//! the file, the line and the key (or the flag, or the variable).
//!
//! **Adding a setting** is one entry in the `settings!` table below (key, variable, flag,
//! help, kind, default) plus its use: the field of the same name in [`Settings`]. Its flag,
//! variable, file key, help line and `dat-mirror config` line follow from the entry.
//!
//! Rooms: `setting.rs` (what a setting is, how a value is chosen), `kinds.rs` (value kinds
//! and small parsers), `file.rs` (the TOML file), `flags.rs` (clap), `render.rs` (`dat-mirror
//! config`'s output). Pure except [`load`] and [`Settings::from_process`].

mod file;
pub mod flags;
pub mod kinds;
mod render;
pub mod setting;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

pub use file::{default_config_path, default_data_dir, load, parse, ConfigError, ConfigFile};
pub use flags::{Flags, SettingFlags};
pub use kinds::{
    expand_path, parse_bootstrap, parse_domain_arg, parse_domain_pair, parse_hyperswarm_bootstrap,
    parse_key, parse_switch, BaseHost, StatusAccess,
};
pub use setting::{choose, on, AnySetting, Chosen, Given, Host, Located, Setting, Source};

use crate::model::keys::Key;
use crate::net::endpoint::{NetworkConfig, PeerAddr, RelayChoice};
use kinds::*;
use setting::{Flag, FlagStyle};

/// Environment variable naming the configuration file (not a setting: it says where they are).
pub const ENV_CONFIG: &str = "DAT_MIRROR_CONFIG";

/// Default `[serve] listen`: peers connect here (QUIC).
pub const DEFAULT_SERVE_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7070));
/// Default `[serve] http`: the HTTP gateway, local only until configured otherwise.
pub const DEFAULT_SERVE_HTTP: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// Default `[mount] listen`: any free port.
pub const DEFAULT_MOUNT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

const fn flag(name: &'static str, on: u8) -> Option<Flag> {
    Some(Flag {
        name,
        style: FlagStyle::Value,
        on,
    })
}

const fn off_switch(name: &'static str, on: u8) -> Option<Flag> {
    Some(Flag {
        name,
        style: FlagStyle::SwitchOff,
        on,
    })
}

/// A field of [`Settings`]: `Chosen<T>` for a setting with a default, `Option<Chosen<T>>` for
/// one that may stay unset.
pub trait Field: Sized {
    type Value: Clone + Send + Sync + 'static;
    fn from_chosen(
        s: &Setting<Self::Value>,
        c: Option<Chosen<Self::Value>>,
    ) -> Result<Self, SettingsError>;
    fn erased(&self) -> Option<(&(dyn Any + Send + Sync), &Source)>;
}

impl<T: Clone + Send + Sync + 'static> Field for Chosen<T> {
    type Value = T;
    fn from_chosen(s: &Setting<T>, c: Option<Chosen<T>>) -> Result<Self, SettingsError> {
        c.ok_or(SettingsError::NoDefault(s.key))
    }
    fn erased(&self) -> Option<(&(dyn Any + Send + Sync), &Source)> {
        Some((&self.value, &self.source))
    }
}

impl<T: Clone + Send + Sync + 'static> Field for Option<Chosen<T>> {
    type Value = T;
    fn from_chosen(_: &Setting<T>, c: Option<Chosen<T>>) -> Result<Self, SettingsError> {
        Ok(c)
    }
    fn erased(&self) -> Option<(&(dyn Any + Send + Sync), &Source)> {
        self.as_ref()
            .map(|c| (&c.value as &(dyn Any + Send + Sync), &c.source))
    }
}

macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $field:ident : $fty:ty = $def:expr; )*) => {
        /// Every setting's definition, named as its field in [`Settings`].
        #[allow(non_upper_case_globals)]
        pub mod defs {
            use super::*;
            $( $(#[doc = $doc])* pub static $field: Setting<<$fty as Field>::Value> = $def; )*
        }

        /// Every setting, in the order `dat-mirror config` prints them.
        pub static TABLE: &[&dyn AnySetting] = &[ $( &defs::$field, )* ];

        /// The settings in effect, each with where it came from. What the daemons are built
        /// from and what `dat-mirror config` prints.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings {
            /// The configuration file looked at, and whether it exists (`None`: no HOME).
            pub file: Option<(PathBuf, bool)>,
            $( $(#[doc = $doc])* pub $field: $fty, )*
        }

        impl Settings {
            /// Chooses every setting from `inputs`.
            pub fn resolve(inputs: &Inputs<'_>) -> Result<Settings, SettingsError> {
                Ok(Settings {
                    file: inputs.file_info.clone(),
                    $( $field: Field::from_chosen(&defs::$field, inputs.resolve(&defs::$field)?)?, )*
                })
            }

            /// Each setting with its chosen value (type-erased), in table order.
            pub fn each(&self) -> Vec<(&'static dyn AnySetting, Option<(&(dyn Any + Send + Sync), &Source)>)> {
                vec![ $( (&defs::$field as &'static dyn AnySetting, Field::erased(&self.$field)), )* ]
            }
        }
    };
}

settings! {
    /// Data folder: identity, hypercores, remembered settings.
    data: Option<Chosen<PathBuf>> = Setting {
        key: "data", env: "DAT_MIRROR_DATA", flag: flag("data", on::GLOBAL),
        help: "Data folder: identity, hypercores, remembered settings",
        value_name: "DIR", default_help: "$XDG_DATA_HOME/dat-mirror", kind: PATH,
        default: |h| default_data_dir(h.xdg_data_home.as_deref(), h.home.as_deref()),
        unset: ("# data = (unset)", "set XDG_DATA_HOME or HOME"),
    };
    /// `[serve] listen`: address for peer (QUIC) connections.
    serve_listen: Chosen<SocketAddr> = Setting {
        key: "serve.listen", env: "DAT_MIRROR_SERVE_LISTEN", flag: flag("listen", on::SERVE),
        help: "Address for peer (QUIC) connections",
        value_name: "IP:PORT", default_help: "0.0.0.0:7070", kind: ADDR,
        default: |_| Some(DEFAULT_SERVE_LISTEN), unset: ("", ""),
    };
    /// `[serve] http`: address of the HTTP gateway.
    serve_http: Chosen<SocketAddr> = Setting {
        key: "serve.http", env: "DAT_MIRROR_SERVE_HTTP", flag: flag("http", on::SERVE),
        help: "Address of the HTTP gateway (0.0.0.0:8080 to serve the network)",
        value_name: "IP:PORT", default_help: "127.0.0.1:8080", kind: ADDR,
        default: |_| Some(DEFAULT_SERVE_HTTP), unset: ("", ""),
    };
    /// `[serve] allow`: laptops whose command logs the mirror follows.
    serve_allow: Chosen<Vec<Key>> = Setting {
        key: "serve.allow", env: "DAT_MIRROR_SERVE_ALLOW", flag: flag("allow", on::SERVE),
        help: "A laptop id (from `dat-mirror id` on the laptop) whose command log this mirror \
               follows; remembered in the data folder",
        value_name: "ID", default_help: "none", kind: LAPTOPS,
        default: |_| Some(vec![]), unset: ("", ""),
    };
    /// `[serve.domains]`: custom domains of the HTTP gateway, host name (lower case) → site.
    serve_domains: Chosen<BTreeMap<String, Key>> = Setting {
        key: "serve.domains", env: "DAT_MIRROR_SERVE_DOMAINS", flag: flag("domain", on::SERVE),
        help: "Serve a site at its own host name: HOST=KEY, e.g. www.example.org=hyper://<key> \
               (point the name's DNS at this machine)",
        value_name: "HOST=KEY", default_help: "none", kind: DOMAINS,
        default: |_| Some(BTreeMap::new()), unset: ("", ""),
    };
    /// `[serve] mount`: where to mount the read-only tree of mirrored sites.
    serve_mount: Option<Chosen<PathBuf>> = Setting {
        key: "serve.mount", env: "DAT_MIRROR_SERVE_MOUNT", flag: flag("mount", on::SERVE),
        help: "Also expose every mirrored site as read-only files: DIR/<key>/... and DIR/<alias> \
               (created if missing; unmounted on exit)",
        value_name: "DIR", default_help: "not mounted", kind: PATH,
        default: |_| None, unset: ("# mount = (unset: no read-only tree)", "default"),
    };
    /// `[serve] mount_cache`: disk space for copies of large files read through the tree.
    serve_mount_cache: Chosen<u64> = Setting {
        key: "serve.mount_cache", env: "DAT_MIRROR_SERVE_MOUNT_CACHE",
        flag: flag("mount-cache", on::SERVE),
        help: "Disk space for copies of large files (1 MiB and up) read through --mount, which \
               the kernel then reads itself at the disk's speed (FUSE passthrough, Linux 6.9+, \
               root); 0 reads every file through the mirror",
        value_name: "SIZE", default_help: "2GiB", kind: SIZE,
        default: |_| Some(crate::fs::site_tree::DEFAULT_MOUNT_CACHE), unset: ("", ""),
    };
    /// `[serve] max_storage`: storage cap in bytes.
    serve_max_storage: Option<Chosen<u64>> = Setting {
        key: "serve.max_storage", env: "DAT_MIRROR_SERVE_MAX_STORAGE",
        flag: flag("max-storage", on::SERVE),
        help: "Stop fetching when stored site data reaches SIZE (e.g. 500M, 2G, 1.5GiB): new \
               sites wait and show `storage cap reached`",
        value_name: "SIZE", default_help: "no cap", kind: SIZE,
        default: |_| None, unset: ("# max_storage = (unset: no cap)", "default"),
    };
    /// `[serve] status`: who sees the status page `/`, `/.well-known/dat-mirror` and
    /// `/metrics` (the owner's secret link always does).
    serve_status: Chosen<StatusAccess> = Setting {
        key: "serve.status", env: "DAT_MIRROR_SERVE_STATUS", flag: flag("status", on::SERVE),
        help: "Who sees the HTTP status page and JSON, which list every site key: `local` \
               (clients on this machine), `public` (anyone) or `off`",
        value_name: "local|public|off", default_help: "local", kind: STATUS_ACCESS,
        default: |_| Some(StatusAccess::Local), unset: ("", ""),
    };
    /// `[serve] base_host`: the host name the gateway is reached by; each site then gets its
    /// own origin `<z32-key>.<base_host>` and `/<key>/…` redirects there.
    serve_base_host: Option<Chosen<BaseHost>> = Setting {
        key: "serve.base_host", env: "DAT_MIRROR_SERVE_BASE_HOST", flag: flag("base-host", on::SERVE),
        help: "Give every site its own origin <z32-key>.HOST (subdomain gateway): HOST is the name \
               this gateway is reached by, e.g. pi.lan:8080 (needs a wildcard DNS entry)",
        value_name: "HOST[:PORT]", default_help: "none: sites are served by path, sandboxed", kind: BASE_HOST,
        default: |_| None, unset: ("# base_host = \"pi.lan:8080\"", "unset: sites by path"),
    };
    /// `[serve] trash_days`: site data moved to `DATA/trash/` is deleted after this many days.
    serve_trash_days: Chosen<u64> = Setting {
        key: "serve.trash_days", env: "DAT_MIRROR_SERVE_TRASH_DAYS", flag: flag("trash-days", on::SERVE),
        help: "Delete site data that start-up moved to the trash (no command asked for it) after \
               DAYS; 0 keeps it until `dat-mirror trash empty`",
        value_name: "DAYS", default_help: "7", kind: DAYS,
        default: |_| Some(crate::mirror::leftovers::DEFAULT_TRASH_DAYS), unset: ("", ""),
    };
    /// `[mount] mountpoint`: where `dat-mirror mount` mounts the control folder.
    mount_mountpoint: Option<Chosen<PathBuf>> = Setting {
        key: "mount.mountpoint", env: "DAT_MIRROR_MOUNT_MOUNTPOINT",
        flag: Some(Flag { name: "mountpoint", style: FlagStyle::Positional, on: on::MOUNT }),
        help: "Where to mount the control folder (an empty folder; created if missing)",
        value_name: "MOUNTPOINT", default_help: "", kind: PATH,
        default: |_| None,
        unset: ("# mountpoint = \"~/dat-mirror\"", "unset: `dat-mirror mount` needs it"),
    };
    /// `[mount] mirrors`: mirrors to pair with.
    mount_mirrors: Chosen<Vec<PeerAddr>> = Setting {
        key: "mount.mirrors", env: "DAT_MIRROR_MOUNT_MIRRORS", flag: flag("mirror", on::MOUNT),
        help: "A mirror to pair with, as ID@IP:PORT, or ID alone to find it by mDNS, the DHT or \
               a relay; remembered in the data folder",
        value_name: "ID[@IP:PORT]", default_help: "none", kind: PEERS,
        default: |_| Some(vec![]), unset: ("", ""),
    };
    /// `[mount] listen`: the laptop's local address for peer connections.
    mount_listen: Chosen<SocketAddr> = Setting {
        key: "mount.listen", env: "DAT_MIRROR_MOUNT_LISTEN", flag: flag("listen", on::MOUNT),
        help: "Local address for peer connections",
        value_name: "IP:PORT", default_help: "0.0.0.0:0 (any free port)", kind: ADDR,
        default: |_| Some(DEFAULT_MOUNT_LISTEN), unset: ("", ""),
    };
    /// `[network] mdns`: find and be found on the local network.
    network_mdns: Chosen<bool> = Setting {
        key: "network.mdns", env: "DAT_MIRROR_NETWORK_MDNS", flag: off_switch("no-mdns", on::NETWORK),
        help: "Do not find or announce peers on the local network (mDNS)",
        value_name: "", default_help: "on", kind: SWITCH,
        default: |_| Some(NetworkConfig::public_defaults().mdns), unset: ("", ""),
    };
    /// `[network] dht`: the mainline DHT (addresses, site holders).
    network_dht: Chosen<bool> = Setting {
        key: "network.dht", env: "DAT_MIRROR_NETWORK_DHT", flag: off_switch("no-dht", on::NETWORK),
        help: "Do not use the mainline DHT (publishing this node's address and held sites, \
               looking up others)",
        value_name: "", default_help: "on", kind: SWITCH,
        default: |_| Some(NetworkConfig::public_defaults().dht), unset: ("", ""),
    };
    /// `[network] relay`: relay servers for peers behind NAT.
    network_relay: Chosen<RelayChoice> = Setting {
        key: "network.relay", env: "DAT_MIRROR_NETWORK_RELAY", flag: flag("relay", on::NETWORK),
        help: "Relay servers for peers behind NAT: `default` (iroh's public relays), `off`, or \
               the URL of your own relay",
        value_name: "URL|default|off", default_help: "default", kind: RELAY,
        default: |_| Some(NetworkConfig::public_defaults().relay), unset: ("", ""),
    };
    /// `[network] dht_bootstrap`: mainline DHT bootstrap nodes; empty: the public ones.
    network_dht_bootstrap: Chosen<Vec<String>> = Setting {
        key: "network.dht_bootstrap", env: "DAT_MIRROR_NETWORK_DHT_BOOTSTRAP", flag: None,
        help: "Mainline DHT bootstrap nodes, HOST:PORT (empty: the public bootstrap nodes)",
        value_name: "HOST:PORT", default_help: "the public bootstrap nodes", kind: DHT_NODES,
        default: |_| Some(vec![]), unset: ("", ""),
    };
    /// `[network] hyperswarm`: announce and fetch sites on the hypercore network (HyperDHT).
    /// Not consumed yet: the hypercore-network transport wires it.
    network_hyperswarm: Chosen<bool> = Setting {
        key: "network.hyperswarm", env: "DAT_MIRROR_NETWORK_HYPERSWARM",
        flag: off_switch("no-hyperswarm", on::NETWORK),
        help: "Do not announce or fetch sites on the hypercore network (HyperDHT, where hyper:// \
               browsers and Node peers look)",
        value_name: "", default_help: "on", kind: SWITCH,
        default: |_| Some(true), unset: ("", ""),
    };
    /// `[network] hyperswarm_bootstrap`: HyperDHT bootstrap nodes; empty: Holepunch's public
    /// ones. Not consumed yet.
    network_hyperswarm_bootstrap: Chosen<Vec<String>> = Setting {
        key: "network.hyperswarm_bootstrap", env: "DAT_MIRROR_NETWORK_HYPERSWARM_BOOTSTRAP",
        flag: flag("hyperswarm-bootstrap", on::NETWORK),
        help: "HyperDHT bootstrap nodes, HOST:PORT (e.g. a private testnet's)",
        value_name: "HOST:PORT", default_help: "the public bootstrap nodes",
        kind: HYPERSWARM_NODES, default: |_| Some(vec![]), unset: ("", ""),
    };
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    File(#[from] ConfigError),
    #[error("{flag}: {message}")]
    Flag { flag: String, message: String },
    #[error("${var}: {message} (fix the variable or unset it)")]
    Env { var: &'static str, message: String },
    #[error("setting `{0}` has no default and no value (a bug in its definition)")]
    NoDefault(&'static str),
}

/// Everything a setting can come from.
pub struct Inputs<'a> {
    pub flags: &'a Flags,
    /// The environment (`std::env::var` in the binary; a map in tests).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub file: &'a ConfigFile,
    /// The file looked at and whether it exists, for `dat-mirror config`.
    pub file_info: Option<(PathBuf, bool)>,
    pub host: Host,
}

impl Inputs<'_> {
    /// Chooses one setting: command line, then environment, then file, then default.
    pub fn resolve<T: Clone>(&self, s: &Setting<T>) -> Result<Option<Chosen<T>>, SettingsError> {
        let given = if let Some(raw) = self.flags.get(s.key) {
            let value = (s.kind.from_args)(raw).map_err(|message| SettingsError::Flag {
                flag: flags::flag_name(s.flag, s.value_name),
                message,
            })?;
            Given::Flag(value)
        } else if let Some(v) = (self.env)(s.env).filter(|v| !v.is_empty()) {
            let parts: Vec<String> = match s.kind.repeat {
                true => v.split(',').map(str::to_string).collect(),
                false => vec![v],
            };
            let value = (s.kind.from_args)(&parts).map_err(|message| SettingsError::Env {
                var: s.env,
                message,
            })?;
            Given::Env(s.env, value)
        } else {
            Given::Absent
        };
        let in_file = self.file.get(s);
        Ok(choose(
            given,
            in_file.as_ref(),
            self.file.path.as_deref(),
            (s.default)(&self.host),
        ))
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Settings {
    /// The settings of this process: `flags`, its environment, and the configuration file
    /// (`config`, else the default location; see [`default_config_path`]).
    pub fn from_process(config: Option<&Path>, flags: &Flags) -> Result<Settings, SettingsError> {
        let host = Host {
            home: env_path("HOME"),
            xdg_data_home: env_path("XDG_DATA_HOME"),
        };
        let (path, required) = match config {
            Some(p) => (Some(p.to_path_buf()), true),
            None => (
                default_config_path(env_path("XDG_CONFIG_HOME").as_deref(), host.home.as_deref()),
                false,
            ),
        };
        let (file, file_info) = match &path {
            None => (ConfigFile::default(), None),
            Some(p) => match load(p, required, host.home.as_deref())? {
                Some(file) => (file, Some((p.clone(), true))),
                None => (ConfigFile::default(), Some((p.clone(), false))),
            },
        };
        let env = |var: &str| std::env::var(var).ok();
        Settings::resolve(&Inputs {
            flags,
            env: &env,
            file: &file,
            file_info,
            host,
        })
    }

    /// The data folder, or what to do when there is none.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        self.data.as_ref().map(|c| c.value.clone()).ok_or_else(|| {
            anyhow::anyhow!(
                "no data folder: pass --data DIR, set `data` in the config file, or set \
                 XDG_DATA_HOME or HOME"
            )
        })
    }

    /// The discovery routes of the private plane (iroh) and the hypercore network plane.
    pub fn network(&self) -> NetworkConfig {
        NetworkConfig {
            mdns: self.network_mdns.value,
            dht: self.network_dht.value,
            dht_bootstrap: self.network_dht_bootstrap.value.clone(),
            relay: self.network_relay.value.clone(),
            hyperswarm: self.network_hyperswarm.value,
            hyperswarm_bootstrap: self.network_hyperswarm_bootstrap.value.clone(),
        }
    }
}
