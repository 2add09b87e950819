//! What each filesystem operation on the control folder does: which names become commands
//! (`Mirror` / `Unmirror` appended through the backend), which stay in memory, and which are
//! refused with `EINVAL` plus a log line saying what to do instead. Every operation is one
//! [`FolderOp`]: it locks the table once, so two `touch`es of one key append one command.
//!
//! A site name created or touched means "mirror it" (issue 14 item 2): `create` appends
//! `Mirror` for an entry shown as removing, `setattr(times)` for one removing or gone, and a
//! site inode never answers `ENOENT` (the kernel still holds it for up to a second after
//! the mirrors acknowledged its removal). Only `unlink`/`rmdir` by name append `Unmirror`.

use std::ffi::OsStr;
use std::sync::{Arc, MutexGuard};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FopenFlags};

use super::names::{classify, Name};
use super::table::*;
use super::{ControlBackend, ControlFs};
use crate::model::command::Command;
use crate::model::keys::Key;
use crate::model::view::{render_site, render_status_table, StatusView};

/// What a `Mirror` should say about the alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AliasWish {
    /// `touch`/`mkdir`: keep whatever alias the site has (none for a new site).
    Keep,
    Set(String),
    Clear,
}

/// The `Mirror` command needed so that `key` is mirrored with the wished alias, or `None`
/// when the log already says so (an existing entry appends nothing).
pub(crate) fn mirror_command(view: &StatusView, key: Key, wish: AliasWish) -> Option<Command> {
    let site = view.site(&key);
    let current = site.and_then(|s| s.alias.clone());
    let alias = match wish {
        AliasWish::Keep => current.clone(),
        AliasWish::Set(a) => Some(a),
        AliasWish::Clear => None,
    };
    match site {
        Some(s) if !s.removing && alias == current => None,
        _ => Some(Command::Mirror { key, alias }),
    }
}

pub(crate) fn refuse<T>(errno: Errno, why: impl std::fmt::Display) -> Result<T, Errno> {
    tracing::warn!("dat-mirror folder: {why}");
    Err(errno)
}

const NO_LINK: &str = "contains no hyper:// or dat:// link and no key; write one into it, \
                       e.g. `echo hyper://<64 hex chars> > blog`";

/// One operation on the folder (the context every callback runs in): the table, locked
/// for the whole operation, a view of the logs taken at its start (refreshed after each
/// append), and the backend.
pub(crate) struct FolderOp<'a> {
    pub t: MutexGuard<'a, Table>,
    pub view: Arc<StatusView>,
    backend: &'a dyn ControlBackend,
}

impl<'a> FolderOp<'a> {
    /// Locks the table and takes a fresh view.
    pub(crate) fn begin(fs: &'a ControlFs) -> FolderOp<'a> {
        let mut op = FolderOp::lite(fs);
        op.view = fs.backend.view();
        op
    }

    /// A lock without a view, for operations that never look at sites.
    pub(crate) fn lite(fs: &'a ControlFs) -> FolderOp<'a> {
        let t = fs
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        FolderOp {
            t,
            view: Arc::default(),
            backend: &*fs.backend,
        }
    }
}

impl FolderOp<'_> {
    /// Appends `cmd` (if any) and refreshes the view so the entry shows at once.
    fn append(&mut self, cmd: Option<Command>) -> Result<(), Errno> {
        let Some(cmd) = cmd else { return Ok(()) };
        let key = cmd.key();
        match self.backend.append(cmd.clone()) {
            Ok(seq) => {
                tracing::info!("dat-mirror folder: appended {cmd:?} as #{seq}");
                if matches!(cmd, Command::Mirror { .. }) {
                    self.t.first_seen.insert(key, SystemTime::now());
                }
                self.view = self.backend.view();
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    "dat-mirror folder: could not write {cmd:?} to the command log, so nothing \
                     changed: {e}"
                );
                Err(super::errno(&e))
            }
        }
    }

    /// Makes sure `key` is mirrored with the wished alias. An alias moved to `key` is taken
    /// off the site that had it (which stays mirrored, listed under its key), so one alias
    /// never names two sites on the mirrors.
    pub(crate) fn mirror(&mut self, key: Key, wish: AliasWish) -> Result<(), Errno> {
        let moved = match &wish {
            AliasWish::Set(a) => self
                .view
                .sites
                .iter()
                .filter(|s| s.key != key && !s.removing && s.alias.as_deref() == Some(a.as_str()))
                .map(|s| s.key)
                .collect(),
            _ => Vec::new(),
        };
        let cmd = mirror_command(&self.view, key, wish);
        self.append(cmd)?;
        for other in moved {
            let cmd = mirror_command(&self.view, other, AliasWish::Clear);
            self.append(cmd)?;
        }
        Ok(())
    }

    /// `touch`/`create` of a site that is being removed, or whose removal every mirror has
    /// acknowledged while the kernel still holds its inode: mirror it again (keeping its
    /// alias while the view still has it). Appends nothing for a site that is mirrored.
    pub(crate) fn keep_if_removing(&mut self, key: Key) -> Result<(), Errno> {
        match self.view.site(&key) {
            Some(s) if !s.removing => Ok(()),
            _ => self.mirror(key, AliasWish::Keep),
        }
    }

    fn unmirror(&mut self, key: Key) -> Result<(), Errno> {
        let removing = self.view.site(&key).is_some_and(|s| s.removing);
        self.append((!removing).then_some(Command::Unmirror { key }))
    }

    pub(crate) fn site_attr(&mut self, ino: u64, key: Key, dir: bool) -> FileAttr {
        let site = self.view.site(&key);
        self.t.site_attr(ino, site, key, dir)
    }

    pub(crate) fn getattr(&mut self, ino: u64) -> Result<FileAttr, Errno> {
        match ino {
            ROOT => Ok(self.t.root_attr()),
            STATUS => Ok(self
                .t
                .status_attr(render_status_table(&self.view, now_ms()).len() as u64)),
            _ => match self.t.nodes.get(&ino) {
                Some(Node::Site(k)) | Some(Node::SiteDir(k)) => {
                    let (k, dir) = (*k, matches!(self.t.nodes.get(&ino), Some(Node::SiteDir(_))));
                    // Never ENOENT for a site inode: the kernel asks only for inodes it
                    // holds (a cached entry, an open file), and a site whose removal was
                    // acknowledged a moment ago is still one of those. Its permission check
                    // before `touch`'s open and `touch`'s setattr through the fd both come
                    // here; ENOENT made them fail. A gone site no longer resolves by name
                    // (lookup, listing), so it leaves the folder all the same.
                    Ok(self.site_attr(ino, k, dir))
                }
                Some(Node::Mem(_)) => self.t.mem_attr(ino).ok_or(Errno::ENOENT),
                None => Err(Errno::ENOENT),
            },
        }
    }

    fn target_attr(&mut self, target: Target) -> Result<FileAttr, Errno> {
        match target {
            Target::Status => self.getattr(STATUS),
            Target::Mem(ino) => self.getattr(ino),
            Target::Site(k) => {
                let ino = self.t.site_ino(k);
                Ok(self.site_attr(ino, k, false))
            }
        }
    }

    fn resolve(&mut self, name: &OsStr) -> Option<Target> {
        self.t.resolve(&self.view, name.to_str()?)
    }

    fn in_root(&self, parent: u64, what: &str) -> Result<(), Errno> {
        if parent == ROOT {
            Ok(())
        } else {
            refuse(
                Errno::EACCES,
                format!("{what}: only the top of the folder holds entries"),
            )
        }
    }

    pub(crate) fn lookup(&mut self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        if parent != ROOT {
            return Err(Errno::ENOENT);
        }
        let target = self.resolve(name).ok_or(Errno::ENOENT)?;
        self.target_attr(target)
    }

    /// `touch <key>`, `echo ... > <name>`, `cp x.url .`, editors' temp files. A site name
    /// created means "mirror it", decided here and now: an entry shown as removing gets its
    /// `Mirror` before the kernel's next callback, so a removal acknowledged meanwhile
    /// cannot make the entry vanish under the file the kernel just opened.
    pub(crate) fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        perm: u16,
        flags: i32,
    ) -> Result<(FileAttr, u64, FopenFlags), Errno> {
        self.in_root(parent, &format!("cannot create {name:?}"))?;
        let excl = flags & libc::O_EXCL != 0;
        if let Some(target) = self.resolve(name) {
            if excl {
                return Err(Errno::EEXIST);
            }
            if let Target::Site(k) = target {
                self.keep_if_removing(k)?;
            }
            return self.open_target(target, flags);
        }
        match classify(name) {
            Name::Invalid(why) => refuse(Errno::EINVAL, format!("cannot create {name:?}: {why}")),
            Name::Reserved => Err(Errno::EEXIST),
            Name::Key(k) => {
                self.mirror(k, AliasWish::Keep)?;
                self.open_target(Target::Site(k), flags | libc::O_TRUNC)
            }
            Name::Scratch | Name::Alias(_) => {
                let link = classify(name) != Name::Scratch;
                let ino = self.t.new_mem(&name.to_string_lossy(), link, false, perm);
                self.open_target(Target::Mem(ino), flags)
            }
        }
    }

    pub(crate) fn mkdir(
        &mut self,
        parent: u64,
        name: &OsStr,
        perm: u16,
    ) -> Result<FileAttr, Errno> {
        self.in_root(parent, &format!("cannot make folder {name:?}"))?;
        if self.resolve(name).is_some() {
            return Err(Errno::EEXIST);
        }
        match classify(name) {
            Name::Key(k) => {
                self.mirror(k, AliasWish::Keep)?;
                let ino = self.t.site_dir_ino(k);
                Ok(self.site_attr(ino, k, true))
            }
            Name::Scratch => {
                let ino = self.t.new_mem(&name.to_string_lossy(), false, true, perm);
                self.getattr(ino)
            }
            Name::Reserved => Err(Errno::EEXIST),
            Name::Alias(_) => refuse(
                Errno::EINVAL,
                format!(
                    "mkdir {name:?}: a folder here must be named by a site key (64 hex or 52 \
                     z-base32 characters); to give a site a name, write its link into a file: \
                     `echo hyper://<key> > {}`",
                    name.to_string_lossy()
                ),
            ),
            Name::Invalid(why) => refuse(Errno::EINVAL, format!("mkdir {name:?}: {why}")),
        }
    }

    /// `rm`: a site entry appends `Unmirror`; an in-memory file just goes.
    pub(crate) fn unlink(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        if parent != ROOT {
            return Err(Errno::ENOENT);
        }
        match self.resolve(name).ok_or(Errno::ENOENT)? {
            Target::Status if dir => Err(Errno::ENOTDIR),
            Target::Status => refuse(Errno::EPERM, "STATUS is generated and cannot be removed"),
            Target::Site(k) => self.unmirror(k),
            Target::Mem(ino) => {
                let is_dir = self.t.mem(ino).is_some_and(|m| m.dir);
                if is_dir != dir {
                    return Err(if dir { Errno::ENOTDIR } else { Errno::EISDIR });
                }
                self.t.remove_mem_name(&name.to_string_lossy());
                Ok(())
            }
        }
    }

    /// The key a link file's content names, checked against what the name requires.
    pub(crate) fn link_key(
        &self,
        data: &[u8],
        name: &str,
        required: Option<Key>,
    ) -> Result<Key, Errno> {
        let found = Key::find_in_text(&String::from_utf8_lossy(data));
        match (found, required) {
            (None, _) => refuse(Errno::EINVAL, format!("{name:?} {NO_LINK}")),
            (Some(k), Some(r)) if k != r => refuse(
                Errno::EINVAL,
                format!(
                    "{name:?} is named by key {} but its content names {}; name the file after \
                     the site (or give it a plain name such as `blog`)",
                    r.short(),
                    k.short()
                ),
            ),
            (Some(k), _) => Ok(k),
        }
    }

    pub(crate) fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), Errno> {
        if parent != ROOT || newparent != ROOT {
            return refuse(
                Errno::EACCES,
                format!(
                    "cannot move {name:?} to {newname:?}: only the top of the folder holds entries"
                ),
            );
        }
        if flags & libc::RENAME_EXCHANGE != 0 {
            return refuse(
                Errno::EINVAL,
                "exchanging two entries is not supported here",
            );
        }
        let src = self.resolve(name).ok_or(Errno::ENOENT)?;
        if flags & libc::RENAME_NOREPLACE != 0 && self.resolve(newname).is_some() {
            return Err(Errno::EEXIST);
        }
        if name == newname {
            return Ok(());
        }
        let new = newname.to_string_lossy().into_owned();
        let class = classify(newname);
        match (src, class) {
            (_, Name::Invalid(why)) => refuse(Errno::EINVAL, format!("cannot rename to {newname:?}: {why}")),
            (Target::Status, _) => refuse(Errno::EPERM, "STATUS is generated and cannot be moved"),
            (_, Name::Reserved) => refuse(Errno::EPERM, "STATUS is generated and cannot be replaced"),
            (Target::Mem(ino), Name::Scratch) => {
                self.t.remove_mem_name(&new);
                self.t.mem_names.remove(&name.to_string_lossy().into_owned());
                let m = self.t.mem_mut(ino).ok_or(Errno::ENOENT)?;
                (m.name, m.link, m.ctime) = (new.clone(), false, SystemTime::now());
                self.t.mem_names.insert(new, ino);
                Ok(())
            }
            (Target::Mem(ino), class) => {
                let m = self.t.mem(ino).ok_or(Errno::ENOENT)?;
                if m.dir {
                    return refuse(Errno::EINVAL, format!("{newname:?}: folders here must be named by a site key"));
                }
                let (required, wish) = match &class {
                    Name::Key(k) => (Some(*k), AliasWish::Keep),
                    Name::Alias(a) => (None, AliasWish::Set(a.clone())),
                    _ => return Err(Errno::EINVAL),
                };
                if m.data.is_empty() && required.is_none() {
                    // An empty file under an alias: a link file still being written.
                    self.t.mem_names.remove(&name.to_string_lossy().into_owned());
                    self.t.remove_mem_name(&new);
                    let m = self.t.mem_mut(ino).ok_or(Errno::ENOENT)?;
                    (m.name, m.link) = (new.clone(), true);
                    self.t.mem_names.insert(new, ino);
                    return Ok(());
                }
                let key = match required {
                    Some(k) if m.data.is_empty() => k,
                    _ => self.link_key(&m.data, &new, required)?,
                };
                self.mirror(key, wish)?;
                self.t.remove_mem_name(&new);
                self.t.mem_became_site(ino, key);
                Ok(())
            }
            (Target::Site(k), Name::Scratch) => {
                // Editors back a file up by renaming it to `name~`: keep the site, give the
                // backup the site's screen.
                let text = self.view.site(&k).map(|s| render_site(s, now_ms())).unwrap_or_default();
                let perm = 0o644;
                let ino = self.t.new_mem(&new, false, false, perm);
                if let Some(m) = self.t.mem_mut(ino) {
                    m.data = text.into_bytes();
                }
                Ok(())
            }
            (Target::Site(k), Name::Alias(a)) => {
                self.mirror(k, AliasWish::Set(a))?;
                self.t.remove_mem_name(&new);
                Ok(())
            }
            (Target::Site(k), Name::Key(k2)) if k2 == k => self.mirror(k, AliasWish::Clear),
            (Target::Site(_), _) => refuse(
                Errno::EINVAL,
                format!("cannot rename {name:?} to another site's key {newname:?}: `rm` it and `touch` the other key"),
            ),
        }
    }
}
