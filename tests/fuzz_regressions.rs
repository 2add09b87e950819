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

/// The structured seeds (a real drive) are what the product's own
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
    vec![("drive_tree/seed-tree".into(), fuzzing::drive_tree_seed())]
}

/// Not libFuzzer (for machines without cargo-fuzz): a bounded random-mutation run of the
/// engine targets over their committed seeds (byte flips, inserts, deletes, extreme values,
/// splices), printing execs/s; inputs that panic are saved in `target/fuzz-smoke/<target>/`.
/// `FUZZ_SMOKE_SECS=60 cargo test --test fuzz_regressions engine_smoke -- --ignored --nocapture`
#[test]
#[ignore]
fn engine_smoke_fuzz() {
    let secs: u64 = std::env::var("FUZZ_SMOKE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let only = std::env::var("FUZZ_SMOKE_TARGETS").unwrap_or_default();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rng = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-smoke");
    let mut crashed = 0;
    for name in [
        "engine_manifest",
        "engine_records",
        "engine_proof_apply",
        "engine_proof_create",
    ] {
        if !only.is_empty() && !only.split(' ').any(|t| t == name) {
            continue;
        }
        let run = target(name);
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(regressions().join(name))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        let start = std::time::Instant::now();
        let (mut execs, mut crashes) = (0u64, 0u64);
        while start.elapsed().as_secs() < secs {
            let mut input = seeds[(rng() as usize) % seeds.len()].clone();
            for _ in 0..1 + rng() % 8 {
                let at = if input.is_empty() {
                    0
                } else {
                    (rng() as usize) % input.len()
                };
                let b = rng() as u8;
                match rng() % 7 {
                    0 if !input.is_empty() => input[at] ^= 1 << (b % 8),
                    1 => input.insert(at, b),
                    2 if !input.is_empty() => {
                        input.remove(at);
                    }
                    3 if !input.is_empty() => input[at] = [0, 0xff, 0xf0, 0xfd, 1][b as usize % 5],
                    4 => input.extend((0..b % 16).map(|_| rng() as u8)),
                    5 => {
                        let other = &seeds[(rng() as usize) % seeds.len()];
                        let from = (rng() as usize) % (other.len() + 1);
                        input.truncate(at);
                        input.extend_from_slice(&other[from..]);
                    }
                    _ if !input.is_empty() => input[at] = b,
                    _ => input.push(b),
                }
            }
            execs += 1;
            if std::panic::catch_unwind(|| run(&input)).is_err() {
                crashes += 1;
                let dir = out.join(name);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("crash-{crashes}")), &input).unwrap();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{name}: {execs} execs in {secs:.0} s ({:.0}/s), {crashes} panics",
            execs as f64 / secs
        );
        crashed += crashes;
    }
    assert_eq!(crashed, 0, "inputs that panic are in {}", out.display());
}
