//! Durable file replacement, written once for every small file dat-mirror keeps (state
//! files, the identity, the space reserve): write a temporary file next to the target, fsync
//! it, rename it over the target, fsync the directory. After a crash or power loss the
//! target holds either the old or the new content, never a torn or empty file.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes`, durably. The file is created with mode 0600 (the temporary
/// file's mode, kept by the rename): everything dat-mirror writes this way is private.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] for content written in steps by `fill` (a large file, never whole in
/// memory). On an error the temporary file is removed; one left by a crash is named
/// `.<name>.<random>.tmp` ([`is_temporary`]).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.",
            path.file_name().unwrap_or_default().to_string_lossy()
        ))
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

const TEMP_SUFFIX: &str = ".tmp";

/// Whether a file name is one of [`write_atomic`]'s temporary files (left by a crash).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// fsyncs a directory, so a rename or a new name in it survives a power loss.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_files_privately_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two, longer");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }
}
