//! Checkouts: plain-file copies of large site files, which the kernel then reads itself
//! (FUSE passthrough, Linux ≥ 6.9) instead of asking the mirror for every page.
//!
//! Why: a file served through FUSE lives in the FUSE inode's page cache, and this kernel
//! caches FUSE files in 4 KiB folios, where ext4 uses folios up to 2 MiB: a warm `cat`
//! through the tree ran at a quarter of a plain file's speed, and every cold read crossed
//! into the mirror and back. Passthrough needs a file holding exactly the site file's bytes
//! from offset 0; the blobs core's data file holds many files at other offsets, so the tree
//! keeps a copy, the way `rclone mount --vfs-cache-mode full` keeps its disk cache.
//!
//! Rules:
//! - Only files of at least [`MIN_SIZE`] whose every block is held and whose placement was
//!   checked ([`FileContent::straight`]); the copy is made from those verified bytes (the
//!   same bytes a straight read returns), on a background thread, once the first open
//!   closes (not competing with its reads): it reads through the mirror as before, later
//!   opens pass through.
//! - `DIR/<site key>/<blobs key>-<fork>-<byte offset>-<byte length>`: a copy names exactly
//!   the bytes it holds (a blobs core is append-only within a fork), so it never goes
//!   stale. Written as [`write_atomic_with`] writes: a crash leaves no partial copy under a
//!   final name, and its temporary files are removed at mount.
//! - A budget in bytes (`[serve] mount_cache`): after each new copy the least recently
//!   opened ones are removed until the rest fits; a copy is not made when it alone is over
//!   the budget or would leave the disk less than [`KEEP_FREE_PERCENT`] free. A site's copies
//!   are removed when it leaves the mirror set while mounted (the watcher), else by the
//!   budget: not at mount, when sites are still starting.
//! - Registering a copy with the kernel needs `CAP_SYS_ADMIN`; where it is refused the tree
//!   says so once and reads through the mirror (no copies are made from then on).

use std::collections::HashSet;
use std::fs::{DirEntry, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::model::keys::Key;
use crate::site::FileContent;
use crate::util::atomic::{is_temporary, write_atomic_with};

/// Smaller files are not copied: a 4 KiB-folio read of them is already quick, and each
/// passthrough open costs a registration.
pub const MIN_SIZE: u64 = 1 << 20;
/// A copy is not made if it would leave less than this share of the disk free.
pub const KEEP_FREE_PERCENT: u64 = 10;
/// Copies made at once (each reads and writes at disk speed).
const AT_ONCE: usize = 1;
/// Bytes read and written per step of a copy.
const CHUNK: u64 = 4 << 20;

/// The copies of one mounted tree.
pub struct Checkouts {
    dir: PathBuf,
    budget: u64,
    /// Copies being made (their final paths).
    making: Mutex<HashSet<PathBuf>>,
    /// False once the kernel refused a registration (no `CAP_SYS_ADMIN`, an old kernel).
    enabled: AtomicBool,
}

impl Checkouts {
    /// Copies in `dir` (created if missing; temporary files left by a crash removed), at most
    /// `budget` bytes of them (the least recently used beyond it removed now).
    pub fn new(dir: &Path, budget: u64) -> std::io::Result<Checkouts> {
        std::fs::create_dir_all(dir)?;
        for f in files_in(dir) {
            if is_temporary(&f.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(f.path());
            }
        }
        let copies = Checkouts {
            dir: dir.to_path_buf(),
            budget,
            making: Mutex::new(HashSet::new()),
            enabled: AtomicBool::new(budget > 0),
        };
        copies.keep_to_budget(None); // the budget may have been lowered since
        Ok(copies)
    }

    /// Removes every copy in `dir` (copies turned off: `--mount-cache 0`).
    pub fn remove_all(dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether opens may pass through (the kernel accepted, or was not asked yet).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The kernel refused to register a copy: read through the mirror from now on.
    pub fn disable(&self, why: &std::io::Error) {
        if self.enabled.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "site tree: the kernel refused passthrough ({why}); large files are read \
                 through the mirror (needs Linux 6.9+ and CAP_SYS_ADMIN, e.g. run as root)"
            );
        }
    }

    /// Removes the copies of `site` (it left the mirror set).
    pub fn remove_site(&self, site: &Key) {
        if let Err(e) = Self::remove_all(&self.dir.join(site.to_string())) {
            tracing::debug!("site tree: removing the copies of {site}: {e}");
        }
    }

    /// Where the copy of `content` of `site` goes.
    fn path(&self, site: &Key, content: &FileContent) -> PathBuf {
        let blob = content.blob();
        let core = content.core();
        let fork = core.engine().info(&core.key().0).map_or(0, |i| i.fork);
        self.dir.join(site.to_string()).join(format!(
            "{}-{fork}-{}-{}",
            core.key(),
            blob.byte_offset,
            blob.byte_length
        ))
    }

    /// May `content` be copied at all?
    pub fn wanted(&self, content: &FileContent) -> bool {
        self.enabled()
            && content.straight()
            && content.len() >= MIN_SIZE
            && content.len() <= self.budget
    }

    /// The finished copy of `content`, opened (and marked as just used), if there is one.
    pub fn ready(&self, site: &Key, content: &FileContent) -> Option<File> {
        let path = self.path(site, content);
        let file = File::open(&path).ok()?;
        let size = file.metadata().ok()?.len();
        if size != content.len() {
            tracing::warn!(
                "site tree: {} has {size} bytes, not {}; making it again",
                path.display(),
                content.len()
            );
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // the budget removes the least recently used copies first
        let _ = file.set_modified(SystemTime::now());
        // No readahead hint here: the kernel opens a backing file of its own for each
        // passthrough open (fs/fuse/passthrough.c), so this descriptor's would not reach the
        // reads; and on this disk the hint did not change a cold read's speed anyway.
        Some(file)
    }

    /// Starts making the copy of `content` in the background, unless it is being made or
    /// enough are already.
    pub fn request(self: &Arc<Self>, site: &Key, content: FileContent) {
        let path = self.path(site, &content);
        {
            let mut making = self.making.lock().unwrap_or_else(|e| e.into_inner());
            if making.len() >= AT_ONCE || !making.insert(path.clone()) {
                return;
            }
        }
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("site-tree-copy".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                match this.make(&content, &path) {
                    Ok(true) => tracing::debug!(
                        "site tree: copied {} bytes to {} in {:?}",
                        content.len(),
                        path.display(),
                        started.elapsed()
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(
                        "site tree: could not copy a file for passthrough reads ({e}); it is \
                         read through the mirror"
                    ),
                }
                this.making
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&path);
            });
        if let Err(e) = spawned {
            tracing::warn!("site tree: cannot start a copy: {e}");
            self.making
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
    }

    /// Makes the copy (false: skipped for space). Every byte comes from
    /// [`FileContent::read_held`], the verified data file.
    fn make(&self, content: &FileContent, path: &Path) -> std::io::Result<bool> {
        let Some(site_dir) = path.parent() else {
            return Ok(false);
        };
        std::fs::create_dir_all(site_dir)?;
        if !self.room_for(content.len()) {
            tracing::debug!(
                "site tree: no copy of a {}-byte file: the disk would be less than {}% free",
                content.len(),
                KEEP_FREE_PERCENT
            );
            return Ok(false);
        }
        write_atomic_with(path, |out| {
            let mut at = 0;
            while at < content.len() {
                let end = at.saturating_add(CHUNK).min(content.len());
                out.write_all(&content.read_held(at..end)?)?;
                at = end;
            }
            Ok(())
        })?;
        self.keep_to_budget(Some(path));
        Ok(true)
    }

    /// Whether `bytes` more would leave the disk at least [`KEEP_FREE_PERCENT`] free.
    fn room_for(&self, bytes: u64) -> bool {
        crate::store::disk_bytes(&self.dir).is_some_and(|(free, total)| {
            free.saturating_sub(bytes) >= total / 100 * KEEP_FREE_PERCENT
        })
    }

    /// Removes the least recently used copies (never `keep`) until the rest fit the budget.
    fn keep_to_budget(&self, keep: Option<&Path>) {
        let mut copies: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for f in files_in(&self.dir) {
            if let Ok(m) = f.metadata() {
                let used = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                copies.push((used, m.len(), f.path()));
            }
        }
        let mut total: u64 = copies.iter().map(|c| c.1).sum();
        copies.sort();
        for (_, len, path) in copies {
            if total <= self.budget {
                break;
            }
            if Some(path.as_path()) != keep && std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(len);
            }
        }
    }
}

/// The files in `dir`'s site folders (`DIR/<site>/<file>`), unreadable ones left out.
fn files_in(dir: &Path) -> Vec<DirEntry> {
    let sites = std::fs::read_dir(dir).into_iter().flatten().flatten();
    sites
        .flat_map(|site| {
            std::fs::read_dir(site.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn copy(dir: &Path, name: &str, len: usize, age_s: u64) -> PathBuf {
        let site = dir.join("site");
        std::fs::create_dir_all(&site).unwrap();
        let path = site.join(name);
        std::fs::write(&path, vec![7u8; len]).unwrap();
        let when = SystemTime::now() - Duration::from_secs(age_s);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
        path
    }

    #[test]
    fn opening_drops_temporary_files_and_what_a_lowered_budget_no_longer_fits() {
        let tmp = tempfile::tempdir().unwrap();
        let old = copy(tmp.path(), "old", 100, 300);
        let newer = copy(tmp.path(), "newer", 100, 10);
        let temp = copy(tmp.path(), ".0-0-0-1048576.Ab3xYz.tmp", 50, 1);
        Checkouts::new(tmp.path(), 1000).unwrap();
        assert!(old.exists() && newer.exists(), "within the budget: kept");
        assert!(!temp.exists(), "a crash's temporary file is removed");
        Checkouts::new(tmp.path(), 150).unwrap();
        assert!(!old.exists(), "the least recently used goes first");
        assert!(newer.exists());
    }

    #[test]
    fn turning_copies_off_removes_them_all() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("copies");
        copy(&dir, "a", 10, 1);
        Checkouts::remove_all(&dir).unwrap();
        assert!(!dir.exists());
        Checkouts::remove_all(&dir).expect("nothing to remove is fine");
    }
}
