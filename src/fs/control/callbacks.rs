//! The `fuser::Filesystem` glue of the control folder: each kernel callback takes one
//! [`FolderOp`] (one table lock, one fresh view), runs the operation of `ops.rs` or
//! `handles.rs` and answers through the reply helpers of `fs::fuse`. No decisions here.

use std::ffi::OsStr;
use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr,
    Request, TimeOrNow,
};

use super::ops::FolderOp;
use super::table::{HandleKind, Node, ROOT, STATUS};
use super::ControlFs;
use crate::fs::fuse::{
    missing_xattr, reply_attr, reply_data, reply_empty, reply_entry, reply_open, reply_written,
    reply_xattr,
};
use crate::model::view::XATTR_PREFIX;

/// How long the kernel may cache a name → inode answer.
const ENTRY_TTL: Duration = Duration::from_secs(1);
/// How long the kernel may cache the attributes of the root and of a site entry: the
/// watcher (`watch.rs`) makes it forget a site's as soon as they change.
pub(super) const ATTR_TTL: Duration = Duration::from_secs(1);

/// How long the kernel may keep `attr`: `STATUS` (its size follows the clock) and files
/// kept in memory (edited through other names) are never cached.
fn attr_ttl(op: &FolderOp, attr: &FileAttr) -> Duration {
    match op.t.nodes.get(&attr.ino.0) {
        _ if attr.ino.0 == ROOT => ATTR_TTL,
        Some(Node::Site(_)) | Some(Node::SiteDir(_)) => ATTR_TTL,
        _ => Duration::ZERO,
    }
}

/// Answers with the result of `op`, which is still held (its table lock orders this answer
/// before any invalidation by the watcher; see `watch.rs`).
fn entry(op: &FolderOp, reply: ReplyEntry, result: Result<FileAttr, Errno>) {
    let ttl = result.as_ref().map_or(Duration::ZERO, |a| attr_ttl(op, a));
    reply_entry(reply, result, ttl, ENTRY_TTL);
}

fn attr(op: &FolderOp, reply: ReplyAttr, result: Result<FileAttr, Errno>) {
    let ttl = result.as_ref().map_or(Duration::ZERO, |a| attr_ttl(op, a));
    reply_attr(reply, result, ttl);
}

impl Filesystem for ControlFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut op = FolderOp::begin(self);
        let result = op.lookup(parent.0, name);
        entry(&op, reply, result);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut op = FolderOp::begin(self);
        let mut result = op.getattr(ino.0);
        // fstat on an open STATUS reports exactly what this handle reads.
        if let (Ok(attr), Some(fh)) = (&mut result, fh) {
            if let Some(HandleKind::Buffer { data, .. }) = op.t.handles.get(&fh.0).map(|h| &h.kind)
            {
                if ino.0 == STATUS {
                    attr.size = data.len() as u64;
                }
            }
        }
        attr(&op, reply, result);
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
        let mut op = FolderOp::begin(self);
        let result = op.setattr(ino.0, mode, size, atime, mtime, fh.map(|f| f.0));
        attr(&op, reply, result);
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
        let mut op = FolderOp::begin(self);
        let result = op.mkdir(parent.0, name, (mode & !umask & 0o7777) as u16);
        entry(&op, reply, result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, FolderOp::begin(self).unlink(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        // Site entries are files, so the kernel only lets `rmdir <key>` through while the
        // directory `mkdir <key>` returned is still cached (1 s); `rm` always works.
        reply_empty(reply, FolderOp::begin(self).unlink(parent.0, name, true));
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
        reply_empty(
            reply,
            FolderOp::begin(self).rename(parent.0, name, newparent.0, newname, flags.bits()),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        tracing::debug!(target: "latency", ino = ino.0, "fuse open");
        reply_open(reply, FolderOp::begin(self).open(ino.0, flags.0));
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
        reply_data(reply, FolderOp::lite(self).read(fh.0, offset, size));
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
        reply_written(reply, FolderOp::lite(self).write(fh.0, offset, data));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, FolderOp::begin(self).flush(fh.0));
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
        FolderOp::lite(self).release(fh.0);
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
        let result = FolderOp::begin(self).opendir(ino.0);
        reply_open(reply, result.map(|fh| (fh, FopenFlags::empty())));
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let op = FolderOp::lite(self);
        let Some(HandleKind::Dir(entries)) = op.t.handles.get(&fh.0).map(|h| &h.kind) else {
            return reply.error(Errno::EBADF);
        };
        let items = entries.iter().map(|(ino, kind, name)| (*ino, *kind, name));
        crate::fs::fuse::reply_listing(reply, offset, items);
    }

    /// Listings come with each entry's attributes (READDIRPLUS, asked for in `init`), so
    /// `ls -l` finds them cached instead of asking once per entry.
    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut op = FolderOp::begin(self);
        // The listing is lent out of its handle while attributes are looked up (both live
        // in the table this operation holds locked), instead of copied on every call.
        let Some(HandleKind::Dir(slot)) = op.t.handles.get_mut(&fh.0).map(|h| &mut h.kind) else {
            return reply.error(Errno::EBADF);
        };
        let entries = std::mem::take(slot);
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (ino, _, name)) in entries.iter().enumerate().skip(skip) {
            // An entry whose inode went away since opendir is left out, as a plain
            // listing of a changing folder may leave it out.
            let Ok(attr) = op.getattr(*ino) else { continue };
            let ttl = if name == "." || name == ".." {
                Duration::ZERO
            } else {
                attr_ttl(&op, &attr).min(ENTRY_TTL)
            };
            if reply.add(
                INodeNo(*ino),
                i as u64 + 1,
                name,
                &ttl,
                &attr,
                Generation(0),
            ) {
                break;
            }
        }
        if let Some(HandleKind::Dir(slot)) = op.t.handles.get_mut(&fh.0).map(|h| &mut h.kind) {
            *slot = entries;
        }
        reply.ok();
    }

    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS) {
            tracing::debug!("the kernel offers no READDIRPLUS ({missing:?}); listings are plain");
        }
        Ok(())
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        FolderOp::lite(self).t.handles.remove(&fh.0);
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
        tracing::debug!(target: "latency", "fuse create");
        let mut op = FolderOp::begin(self);
        match op.create(parent.0, name, (mode & !umask & 0o7777) as u16, flags) {
            Ok((attr, fh, open_flags)) => {
                tracing::debug!(target: "latency", "fuse create reply");
                reply.created(
                    &attr_ttl(&op, &attr),
                    &attr,
                    Generation(0),
                    FileHandle(fh),
                    open_flags,
                )
            }
            Err(e) => reply.error(e),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        crate::fs::fuse::reply_no_ioctl(reply);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // Names outside ours (`ls -l` asks every entry for `security.selinux` and
        // `system.posix_acl_access`) are answered without the table lock or a view.
        if !name.as_encoded_bytes().starts_with(XATTR_PREFIX.as_bytes()) {
            return reply.error(missing_xattr(name));
        }
        let attrs = FolderOp::begin(self).xattrs(ino.0);
        match attrs.iter().find(|(n, _)| OsStr::new(n) == name) {
            None => reply.error(missing_xattr(name)),
            Some((_, value)) => reply_xattr(reply, value, size),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut list = Vec::new();
        for (name, _) in FolderOp::begin(self).xattrs(ino.0) {
            list.extend_from_slice(name.as_bytes());
            list.push(0);
        }
        reply_xattr(reply, &list, size);
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
        let known = FolderOp::begin(self)
            .xattrs(ino.0)
            .iter()
            .any(|(n, _)| OsStr::new(n) == name);
        reply.error(if known {
            Errno::EPERM
        } else {
            missing_xattr(name)
        });
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
