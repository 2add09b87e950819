//! Status entries: what a mirror writes to its status log, and what laptops fold into the
//! status view. Versioned JSON like commands (`{"v":1,"type":"ack",...}`), with a timestamp
//! (unix milliseconds) on every entry so views can say "last sync 3 min ago". Pure: no I/O.

use serde::{Deserialize, Serialize};

use crate::envelope::{self, EnvelopeError, Versioned};
use crate::keys::Key;

pub const STATUS_VERSION: u32 = 1;
/// Entries larger than this are refused on decode.
pub const MAX_STATUS_BYTES: usize = 16 * 1024;
/// Longest error reason kept (longer ones are cut when written).
pub const MAX_REASON_BYTES: usize = 1024;

/// One entry of a mirror's status log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    /// Unix time in milliseconds when the mirror wrote it.
    pub at: u64,
    #[serde(flatten)]
    pub event: StatusEvent,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StatusEvent {
    /// The mirror (re)started. `http` is the base URL of its HTTP gateway, if it runs one
    /// (e.g. `http://127.0.0.1:8080`); a site is at `{http}/{key}/`.
    Online {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http: Option<String>,
    },
    /// The mirror has applied entry `seq` of command log `log`.
    Ack { log: Key, seq: u64 },
    /// The mirror could not apply entry `seq` of `log` (malformed, unknown version, ...).
    Rejected { log: Key, seq: u64, reason: String },
    /// Progress of a site being replicated. `version` is the db core length known so far;
    /// `blocks`/`bytes` are what the mirror holds, `total_*` what the site has.
    Progress {
        key: Key,
        version: u64,
        blocks: u64,
        total_blocks: u64,
        bytes: u64,
        total_bytes: u64,
        peers: u32,
    },
    /// The site is complete at `version`: every block of both cores is held and verified.
    Mirrored {
        key: Key,
        version: u64,
        blocks: u64,
        bytes: u64,
        peers: u32,
    },
    /// The site was dropped from the mirror set and its data deleted.
    Removed { key: Key },
    /// Something is wrong with the site; `reason` tells what.
    Error { key: Key, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("status entry is {0} bytes, more than the {MAX_STATUS_BYTES} allowed")]
    TooLarge(usize),
    #[error("status entry is not valid: {0}")]
    Malformed(String),
    #[error("status entry has version {0}; this dat-mirror understands version {STATUS_VERSION}: upgrade dat-mirror")]
    UnknownVersion(u32),
}

impl StatusEvent {
    /// The site this event is about, if it is about a site.
    pub fn site(&self) -> Option<Key> {
        match self {
            StatusEvent::Progress { key, .. }
            | StatusEvent::Mirrored { key, .. }
            | StatusEvent::Removed { key }
            | StatusEvent::Error { key, .. } => Some(*key),
            StatusEvent::Online { .. } | StatusEvent::Ack { .. } | StatusEvent::Rejected { .. } => {
                None
            }
        }
    }
}

impl StatusEntry {
    pub fn new(at: u64, event: StatusEvent) -> StatusEntry {
        StatusEntry { at, event }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut entry = self.clone();
        if let StatusEvent::Error { reason, .. } | StatusEvent::Rejected { reason, .. } =
            &mut entry.event
        {
            truncate_utf8(reason, MAX_REASON_BYTES);
        }
        envelope::encode(&entry)
    }

    pub fn decode(bytes: &[u8]) -> Result<StatusEntry, StatusError> {
        envelope::decode(bytes).map_err(|e| match e {
            EnvelopeError::TooLarge(n) => StatusError::TooLarge(n),
            EnvelopeError::NotJson(m) | EnvelopeError::Malformed(m) => StatusError::Malformed(m),
            EnvelopeError::UnknownVersion(v) => StatusError::UnknownVersion(v),
        })
    }
}

impl Versioned for StatusEntry {
    const VERSION: u32 = STATUS_VERSION;
    const MAX_BYTES: usize = MAX_STATUS_BYTES;
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_event() {
        let k = Key([3; 32]);
        for event in [
            StatusEvent::Online {
                http: Some("http://127.0.0.1:8080".into()),
            },
            StatusEvent::Online { http: None },
            StatusEvent::Ack { log: k, seq: 4 },
            StatusEvent::Rejected {
                log: k,
                seq: 5,
                reason: "bad".into(),
            },
            StatusEvent::Progress {
                key: k,
                version: 3,
                blocks: 1,
                total_blocks: 9,
                bytes: 10,
                total_bytes: 99,
                peers: 1,
            },
            StatusEvent::Mirrored {
                key: k,
                version: 3,
                blocks: 9,
                bytes: 99,
                peers: 2,
            },
            StatusEvent::Removed { key: k },
            StatusEvent::Error {
                key: k,
                reason: "disk full".into(),
            },
        ] {
            let e = StatusEntry::new(1234, event);
            assert_eq!(StatusEntry::decode(&e.encode()).unwrap(), e);
        }
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let e = StatusEntry::new(
            1,
            StatusEvent::Error {
                key: Key([1; 32]),
                reason: "é".repeat(2000),
            },
        );
        let back = StatusEntry::decode(&e.encode()).unwrap();
        match back.event {
            StatusEvent::Error { reason, .. } => assert!(reason.len() <= MAX_REASON_BYTES),
            _ => unreachable!(),
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for c in [
            &b""[..],
            b"{",
            b"{\"v\":1}",
            b"{\"v\":1,\"type\":\"ack\"}",
            b"{\"v\":9,\"at\":1,\"type\":\"removed\"}",
        ] {
            assert!(StatusEntry::decode(c).is_err());
        }
    }
}
