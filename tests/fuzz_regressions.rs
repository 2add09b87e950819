//! The fuzz regression corpus as ordinary tests: every file of `fuzz/regressions/<target>/`
//! (each crash the fuzzers found, minimised, and hand-written hostile seeds) is run through
//! `dat_mirror::fuzzing::<target>`, the function the libFuzzer target calls, under the same
//! per-allocation limit the fuzzers use. So CI catches a regression without libFuzzer.
//! `scripts/fuzz.sh` runs the fuzzers themselves (not in CI: too slow).

use std::path::{Path, PathBuf};

use dat_mirror::fuzzing::{self, LimitedAlloc, MALLOC_LIMIT_ENV, TARGETS};

/// One allocation above this (MiB) aborts the test binary: an unbounded allocation from a
/// length field is a failure even if the pages are never touched.
#[global_allocator]
static ALLOC: LimitedAlloc = LimitedAlloc::new(MALLOC_LIMIT_ENV, 128);

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions")
}

fn target(name: &str) -> fn(&[u8]) {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
        .1
}

/// Runs every input of `fuzz/regressions/<name>/` (at least one must exist), reporting
/// every failing file rather than the first.
fn replay(name: &str) {
    let dir = regressions().join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no inputs", dir.display());
    let run = target(name);
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs fail (reproduce with `cargo fuzz run {name} FILE` in fuzz/):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

macro_rules! regression_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_regression_test() {
            let tested = [$(stringify!($name)),*];
            for (name, _) in TARGETS {
                assert!(tested.contains(name), "add {name} to regression_tests!");
            }
        }
    };
}

regression_tests!(
    command_entry,
    status_entry,
    wire_frames,
    wire_message,
    wire_proof,
    hypercore_message,
    hypercore_manifest,
    protomux_frame,
    stream_framing,
    hypercore_session,
    key_string,
    link_file,
    control_name,
    http_path,
    http_host,
    http_query,
    http_range,
    http_conditional,
    site_config,
    drive_header,
    drive_node,
    drive_entry,
    drive_tree,
    blob_pointer,
    config_toml,
    engine_manifest,
    engine_records,
    engine_proof_apply,
    engine_proof_create,
);

/// Each target has a libFuzzer target of the same name, declared in fuzz/Cargo.toml, and
/// every regression folder names a target.
#[test]
fn fuzz_crate_matches_the_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        let src = std::fs::read_to_string(root.join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz target {name}: {e}"));
        assert!(
            src.contains(&format!("dat_mirror::fuzzing::{name}")),
            "{name}"
        );
        assert!(manifest.contains(&format!("name = \"{name}\"")), "{name}");
    }
    for dir in std::fs::read_dir(regressions()).unwrap() {
        let name = dir.unwrap().file_name().into_string().unwrap();
        assert!(TARGETS.iter().any(|(n, _)| *n == name), "{name}");
    }
}

/// The structured seeds (a real drive, real wire frames) are what the product's own
/// encoders write today.
#[test]
fn structured_seeds_are_current() {
    for (path, data) in structured_seeds() {
        let file = regressions().join(&path);
        let stored = std::fs::read(&file).unwrap_or_default();
        assert!(
            stored == data,
            "{} is stale: run `cargo test --test fuzz_regressions -- --ignored write_structured_seeds`",
            file.display()
        );
    }
}

/// Writes the structured seeds into fuzz/regressions (run by hand when an encoder changes).
#[test]
#[ignore]
fn write_structured_seeds() {
    for (path, data) in structured_seeds() {
        let file = regressions().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, data).unwrap();
    }
}

fn structured_seeds() -> Vec<(String, Vec<u8>)> {
    use dat_mirror::net::wire::{BlockRequest, Message, UpgradeRequest, WireProof};
    let frame = |m: &Message| {
        let body = m.encode();
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&body);
        f
    };
    // A compact-encoded block proof: index 5, a 3-byte value, one node.
    let mut block = vec![5, 3, b'a', b'b', b'c', 1, 9, 64];
    block.extend_from_slice(&[7; 32]);
    // An upgrade: start 0, length 6, one node, no additional nodes, a 64-byte signature.
    let mut upgrade = vec![0, 6, 1, 10, 200];
    upgrade.extend_from_slice(&[8; 32]);
    upgrade.extend_from_slice(&[0, 64]);
    upgrade.extend_from_slice(&[1; 64]);
    let messages = [
        Message::Open {
            discovery_key: [3; 32],
            capability: [4; 32],
        },
        Message::Opened {
            length: u64::MAX,
            fork: 0,
        },
        Message::NotFound,
        Message::Request {
            id: 1,
            block: Some(BlockRequest { index: 5, nodes: 2 }),
            upgrade: Some(UpgradeRequest {
                start: 0,
                length: 6,
            }),
        },
        Message::Data {
            id: 1,
            proof: WireProof {
                fork: 0,
                block: Some(block.clone()),
                upgrade: Some(upgrade.clone()),
            },
        },
        Message::NoData { id: 2 },
        Message::Length { length: 7, fork: 1 },
    ];
    let mut out = Vec::new();
    let mut stream = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        out.push((format!("wire_message/seed-{i}"), m.encode()));
        stream.extend(frame(m));
    }
    out.push(("wire_frames/seed-every-message".into(), stream));
    out.push((
        "wire_proof/seed-block".into(),
        [&[0u8][..], &block].concat(),
    ));
    out.push((
        "wire_proof/seed-upgrade".into(),
        [&[1u8][..], &upgrade].concat(),
    ));
    out.push(("drive_tree/seed-tree".into(), fuzzing::drive_tree_seed()));
    out
}
