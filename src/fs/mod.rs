//! The laptop side's filesystems: the control folder (`touch`/`rm`/`cat` steer the mirrors)
//! and its name rules, plus the helpers tests use to find out whether FUSE can be used here.
//!
//! Tests that mount: call `require_fuse_or_skip("my_test")` first and return if it says
//! `false`. Outside CI a machine without FUSE skips such tests loudly (a line on stderr);
//! with `CI=true` the same situation fails the test, so CI cannot silently skip them:
//!
//! ```ignore
//! #[test]
//! fn touch_appends_mirror() {
//!     if !dat_mirror::fs::require_fuse_or_skip("touch_appends_mirror") {
//!         return;
//!     }
//!     // mount, use std::fs, drop the session
//! }
//! ```

pub mod control;
mod handles;
pub mod names;
mod ops;
pub mod site_tree;
mod table;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_edit;

pub use control::{mount, ControlBackend, ControlFs};

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
/// run that died, so mounting there again works. Used by both of our filesystems; callers
/// that create the mount point first must call it before (a dead mount point makes
/// `create_dir_all` fail with "File exists").
pub fn detach_stale(mountpoint: &std::path::Path) {
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
    let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
        mountpoint.as_os_str(),
    )) else {
        return;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let status = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(mountpoint)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            tracing::warn!(
                "could not detach {}: run `fusermount3 -u -z {}`",
                mountpoint.display(),
                mountpoint.display()
            );
        }
    }
}
