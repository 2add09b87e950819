//! Fuzzing entry points: one `pub fn <target>(data: &[u8])` per decoder that is fed from
//! outside (the network, the disk, a user). Each runs the same code the product runs on
//! that input and panics only when the code panics or breaks one of its own promises (a
//! round trip that does not round-trip, a range outside the file, a path that escapes its
//! site, ...). The libFuzzer targets in `fuzz/fuzz_targets/` are one-liners calling these,
//! and `tests/fuzz_regressions.rs` runs every file of `fuzz/regressions/<target>/` through
//! them, so CI replays every crash ever found without libFuzzer. [`TARGETS`] lists them all.
//!
//! This module owns the sync-side targets (log entries, keys, control-folder names; the
//! replication protocol's decoders are [`hypercore`]'s targets);
//! [`http`], [`drive`], [`config`] and [`engine`] (our hypercore engine) own the rest.

mod alloc;
mod config;
mod drive;
mod engine;
mod http;
mod hypercore;

pub use alloc::LimitedAlloc;
pub use config::config_toml;
pub use drive::{
    blob_pointer, drive_entry, drive_header, drive_node, drive_tree, drive_tree_input,
    drive_tree_seed,
};
pub use engine::{engine_manifest, engine_proof_apply, engine_proof_create, engine_records};
pub use http::{http_conditional, http_host, http_path, http_query, http_range, site_config};
pub use hypercore::{
    hypercore_manifest, hypercore_message, hypercore_session, protomux_frame, stream_framing,
};

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::fs::names::{classify, Name, STATUS_NAME};
use crate::model::command::{validate_alias, Command, MAX_COMMAND_BYTES};
use crate::model::keys::Key;
use crate::model::mirror_set::MirrorSet;
use crate::model::status::{StatusEntry, StatusEvent, MAX_REASON_BYTES};
use crate::model::view::{self, MirrorInput};

/// The environment variable holding the per-allocation limit (MiB) of [`LimitedAlloc`].
pub const MALLOC_LIMIT_ENV: &str = "DAT_MIRROR_FUZZ_MALLOC_LIMIT_MB";

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every target, by name (the name of its fuzz target and of its regression folder).
pub const TARGETS: &[(&str, Target)] = &[
    ("command_entry", command_entry),
    ("status_entry", status_entry),
    ("hypercore_message", hypercore_message),
    ("hypercore_manifest", hypercore_manifest),
    ("protomux_frame", protomux_frame),
    ("stream_framing", stream_framing),
    ("hypercore_session", hypercore_session),
    ("key_string", key_string),
    ("link_file", link_file),
    ("control_name", control_name),
    ("http_path", http_path),
    ("http_host", http_host),
    ("http_query", http_query),
    ("http_range", http_range),
    ("http_conditional", http_conditional),
    ("site_config", site_config),
    ("drive_header", drive_header),
    ("drive_node", drive_node),
    ("drive_entry", drive_entry),
    ("drive_tree", drive_tree),
    ("blob_pointer", blob_pointer),
    ("config_toml", config_toml),
    ("engine_manifest", engine_manifest),
    ("engine_records", engine_records),
    ("engine_proof_apply", engine_proof_apply),
    ("engine_proof_create", engine_proof_create),
];

/// The laptop whose log the targets fold.
const ME: Key = Key([0x11; 32]);
/// "Now" for the views the targets render.
const NOW_MS: u64 = 1_700_000_000_000;

/// A command-log entry (laptop → mirror): decoded as the mirror does, re-encoded, and (one
/// entry per line) folded into the mirror set and the laptop's status view.
pub fn command_entry(data: &[u8]) {
    if let Ok(cmd) = Command::decode(data) {
        if let Command::Mirror { alias: Some(a), .. } = &cmd {
            assert!(validate_alias(a).is_ok(), "decoded a bad alias {a:?}");
        }
        let encoded = cmd.encode();
        assert!(encoded.len() <= MAX_COMMAND_BYTES);
        assert_eq!(Command::decode(&encoded).as_ref(), Ok(&cmd));
    }
    let entries: Vec<_> = data.split(|&b| b == b'\n').map(Command::decode).collect();
    let mut set = MirrorSet::new();
    for cmd in entries.iter().flatten() {
        set.apply(ME, cmd);
    }
    // With one log, a site is wanted exactly when its latest command is Mirror.
    for cmd in entries.iter().flatten() {
        let latest = entries.iter().flatten().rfind(|c| c.key() == cmd.key());
        let wanted = matches!(latest, Some(Command::Mirror { .. }));
        assert_eq!(set.contains(&cmd.key()), wanted, "{:?}", cmd.key());
    }
    let v = view::fold(ME, &entries, &[], NOW_MS);
    let _ = view::render_status_table(&v, NOW_MS);
}

/// A status-log entry (mirror → laptop): decoded as the laptop does, re-encoded, and (one
/// entry per line) folded into the status view and rendered as `STATUS`, the per-site
/// files and their extended attributes.
pub fn status_entry(data: &[u8]) {
    if let Ok(entry) = StatusEntry::decode(data) {
        let again = StatusEntry::decode(&entry.encode()).expect("an encoded entry decodes");
        assert_eq!(again.encode(), entry.encode(), "encoding is not stable");
        let long_reason = matches!(&entry.event,
            StatusEvent::Error { reason, .. } | StatusEvent::Rejected { reason, .. }
                if reason.len() > MAX_REASON_BYTES);
        if !long_reason {
            assert_eq!(again, entry);
        }
    }
    let status: Vec<StatusEntry> = data
        .split(|&b| b == b'\n')
        .filter_map(|l| StatusEntry::decode(l).ok())
        .collect();
    // The laptop asked for every site the log talks about (first 64), in order.
    let mut commands = Vec::new();
    for key in status.iter().filter_map(|e| e.event.site()) {
        if commands.len() < 64 && !commands.iter().any(|c: &Command| c.key() == key) {
            commands.push(Command::Mirror { key, alias: None });
        }
    }
    let commands: Vec<_> = commands.into_iter().map(Ok).collect();
    let mirror = MirrorInput {
        mirror: Key([0x22; 32]),
        last_seen_ms: status.first().map(|e| e.at),
        status,
        online: data.len() % 2 == 0,
    };
    let v = view::fold(ME, &commands, &[mirror], NOW_MS);
    assert_eq!(v.sites.len(), commands.len());
    let _ = view::render_status_table(&v, NOW_MS);
    for site in &v.sites {
        let _ = view::render_site(site, NOW_MS);
        let _ = view::xattrs(site);
    }
}

/// A key as typed or pasted: bare hex / z-base32, `hyper://` and `dat://` links.
pub fn key_string(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = Key::parse(s) {
        assert_eq!(Key::parse(&k.to_hex()), Ok(k));
        assert_eq!(Key::parse(&k.to_z32()), Ok(k));
        assert_eq!(Key::parse_link(s), Ok(k), "a bare key is also a link");
    }
    if let Ok(k) = Key::parse_link(s) {
        assert_eq!(Key::parse_link(&k.to_link()), Ok(k));
        assert_eq!(s.parse::<Key>(), Ok(k));
        let _ = (k.short(), k.discovery_key());
    }
    let json = serde_json::to_string(s).expect("a string serialises");
    let from_json = serde_json::from_str::<Key>(&json).ok();
    assert_eq!(from_json, Key::parse(s).ok());
}

/// The content of a link file written into the control folder (`echo hyper://… > blog`,
/// a `.url` file, anything), read the way the control folder reads it.
pub fn link_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(k) = Key::find_in_text(&text) {
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains(&k.to_hex()) || lower.contains(&k.to_z32()),
            "found {k:?}, which the text does not spell"
        );
    }
}

/// A directory-entry name created in the control folder.
pub fn control_name(data: &[u8]) {
    match classify(OsStr::from_bytes(data)) {
        Name::Key(k) => {
            let s = std::str::from_utf8(data).expect("keys are UTF-8");
            // `<key>` or `<key>.url`, the key spelled in 64 or 52 ASCII characters.
            let stem = match s.len() {
                56 | 68 => &s[..s.len() - 4],
                _ => s,
            };
            assert_eq!(Key::parse(stem), Ok(k));
        }
        Name::Alias(a) => {
            assert!(validate_alias(&a).is_ok(), "alias {a:?} is not valid");
            assert_ne!(a, STATUS_NAME);
        }
        Name::Invalid(why) => assert!(!why.is_empty()),
        Name::Scratch | Name::Reserved => {}
    }
}

/// Splits `data` into a `u64` (from up to 8 leading bytes) and the rest.
fn take_u64(data: &[u8]) -> (u64, &[u8]) {
    let n = data.len().min(8);
    let mut b = [0u8; 8];
    b[..n].copy_from_slice(&data[..n]);
    (u64::from_le_bytes(b), &data[n..])
}
