//! Open files in the control folder: generated text per handle (`cat`), write buffers on
//! site entries (`cp` over an entry, editors saving in place), link files turned into
//! `Mirror` commands on `flush` (not `release`, which is asynchronous), truncation through
//! `setattr`, directory listings and xattrs.

use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, FopenFlags, TimeOrNow};

use super::names::{classify, Name};
use super::ops::{refuse, AliasWish, FolderOp};
use super::table::*;
use crate::model::view::{render_site, render_status_table, xattrs};

impl FolderOp<'_> {
    pub(crate) fn open(&mut self, ino: u64, flags: i32) -> Result<(u64, FopenFlags), Errno> {
        let target = match ino {
            ROOT => return Err(Errno::EISDIR),
            STATUS => Target::Status,
            _ => match self.t.nodes.get(&ino).ok_or(Errno::ENOENT)? {
                Node::Site(k) => Target::Site(*k),
                Node::SiteDir(_) => return Err(Errno::EISDIR),
                Node::Mem(_) => Target::Mem(ino),
            },
        };
        let (_, fh, flags) = self.open_target_ino(target, ino, flags)?;
        Ok((fh, flags))
    }

    pub(crate) fn open_target(
        &mut self,
        target: Target,
        flags: i32,
    ) -> Result<(FileAttr, u64, FopenFlags), Errno> {
        let ino = match target {
            Target::Status => STATUS,
            Target::Mem(ino) => ino,
            Target::Site(k) => self.t.site_ino(k),
        };
        self.open_target_ino(target, ino, flags)
    }

    fn open_target_ino(
        &mut self,
        target: Target,
        ino: u64,
        flags: i32,
    ) -> Result<(FileAttr, u64, FopenFlags), Errno> {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let trunc = writable && flags & libc::O_TRUNC != 0;
        let kind = match target {
            Target::Status if writable => {
                return refuse(
                    Errno::EACCES,
                    "STATUS is generated and read-only; write links into other files",
                )
            }
            Target::Status => {
                let data = render_status_table(&self.view, now_ms()).into_bytes();
                HandleKind::Buffer { data, dirty: false }
            }
            Target::Site(k) => {
                let site = self.view.site(&k);
                let data = match site {
                    Some(_) if trunc => Vec::new(),
                    Some(s) => render_site(s, now_ms()).into_bytes(),
                    // Gone from the view since the kernel looked it up (its removal was
                    // acknowledged). Opening it to write is how `touch` and `cp` begin: let
                    // it open empty, and let setattr(times) or the written link decide.
                    None if writable => Vec::new(),
                    None => return Err(Errno::ENOENT),
                };
                HandleKind::Buffer { data, dirty: trunc }
            }
            Target::Mem(ino) => {
                let m = self.t.mem_mut(ino).ok_or(Errno::ENOENT)?;
                if m.dir {
                    return Err(Errno::EISDIR);
                }
                if trunc {
                    m.data.clear();
                    m.mtime = SystemTime::now();
                }
                HandleKind::Mem
            }
        };
        let direct = matches!(kind, HandleKind::Buffer { .. });
        let fh = self.t.alloc_fh(Handle {
            ino,
            writable,
            kind,
        });
        let attr = match target {
            Target::Site(k) => self.site_attr(ino, k, false),
            _ => self.getattr(ino)?,
        };
        // Generated text differs in length from the size `ls` shows: read it directly.
        let flags = if direct {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::empty()
        };
        Ok((attr, fh, flags))
    }

    pub(crate) fn read(&mut self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let h = self.t.handles.get(&fh).ok_or(Errno::EBADF)?;
        match &h.kind {
            HandleKind::Buffer { data, .. } => Ok(read_at(data, offset, size).to_vec()),
            HandleKind::Mem => {
                Ok(read_at(&self.t.mem(h.ino).ok_or(Errno::EBADF)?.data, offset, size).to_vec())
            }
            HandleKind::Dir(_) => Err(Errno::EISDIR),
        }
    }

    pub(crate) fn write(&mut self, fh: u64, offset: u64, bytes: &[u8]) -> Result<u32, Errno> {
        let t = &mut *self.t;
        let h = t.handles.get_mut(&fh).ok_or(Errno::EBADF)?;
        if !h.writable {
            return Err(Errno::EBADF);
        }
        let ino = h.ino;
        let result = match &mut h.kind {
            HandleKind::Buffer { data, dirty } => {
                *dirty = true;
                write_at(data, offset, bytes, MAX_LINK_BYTES)
            }
            HandleKind::Mem => {
                let m = t.mem_mut(ino).ok_or(Errno::EBADF)?;
                m.mtime = SystemTime::now();
                let max = if m.link {
                    MAX_LINK_BYTES
                } else {
                    MAX_SCRATCH_BYTES
                };
                write_at(&mut m.data, offset, bytes, max)
            }
            HandleKind::Dir(_) => return Err(Errno::EISDIR),
        };
        match result {
            Ok(()) => Ok(bytes.len() as u32),
            Err(()) => refuse(
                Errno::EFBIG,
                "a file in the dat-mirror folder grew too large; link files hold one link",
            ),
        }
    }

    /// `close()`: a link file written into is parsed and becomes a `Mirror` command.
    pub(crate) fn flush(&mut self, fh: u64) -> Result<(), Errno> {
        let Some(h) = self.t.handles.get_mut(&fh) else {
            return Ok(());
        };
        let ino = h.ino;
        if let HandleKind::Buffer { data, dirty } = &mut h.kind {
            if !*dirty || data.is_empty() {
                return Ok(());
            }
            *dirty = false;
            let data = data.clone();
            let Some(Node::Site(k)) = self.t.nodes.get(&ino) else {
                return Ok(());
            };
            let k = *k;
            let alias = self.view.site(&k).and_then(|s| s.alias.clone());
            let name = alias.clone().unwrap_or_else(|| k.to_hex());
            let key = self.link_key(&data, &name, alias.is_none().then_some(k))?;
            let wish = match alias {
                Some(a) => AliasWish::Set(a),
                None => AliasWish::Keep,
            };
            return self.mirror(key, wish);
        }
        let Some(m) = self.t.mem(ino) else {
            return Ok(());
        };
        if !m.link || !m.linked || m.data.is_empty() {
            return Ok(());
        }
        let (name, data) = (m.name.clone(), m.data.clone());
        let Name::Alias(alias) = classify(name.as_ref()) else {
            return Ok(());
        };
        let key = self.link_key(&data, &name, None)?;
        self.mirror(key, AliasWish::Set(alias))?;
        self.t.mem_became_site(ino, key);
        Ok(())
    }

    /// Last close: an unresolved link file (empty, or refused at flush) disappears.
    pub(crate) fn release(&mut self, fh: u64) {
        let Some(h) = self.t.handles.remove(&fh) else {
            return;
        };
        let still_open = self.t.handles.values().any(|o| o.ino == h.ino);
        if let Some(m) = self.t.mem(h.ino) {
            if m.link && m.linked && !still_open {
                let name = m.name.clone();
                self.t.remove_mem_name(&name);
            }
        }
        self.t.drop_mem_if_unused(h.ino);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn setattr(
        &mut self,
        ino: u64,
        mode: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<u64>,
    ) -> Result<FileAttr, Errno> {
        let time = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => SystemTime::now(),
        };
        match ino {
            ROOT => {}
            STATUS if size.is_some() => {
                return refuse(Errno::EACCES, "STATUS is generated and read-only")
            }
            STATUS => {}
            _ => match self.t.nodes.get(&ino).ok_or(Errno::ENOENT)? {
                Node::Site(k) | Node::SiteDir(k) => {
                    let k = *k;
                    if let Some(size) = size {
                        let t = &mut *self.t;
                        for (id, h) in t
                            .handles
                            .iter_mut()
                            .filter(|(_, h)| h.ino == ino && h.writable)
                        {
                            if let (HandleKind::Buffer { data, dirty }, true) =
                                (&mut h.kind, fh.is_none_or(|f| f == *id))
                            {
                                data.resize(size.min(MAX_LINK_BYTES as u64) as usize, 0);
                                *dirty = true;
                            }
                        }
                    }
                    // `touch` on an entry being removed (or whose removal was acknowledged
                    // since the kernel opened it) asks to keep it after all.
                    if atime.is_some() || mtime.is_some() {
                        self.keep_if_removing(k)?;
                    }
                }
                Node::Mem(_) => {
                    let m = self.t.mem_mut(ino).ok_or(Errno::ENOENT)?;
                    // `touch name` where name is not a key: a link file that will never get
                    // a link. Say so now (touch reports it) instead of letting it vanish.
                    if m.link
                        && m.data.is_empty()
                        && size.is_none()
                        && mode.is_none()
                        && (atime.is_some() || mtime.is_some())
                    {
                        return refuse(
                            Errno::EINVAL,
                            format!(
                                "{:?} is not a site key (64 hex or 52 z-base32 characters); to give a \
                                 site a name, write its link into the file: `echo hyper://<key> > {}`",
                                m.name, m.name
                            ),
                        );
                    }
                    if let Some(size) = size {
                        let max = if m.link {
                            MAX_LINK_BYTES
                        } else {
                            MAX_SCRATCH_BYTES
                        };
                        if size > max as u64 {
                            return Err(Errno::EFBIG);
                        }
                        m.data.resize(size as usize, 0);
                        m.mtime = SystemTime::now();
                    }
                    if let Some(mode) = mode {
                        m.perm = (mode & 0o7777) as u16;
                    }
                    if let Some(t) = atime {
                        m.atime = time(t);
                    }
                    if let Some(t) = mtime {
                        m.mtime = time(t);
                    }
                    m.ctime = SystemTime::now();
                }
            },
        }
        self.getattr(ino)
    }

    pub(crate) fn opendir(&mut self, ino: u64) -> Result<u64, Errno> {
        let entries = match ino {
            ROOT => {
                let view = std::mem::take(&mut self.view);
                let entries = self.t.listing(&view);
                self.view = view;
                entries
            }
            _ => match self.t.nodes.get(&ino) {
                Some(Node::SiteDir(_)) => vec![],
                Some(Node::Mem(m)) if m.dir => vec![],
                Some(_) => return Err(Errno::ENOTDIR),
                None => return Err(Errno::ENOENT),
            },
        };
        let mut all = entries;
        if ino != ROOT {
            all.splice(
                0..0,
                [
                    (ino, FileType::Directory, ".".into()),
                    (ROOT, FileType::Directory, "..".into()),
                ],
            );
        }
        Ok(self.t.alloc_fh(Handle {
            ino,
            writable: false,
            kind: HandleKind::Dir(all),
        }))
    }

    /// The site an inode shows, for xattrs.
    pub(crate) fn xattrs(&self, ino: u64) -> Vec<(String, Vec<u8>)> {
        match self.t.nodes.get(&ino) {
            Some(Node::Site(k)) | Some(Node::SiteDir(k)) => {
                self.view.site(k).map(xattrs).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }
}
