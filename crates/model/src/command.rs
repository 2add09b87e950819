//! Commands: the entries of a laptop's command log. Each entry is one versioned JSON object,
//! e.g. `{"v":1,"op":"mirror","key":"<hex>","alias":"blog"}`. Decoding never panics and
//! tells what is wrong; unknown future versions or operations are reported as such so a
//! mirror can acknowledge (and skip) them instead of wedging. Pure: no I/O.

use serde::{Deserialize, Serialize};

use crate::envelope::{self, EnvelopeError, Versioned};
use crate::keys::Key;

/// The encoding version this build writes.
pub const COMMAND_VERSION: u32 = 1;
/// Entries larger than this are refused on decode (a command is a few hundred bytes).
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;
/// Longest alias accepted (bytes).
pub const MAX_ALIAS_BYTES: usize = 200;

/// What a laptop asks its mirrors to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Keep a full copy of the site `key`, seed it, serve it. `alias` is the name the user
    /// gave it (the link file's name), used for `<alias>` entries and virtual hosts.
    Mirror {
        key: Key,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alias: Option<String>,
    },
    /// Stop mirroring `key`.
    Unmirror { key: Key },
}

/// Why a log entry is not a command this build understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command entry is {0} bytes, more than the {MAX_COMMAND_BYTES} allowed")]
    TooLarge(usize),
    #[error("command entry is not valid JSON: {0}")]
    NotJson(String),
    #[error("command entry has version {0}; this dat-mirror understands version {COMMAND_VERSION}: upgrade dat-mirror")]
    UnknownVersion(u32),
    #[error("command entry is malformed: {0}")]
    Malformed(String),
}

impl Command {
    pub fn key(&self) -> Key {
        match self {
            Command::Mirror { key, .. } | Command::Unmirror { key } => *key,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        envelope::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, CommandError> {
        let cmd: Command = envelope::decode(bytes).map_err(|e| match e {
            EnvelopeError::TooLarge(n) => CommandError::TooLarge(n),
            EnvelopeError::NotJson(m) => CommandError::NotJson(m),
            EnvelopeError::UnknownVersion(v) => CommandError::UnknownVersion(v),
            EnvelopeError::Malformed(m) => CommandError::Malformed(m),
        })?;
        if let Command::Mirror { alias: Some(a), .. } = &cmd {
            validate_alias(a).map_err(CommandError::Malformed)?;
        }
        Ok(cmd)
    }
}

impl Versioned for Command {
    const VERSION: u32 = COMMAND_VERSION;
    const MAX_BYTES: usize = MAX_COMMAND_BYTES;
}

/// An alias is a single path component a user typed: printable, no `/`, not `.`/`..`.
pub fn validate_alias(alias: &str) -> Result<(), String> {
    if alias.is_empty() || alias.len() > MAX_ALIAS_BYTES {
        return Err(format!("alias must be 1 to {MAX_ALIAS_BYTES} bytes"));
    }
    if alias == "." || alias == ".." || alias.contains('/') || alias.chars().any(|c| c.is_control())
    {
        return Err(format!("alias {alias:?} is not a plain name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key([9; 32])
    }

    #[test]
    fn round_trip() {
        for cmd in [
            Command::Mirror {
                key: key(),
                alias: None,
            },
            Command::Mirror {
                key: key(),
                alias: Some("blog".into()),
            },
            Command::Unmirror { key: key() },
        ] {
            assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
        }
    }

    #[test]
    fn wire_shape_is_stable() {
        let cmd = Command::Mirror {
            key: key(),
            alias: Some("blog".into()),
        };
        let json: serde_json::Value = serde_json::from_slice(&cmd.encode()).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["op"], "mirror");
        assert_eq!(json["alias"], "blog");
        assert_eq!(json["key"], key().to_hex());
    }

    #[test]
    fn malformed_entries_are_errors() {
        let hex = key().to_hex();
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\xff\xfe".to_vec(),
            b"[]".to_vec(),
            b"{}".to_vec(),
            br#"{"v":1}"#.to_vec(),
            br#"{"v":1,"op":"explode"}"#.to_vec(),
            br#"{"v":1,"op":"mirror","key":"nope"}"#.to_vec(),
            format!(r#"{{"v":1,"op":"mirror","key":"{hex}","alias":"a/b"}}"#).into_bytes(),
            format!(r#"{{"v":"1","op":"unmirror","key":"{hex}"}}"#).into_bytes(),
            vec![b' '; MAX_COMMAND_BYTES + 1],
        ];
        for c in cases {
            assert!(
                Command::decode(&c).is_err(),
                "{:?}",
                String::from_utf8_lossy(&c)
            );
        }
        let future = format!(r#"{{"v":2,"op":"unmirror","key":"{hex}"}}"#);
        assert_eq!(
            Command::decode(future.as_bytes()),
            Err(CommandError::UnknownVersion(2))
        );
    }
}
