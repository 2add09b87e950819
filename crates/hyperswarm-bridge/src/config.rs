//! Configuration of the hypercore network (issue 11, part 5): whether the mirror joins the
//! HyperDHT and through which bootstrap nodes, from flag, environment, `[network]` table or the
//! product default (on, public bootstrap nodes) — in that order, each value with its source.
//!
//! | where | switch | bootstrap |
//! |---|---|---|
//! | flag | `--no-hyperswarm` | `--hyperswarm-bootstrap HOST:PORT[,HOST:PORT]` |
//! | environment | `DAT_MIRROR_NETWORK_HYPERSWARM=false` | `DAT_MIRROR_NETWORK_HYPERSWARM_BOOTSTRAP=HOST:PORT[,…]` |
//! | `[network]` | `hyperswarm = false` | `hyperswarm_bootstrap = ["HOST:PORT", …]` |
//! | default | on | `[]` = hyperdht's public bootstrap nodes |
//!
//! With a bootstrap list given, the bridge contacts those nodes (and the nodes they name)
//! and nothing else. Tests, scripts and demos switch it off or point it at a local testnet.

use serde::Deserialize;

use crate::bridge::BridgeOptions;

/// Environment switch (`true`/`false`; flag `--no-hyperswarm`).
pub const ENV_HYPERSWARM: &str = "DAT_MIRROR_NETWORK_HYPERSWARM";
/// Environment bootstrap list (comma-separated `HOST:PORT`; flag `--hyperswarm-bootstrap`).
pub const ENV_HYPERSWARM_BOOTSTRAP: &str = "DAT_MIRROR_NETWORK_HYPERSWARM_BOOTSTRAP";

/// The `[network]` keys of this part, as the configuration file spells them (the app's
/// `[network]` table can `#[serde(flatten)]` this or copy the two fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HyperswarmToml {
    pub hyperswarm: Option<bool>,
    pub hyperswarm_bootstrap: Option<Vec<String>>,
}

/// What the command line said; `#[command(flatten)]` it into a clap command.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct HyperswarmFlags {
    /// Do not join the hypercore network (HyperDHT) [env: DAT_MIRROR_NETWORK_HYPERSWARM=false]
    #[arg(long)]
    pub no_hyperswarm: bool,
    /// HyperDHT bootstrap node HOST:PORT (repeat or comma-separate); when given, nothing else
    /// is contacted [env: DAT_MIRROR_NETWORK_HYPERSWARM_BOOTSTRAP]
    #[arg(long, value_name = "HOST:PORT")]
    pub hyperswarm_bootstrap: Vec<String>,
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

/// The hypercore-network settings in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HyperswarmConfig {
    pub enabled: bool,
    pub enabled_source: Source,
    /// `HOST:PORT` entries; empty = the public bootstrap nodes.
    pub bootstrap: Vec<String>,
    pub bootstrap_source: Source,
}

/// A setting that cannot be used: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// `--hyperswarm-bootstrap`, `DAT_MIRROR_NETWORK_HYPERSWARM`, `network.hyperswarm_bootstrap`…
    pub setting: String,
    pub message: String,
}

/// A bootstrap node: `HOST:PORT` (trimmed).
pub fn parse_bootstrap(s: &str) -> Result<String, String> {
    let s = s.trim();
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_string()),
        _ => Err(format!(
            "{s:?} is not a HyperDHT bootstrap node: use HOST:PORT, e.g. 192.168.1.5:49737"
        )),
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
pub fn parse_switch(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

fn parse_list<'a>(
    items: impl IntoIterator<Item = &'a str>,
    setting: &str,
) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for item in items {
        for part in item.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            out.push(parse_bootstrap(part).map_err(|message| ConfigError {
                setting: setting.to_string(),
                message,
            })?);
        }
    }
    Ok(out)
}

impl HyperswarmConfig {
    /// Chooses each setting: flag, then environment (`env` looks a variable up), then file,
    /// then the product default.
    pub fn resolve(
        flags: &HyperswarmFlags,
        env: impl Fn(&str) -> Option<String>,
        file: &HyperswarmToml,
    ) -> Result<HyperswarmConfig, ConfigError> {
        let (enabled, enabled_source) = if flags.no_hyperswarm {
            (false, Source::Flag)
        } else if let Some(v) = env(ENV_HYPERSWARM) {
            let b = parse_switch(&v).map_err(|message| ConfigError {
                setting: ENV_HYPERSWARM.into(),
                message,
            })?;
            (b, Source::Env)
        } else if let Some(b) = file.hyperswarm {
            (b, Source::File)
        } else {
            (true, Source::Default)
        };
        let (bootstrap, bootstrap_source) = if !flags.hyperswarm_bootstrap.is_empty() {
            let l = parse_list(
                flags.hyperswarm_bootstrap.iter().map(String::as_str),
                "--hyperswarm-bootstrap",
            )?;
            (l, Source::Flag)
        } else if let Some(v) = env(ENV_HYPERSWARM_BOOTSTRAP) {
            (
                parse_list([v.as_str()], ENV_HYPERSWARM_BOOTSTRAP)?,
                Source::Env,
            )
        } else if let Some(l) = &file.hyperswarm_bootstrap {
            let mut out = Vec::new();
            for s in l {
                out.push(parse_bootstrap(s).map_err(|message| ConfigError {
                    setting: "network.hyperswarm_bootstrap".into(),
                    message,
                })?);
            }
            (out, Source::File)
        } else {
            (Vec::new(), Source::Default)
        };
        Ok(HyperswarmConfig {
            enabled,
            enabled_source,
            bootstrap,
            bootstrap_source,
        })
    }

    /// Resolves with the process environment.
    pub fn from_env(
        flags: &HyperswarmFlags,
        file: &HyperswarmToml,
    ) -> Result<HyperswarmConfig, ConfigError> {
        Self::resolve(flags, |k| std::env::var(k).ok(), file)
    }

    /// Bridge options for this configuration (`None` when the network is switched off).
    pub fn bridge_options(&self, seed: [u8; 32]) -> Option<BridgeOptions> {
        self.enabled.then(|| BridgeOptions {
            bootstrap: self.bootstrap.clone(),
            ..BridgeOptions::new(seed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn product_default_is_on_with_public_bootstrap() {
        let c =
            HyperswarmConfig::resolve(&Default::default(), env(&[]), &Default::default()).unwrap();
        assert!(c.enabled);
        assert_eq!(c.enabled_source, Source::Default);
        assert!(c.bootstrap.is_empty());
        assert!(c.bridge_options([0; 32]).unwrap().bootstrap.is_empty());
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let file: HyperswarmToml =
            toml_like(r#"{"hyperswarm": true, "hyperswarm_bootstrap": ["10.0.0.1:1"]}"#);
        let e = env(&[
            (ENV_HYPERSWARM, "false"),
            (ENV_HYPERSWARM_BOOTSTRAP, "127.0.0.1:5000, 127.0.0.1:5001"),
        ]);
        let c = HyperswarmConfig::resolve(&Default::default(), &e, &file).unwrap();
        assert_eq!((c.enabled, c.enabled_source), (false, Source::Env));
        assert_eq!(c.bootstrap, vec!["127.0.0.1:5000", "127.0.0.1:5001"]);
        assert!(c.bridge_options([0; 32]).is_none());
        let flags = HyperswarmFlags {
            no_hyperswarm: false,
            hyperswarm_bootstrap: vec!["127.0.0.1:7000".into()],
        };
        let c = HyperswarmConfig::resolve(&flags, &e, &file).unwrap();
        assert_eq!(c.bootstrap, vec!["127.0.0.1:7000"]);
        assert_eq!(c.bootstrap_source, Source::Flag);
        let c = HyperswarmConfig::resolve(&Default::default(), env(&[]), &file).unwrap();
        assert_eq!((c.enabled, c.enabled_source), (true, Source::File));
        assert_eq!(c.bootstrap, vec!["10.0.0.1:1"]);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = env(&[(ENV_HYPERSWARM, "maybe")]);
        let err =
            HyperswarmConfig::resolve(&Default::default(), e, &Default::default()).unwrap_err();
        assert_eq!(err.setting, ENV_HYPERSWARM);
        let flags = HyperswarmFlags {
            no_hyperswarm: false,
            hyperswarm_bootstrap: vec!["nohost".into()],
        };
        let err = HyperswarmConfig::resolve(&flags, env(&[]), &Default::default()).unwrap_err();
        assert_eq!(err.setting, "--hyperswarm-bootstrap");
        let file = HyperswarmToml {
            hyperswarm: None,
            hyperswarm_bootstrap: Some(vec![":80".into()]),
        };
        let err = HyperswarmConfig::resolve(&Default::default(), env(&[]), &file).unwrap_err();
        assert_eq!(err.setting, "network.hyperswarm_bootstrap");
    }

    #[test]
    fn flags_parse_with_clap() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            hs: HyperswarmFlags,
        }
        let cli = Cli::parse_from([
            "x",
            "--no-hyperswarm",
            "--hyperswarm-bootstrap",
            "127.0.0.1:1,127.0.0.1:2",
            "--hyperswarm-bootstrap",
            "127.0.0.1:3",
        ]);
        assert!(cli.hs.no_hyperswarm);
        let c = HyperswarmConfig::resolve(&cli.hs, env(&[]), &Default::default()).unwrap();
        assert!(!c.enabled);
        assert_eq!(
            c.bootstrap,
            vec!["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
        );
    }

    fn toml_like(json: &str) -> HyperswarmToml {
        serde_json::from_str(json).unwrap()
    }
}
