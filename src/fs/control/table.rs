//! The control folder's in-memory state: the inode table (root, `STATUS`, one inode per
//! site, the directory inodes handed out by `mkdir <key>`, and in-memory scratch and
//! pending link files), open file handles, and how names map to sites (alias, hex or
//! z-base32). Decides nothing about commands: see `ops.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

use super::names::{classify, Name, STATUS_NAME};
use crate::model::keys::Key;
use crate::model::view::{SiteView, StatusView};

pub(crate) const ROOT: u64 = 1;
pub(crate) const STATUS: u64 = 2;

/// Largest link file / write buffer on a site entry.
pub(crate) const MAX_LINK_BYTES: usize = 1024 * 1024;
/// Largest scratch file kept in memory.
pub(crate) const MAX_SCRATCH_BYTES: usize = 64 * 1024 * 1024;

/// A file that lives only in memory: an editor/OS scratch file (`link == false`) or a
/// link file being written (`link == true`) that becomes a site once flushed.
#[derive(Debug)]
pub(crate) struct MemFile {
    pub name: String,
    pub data: Vec<u8>,
    pub dir: bool,
    pub link: bool,
    /// Still has a name in the folder (unlinked files live on while open).
    pub linked: bool,
    pub perm: u16,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

#[derive(Debug)]
pub(crate) enum Node {
    /// A site entry (a regular file).
    Site(Key),
    /// The directory inode returned to `mkdir <key>` (the kernel insists mkdir yields a
    /// directory); it is the same site, and later lookups return the site file.
    SiteDir(Key),
    Mem(MemFile),
}

#[derive(Debug)]
pub(crate) enum HandleKind {
    /// Text generated at open (`cat`), or what is being written into a site entry.
    Buffer { data: Vec<u8>, dirty: bool },
    /// Reads and writes go to the `MemFile` itself.
    Mem,
    /// A directory listing snapshot taken at opendir.
    Dir(Vec<(u64, FileType, String)>),
}

#[derive(Debug)]
pub(crate) struct Handle {
    pub ino: u64,
    pub writable: bool,
    pub kind: HandleKind,
}

/// Where a name in the root folder points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Status,
    Mem(u64),
    Site(Key),
}

#[derive(Debug)]
pub(crate) struct Table {
    next_ino: u64,
    next_fh: u64,
    pub site_ino: HashMap<Key, u64>,
    pub site_dir_ino: HashMap<Key, u64>,
    pub nodes: HashMap<u64, Node>,
    /// Root-level in-memory files by name.
    pub mem_names: BTreeMap<String, u64>,
    pub handles: HashMap<u64, Handle>,
    /// When this process first saw (or queued) each site: its mtime until a sync.
    pub first_seen: HashMap<Key, SystemTime>,
    pub uid: u32,
    pub gid: u32,
    pub mounted_at: SystemTime,
    /// The display names of the last view seen ([`display_names`]), so `ls -l` of 1,000
    /// sites does not work them out again for each of its 1,000 lookups.
    names: Names,
}

/// [`display_names`] of one view (a view never changes once made), and each name's index.
#[derive(Debug, Default)]
struct Names {
    view: Option<Arc<StatusView>>,
    list: Arc<Vec<String>>,
    index: HashMap<String, usize>,
}

pub(crate) fn ms_to_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub(crate) fn now_ms() -> u64 {
    crate::util::clock::now_ms()
}

/// The name each site is listed under, parallel to `view.sites`: its alias when that is a
/// usable, unambiguous name (the site with the latest command wins a shared alias), else
/// its hex key.
pub(crate) fn display_names(view: &StatusView) -> Vec<String> {
    let mut order: Vec<usize> = (0..view.sites.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(view.sites[i].seq));
    let mut names = vec![String::new(); view.sites.len()];
    let mut taken = std::collections::HashSet::new();
    for i in order {
        let site = &view.sites[i];
        names[i] = match &site.alias {
            Some(a)
                if classify(a.as_ref()) == Name::Alias(a.clone()) && taken.insert(a.clone()) =>
            {
                a.clone()
            }
            _ => site.key.to_hex(),
        };
    }
    names
}

impl Table {
    pub(crate) fn new() -> Table {
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Table {
            next_ino: 3,
            next_fh: 1,
            site_ino: HashMap::new(),
            site_dir_ino: HashMap::new(),
            nodes: HashMap::new(),
            mem_names: BTreeMap::new(),
            handles: HashMap::new(),
            first_seen: HashMap::new(),
            uid,
            gid,
            mounted_at: SystemTime::now(),
            names: Names::default(),
        }
    }

    /// The display names of `view` (cached for the last view seen).
    fn names(&mut self, view: &Arc<StatusView>) -> &Names {
        if !self
            .names
            .view
            .as_ref()
            .is_some_and(|v| Arc::ptr_eq(v, view))
        {
            let list = display_names(view);
            let mut index = HashMap::with_capacity(list.len());
            for (i, n) in list.iter().enumerate() {
                index.entry(n.clone()).or_insert(i);
            }
            self.names = Names {
                view: Some(view.clone()),
                list: Arc::new(list),
                index,
            };
        }
        &self.names
    }

    pub(crate) fn alloc_ino(&mut self, node: Node) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    pub(crate) fn alloc_fh(&mut self, handle: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, handle);
        fh
    }

    /// The canonical inode of a site (allocated on first use).
    pub(crate) fn site_ino(&mut self, key: Key) -> u64 {
        if let Some(&ino) = self.site_ino.get(&key) {
            return ino;
        }
        let ino = self.alloc_ino(Node::Site(key));
        self.site_ino.insert(key, ino);
        ino
    }

    pub(crate) fn site_dir_ino(&mut self, key: Key) -> u64 {
        if let Some(&ino) = self.site_dir_ino.get(&key) {
            return ino;
        }
        let ino = self.alloc_ino(Node::SiteDir(key));
        self.site_dir_ino.insert(key, ino);
        ino
    }

    pub(crate) fn mem(&self, ino: u64) -> Option<&MemFile> {
        match self.nodes.get(&ino) {
            Some(Node::Mem(m)) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn mem_mut(&mut self, ino: u64) -> Option<&mut MemFile> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Mem(m)) => Some(m),
            _ => None,
        }
    }

    /// What `name` in the root folder is.
    pub(crate) fn resolve(&mut self, view: &Arc<StatusView>, name: &str) -> Option<Target> {
        if name == STATUS_NAME {
            return Some(Target::Status);
        }
        if let Some(&ino) = self.mem_names.get(name) {
            return Some(Target::Mem(ino));
        }
        let names = &self.names(view).index;
        if let Some(&i) = names.get(name) {
            return Some(Target::Site(view.sites[i].key));
        }
        match classify(name.as_ref()) {
            Name::Key(k) => view.site(&k).map(|s| Target::Site(s.key)),
            Name::Alias(a) => {
                let by_display = names.get(a.as_str()).copied();
                let by_alias = || {
                    view.sites
                        .iter()
                        .filter(|s| s.alias.as_deref() == Some(a.as_str()))
                        .max_by_key(|s| s.seq)
                };
                by_display
                    .map(|i| &view.sites[i])
                    .or_else(by_alias)
                    .map(|s| Target::Site(s.key))
            }
            _ => None,
        }
    }

    fn attr(
        &self,
        ino: u64,
        kind: FileType,
        perm: u16,
        size: u64,
        times: [SystemTime; 3],
    ) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: times[0],
            mtime: times[1],
            ctime: times[2],
            crtime: times[2],
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    pub(crate) fn root_attr(&self) -> FileAttr {
        let t = self.mounted_at;
        self.attr(ROOT, FileType::Directory, 0o755, 0, [t, t, t])
    }

    pub(crate) fn status_attr(&self, size: u64) -> FileAttr {
        let t = SystemTime::now();
        self.attr(STATUS, FileType::RegularFile, 0o444, size, [t, t, t])
    }

    /// A site's attributes on inode `ino` (regular file, or directory for `SiteDir`):
    /// size = bytes the mirror holds, mtime = last confirmed sync, else when first seen.
    pub(crate) fn site_attr(
        &mut self,
        ino: u64,
        site: Option<&SiteView>,
        key: Key,
        dir: bool,
    ) -> FileAttr {
        let seen = *self.first_seen.entry(key).or_insert_with(SystemTime::now);
        let mtime = site
            .and_then(|s| s.last_sync_ms)
            .map(ms_to_time)
            .unwrap_or(seen);
        let size = site.map_or(0, |s| s.bytes);
        if dir {
            self.attr(ino, FileType::Directory, 0o755, 0, [mtime, mtime, mtime])
        } else {
            self.attr(
                ino,
                FileType::RegularFile,
                0o644,
                size,
                [mtime, mtime, mtime],
            )
        }
    }

    pub(crate) fn mem_attr(&self, ino: u64) -> Option<FileAttr> {
        let m = self.mem(ino)?;
        let kind = if m.dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        };
        Some(self.attr(
            ino,
            kind,
            m.perm,
            m.data.len() as u64,
            [m.atime, m.mtime, m.ctime],
        ))
    }

    /// A new in-memory file named `name` in the root folder (replacing any of that name).
    pub(crate) fn new_mem(&mut self, name: &str, link: bool, dir: bool, perm: u16) -> u64 {
        self.remove_mem_name(name);
        let t = SystemTime::now();
        let file = MemFile {
            name: name.to_string(),
            data: Vec::new(),
            dir,
            link,
            linked: true,
            perm,
            atime: t,
            mtime: t,
            ctime: t,
        };
        let ino = self.alloc_ino(Node::Mem(file));
        self.mem_names.insert(name.to_string(), ino);
        ino
    }

    /// Takes `name` out of the folder; the file itself goes once no handle uses it.
    pub(crate) fn remove_mem_name(&mut self, name: &str) {
        if let Some(ino) = self.mem_names.remove(name) {
            if let Some(m) = self.mem_mut(ino) {
                m.linked = false;
            }
            self.drop_mem_if_unused(ino);
        }
    }

    pub(crate) fn drop_mem_if_unused(&mut self, ino: u64) {
        let open = self.handles.values().any(|h| h.ino == ino);
        if !open && self.mem(ino).is_some_and(|m| !m.linked) {
            self.nodes.remove(&ino);
        }
    }

    /// A pending link file became site `key`: the inode now is that site, open handles keep
    /// what was written (as a clean buffer).
    pub(crate) fn mem_became_site(&mut self, ino: u64, key: Key) {
        let Some(Node::Mem(m)) = self.nodes.insert(ino, Node::Site(key)) else {
            return;
        };
        if m.linked && self.mem_names.get(&m.name) == Some(&ino) {
            self.mem_names.remove(&m.name);
        }
        self.site_ino.entry(key).or_insert(ino);
        for h in self.handles.values_mut().filter(|h| h.ino == ino) {
            h.kind = HandleKind::Buffer {
                data: m.data.clone(),
                dirty: false,
            };
        }
    }

    /// The root listing: `.`, `..`, `STATUS`, one entry per site, the in-memory files.
    pub(crate) fn listing(&mut self, view: &Arc<StatusView>) -> Vec<(u64, FileType, String)> {
        let mut out = vec![
            (ROOT, FileType::Directory, ".".to_string()),
            (ROOT, FileType::Directory, "..".to_string()),
            (STATUS, FileType::RegularFile, STATUS_NAME.to_string()),
        ];
        let names = self.names(view).list.clone();
        for (site, name) in view.sites.iter().zip(names.iter()) {
            if !self.mem_names.contains_key(name) {
                out.push((self.site_ino(site.key), FileType::RegularFile, name.clone()));
            }
        }
        for (name, &ino) in &self.mem_names {
            let kind = if self.mem(ino).is_some_and(|m| m.dir) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            out.push((ino, kind, name.clone()));
        }
        out
    }
}

/// Writes `data` at `offset` into `buf`, growing it up to `max` bytes.
pub(crate) fn write_at(buf: &mut Vec<u8>, offset: u64, data: &[u8], max: usize) -> Result<(), ()> {
    let end = offset.checked_add(data.len() as u64).ok_or(())?;
    if end > max as u64 {
        return Err(());
    }
    let (offset, end) = (offset as usize, end as usize);
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[offset..end].copy_from_slice(data);
    Ok(())
}

/// The `[offset, offset + size)` slice of `data` (empty past the end).
pub(crate) fn read_at(data: &[u8], offset: u64, size: u32) -> &[u8] {
    let start = (offset.min(data.len() as u64)) as usize;
    let end = start.saturating_add(size as usize).min(data.len());
    &data[start..end]
}
