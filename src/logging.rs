//! Where the daemons' logs go and in what shape. By default: human-readable lines on stderr
//! (under systemd, the journal keeps and rotates them). With `--log-file PATH` they go to a
//! file that is rotated by size: at [`MAX_FILE_BYTES`] it becomes `PATH.1` (older ones shift
//! to `.2`, ...), [`KEEP_FILES`] rotated files are kept, so the logs of a mirror that runs
//! for months never take more than about 60 MiB. `--log-format json` writes one JSON object
//! per event (for log collectors). `RUST_LOG` picks the level (default: info for dat-mirror,
//! warn for its libraries).

use std::path::Path;

use anyhow::Context;
use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::EnvFilter;

/// Size at which the log file is rotated.
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;
/// Rotated files kept besides the current one.
pub const KEEP_FILES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps the background log writer flushing; drop it last (at exit).
pub struct LogGuard {
    _worker: Option<tracing_appender::non_blocking::WorkerGuard>,
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| "dat_mirror=info,warn".into())
}

/// Installs the global subscriber.
pub fn init(file: Option<&Path>, format: LogFormat) -> anyhow::Result<LogGuard> {
    // A log line that cannot be written (the log's disk is full) is dropped. By default
    // tracing-subscriber reports it with `eprintln!`, which panics when stderr is that same
    // full file: the laptop daemon died so, taking its control folder with it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .log_internal_errors(false);
    let Some(path) = file else {
        match format {
            LogFormat::Text => builder.with_writer(std::io::stderr).init(),
            LogFormat::Json => builder.json().with_writer(std::io::stderr).init(),
        }
        return Ok(LogGuard { _worker: None });
    };
    let rotating = open_rotating(path)?;
    let (writer, guard) = tracing_appender::non_blocking(rotating);
    let builder = builder.with_ansi(false).with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(LogGuard {
        _worker: Some(guard),
    })
}

/// The size-rotated log file at `path` (its folder is created; checked writable first,
/// because the rotating writer cannot report that).
pub fn open_rotating(path: &Path) -> anyhow::Result<FileRotate<AppendCount>> {
    rotating_file(path, MAX_FILE_BYTES, KEEP_FILES)
}

fn rotating_file(
    path: &Path,
    max_bytes: usize,
    keep: usize,
) -> anyhow::Result<FileRotate<AppendCount>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the log folder {}; choose another --log-file",
                dir.display()
            )
        })?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| {
            format!(
                "cannot write the log file {}; choose another --log-file or fix its permissions",
                path.display()
            )
        })?;
    Ok(FileRotate::new(
        path,
        AppendCount::new(keep),
        ContentLimit::BytesSurpassed(max_bytes),
        Compression::None,
        None,
    ))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_log_stays_bounded_however_much_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/dat-mirror.log");
        let (max, keep) = (64 * 1024, 3);
        let mut log = rotating_file(&path, max, keep).unwrap();
        let line = vec![b'x'; 1023]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        // Ten times the bound.
        let total = max * (keep + 1) * 10;
        for _ in 0..total / line.len() {
            log.write_all(&line).unwrap();
        }
        log.flush().unwrap();
        let files: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(files.len(), keep + 1, "current file + {keep} rotated");
        let used: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
        assert!(
            used <= ((keep + 1) * (max + line.len())) as u64,
            "{used} bytes"
        );
    }

    #[test]
    fn an_unwritable_log_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let Err(err) = open_rotating(&blocker.join("x.log")) else {
            panic!("a log file under a regular file was accepted");
        };
        assert!(
            format!("{err:#}").contains("choose another --log-file"),
            "{err:#}"
        );
    }
}
