//! The mirror's read-only FUSE tree (`serve --mount DIR`), with every layer real: a laptop
//! publishes, the mirror replicates over iroh on loopback, and the tree is a real mount read
//! with std::fs and the usual tools (find, cp -r, diff -r, stat, du).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as Cmd;

use common::*;
use dat_mirror::laptop::Laptop;
use dat_mirror::mirror::Mirror;
use dat_mirror::model::command::Command;
use dat_mirror::model::keys::Key;

/// A mounted site tree; unmounted on drop.
struct Tree {
    path: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl Drop for Tree {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if let Err(e) = dat_mirror::fs::fuse::unmount(s, &self.path) {
                eprintln!("unmounting {}: {e}", self.path.display());
            }
        }
    }
}

/// A mirror with the tree mounted, and a laptop that may use it.
struct Setup {
    tmp: tempfile::TempDir,
    mirror: Mirror,
    laptop: Laptop,
    tree: Tree,
}

impl Setup {
    /// `None` (skipping loudly) without FUSE outside CI; fails in CI.
    async fn start(test: &str) -> Option<Setup> {
        if !dat_mirror::fs::require_fuse_or_skip(test) {
            return None;
        }
        let Pair {
            tmp,
            mirror,
            laptop,
            ..
        } = Pair::start().await;
        let path = tmp.path().join("tree");
        std::fs::create_dir_all(&path).unwrap();
        let (inner, p) = (mirror.inner.clone(), path.clone());
        // copies for passthrough on, as `serve --mount` has them: BIG files pass through
        let copies = dat_mirror::fs::site_tree::Checkouts::new(
            &tmp.path().join("copies"),
            dat_mirror::fs::site_tree::DEFAULT_MOUNT_CACHE,
        )
        .unwrap();
        let session = blocking(move || dat_mirror::fs::site_tree::mount(inner, &p, Some(copies)))
            .await
            .expect("mount the site tree");
        Some(Setup {
            tmp,
            mirror,
            laptop,
            tree: Tree {
                path,
                session: Some(session),
            },
        })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    async fn mirror_site(&self, key: Key, alias: Option<&str>) {
        self.laptop
            .inner
            .append(Command::Mirror {
                key,
                alias: alias.map(str::to_string),
            })
            .await
            .unwrap();
    }

    async fn stop(self) {
        let Setup {
            tmp,
            mirror,
            laptop,
            tree,
        } = self;
        blocking(move || drop(tree)).await;
        laptop.shutdown().await;
        mirror.shutdown().await;
        drop(tmp);
    }
}

const BIG: usize = 3 * 1024 * 1024 + 12345;

/// The sample site plus a same-size-changing file, an executable, an odd name and a
/// relative symlink.
fn write_site(dir: &Path) {
    make_site(dir, BIG);
    std::fs::write(dir.join("same.txt"), b"AAAA").unwrap();
    let run = dir.join("bin/run.sh");
    std::fs::create_dir_all(run.parent().unwrap()).unwrap();
    std::fs::write(&run, b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("weird name ü & (1).txt"), b"odd").unwrap();
    std::os::unix::fs::symlink("../index.html", dir.join("about/home.html")).unwrap();
}

/// Ok if `tree` shows exactly what `src` holds: same names, same bytes, same link targets.
fn same_tree(src: &Path, tree: &Path) -> Result<(), String> {
    let names = |d: &Path| -> Result<BTreeSet<String>, String> {
        std::fs::read_dir(d)
            .map_err(|e| format!("ls {}: {e}", d.display()))?
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(|e| e.to_string())
            })
            .collect()
    };
    let (want, got) = (names(src)?, names(tree)?);
    if want != got {
        return Err(format!("{}: {got:?} != {want:?}", tree.display()));
    }
    for name in want {
        let (s, t) = (src.join(&name), tree.join(&name));
        let meta = std::fs::symlink_metadata(&s).unwrap();
        if meta.file_type().is_symlink() {
            let (a, b) = (std::fs::read_link(&s).unwrap(), std::fs::read_link(&t));
            if b.as_ref().ok() != Some(&a) {
                return Err(format!("{}: link {b:?} != {a:?}", t.display()));
            }
        } else if meta.is_dir() {
            same_tree(&s, &t)?;
        } else {
            let want = std::fs::read(&s).unwrap();
            match std::fs::read(&t) {
                Ok(got) if got == want => {}
                Ok(got) => return Err(format!("{}: {} bytes differ", t.display(), got.len())),
                Err(e) => return Err(format!("{}: {e}", t.display())),
            }
        }
    }
    Ok(())
}

async fn wait_same(src: &Path, tree: &Path, what: &str) {
    let (src, tree) = (src.to_path_buf(), tree.to_path_buf());
    wait_until(what, || {
        let (s, t) = (src.clone(), tree.clone());
        async move { blocking(move || same_tree(&s, &t).ok()).await }
    })
    .await;
}

fn run(cmd: &mut Cmd) -> String {
    let out = cmd.output().expect("run a tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `find DIR -printf '%y %P\n'`, sorted: every entry with its type.
fn find(dir: &Path) -> Vec<String> {
    let mut lines: Vec<String> = run(Cmd::new("find").arg(dir).args(["-printf", "%y %P\\n"]))
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn erofs<T: std::fmt::Debug>(what: &str, r: std::io::Result<T>) {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
        other => panic!("{what}: expected EROFS, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_are_byte_identical_and_read_only() {
    let Some(s) = Setup::start("files_are_byte_identical_and_read_only").await else {
        return;
    };
    let src = s.dir("site");
    write_site(&src);
    let site = publish(&s.laptop, &src, None).await;
    let hex = site.key.to_hex();
    // Mounted before the site was mirrored: it appears without remounting.
    s.mirror_site(site.key, Some("blog")).await;
    let top = s.tree.path.clone();
    let root = top.join(&hex);
    wait_same(&src, &root, "the tree to show the whole site").await;

    let (src2, top2, tmp) = (src.clone(), top.clone(), s.dir("copy"));
    blocking(move || {
        let (src, top) = (src2, top2);
        let root = top.join(&hex);
        // The root: one directory per site, one link per alias.
        let names: BTreeSet<String> = std::fs::read_dir(&top)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, BTreeSet::from([hex.clone(), "blog".to_string()]));
        assert_eq!(
            std::fs::read_link(top.join("blog")).unwrap(),
            Path::new(&hex)
        );
        assert_eq!(
            std::fs::read(top.join("blog/index.html")).unwrap(),
            std::fs::read(src.join("index.html")).unwrap()
        );
        assert!(std::fs::metadata(top.join("blog")).unwrap().is_dir());

        // Sizes, kinds and modes as stat shows them; a big file twice (the second open
        // may use the kept page cache), an empty file.
        let big = std::fs::read(src.join("data/big.bin")).unwrap();
        assert_eq!(std::fs::read(root.join("data/big.bin")).unwrap(), big);
        assert_eq!(std::fs::read(root.join("data/big.bin")).unwrap(), big);
        assert_eq!(std::fs::read(root.join("empty.txt")).unwrap(), b"");
        let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
        assert_eq!(meta("data/big.bin").len(), BIG as u64);
        assert_eq!(meta("empty.txt").len(), 0);
        assert_eq!(meta("data/exactly-64k.bin").len(), 65536);
        assert_eq!(meta("index.html").permissions().mode() & 0o7777, 0o444);
        assert_eq!(meta("bin/run.sh").permissions().mode() & 0o7777, 0o555);
        assert_eq!(meta("about").permissions().mode() & 0o7777, 0o555);
        assert!(meta("about/home.html").file_type().is_symlink());
        assert_eq!(
            run(Cmd::new("stat")
                .args(["-c", "%s %F"])
                .arg(root.join("data/big.bin")))
            .trim(),
            format!("{BIG} regular file")
        );
        // Inode numbers are stable across lookups.
        let ino = |p: &str| std::os::unix::fs::MetadataExt::ino(&meta(p));
        assert_eq!(ino("index.html"), ino("index.html"));
        assert_ne!(ino("index.html"), ino("same.txt"));

        // find lists every entry with its type, as in the source folder.
        assert_eq!(find(&root), find(&src));
        // cp -r copies it whole; diff -r finds nothing different.
        run(Cmd::new("cp").arg("-r").arg(&root).arg(&tmp));
        run(Cmd::new("diff").arg("-r").arg(&src).arg(&tmp));
        // du sees at least every byte.
        let du = run(Cmd::new("du").arg("-sb").arg(&root));
        let du: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
        assert!(du >= BIG as u64 + 65536, "du says {du}");
        run(Cmd::new("ls").arg("-laR").arg(&top));

        // Every kind of write: EROFS.
        use std::fs::{self, OpenOptions};
        let f = root.join("index.html");
        erofs("create in a site", fs::File::create(root.join("new.txt")));
        erofs("create in the root", fs::File::create(top.join("new.txt")));
        erofs("open for writing", OpenOptions::new().write(true).open(&f));
        erofs("open for append", OpenOptions::new().append(true).open(&f));
        erofs(
            "open read-write",
            OpenOptions::new().read(true).write(true).open(&f),
        );
        erofs(
            "truncate",
            OpenOptions::new().write(true).truncate(true).open(&f),
        );
        erofs("unlink", fs::remove_file(&f));
        erofs("unlink an alias", fs::remove_file(top.join("blog")));
        erofs("rename", fs::rename(&f, root.join("moved.html")));
        erofs("rename a site", fs::rename(&root, top.join("x")));
        erofs("mkdir", fs::create_dir(root.join("d")));
        erofs("mkdir in the root", fs::create_dir(top.join("d")));
        erofs("rmdir", fs::remove_dir(root.join("css")));
        erofs("rmdir a site", fs::remove_dir(&root));
        erofs(
            "chmod",
            fs::set_permissions(&f, fs::Permissions::from_mode(0o644)),
        );
        erofs("symlink", std::os::unix::fs::symlink("x", root.join("l")));
        erofs("hard link", fs::hard_link(&f, root.join("h")));
        erofs(
            "utimes",
            fs::File::open(&f)
                .unwrap()
                .set_modified(std::time::SystemTime::now()),
        );
        let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
        // SAFETY: valid NUL-terminated strings and a 1-byte buffer.
        let rc =
            unsafe { libc::setxattr(c.as_ptr(), c"user.x".as_ptr(), b"1".as_ptr().cast(), 1, 0) };
        assert_eq!(rc, -1);
        erofs("setxattr", Err::<(), _>(std::io::Error::last_os_error()));
        // No extended attributes: none in `user.`, the other namespaces unsupported (so
        // `ls -l` stops asking every file for its SELinux label and ACL).
        for (name, errno) in [
            (c"user.x", libc::ENODATA),
            (c"security.selinux", libc::EOPNOTSUPP),
            (c"system.posix_acl_access", libc::EOPNOTSUPP),
        ] {
            // SAFETY: valid NUL-terminated strings, a null buffer of size 0.
            let rc = unsafe { libc::getxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
            let got = std::io::Error::last_os_error().raw_os_error();
            assert_eq!((rc, got), (-1, Some(errno)), "getxattr {name:?}");
        }
        // Nothing changed.
        assert_eq!(
            fs::read(&f).unwrap(),
            fs::read(src.join("index.html")).unwrap()
        );
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_versions_appear_without_remount_and_never_stale() {
    let Some(s) = Setup::start("new_versions_appear_without_remount_and_never_stale").await else {
        return;
    };
    let src = s.dir("site");
    write_site(&src);
    let site = publish(&s.laptop, &src, None).await;
    s.mirror_site(site.key, None).await;
    let root = s.tree.path.join(site.key.to_hex());
    wait_same(&src, &root, "version 1 in the tree").await;

    // Read everything (twice: the page cache now holds version 1), note inode numbers.
    let r = root.clone();
    let (ino_index, ino_big) = blocking(move || {
        for _ in 0..2 {
            std::fs::read(r.join("data/big.bin")).unwrap();
            assert_eq!(std::fs::read(r.join("same.txt")).unwrap(), b"AAAA");
        }
        let ino =
            |p: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(r.join(p)).unwrap());
        (ino("index.html"), ino("data/big.bin"))
    })
    .await;
    // A handle opened on version 1 and kept open.
    let mut old_handle = std::fs::File::open(root.join("same.txt")).unwrap();

    // Version 2: a changed file (new size), same-size changes (small and big), an added
    // file, a removed folder.
    std::fs::write(
        src.join("index.html"),
        b"<h1>version two, longer than before</h1>",
    )
    .unwrap();
    std::fs::write(src.join("same.txt"), b"BBBB").unwrap();
    let big2 = pseudo_random(BIG, 3);
    std::fs::write(src.join("data/big.bin"), &big2).unwrap();
    std::fs::write(src.join("new.txt"), b"added in v2").unwrap();
    std::fs::remove_dir_all(src.join("css")).unwrap();
    let v2 = publish(&s.laptop, &src, Some(site.key)).await;
    assert!(v2.version > site.version);
    wait_same(&src, &root, "version 2 in the tree").await;
    // A removed folder may stay in the kernel's cache for a moment (until the tree's
    // watcher invalidates it, or its 1 s TTL ends): bounded wait.
    let r = root.clone();
    wait_until("the removed folder to be gone", || {
        let r = r.clone();
        async move {
            blocking(move || {
                (!r.join("css").exists() && !r.join("css/site.css").exists()).then_some(())
            })
            .await
        }
    })
    .await;

    let r = root.clone();
    blocking(move || {
        // Stays new on every later read (the kept cache was dropped for changed files).
        for _ in 0..3 {
            assert_eq!(std::fs::read(r.join("same.txt")).unwrap(), b"BBBB");
            assert!(std::fs::read(r.join("data/big.bin")).unwrap() == big2);
            assert_eq!(
                std::fs::read(r.join("index.html")).unwrap(),
                b"<h1>version two, longer than before</h1>"
            );
        }
        let ino =
            |p: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(r.join(p)).unwrap());
        assert_eq!(
            ino("index.html"),
            ino_index,
            "a path keeps its inode number"
        );
        assert_eq!(ino("data/big.bin"), ino_big);
    })
    .await;
    // The old handle: whatever it reads is one whole version, never a mix.
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut old_handle, &mut got).unwrap();
    assert!(got == b"AAAA" || got == b"BBBB", "{got:?}");
    drop(old_handle);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unmirrored_sites_disappear() {
    let Some(s) = Setup::start("unmirrored_sites_disappear").await else {
        return;
    };
    let src = s.dir("site");
    make_site(&src, 0);
    let site = publish(&s.laptop, &src, None).await;
    s.mirror_site(site.key, Some("gone")).await;
    let (top, hex) = (s.tree.path.clone(), site.key.to_hex());
    wait_same(&src, &top.join("gone"), "the site under its alias").await;

    s.laptop
        .inner
        .append(Command::Unmirror { key: site.key })
        .await
        .unwrap();
    wait_until("the site to leave the tree", || {
        let (top, hex) = (top.clone(), hex.clone());
        async move {
            blocking(move || {
                let empty = std::fs::read_dir(&top).unwrap().next().is_none();
                let gone = !top.join(&hex).exists()
                    && std::fs::symlink_metadata(top.join("gone")).is_err()
                    && !top.join(&hex).join("index.html").exists();
                (empty && gone).then_some(())
            })
            .await
        }
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_entries_are_shown_safely_or_not_at_all() {
    use dat_mirror::drive::bee::Editor;
    use dat_mirror::drive::{encode_entry, file_key, BlobRef, Entry};
    use dat_mirror::store::CoreReader;

    let Some(s) = Setup::start("hostile_entries_are_shown_safely_or_not_at_all").await else {
        return;
    };
    let src = s.dir("site");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("index.html"), b"fine").unwrap();
    let site = publish(&s.laptop, &src, None).await;

    // Version 2, written by hand: keys and values no publish would write.
    let (db, _) = dat_mirror::laptop::publish::open_site(&s.laptop.inner.store, &site.key)
        .await
        .unwrap()
        .unwrap();
    let file = |len: u64| {
        encode_entry(&Entry {
            blob: Some(BlobRef {
                block_offset: 0,
                block_length: 1,
                byte_offset: 0,
                byte_length: len,
            }),
            ..Entry::default()
        })
    };
    let link = |to: &str| {
        encode_entry(&Entry {
            linkname: Some(to.into()),
            ..Entry::default()
        })
    };
    let deep = "/d".repeat(2100); // 4200 bytes: deeper than PATH_MAX
    let long_name = format!("/{}", "n".repeat(300));
    let mut puts: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (file_key("/../escape.txt"), file("x".len() as u64)),
        (file_key("/dot/./x"), file(4)),
        (file_key("/dot/../y"), file(4)),
        (file_key("/a//b"), file(4)),
        (file_key(&long_name), file(4)),
        (file_key("/huge.bin"), {
            encode_entry(&Entry {
                blob: Some(BlobRef {
                    block_offset: u64::MAX - 3,
                    block_length: u64::MAX,
                    byte_offset: u64::MAX,
                    byte_length: u64::MAX,
                }),
                ..Entry::default()
            })
        }),
        (file_key("/bad-json"), b"{nope".to_vec()),
        // #14 item 8: block 0 holds index.html ("fine"), but the entry starts a byte later.
        (
            file_key("/shifted"),
            encode_entry(&Entry {
                blob: Some(BlobRef {
                    block_offset: 0,
                    block_length: 1,
                    byte_offset: 1,
                    byte_length: 3,
                }),
                ..Entry::default()
            }),
        ),
        (file_key("/both"), file(4)),
        (file_key("/both/inner"), file(4)),
        (file_key("/abs-link"), link("/etc/passwd")),
        (file_key("/up-link"), link("../../../../etc/passwd")),
        (file_key("/nul-link"), link("a\0b")),
        (file_key("/new\nline"), file(4)),
        (file_key(&format!("{deep}/bottom")), file(4)),
        (b"files\0no-slash".to_vec(), file(4)),
    ];
    let mut non_utf8 = file_key("/");
    non_utf8.extend_from_slice(b"\xff\xfe");
    puts.push((non_utf8, file(4)));
    let mut reader = CoreReader::new(db.clone());
    let mut ed = Editor::open(&mut reader).await.unwrap();
    for (k, v) in &puts {
        ed.put(k, v).await.unwrap();
    }
    let blocks = ed.into_blocks();
    db.append_batch(&blocks).await.unwrap();
    let version = db.info().length;

    s.mirror_site(site.key, None).await;
    let root = s.tree.path.join(site.key.to_hex());
    let (r, want) = (root.clone(), version);
    // The hostile entries were appended one version each; wait until the tree shows the last.
    wait_until("the hostile version in the tree", || {
        let r = r.clone();
        async move { blocking(move || r.join("d").symlink_metadata().ok()).await }
    })
    .await;
    assert!(s.mirror.inner.site(&site.key).unwrap().0.info().length >= want);
    // ... and until its blobs are held (the entries below read block 0 of them).
    let inner = s.mirror.inner.clone();
    wait_until("the site's blobs to be held", || {
        let held = inner
            .site(&site.key)
            .and_then(|(_, blobs)| blobs)
            .is_some_and(|b| b.info().length > 0 && b.info().complete());
        async move { held.then_some(()) }
    })
    .await;

    let r = root.clone();
    blocking(move || {
        let names: BTreeSet<String> = std::fs::read_dir(&r)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let want: BTreeSet<String> = [
            "index.html",
            "dot",
            "a",
            "huge.bin",
            "shifted",
            "both",
            "abs-link",
            "up-link",
            "nul-link",
            "new\nline",
            "d",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        assert_eq!(names, want);
        // "." and ".." names are left out; "a//b" shows nothing below "a".
        assert_eq!(std::fs::read_dir(r.join("dot")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(r.join("a")).unwrap().count(), 0);
        // A file and a folder of one name: the file.
        assert!(std::fs::metadata(r.join("both")).unwrap().is_file());
        // Symlinks never leave the site.
        assert_eq!(
            std::fs::read_link(r.join("abs-link")).unwrap(),
            Path::new("etc/passwd")
        );
        assert_eq!(
            std::fs::read_link(r.join("up-link")).unwrap(),
            Path::new("etc/passwd")
        );
        assert!(std::fs::read(r.join("abs-link")).is_err());
        let e = std::fs::read_link(r.join("nul-link")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        // A huge lying blob: a size, and EIO on reading, no panic.
        let huge = std::fs::metadata(r.join("huge.bin")).unwrap();
        assert_eq!(huge.len(), i64::MAX as u64);
        let mut f = std::fs::File::open(r.join("huge.bin")).unwrap();
        let mut buf = [0u8; 16];
        let e = std::io::Read::read(&mut f, &mut buf).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        // Offsets that disagree with the blocks named: a size, and EIO on reading.
        assert_eq!(std::fs::metadata(r.join("shifted")).unwrap().len(), 3);
        let e = std::fs::read(r.join("shifted")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        // Bad JSON: not listed, EIO if named.
        let e = std::fs::metadata(r.join("bad-json")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        // An odd but valid name; its blob ref may name any verified bytes of the site's
        // own blobs core (block 0 holds index.html, "fine").
        assert_eq!(std::fs::read(r.join("new\nline")).unwrap(), b"fine");
        // Deep: shown down to PATH_MAX, no further; find walks it without errors.
        let out =
            run(Cmd::new("find")
                .arg(&r)
                .args(["-path", "*/d/d/d/d", "-prune", "-o", "-print"]));
        assert!(out.contains("index.html"));
        let depth = run(Cmd::new("find").arg(r.join("d")).args(["-type", "d"]))
            .lines()
            .count();
        assert!((1000..2100).contains(&depth), "deep folders shown: {depth}");
        assert!(
            !run(Cmd::new("find").arg(r.join("d")).args(["-name", "bottom"])).contains("bottom")
        );
        // The regular file is still fine.
        assert_eq!(std::fs::read(r.join("index.html")).unwrap(), b"fine");
        // Writing to the folder still refused.
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(r.join("index.html"));
        if let Ok(f) = w.as_mut() {
            f.write_all(b"x").unwrap();
        }
        erofs("write", w);
    })
    .await;
    s.stop().await;
}
