//! Mount tests of the control folder: a real FUSE mount per test, driven with std::fs,
//! libc and coreutils, over a fake backend whose view is the real `view::fold` of the
//! commands it recorded and a fake mirror status log the test controls. Tests skip loudly
//! without FUSE, and fail instead when `CI=true` (see `require_fuse_or_skip`).

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{mount, AppendError, ControlBackend};
use crate::fs::require_fuse_or_skip;
use crate::laptop::backend::Changes;
use crate::model::command::{Command, CommandError};
use crate::model::keys::Key;
use crate::model::status::{StatusEntry, StatusEvent};
use crate::model::view::{fold, MirrorInput, StatusView};
use crate::util::clock::now_ms;

pub(super) const ME: Key = Key([0x11; 32]);
pub(super) const MIRROR: Key = Key([0x22; 32]);
pub(super) const K1: Key = Key([0xa1; 32]);
pub(super) const K2: Key = Key([0xb2; 32]);
pub(super) const K3: Key = Key([0xc3; 32]);

/// Records appended commands; its view folds them with a status log the test writes.
#[derive(Default)]
pub(super) struct FakeBackend {
    log: Mutex<Vec<Result<Command, CommandError>>>,
    status: Mutex<Vec<StatusEntry>>,
    pub fail: std::sync::atomic::AtomicBool,
    changes: Arc<Changes>,
    /// How many times the folder asked for the view (about once per kernel callback).
    pub views: std::sync::atomic::AtomicUsize,
}

impl ControlBackend for FakeBackend {
    fn view(&self) -> std::sync::Arc<StatusView> {
        self.views.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = self.log.lock().unwrap().clone();
        let status = self.status.lock().unwrap().clone();
        let mirror = MirrorInput {
            mirror: MIRROR,
            status,
            online: true,
            last_seen_ms: Some(now_ms()),
        };
        std::sync::Arc::new(fold(ME, &log, &[mirror], now_ms()))
    }

    fn append(&self, command: Command) -> Result<u64, AppendError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(AppendError::Write("the fake log fails".into()));
        }
        let mut log = self.log.lock().unwrap();
        log.push(Ok(command));
        self.changes.bump();
        Ok(log.len() as u64 - 1)
    }

    fn changes(&self) -> Arc<Changes> {
        self.changes.clone()
    }
}

impl FakeBackend {
    pub fn commands(&self) -> Vec<Command> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| c.clone().ok())
            .collect()
    }

    /// The fake mirror writes `event` to its status log.
    pub fn status(&self, at: u64, event: StatusEvent) {
        self.status
            .lock()
            .unwrap()
            .push(StatusEntry::new(at, event));
        self.changes.bump();
    }

    /// The fake mirror acknowledges everything logged so far.
    pub fn ack_all(&self) {
        let seq = self.log.lock().unwrap().len() as u64 - 1;
        self.status(now_ms(), StatusEvent::Ack { log: ME, seq });
    }
}

/// One mounted control folder; unmounted (and joined) on drop.
pub(super) struct Mounted {
    session: Option<fuser::BackgroundSession>,
    pub backend: Arc<FakeBackend>,
    pub dir: tempfile::TempDir,
}

impl Drop for Mounted {
    /// Unmounts through the daemons' own [`crate::fs::fuse::unmount`]: a child another test
    /// thread is spawning holds copies of this process's open fds (ours too) until it execs.
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            crate::fs::fuse::unmount(session, self.dir.path()).expect("unmount the test folder");
        }
    }
}

impl Mounted {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Entry names, without `.`/`..`.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    pub fn sh(&self, script: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .output()
            .expect("run sh")
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }
}

/// Mounts a fresh folder, or returns `None` (test skipped, loudly) where FUSE is missing.
pub(super) fn mounted(test: &str) -> Option<Mounted> {
    if !require_fuse_or_skip(test) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(FakeBackend::default());
    match mount(dir.path(), backend.clone()) {
        Ok(session) => Some(Mounted {
            session: Some(session),
            backend,
            dir,
        }),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: mount failed in CI: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: cannot mount FUSE here: {e} (with CI=true this fails)");
            None
        }
    }
}

/// Polls `check` for up to 5 s (the kernel may cache an entry for up to 1 s).
pub(super) fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The metadata of `path` once `fresh` holds, which must happen well before the kernel's
/// cached attributes would run out (1 s): the folder's watcher makes the kernel forget
/// them as soon as the view changes. Call it right after changing the view, after a stat
/// that cached the old attributes.
pub(super) fn fresh_metadata(
    path: &Path,
    fresh: impl Fn(&std::fs::Metadata) -> bool,
) -> std::fs::Metadata {
    let start = Instant::now();
    loop {
        let meta = std::fs::metadata(path).unwrap();
        if fresh(&meta) {
            return meta;
        }
        assert!(
            start.elapsed() < Duration::from_millis(800),
            "{} still shows the attributes the view had (size {}) after {:?}: the kernel was \
             not told to forget them",
            path.display(),
            meta.len(),
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Writes `data` into a new/truncated file and returns what `close()` returned.
pub(super) fn write_and_close(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    // SAFETY: we own the fd and close it exactly once.
    if unsafe { libc::close(f.into_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub(super) fn errno(r: std::io::Result<impl Sized>) -> i32 {
    r.err()
        .and_then(|e| e.raw_os_error())
        .expect("expected an OS error")
}

pub(super) fn mirror(k: Key, alias: Option<&str>) -> Command {
    Command::Mirror {
        key: k,
        alias: alias.map(String::from),
    }
}

/// getxattr with the size probe: (probed size, value) or the errno.
pub(super) fn getxattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings; a null buffer with size 0 asks for the size.
    let size = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    let mut buf = vec![0u8; size as usize];
    // SAFETY: `buf` has `buf.len()` writable bytes.
    let got = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(got, size, "value size changed between probe and read");
    Ok(buf)
}

#[test]
fn touch_key_appends_mirror_once_and_shows_queued() {
    let Some(m) = mounted("touch_key_appends_mirror_once_and_shows_queued") else {
        return;
    };
    let hex = K1.to_hex();
    assert!(m.sh(&format!("touch {hex}")).status.success());
    assert_eq!(m.backend.commands(), [mirror(K1, None)]);
    assert!(m.names().contains(&hex));
    let meta = std::fs::metadata(m.path(&hex)).unwrap();
    assert!(meta.is_file());
    assert_eq!((meta.len(), meta.mode() & 0o777), (0, 0o644));
    assert!(m.read(&hex).lines().any(|l| l == "state: queued"));
    // Touching it again (by either spelling) only updates times.
    assert!(m
        .sh(&format!("touch {hex} {}", K1.to_z32()))
        .status
        .success());
    std::fs::File::options()
        .write(true)
        .open(m.path(&hex))
        .unwrap();
    assert_eq!(m.backend.commands(), [mirror(K1, None)]);
}

#[test]
fn z32_hex_and_alias_name_one_entry() {
    let Some(m) = mounted("z32_hex_and_alias_name_one_entry") else {
        return;
    };
    assert!(m
        .sh(&format!("echo hyper://{} > blog", K1.to_z32()))
        .status
        .success());
    assert_eq!(m.backend.commands(), [mirror(K1, Some("blog"))]);
    assert_eq!(m.names(), ["STATUS", "blog"]);
    let ino = |n: &str| std::fs::metadata(m.path(n)).unwrap().ino();
    wait_until("the new entry is the site", || {
        ino("blog") == ino(&K1.to_hex())
    });
    assert_eq!(ino(&K1.to_z32()), ino(&K1.to_hex()));
    assert_eq!(ino("blog.url"), ino("blog"));
    let text = m.read(&K1.to_z32());
    assert!(
        text.contains("alias: blog") && text.contains(&K1.to_hex()),
        "{text}"
    );
}

#[test]
fn mkdir_key_appends_mirror_and_rmdir_unmirrors() {
    let Some(m) = mounted("mkdir_key_appends_mirror_and_rmdir_unmirrors") else {
        return;
    };
    std::fs::create_dir(m.path(&K2.to_hex())).unwrap();
    assert_eq!(m.backend.commands(), [mirror(K2, None)]);
    assert_eq!(
        errno(std::fs::create_dir(m.path(&K2.to_z32()))),
        libc::EEXIST
    );
    // Before any listing: a listing brings the entry as what it is (a file), after which
    // `rmdir` is refused by the kernel (ENOTDIR) and `rm` is the way.
    std::fs::remove_dir(m.path(&K2.to_hex())).unwrap();
    assert_eq!(
        m.backend.commands(),
        [mirror(K2, None), Command::Unmirror { key: K2 }]
    );
    assert!(m.names().contains(&K2.to_hex()), "listed while removing");
}

#[test]
fn cp_url_file_and_echo_link_file() {
    let Some(m) = mounted("cp_url_file_and_echo_link_file") else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    let url = src.path().join("blog.url");
    std::fs::write(
        &url,
        format!("[InternetShortcut]\nURL=dat://{}/\n", K1.to_z32()),
    )
    .unwrap();
    let out = m.sh(&format!("cp {} .", url.display()));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(m.backend.commands(), [mirror(K1, Some("blog"))]);
    assert_eq!(m.names(), ["STATUS", "blog"]);
    assert!(m
        .sh(&format!(
            "echo 'my site: hyper://{}/index.html' > notes",
            K2.to_hex()
        ))
        .status
        .success());
    assert_eq!(m.backend.commands()[1], mirror(K2, Some("notes")));
    assert!(m.read("notes").lines().any(|l| l == "state: queued"));
}

#[test]
fn cp_over_an_existing_entry_moves_the_alias() {
    let Some(m) = mounted("cp_over_an_existing_entry_moves_the_alias") else {
        return;
    };
    write_and_close(
        &m.path("blog"),
        format!("hyper://{}\n", K1.to_hex()).as_bytes(),
    )
    .unwrap();
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), format!("hyper://{}\n", K2.to_hex())).unwrap();
    let out = m.sh(&format!("cp {} blog", src.path().display()));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        m.backend.commands(),
        [
            mirror(K1, Some("blog")),
            mirror(K2, Some("blog")),
            mirror(K1, None)
        ]
    );
    wait_until("blog names the new site", || {
        m.read("blog").contains(&K2.to_hex())
    });
    assert_eq!(m.names(), ["STATUS", K1.to_hex().as_str(), "blog"]);
    // The same content again appends nothing.
    assert!(m
        .sh(&format!("cp {} blog", src.path().display()))
        .status
        .success());
    assert_eq!(m.backend.commands().len(), 3);
}

#[test]
fn content_without_a_key_is_einval_and_appends_nothing() {
    let Some(m) = mounted("content_without_a_key_is_einval_and_appends_nothing") else {
        return;
    };
    assert_eq!(
        errno(write_and_close(&m.path("notes"), b"hello, no link here\n")),
        libc::EINVAL
    );
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), "hello\n").unwrap();
    let out = m.sh(&format!("cp {} blog.url", src.path().display()));
    assert!(
        !out.status.success(),
        "cp reports the failed close: {out:?}"
    );
    assert!(m.backend.commands().is_empty());
    wait_until("refused link files are gone", || m.names() == ["STATUS"]);
}

#[test]
fn rm_by_key_and_by_alias_unmirror_and_show_removing() {
    let Some(m) = mounted("rm_by_key_and_by_alias_unmirror_and_show_removing") else {
        return;
    };
    assert!(m
        .sh(&format!(
            "touch {}; echo hyper://{} > blog",
            K1.to_hex(),
            K2.to_hex()
        ))
        .status
        .success());
    m.backend.ack_all();
    std::fs::remove_file(m.path("blog")).unwrap();
    std::fs::remove_file(m.path(&K1.to_z32())).unwrap();
    let cmds = m.backend.commands();
    assert_eq!(
        cmds[2..],
        [Command::Unmirror { key: K2 }, Command::Unmirror { key: K1 }]
    );
    assert!(m.read("blog").lines().any(|l| l == "state: removing"));
    // rm again while removing appends nothing.
    std::fs::remove_file(m.path("blog")).unwrap();
    assert_eq!(m.backend.commands().len(), 4);
    // `touch` on an entry being removed keeps it after all.
    assert!(m.sh("touch blog").status.success());
    assert_eq!(m.backend.commands()[4], mirror(K2, Some("blog")));
    // K1 is still shown (removing): this lookup has the kernel cache its name for 1 s.
    assert!(std::fs::metadata(m.path(&K1.to_hex())).is_ok());
    let cached = Instant::now();
    m.backend.ack_all();
    wait_until("acknowledged removals leave the folder", || {
        m.names() == ["STATUS", "blog"]
    });
    // The listing follows the view at once; the cached name is dropped by the folder's
    // watcher thread, which wakes on the change: soon, and well before the 1 s runs out.
    loop {
        match std::fs::metadata(m.path(&K1.to_hex())) {
            Err(e) => {
                assert_eq!(errno(Err::<(), _>(e)), libc::ENOENT);
                break;
            }
            Ok(_) => assert!(
                cached.elapsed() < Duration::from_millis(800),
                "{} still resolves {:?} after it was looked up and removed: the kernel was not \
                 told to forget the name",
                K1.to_hex(),
                cached.elapsed()
            ),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn ls_sizes_and_mtimes_follow_the_status_log() {
    let Some(m) = mounted("ls_sizes_and_mtimes_follow_the_status_log") else {
        return;
    };
    let before = std::time::SystemTime::now() - Duration::from_secs(1);
    assert!(m
        .sh(&format!("echo hyper://{} > blog", K1.to_hex()))
        .status
        .success());
    let meta = std::fs::metadata(m.path("blog")).unwrap();
    assert!(
        meta.modified().unwrap() >= before,
        "mtime is when it was queued"
    );
    m.backend.ack_all();
    let at = 1_700_000_000_000;
    let progress = StatusEvent::Progress {
        key: K1,
        version: 2,
        blocks: 1,
        total_blocks: 4,
        bytes: 1000,
        total_bytes: 4000,
        peers: 1,
    };
    m.backend.status(at, progress);
    let meta = fresh_metadata(&m.path("blog"), |m| m.len() == 1000);
    assert_eq!(meta.mtime(), (at / 1000) as i64);
    assert!(m.read("blog").lines().any(|l| l == "state: syncing 25%"));
    m.backend.status(
        at + 60_000,
        StatusEvent::Mirrored {
            key: K1,
            version: 3,
            blocks: 4,
            bytes: 4000,
            peers: 2,
        },
    );
    let meta = fresh_metadata(&m.path("blog"), |m| m.len() == 4000);
    assert_eq!(meta.mtime(), (at / 1000 + 60) as i64);
    let text = m.read("blog");
    assert!(text.lines().any(|l| l == "state: mirrored v3"), "{text}");
    assert!(
        text.len() as u64 != meta.len(),
        "cat reads the whole screen whatever the size"
    );
}

/// `ls -l` is answered from what READDIRPLUS brought and the kernel cached: far fewer
/// callbacks than entries, even after the cached attributes ran out.
#[test]
fn ls_l_is_answered_by_listings_not_per_entry() {
    use std::sync::atomic::Ordering::SeqCst;
    let Some(m) = mounted("ls_l_is_answered_by_listings_not_per_entry") else {
        return;
    };
    const SITES: u8 = 60;
    for i in 0..SITES {
        m.backend
            .append(mirror(Key([i.wrapping_add(0x30); 32]), None))
            .unwrap();
    }
    let listed = |m: &Mounted| {
        let out = m.sh("ls -l");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().lines().count()
    };
    assert_eq!(
        listed(&m),
        SITES as usize + 2,
        "total line, STATUS, the sites"
    );
    for (what, pause) in [("cached", 0), ("after the cache ran out", 1100)] {
        std::thread::sleep(Duration::from_millis(pause));
        m.backend.views.store(0, SeqCst);
        assert_eq!(listed(&m), SITES as usize + 2);
        let views = m.backend.views.load(SeqCst);
        assert!(
            views < 20,
            "ls -l of {SITES} entries ({what}) made {views} callbacks that read the view"
        );
    }
}

/// Stopping while a program sits inside the folder detaches it instead of failing and
/// leaving a dead mount ("Transport endpoint is not connected") behind.
#[test]
fn unmount_of_a_busy_folder_detaches_it() {
    let Some(mut m) = mounted("unmount_of_a_busy_folder_detaches_it") else {
        return;
    };
    let mut inside = std::process::Command::new("sleep")
        .arg("30")
        .current_dir(m.dir.path())
        .spawn()
        .unwrap();
    let session = m.session.take().unwrap();
    let start = Instant::now();
    crate::fs::fuse::unmount(session, m.dir.path()).expect("a busy folder is detached");
    assert!(
        start.elapsed() >= super::super::fuse::BUSY_RETRY,
        "it was busy"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = m.dir.path().to_str().unwrap();
    assert!(
        !mounts.lines().any(|l| l.split(' ').nth(4) == Some(path)),
        "{path} is still mounted"
    );
    assert!(std::fs::metadata(m.dir.path()).unwrap().is_dir());
    inside.kill().unwrap();
    inside.wait().unwrap();
}

#[test]
fn status_file_is_a_readonly_table() {
    let Some(m) = mounted("status_file_is_a_readonly_table") else {
        return;
    };
    assert!(m
        .sh(&format!("echo hyper://{} > blog", K1.to_hex()))
        .status
        .success());
    let text = m.read("STATUS");
    assert!(
        text.contains("blog") && text.contains(&MIRROR.to_hex()) && text.contains("queued"),
        "{text}"
    );
    let f = std::fs::File::open(m.path("STATUS")).unwrap();
    let len = f.metadata().unwrap().len();
    assert_eq!(
        std::io::read_to_string(f).unwrap().len() as u64,
        len,
        "size matches what cat reads"
    );
    let meta = std::fs::metadata(m.path("STATUS")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o444);
    assert_eq!(
        errno(
            std::fs::OpenOptions::new()
                .write(true)
                .open(m.path("STATUS"))
        ),
        libc::EACCES
    );
    assert_eq!(errno(std::fs::remove_file(m.path("STATUS"))), libc::EPERM);
    assert!(m.backend.commands().len() == 1);
}

#[test]
fn xattrs_follow_the_view() {
    let Some(m) = mounted("xattrs_follow_the_view") else {
        return;
    };
    assert!(m
        .sh(&format!("echo hyper://{} > blog", K1.to_hex()))
        .status
        .success());
    let p = m.path("blog");
    assert_eq!(getxattr(&p, "user.dat-mirror.state").unwrap(), b"queued");
    assert_eq!(
        getxattr(&p, "user.dat-mirror.key").unwrap(),
        K1.to_hex().as_bytes()
    );
    assert_eq!(getxattr(&p, "user.dat-mirror.alias").unwrap(), b"blog");
    assert_eq!(getxattr(&p, "user.nothing"), Err(libc::ENODATA));
    // Other namespaces are unsupported, not missing: GNU `ls -l` then stops asking every
    // entry for its SELinux label and ACL.
    assert_eq!(getxattr(&p, "security.selinux"), Err(libc::EOPNOTSUPP));
    assert_eq!(
        getxattr(&p, "system.posix_acl_access"),
        Err(libc::EOPNOTSUPP)
    );
    assert_eq!(getxattr(&m.path(""), "trusted.x"), Err(libc::EOPNOTSUPP));
    assert_eq!(
        getxattr(&m.path("STATUS"), "user.dat-mirror.state"),
        Err(libc::ENODATA)
    );
    m.backend.ack_all();
    m.backend.status(
        now_ms(),
        StatusEvent::Mirrored {
            key: K1,
            version: 7,
            blocks: 1,
            bytes: 42,
            peers: 1,
        },
    );
    assert_eq!(
        getxattr(&p, "user.dat-mirror.state").unwrap(),
        b"mirrored v7"
    );
    assert_eq!(getxattr(&p, "user.dat-mirror.bytes").unwrap(), b"42");
    // listxattr, with the size probe and a too-small buffer.
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: null buffer with size 0 is the size probe.
    let size = unsafe { libc::listxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    assert!(size > 0);
    let mut buf = vec![0u8; size as usize];
    // SAFETY: `buf` has the probed size.
    assert_eq!(
        unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) },
        size
    );
    let names: Vec<&[u8]> = buf.split(|b| *b == 0).filter(|n| !n.is_empty()).collect();
    assert_eq!(names.len(), 9);
    assert!(names.contains(&&b"user.dat-mirror.last_sync"[..]));
    let mut small = [0u8; 4];
    // SAFETY: `small` has 4 writable bytes.
    assert_eq!(
        unsafe { libc::listxattr(c.as_ptr(), small.as_mut_ptr().cast(), small.len()) },
        -1
    );
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ERANGE)
    );
}
