//! The site tree's copies for passthrough reads (`serve --mount`, `[serve] mount_cache`),
//! on a real mount: a large file's first open reads through the mirror and starts a copy of
//! its verified bytes; later opens hand the copy to the kernel, which reads it without the
//! mirror (FUSE passthrough). Opens through the mirror and passed-through opens of one inode
//! never collide, the budget removes the least recently used copy, and a site that leaves
//! the mirror takes its copies with it.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use dat_mirror::fs::site_tree::{Checkouts, CHECKOUT_MIN_SIZE};
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;

const FILE: usize = 5 * 1024 * 1024 + 777;

/// Every finished copy under `dir`: (path, size).
fn copies(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for site in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(site.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().to_string();
            if !name.starts_with('.') {
                out.push((f.path(), f.metadata().map_or(0, |m| m.len())));
            }
        }
    }
    out.sort();
    out
}

/// The copy of a `len`-byte file, once it is finished.
async fn wait_copy(dir: &Path, len: u64) -> PathBuf {
    let dir = dir.to_path_buf();
    wait_until("the copy to be made", || {
        let dir = dir.clone();
        async move { copies(&dir).into_iter().find(|c| c.1 == len).map(|c| c.0) }
    })
    .await
}

/// Whether this machine can pass FUSE files through (root, Linux 6.9+); skips loudly
/// without, and fails in CI (`CI=true`).
fn passthrough_or_skip(test: &str) -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if root && version >= (6, 9) {
        return true;
    }
    let why = format!(
        "needs root and Linux 6.9+ (root: {root}, kernel {})",
        release.trim()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: FUSE passthrough is required in CI (CI=true): {why}");
    }
    eprintln!("SKIPPED {test}: FUSE passthrough {why} (with CI=true this fails)");
    false
}

/// A mirror and laptop with the tree mounted at `tree`, copies in `copies` (`budget`).
struct Setup {
    pair: Pair,
    tree: PathBuf,
    copy_dir: PathBuf,
    session: fuser::BackgroundSession,
}

impl Setup {
    async fn start(test: &str, budget: u64) -> Option<Setup> {
        if !dat_mirror::fs::require_fuse_or_skip(test) || !passthrough_or_skip(test) {
            return None;
        }
        let pair = Pair::start().await;
        let tree = pair.tmp.path().join("tree");
        let copy_dir = pair.tmp.path().join("copies");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::create_dir_all(&pair.site_dir).unwrap();
        let copies = Checkouts::new(&copy_dir, budget).unwrap();
        let (inner, at) = (pair.mirror.inner.clone(), tree.clone());
        let session = blocking(move || dat_mirror::fs::site_tree::mount(inner, &at, Some(copies)))
            .await
            .expect("mount the site tree");
        Some(Setup {
            pair,
            tree,
            copy_dir,
            session,
        })
    }

    /// Waits until the mirror holds every block of `site` up to `version`, and at least
    /// `bytes` of its blobs (a blobs core not heard of yet is complete at length 0).
    async fn wait_held(&self, key: Key, version: u64, bytes: u64) {
        let inner = self.pair.mirror.inner.clone();
        wait_until("the mirror to hold the whole site", || {
            let done = inner.site(&key).is_some_and(|(db, blobs)| {
                let d = db.info();
                d.length >= version
                    && d.contiguous_length == d.length
                    && blobs.is_some_and(|b| b.info().byte_length >= bytes && b.info().complete())
            });
            async move { done.then_some(()) }
        })
        .await;
    }

    async fn stop(self) {
        let Setup {
            pair,
            tree,
            session,
            ..
        } = self;
        blocking(move || dat_mirror::fs::fuse::unmount(session, &tree))
            .await
            .unwrap();
        pair.laptop.shutdown().await;
        pair.mirror.shutdown().await;
    }
}

/// Waits until `path` exists in the tree.
async fn wait_shown(path: &Path) {
    let p = path.to_path_buf();
    wait_until("the tree to show the file", || {
        let p = p.clone();
        async move { blocking(move || std::fs::metadata(&p).ok().filter(|m| m.is_file())).await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_files_pass_through_a_verified_copy() {
    // Room for one of the two large files, not both.
    let budget = FILE as u64 * 3 / 2;
    let Some(s) = Setup::start("large_files_pass_through_a_verified_copy", budget).await else {
        return;
    };
    let (site_dir, copy_dir, laptop) =
        (s.pair.site_dir.clone(), s.copy_dir.clone(), &s.pair.laptop);
    let big = pseudo_random(FILE, 7);
    let other = pseudo_random(FILE, 8);
    let small = pseudo_random(CHECKOUT_MIN_SIZE as usize - 1, 9);
    std::fs::write(site_dir.join("big.bin"), &big).unwrap();
    std::fs::write(site_dir.join("other.bin"), &other).unwrap();
    std::fs::write(site_dir.join("small.bin"), &small).unwrap();
    let site = publish_and_mirror(laptop, &site_dir).await;
    s.wait_held(site.key, site.version, (2 * FILE + small.len()) as u64)
        .await;
    let root = s.tree.join(site.key.to_hex());
    wait_shown(&root.join("big.bin")).await;

    let (root2, big2, small2) = (root.clone(), big.clone(), small.clone());
    // First opens: through the mirror; the copy is made once the first of them closes.
    let second = blocking(move || {
        let first = std::fs::File::open(root2.join("big.bin")).unwrap();
        let second = std::fs::File::open(root2.join("big.bin")).unwrap();
        let mut got = vec![0; FILE];
        first.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(got, big2, "first read");
        assert_eq!(std::fs::read(root2.join("small.bin")).unwrap(), small2);
        second
    })
    .await;
    let copy = wait_copy(&copy_dir, FILE as u64).await;
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        big,
        "the copy holds the file"
    );

    let (root2, big2, copy2) = (root.clone(), big.clone(), copy.clone());
    blocking(move || {
        // An open while another through the mirror is open: through the mirror too (the
        // kernel refuses passthrough then, which would be EIO).
        let third = std::fs::File::open(root2.join("big.bin")).expect("third open");
        let mut got = vec![0; FILE];
        third.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(got, big2, "read beside an open through the mirror");
        second.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(got, big2, "the second open's read");
        drop((second, third));

        // Now an open passes through: bytes written into the copy show through the tree,
        // which only the kernel reading the copy itself can do.
        let pass = std::fs::File::open(root2.join("big.bin")).expect("passthrough open");
        let marked = std::fs::OpenOptions::new()
            .write(true)
            .open(&copy2)
            .unwrap();
        marked.write_all_at(b"COPY", 1000).unwrap();
        let mut four = [0u8; 4];
        pass.read_exact_at(&mut four, 1000).unwrap();
        assert_eq!(&four, b"COPY", "the open passed through to the copy");
        marked.write_all_at(&big2[1000..1004], 1000).unwrap();
        // A further open while it is open shares the copy (the kernel needs the same one).
        let again = std::fs::File::open(root2.join("big.bin")).expect("open beside it");
        let mut got = vec![0; FILE];
        again.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(got, big2, "read beside a passthrough open");
    })
    .await;
    // Files under 1 MiB are never copied.
    assert!(
        copies(&copy_dir).iter().all(|c| c.1 != small.len() as u64),
        "{:?}",
        copies(&copy_dir)
    );

    // The second large file's copy pushes the first out of the budget.
    let root2 = root.clone();
    let got = blocking(move || std::fs::read(root2.join("other.bin")).unwrap()).await;
    assert_eq!(got, other);
    let dir = copy_dir.clone();
    wait_until("the budget to keep only the newest copy", || {
        let (dir, copy) = (dir.clone(), copy.clone());
        async move {
            let now = copies(&dir);
            (now.len() == 1 && now[0].0 != copy).then_some(())
        }
    })
    .await;
    let root2 = root.clone();
    let got = blocking(move || std::fs::read(root2.join("big.bin")).unwrap()).await;
    assert_eq!(got, big, "read again after its copy was removed");

    // A site that leaves the mirror takes its copies along.
    laptop
        .inner
        .append(Command::Unmirror { key: site.key })
        .await
        .unwrap();
    let site_copies = copy_dir.join(site.key.to_hex());
    wait_until("the site's copies to be removed", || {
        let gone = !site_copies.exists();
        async move { gone.then_some(()) }
    })
    .await;

    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_file_is_never_read_stale_through_an_open_copy() {
    let Some(s) = Setup::start(
        "a_changed_file_is_never_read_stale_through_an_open_copy",
        dat_mirror::fs::site_tree::DEFAULT_MOUNT_CACHE,
    )
    .await
    else {
        return;
    };
    let site_dir = s.pair.site_dir.clone();
    let (old, new) = (pseudo_random(FILE, 1), pseudo_random(FILE, 2));
    std::fs::write(site_dir.join("big.bin"), &old).unwrap();
    let site = publish_and_mirror(&s.pair.laptop, &site_dir).await;
    s.wait_held(site.key, site.version, FILE as u64).await;
    let root = s.tree.join(site.key.to_hex());
    wait_shown(&root.join("big.bin")).await;
    let (path, old2) = (root.join("big.bin"), old.clone());
    blocking(move || assert_eq!(std::fs::read(path).unwrap(), old2, "first read")).await;
    wait_copy(&s.copy_dir, FILE as u64).await;
    // An open passed through to the old version's copy, held across the change.
    let path = root.join("big.bin");
    let held = blocking(move || std::fs::File::open(path).unwrap()).await;

    // A new version: the same size, other bytes (and a file to see it arrive by).
    std::fs::write(site_dir.join("big.bin"), &new).unwrap();
    std::fs::write(site_dir.join("v2.txt"), b"2").unwrap();
    let v2 = publish(&s.pair.laptop, &site_dir, Some(site.key)).await;
    s.wait_held(site.key, v2.version, 2 * FILE as u64 + 1).await;
    wait_shown(&root.join("v2.txt")).await;

    let (path, old2, new2) = (root.join("big.bin"), old.clone(), new.clone());
    blocking(move || {
        // The kernel would read the old copy for any open while that one is open: refused.
        let e = std::fs::File::open(&path).expect_err("an open beside the old version's");
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{e}");
        // The open handle keeps the bytes it was opened on.
        let mut got = vec![0; FILE];
        held.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(got, old2, "the held handle");
        drop(held);
        // Closed: the new version, through the mirror, then through its own copy.
        assert_eq!(std::fs::read(&path).unwrap(), new2, "after the close");
    })
    .await;
    let dir = s.copy_dir.clone();
    wait_until("the new version's copy", || {
        let dir = dir.clone();
        async move { (copies(&dir).len() == 2).then_some(()) }
    })
    .await;
    let path = root.join("big.bin");
    let got = blocking(move || std::fs::read(path).unwrap()).await;
    assert_eq!(got, new, "through the new copy");
    s.stop().await;
}
