//! The fuser glue both of our filesystems share (the laptop's control folder and the
//! mirror's site tree): whether FUSE can be used here, detaching a dead mount left by a
//! crashed run, mounting with our common options and an error that says what to check, and
//! the reply helpers that turn an operation's `Result` into the kernel's answer.
//!
//! Common mount options: `subtype=dat-mirror`, `default_permissions` (the kernel enforces
//! the modes we show), `nodev`, `nosuid`, `noexec`, `noatime`; `ro` for read-only trees.
//! No `auto_unmount`: it needs fusermount3 plus `allow_other`, and measured here it
//! sometimes left a dead mount behind when the process exited right after mounting;
//! instead [`spawn_mount`] detaches a dead mount first ([`detach_stale`]).
//!
//! Using it from a filesystem (the control folder does this; the site tree can too):
//!
//! ```ignore
//! let spec = MountSpec { what: "the site tree", fsname: "dat-mirror-sites", read_only: true, threads: 4 };
//! let session = crate::fs::fuse::spawn_mount(TreeFs(tree), mountpoint, &spec)?;
//! // in callbacks:
//! fuse::reply_attr(reply, self.do_getattr(ino.0), TTL);
//! fuse::reply_data(reply, self.do_read(fh.0, offset, size));
//! ```

use std::path::Path;
use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    MountOption, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyWrite, ReplyXattr,
};

/// `Ok` if this process can mount FUSE filesystems: `/dev/fuse` opens read-write and, for
/// a non-root user, a `fusermount3`/`fusermount` helper is installed. The error says what
/// to install or change.
pub fn fuse_available() -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Err(format!(
            "cannot open /dev/fuse ({e}): load the fuse module (`modprobe fuse`), or run the \
             container with `--device /dev/fuse --cap-add SYS_ADMIN`"
        ));
    }
    // SAFETY: geteuid cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    let helper = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .any(|d| d.join("fusermount3").is_file() || d.join("fusermount").is_file())
    });
    if !root && !helper {
        return Err(
            "mounting FUSE as a normal user needs fusermount3: install the `fuse3` package".into(),
        );
    }
    Ok(())
}

/// For tests that need FUSE: `true` if they can run. Otherwise prints why and returns
/// `false` (skip) — unless the environment variable `CI` is `true`, where it panics so the
/// test fails instead of silently passing.
pub fn require_fuse_or_skip(test: &str) -> bool {
    match fuse_available() {
        Ok(()) => true,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: FUSE is required in CI (CI=true) but unavailable: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: FUSE unavailable: {why} (with CI=true this fails)");
            false
        }
    }
}

/// Lazily unmounts `mountpoint` if it is a dead FUSE mount (`ENOTCONN`) left by an earlier
/// run that died, so mounting there again works. Callers that create the mount point first
/// must call it before (a dead mount point makes `create_dir_all` fail with "File exists");
/// [`spawn_mount`] calls it too.
pub fn detach_stale(mountpoint: &Path) {
    let Err(e) = std::fs::metadata(mountpoint) else {
        return;
    };
    if e.raw_os_error() != Some(libc::ENOTCONN) {
        return;
    }
    tracing::warn!(
        "{} is a dead mount from an earlier run; detaching it",
        mountpoint.display()
    );
    if let Err(e) = detach(mountpoint) {
        tracing::warn!("{e}");
    }
}

/// `umount2(2)` of `mountpoint` with `flags`.
fn umount2(mountpoint: &Path, flags: libc::c_int) -> std::io::Result<()> {
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
        mountpoint.as_os_str(),
    ))
    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Detaches the mount at `mountpoint` lazily (`umount -l`): it leaves the namespace now and
/// ends when its last user lets go. Through `fusermount3 -u -z` where this process may not.
fn detach(mountpoint: &Path) -> std::io::Result<()> {
    let Err(e) = umount2(mountpoint, libc::MNT_DETACH) else {
        return Ok(());
    };
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(mountpoint)
        .status();
    if status.is_ok_and(|s| s.success()) {
        return Ok(());
    }
    Err(std::io::Error::new(
        e.kind(),
        format!(
            "could not detach {}: {e}; run `fusermount3 -u -z {}`",
            mountpoint.display(),
            mountpoint.display()
        ),
    ))
}

/// What differs between our mounts.
#[derive(Debug, Clone)]
pub struct MountSpec<'a> {
    /// What is mounted, for errors: "the dat-mirror folder", "the site tree".
    pub what: &'a str,
    /// The source shown in `/proc/mounts` and `df`.
    pub fsname: &'a str,
    /// Mount `ro` (the kernel refuses writes before they reach us).
    pub read_only: bool,
    /// Session threads; more than one also gives each its own `/dev/fuse` fd (`clone_fd`).
    pub threads: usize,
}

/// Detaches a dead mount at `mountpoint`, mounts `fs` there with the common options and
/// serves it on background threads until the returned session is dropped (or
/// `umount_and_join`ed). The error names what failed and what to check.
pub fn spawn_mount<FS: Filesystem + Send + 'static>(
    fs: FS,
    mountpoint: &Path,
    spec: &MountSpec<'_>,
) -> std::io::Result<fuser::BackgroundSession> {
    detach_stale(mountpoint);
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(spec.fsname.into()),
        MountOption::Subtype("dat-mirror".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoExec,
        MountOption::NoAtime,
    ];
    if spec.read_only {
        config.mount_options.push(MountOption::RO);
    }
    if spec.threads > 1 {
        config.n_threads = Some(spec.threads);
        config.clone_fd = true;
    }
    fuser::spawn_mount(fs, mountpoint, &config).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot mount {} at {}: {e}; check that the folder exists and is empty, and \
                 that FUSE works here (/dev/fuse, or fusermount3 for non-root users)",
                spec.what,
                mountpoint.display()
            ),
        )
    })
}

/// How long [`unmount`] retries a mount that is busy before detaching it.
pub(crate) const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Unmounts `mountpoint` and ends `session`, never leaving a dead mount behind. fuser's own
/// `umount_and_join` gives up on `EBUSY` (a shell whose working directory is inside, a
/// child process that inherited a descriptor), and the mount is dead once the session is
/// gone. Here a busy mount is retried for [`BUSY_RETRY`] (a child between fork and exec lets
/// go by then), then detached lazily as `fusermount3 -u -z` and libfuse do: the folder
/// leaves the namespace now and processes still inside get "Transport endpoint is not
/// connected" once this session ends. A non-root user goes through fuser (fusermount3).
pub fn unmount(session: fuser::BackgroundSession, mountpoint: &Path) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_RETRY;
    loop {
        let Err(err) = umount2(mountpoint, 0) else {
            return session.join();
        };
        match err.raw_os_error() {
            Some(libc::EBUSY) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(libc::EBUSY) => {
                detach(mountpoint)?;
                tracing::warn!(
                    "{} was still in use (a shell or program inside it?); detached it: what \
                     is still inside sees \"Transport endpoint is not connected\"",
                    mountpoint.display()
                );
                // The session ends when the last user lets go; not waited for.
                drop(session);
                return Ok(());
            }
            // Not root: fuser unmounts through fusermount3 (which detaches lazily itself).
            Some(libc::EPERM) => return session.umount_and_join(),
            // Not mounted any more (someone ran `umount`): the session ends by itself.
            Some(libc::EINVAL) => return session.join(),
            _ => {
                return Err(std::io::Error::new(
                    err.kind(),
                    format!("cannot unmount {}: {err}", mountpoint.display()),
                ))
            }
        }
    }
}

/// Raises the kernel's readahead for the FUSE mount at `mountpoint` to `kb` KiB, best
/// effort. The kernel offers FUSE filesystems 128 KiB, so a cold sequential read reaches us
/// as 128 KiB requests one after the other; with more, it sends up to `max_pages` (1 MiB)
/// per request and several at once, as it reads a disk with its own readahead. Needs write
/// access to `/sys/class/bdi/<dev>/read_ahead_kb` (root); otherwise nothing changes and a
/// debug line says why (`echo KB > …` as root does the same by hand).
pub fn raise_readahead(mountpoint: &Path, kb: u32) {
    use std::os::unix::fs::MetadataExt;
    let dev = match std::fs::metadata(mountpoint) {
        Ok(m) => m.dev(),
        Err(e) => {
            tracing::debug!("readahead of {}: {e}", mountpoint.display());
            return;
        }
    };
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let now = std::fs::read_to_string(&knob)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if now.is_some_and(|n| n >= kb) {
        return;
    }
    match std::fs::write(&knob, format!("{kb}\n")) {
        Ok(()) => tracing::debug!("readahead of {}: {kb} KiB", mountpoint.display()),
        Err(e) => tracing::debug!(
            "readahead of {} stays {now:?} KiB: writing {knob}: {e}",
            mountpoint.display()
        ),
    }
}

/// Answers an ioctl: these are not terminals or devices (`ENOTTY`, what a regular file on
/// ext4 answers). fuser's default answers `ENOSYS` and logs a warning per call, and a shell
/// asks `TCGETS` of every file it reads: the log grew with every poll of the folder.
pub fn reply_no_ioctl(reply: fuser::ReplyIoctl) {
    reply.error(Errno::ENOTTY);
}

/// Answers a lookup/mkdir: the entry, cached for `entry_ttl`, its attributes for `attr_ttl`.
pub fn reply_entry(
    reply: ReplyEntry,
    result: Result<FileAttr, Errno>,
    attr_ttl: Duration,
    entry_ttl: Duration,
) {
    match result {
        Ok(attr) => reply.entry_with_ttls(&attr_ttl, &entry_ttl, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

/// Answers a getattr/setattr.
pub fn reply_attr(reply: ReplyAttr, result: Result<FileAttr, Errno>, ttl: Duration) {
    match result {
        Ok(attr) => reply.attr(&ttl, &attr),
        Err(e) => reply.error(e),
    }
}

/// Answers an operation that returns nothing but success or an error.
pub fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// Answers an open/opendir with the handle and its flags.
pub fn reply_open(reply: ReplyOpen, result: Result<(u64, FopenFlags), Errno>) {
    match result {
        Ok((fh, flags)) => reply.opened(FileHandle(fh), flags),
        Err(e) => reply.error(e),
    }
}

/// Answers a read.
pub fn reply_data(reply: ReplyData, result: Result<impl AsRef<[u8]>, Errno>) {
    match result {
        Ok(data) => reply.data(data.as_ref()),
        Err(e) => reply.error(e),
    }
}

/// Answers a write with the bytes taken.
pub fn reply_written(reply: ReplyWrite, result: Result<u32, Errno>) {
    match result {
        Ok(n) => reply.written(n),
        Err(e) => reply.error(e),
    }
}

/// The error for an extended attribute a folder does not hold. Both folders keep only
/// `user.` attributes, so for any other namespace (`security.selinux`,
/// `system.posix_acl_access`, `trusted.…`) the answer is "not supported on this filesystem"
/// (`EOPNOTSUPP`), not "this file has none" (`ENODATA`). It is also the fast answer: `ls -l`
/// asks every entry for its SELinux label and its ACL, and GNU ls remembers an unsupported
/// answer for the whole device and stops asking, so a listing costs one kernel round trip
/// per entry instead of three. (`ENOSYS` would stop the kernel asking too, for every name,
/// our `user.dat-mirror.*` attributes included.)
pub fn missing_xattr(name: &std::ffi::OsStr) -> Errno {
    if name.as_encoded_bytes().starts_with(b"user.") {
        Errno::NO_XATTR
    } else {
        Errno::ENOTSUP
    }
}

/// The getxattr/listxattr size protocol: size 0 asks for the length; a value longer than
/// `size` is `ERANGE`.
pub fn reply_xattr(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len().try_into().unwrap_or(u32::MAX));
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

/// Answers a `readdir` from a listing made at `opendir`: the items from `offset` on, as many
/// as fit in the reply (the kernel asks again with the offset of the last one it took).
pub fn reply_listing<'a, N: AsRef<std::ffi::OsStr> + 'a>(
    mut reply: ReplyDirectory,
    offset: u64,
    items: impl Iterator<Item = (u64, FileType, &'a N)>,
) {
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    for (i, (ino, kind, name)) in items.enumerate().skip(skip) {
        if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
            break;
        }
    }
    reply.ok();
}
