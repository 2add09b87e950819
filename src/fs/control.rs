//! The laptop's control folder as a FUSE filesystem: the `ControlBackend` it talks to, the
//! `mount` entry point and the `fuser::Filesystem` glue that turns kernel callbacks into
//! the operations of `ops.rs` and `handles.rs` (callback → one table lock → reply).
//!
//! Mount options: `fsname=dat-mirror`, `subtype=dat-mirror`, `default_permissions` (the
//! kernel enforces the modes shown: `STATUS` 0444, entries 0644), `nodev`, `nosuid`,
//! `noexec`, `noatime`; ACL `Owner`; one session thread. No `auto_unmount`: it needs
//! fusermount3 plus `allow_other`, and measured here it sometimes left a dead mount behind
//! when the process exited right after mounting; instead `mount` detaches a dead mount
//! left by an earlier run before mounting.
//!
//! Shell commands → callbacks (measured, kernel 6.18): `touch new` = lookup, create,
//! flush, setattr(times), flush, release; `touch existing` = lookup, open(O_WRONLY), flush,
//! setattr(times), flush, release; `echo x > new` (bash) = lookup, create(O_TRUNC), flush
//! (empty: bash dup2s and closes the first fd), write, flush, release; `cp a dir/` =
//! lookup, create(O_EXCL), write, flush, release; `cp a existing` = lookup, open(O_WRONLY,
//! no O_TRUNC), setattr(size 0, no fh), write, flush, release; vim saving in place =
//! `.x.swp` create/write/fsync, open(O_WRONLY), setattr(size 0, fh), write, fsync,
//! setattr(mode), flush, release, setxattr(posix_acl); `mv` = rename; `rm` = unlink;
//! `mkdir` = lookup, mkdir; `rmdir` = rmdir (only while the directory returned by mkdir is
//! cached; later the kernel answers ENOTDIR itself, since entries are files);
//! `getfattr -d` = listxattr(0), listxattr(n), then getxattr(0)/getxattr(n) per name.
//! Hence commands are decided on flush (release is asynchronous) and an empty flush is a
//! no-op.
//!
//! Caching: entries are cached for 1 s; attributes of site entries and `STATUS` are not
//! cached (they change under the user); generated text is opened with `direct_io` so `cat`
//! reads all of it whatever size `ls -l` shows (the bytes the mirror holds).

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr, Request, TimeOrNow,
};

use super::table::{HandleKind, Table, ROOT, STATUS};
use crate::model::command::Command;
use crate::model::view::StatusView;

/// What the control folder needs from the rest of the laptop side.
pub trait ControlBackend: Send + Sync + 'static {
    /// The current status view; cheap (called on lookup/readdir/getattr/read).
    fn view(&self) -> StatusView;
    /// Appends to the laptop's command log (blocking) and returns the entry's seq. After it
    /// returns, `view()` must show the command.
    fn append(&self, command: Command) -> Result<u64, String>;
}

/// The filesystem: one table behind one lock, and the backend.
pub struct ControlFs {
    pub(crate) table: Mutex<Table>,
    pub(crate) backend: Arc<dyn ControlBackend>,
}

const ENTRY_TTL: Duration = Duration::from_secs(1);

impl ControlFs {
    pub fn new(backend: Arc<dyn ControlBackend>) -> ControlFs {
        ControlFs {
            table: Mutex::new(Table::new()),
            backend,
        }
    }

    /// Attributes are not cached (sizes and times follow the mirrors), except the root's.
    fn attr_ttl(attr: &FileAttr) -> Duration {
        if attr.ino.0 == ROOT {
            ENTRY_TTL
        } else {
            Duration::ZERO
        }
    }

    fn entry(reply: ReplyEntry, result: Result<FileAttr, Errno>) {
        match result {
            Ok(attr) => {
                reply.entry_with_ttls(&Self::attr_ttl(&attr), &ENTRY_TTL, &attr, Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn attr(reply: ReplyAttr, result: Result<FileAttr, Errno>) {
        match result {
            Ok(attr) => reply.attr(&Self::attr_ttl(&attr), &attr),
            Err(e) => reply.error(e),
        }
    }

    fn empty(reply: ReplyEmpty, result: Result<(), Errno>) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

/// Mounts the control folder at `mountpoint` and serves it on a background thread until
/// the returned session is dropped (or `umount_and_join`ed). A stale mount left by a
/// crashed run ("Transport endpoint is not connected") is detached first.
pub fn mount(
    mountpoint: &Path,
    backend: Arc<dyn ControlBackend>,
) -> std::io::Result<fuser::BackgroundSession> {
    super::detach_stale(mountpoint);
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("dat-mirror".into()),
        MountOption::Subtype("dat-mirror".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoExec,
        MountOption::NoAtime,
    ];
    fuser::spawn_mount(ControlFs::new(backend), mountpoint, &config).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot mount the dat-mirror folder at {}: {e}; check that the folder exists and \
                 is empty, and that FUSE works here (/dev/fuse, or fusermount3 for non-root users)",
                mountpoint.display()
            ),
        )
    })
}

impl Filesystem for ControlFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        Self::entry(reply, self.cx().lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut cx = self.cx();
        let mut result = cx.getattr(ino.0);
        // fstat on an open STATUS reports exactly what this handle reads.
        if let (Ok(attr), Some(fh)) = (&mut result, fh) {
            if let Some(HandleKind::Buffer { data, .. }) = cx.t.handles.get(&fh.0).map(|h| &h.kind)
            {
                if ino.0 == STATUS {
                    attr.size = data.len() as u64;
                }
            }
        }
        Self::attr(reply, result);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        Self::attr(
            reply,
            self.cx()
                .setattr(ino.0, mode, size, atime, mtime, fh.map(|f| f.0)),
        );
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        Self::entry(
            reply,
            self.cx()
                .mkdir(parent.0, name, (mode & !umask & 0o7777) as u16),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, self.cx().unlink(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        // Site entries are files, so the kernel only lets `rmdir <key>` through while the
        // directory `mkdir <key>` returned is still cached (1 s); `rm` always works.
        Self::empty(reply, self.cx().unlink(parent.0, name, true));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        Self::empty(
            reply,
            self.cx()
                .rename(parent.0, name, newparent.0, newname, flags.bits()),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.cx().open(ino.0, flags.0) {
            Ok((fh, flags)) => reply.opened(FileHandle(fh), flags),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.cx_lite().read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.cx_lite().write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        Self::empty(reply, self.cx().flush(fh.0));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.cx_lite().release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.cx().opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let cx = self.cx_lite();
        let Some(HandleKind::Dir(entries)) = cx.t.handles.get(&fh.0).map(|h| &h.kind) else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.cx_lite().t.handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .cx()
            .create(parent.0, name, (mode & !umask & 0o7777) as u16, flags)
        {
            Ok((attr, fh, open_flags)) => reply.created(
                &Self::attr_ttl(&attr),
                &attr,
                Generation(0),
                FileHandle(fh),
                open_flags,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let attrs = self.cx().xattrs(ino.0);
        match attrs.iter().find(|(n, _)| OsStr::new(n) == name) {
            None => reply.error(Errno::NO_XATTR),
            Some((_, value)) => xattr_reply(reply, value, size),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut list = Vec::new();
        for (name, _) in self.cx().xattrs(ino.0) {
            list.extend_from_slice(name.as_bytes());
            list.push(0);
        }
        xattr_reply(reply, &list, size);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOTSUP);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let known = self
            .cx()
            .xattrs(ino.0)
            .iter()
            .any(|(n, _)| OsStr::new(n) == name);
        reply.error(if known { Errno::EPERM } else { Errno::NO_XATTR });
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

/// The getxattr/listxattr size protocol: size 0 asks for the length.
fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl ControlFs {
    /// A lock without a view, for operations that never look at sites.
    pub(crate) fn cx_lite(&self) -> super::ops::Cx<'_> {
        super::ops::Cx::lite(self)
    }
}
