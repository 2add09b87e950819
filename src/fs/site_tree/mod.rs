//! The mirror's read-only FUSE tree (`dat-mirror serve --mount DIR`): every mirrored site as
//! plain files, read straight from its verified cores. It reads through [`crate::site`],
//! as the HTTP gateway does: sites come from an `Arc<dyn SiteSource>`, and the version,
//! symlink and content rules are the shared ones.
//!
//! Layout: `DIR/<hex key>/<site paths>` for every site the source holds, and `DIR/<alias>`
//! a symlink to `<hex key>` for sites with an alias (an alias that is not a valid name, or
//! spells a key, is not shown; of two sites with the same alias the lower key gets it).
//! Directories come from the site's db (a Hyperbee) at the version shown; file bytes come from the
//! blobs core, only the range asked and only once the entry's offsets were checked against the
//! blobs core's Merkle tree at open ([`files`], [`crate::site::content`]; an inconsistent entry
//! reads as `EIO`): straight from its data file when every block of the file is held (verified) at
//! open, else block by block through hypercore, where a block not held yet gives `EIO` and a
//! warning (as the HTTP gateway answers 503). Files of 1 MiB and up are copied once their first
//! open closes, from those verified bytes, and later opens pass through to the copy: the kernel
//! reads it without us ([`checkout`]; an open of a file whose earlier version is still open that
//! way answers `EBUSY`). Entries with a `linkname` are symlinks whose targets are kept inside the
//! site ([`view::link_target`]). Names that are not valid single path components, and paths longer
//! than 4096 bytes, are not shown.
//!
//! What `stat` shows: files `0444` (`0555` if `executable`), size = the entry's
//! `byteLength`; directories `0555`; owner = the mirror process's user. Times: a file's
//! mtime is when the tree first saw the version that wrote its entry (stable while the file
//! is unchanged; older entries get the time the tree first saw the site); a site directory
//! and its subdirectories show when the current version was first seen; the root and alias
//! links show the mount time ([`view::SiteClock`]).
//!
//! Updates without remounting: every operation reads the mirror's current site set and each
//! site's current version ([`crate::site::pick_version`]: the newest version whose db blocks
//! are all held); the kernel caches entries and attributes for at most [`TTL`] (1 s) and negative
//! lookups not at all, and a watcher thread ([`watch`]) tells the kernel to drop what it
//! caches of a site as soon as its version changes or it leaves the set. So new, changed and
//! removed files, and sites added or removed, show at once (within a second at worst).
//! Inode numbers are stable per (site, path), and the page cache is kept only for content
//! that did not change ([`inodes`]).
//!
//! Read-only: mounted `ro`, and every write, create, unlink, rename, mkdir, setattr,
//! setxattr, ... answers `EROFS` should one reach it. Also `nodev`, `nosuid`, `noexec`
//! (mirrored content is someone else's), `noatime`, `default_permissions`; four session
//! threads (reads block on disk, directories on the db). FUSE callbacks run on fuser's own
//! threads and wait on the mirror's tokio runtime through a captured handle. Nothing in a
//! site can make a callback panic; a panic in the runtime while serving becomes `EIO`.

mod callbacks;
mod checkout;
mod files;
mod inodes;
mod passthrough;
mod view;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use fuser::{BackingId, Errno, FileAttr, FileType, INodeNo};
use tokio::runtime::Handle;

use crate::drive::{BlobRef, DriveError};
use crate::model::keys::Key;
use crate::site::SiteSource;
use crate::store::{Core, CoreReader};
use files::{OpenFile, Reading};
use inodes::{ContentId, Inodes, NodeId, ROOT};
use view::{Found, Kind, SiteClock};

pub use checkout::{Checkouts, MIN_SIZE as CHECKOUT_MIN_SIZE};

/// Default disk space for copies of large files ([`checkout`], `[serve] mount_cache`).
pub const DEFAULT_MOUNT_CACHE: u64 = 2 << 30;
/// Where a mirror's data folder keeps the copies.
pub const CHECKOUT_DIR: &str = "site-tree-cache";

/// How long the kernel may cache entries and attributes.
pub const TTL: Duration = Duration::from_secs(1);
/// FUSE session threads.
const THREADS: usize = 4;
/// `st_blksize`, the I/O size tools like `cat` and `cp` use: 1 MiB reads (16 hyperblobs
/// blocks) go through the FUSE page cache faster than the 128 KiB they use by default.
const BLKSIZE: u32 = 1024 * 1024;

/// Kernel readahead for the tree's mount (the kernel offers FUSE 128 KiB): cold `cat` of a
/// 1 GiB file went from ~1,090 to ~1,230 MiB/s with 4 MiB here (a by-hand test, 3 runs).
const READAHEAD_KB: u32 = 4096;

/// Mounts the read-only tree of every site `sites` holds at `mountpoint` and serves it on
/// background threads until the returned session is dropped (or `umount_and_join`ed).
/// Large files are copied to `checkouts` and read by the kernel from there
/// ([`checkout`]); `None` reads everything through the mirror. Must be called within a
/// tokio runtime (it captures the handle to read the cores). A dead mount left by a crashed
/// run ("Transport endpoint is not connected") is detached first.
pub fn mount(
    sites: Arc<dyn SiteSource>,
    mountpoint: &Path,
    checkouts: Option<Checkouts>,
) -> std::io::Result<fuser::BackgroundSession> {
    let rt = Handle::try_current().map_err(|_| {
        std::io::Error::other("the site tree must be mounted from within the tokio runtime")
    })?;
    let tree = Arc::new(SiteTree::new(sites, rt, checkouts.map(Arc::new)));
    let watched = Arc::downgrade(&tree);
    let session = crate::fs::fuse::spawn_mount(
        TreeFs(tree),
        mountpoint,
        &crate::fs::fuse::MountSpec {
            what: "the site tree",
            fsname: "dat-mirror-sites",
            read_only: true,
            threads: THREADS,
        },
    )?;
    crate::fs::fuse::raise_readahead(mountpoint, READAHEAD_KB);
    let notifier = session.notifier();
    std::thread::Builder::new()
        .name("site-tree-watch".into())
        .spawn(move || watch::run(watched, notifier))?;
    Ok(session)
}

/// What the session owns: the tree, shared with the watcher (which stops once this is
/// dropped). Callbacks reach [`SiteTree`]'s operations through `Deref`.
struct TreeFs(Arc<SiteTree>);

impl std::ops::Deref for TreeFs {
    type Target = SiteTree;

    fn deref(&self) -> &SiteTree {
        &self.0
    }
}

/// The filesystem.
pub struct SiteTree {
    sites: Arc<dyn SiteSource>,
    rt: Handle,
    uid: u32,
    gid: u32,
    mounted: SystemTime,
    state: Mutex<State>,
    /// Copies of large files for passthrough reads (None: off).
    checkouts: Option<Arc<Checkouts>>,
}

#[derive(Default)]
struct State {
    inodes: Inodes,
    clocks: HashMap<Key, SiteClock>,
    files: HashMap<u64, OpenFile>,
    dirs: HashMap<u64, Vec<DirItem>>,
    next_fh: u64,
    /// The copy the kernel reads an inode's passthrough opens from, while any is open: the
    /// kernel takes every open of that inode to pass through to the same one.
    backings: HashMap<u64, (ContentId, Weak<BackingId>)>,
}

impl State {
    fn fh(&mut self) -> u64 {
        self.next_fh = self.next_fh.wrapping_add(1);
        self.next_fh
    }
}

struct DirItem {
    ino: u64,
    kind: FileType,
    name: String,
}

/// A site at the moment of one operation.
struct SiteNow {
    db: Arc<Core>,
    blobs: Option<Arc<Core>>,
    version: u64,
}

/// A resolved node: what it is, its mtime, and the site version it was resolved at.
struct Stat {
    found: Found,
    mtime: SystemTime,
    version: Option<u64>,
}

/// A file's size as shown (`st_size` is signed).
fn file_size(blob: Option<&BlobRef>) -> u64 {
    blob.map_or(0, |b| b.byte_length.min(i64::MAX as u64))
}

/// Logs why a drive read failed and maps it to `EIO`.
fn drive_errno(what: &str, e: DriveError) -> Errno {
    match e {
        DriveError::Missing { .. } => {
            tracing::warn!("site tree: {what}: {e} (not synced yet; try again later)")
        }
        _ => tracing::warn!("site tree: {what}: {e}"),
    }
    Errno::EIO
}

impl SiteTree {
    fn new(sites: Arc<dyn SiteSource>, rt: Handle, checkouts: Option<Arc<Checkouts>>) -> SiteTree {
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        SiteTree {
            sites,
            rt,
            uid,
            gid,
            mounted: SystemTime::now(),
            state: Mutex::new(State::default()),
            checkouts,
        }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the mirror's runtime from a FUSE thread. A panic inside (e.g. the
    /// runtime shutting down under us) becomes `EIO` instead of taking the session down.
    fn block_on<F: std::future::Future>(&self, f: F) -> Result<F::Output, Errno> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.rt.block_on(f))).map_err(
            |_| {
                tracing::error!("site tree: a read panicked; answering EIO");
                Errno::EIO
            },
        )
    }

    /// The site `key` if the mirror holds it, with the version to show now.
    fn site_now(&self, key: &Key) -> Option<SiteNow> {
        let mut st = self.st();
        let Some(site) = self.sites.site_handle(key) else {
            st.clocks.remove(key);
            return None;
        };
        let version = st
            .clocks
            .entry(*key)
            .or_insert_with(|| SiteClock::new(&site.db))
            .observe(&site.db, SystemTime::now());
        Some(SiteNow {
            db: site.db,
            blobs: site.blobs,
            version,
        })
    }

    /// Every shown alias and its site.
    fn aliases(&self) -> BTreeMap<String, Key> {
        let mut out = BTreeMap::new();
        for site in self.sites.site_list() {
            let Some(alias) = site.alias else { continue };
            if view::valid_name(alias.as_bytes()) && Key::parse(&alias).is_err() {
                out.entry(alias).or_insert(site.key);
            }
        }
        out
    }

    /// Resolves `id` now (using the node's cached resolution if it is of this version).
    fn stat(&self, id: &NodeId) -> Result<Stat, Errno> {
        let (key, path) = match id {
            NodeId::Root => {
                return Ok(Stat {
                    found: Found::dir(),
                    mtime: self.mounted,
                    version: None,
                })
            }
            NodeId::Alias(name) => {
                let key = self.aliases().get(name).copied().ok_or(Errno::ENOENT)?;
                return Ok(Stat {
                    found: Found {
                        kind: Kind::Symlink {
                            target: Some(key.to_hex()),
                        },
                        seq: None,
                    },
                    mtime: self.mounted,
                    version: None,
                });
            }
            NodeId::Path(key, path) => (key, path),
        };
        let site = self.site_now(key).ok_or(Errno::ENOENT)?;
        let cached = {
            let st = self.st();
            st.inodes
                .get(st.inodes.ino_of(id))
                .and_then(|n| n.resolved.clone())
                .filter(|(v, _)| *v == site.version)
                .map(|(_, f)| f)
        };
        let found = match cached {
            Some(f) => f,
            None => self
                .block_on(view::resolve(
                    &mut CoreReader::new(site.db.clone()),
                    site.version,
                    path,
                ))?
                .map_err(|e| drive_errno(&format!("{}{path}", key.short()), e))?
                .ok_or(Errno::ENOENT)?,
        };
        let st = self.st();
        let mtime = st
            .clocks
            .get(key)
            .map_or(self.mounted, |c| match found.seq {
                Some(seq) => c.time_of_seq(seq),
                None => c.version_time(),
            });
        Ok(Stat {
            found,
            mtime,
            version: Some(site.version),
        })
    }

    fn attr(&self, ino: u64, stat: &Stat) -> FileAttr {
        let (kind, perm, size, nlink) = match &stat.found.kind {
            Kind::Dir => (FileType::Directory, 0o555, 0, 2),
            Kind::File { blob, executable } => (
                FileType::RegularFile,
                if *executable { 0o555 } else { 0o444 },
                file_size(blob.as_ref()),
                1,
            ),
            Kind::Symlink { target } => (
                FileType::Symlink,
                0o777,
                target.as_ref().map_or(0, |t| t.len() as u64),
                1,
            ),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: stat.mtime,
            mtime: stat.mtime,
            ctime: stat.mtime,
            crtime: stat.mtime,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    /// Records what the kernel is about to be told about `ino` and returns its attributes.
    fn told(&self, st: &mut State, ino: u64, stat: &Stat) -> FileAttr {
        let attr = self.attr(ino, stat);
        if let Some(node) = st.inodes.get_mut(ino) {
            node.told_size = Some(attr.size);
            if let Some(v) = stat.version {
                node.resolved = Some((v, stat.found.clone()));
            }
        }
        attr
    }

    fn node_id(&self, ino: u64) -> Result<NodeId, Errno> {
        self.st()
            .inodes
            .get(ino)
            .map(|n| n.id.clone())
            .ok_or(Errno::ESTALE)
    }

    fn lookup_id(&self, parent: u64, name: &OsStr) -> Result<NodeId, Errno> {
        let name = name.as_bytes();
        if !view::valid_name(name) {
            return Err(Errno::ENOENT);
        }
        let name = std::str::from_utf8(name).map_err(|_| Errno::ENOENT)?;
        match self.node_id(parent)? {
            NodeId::Root => Ok(match Key::parse(name) {
                Ok(key) if key.to_hex() == name => NodeId::Path(key, "/".into()),
                _ => NodeId::Alias(name.to_string()),
            }),
            NodeId::Path(key, dir) => Ok(NodeId::Path(
                key,
                view::child_path(&dir, name).ok_or(Errno::ENAMETOOLONG)?,
            )),
            NodeId::Alias(_) => Err(Errno::ENOTDIR),
        }
    }

    fn do_lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let id = self.lookup_id(parent, name)?;
        let stat = self.stat(&id)?;
        let mut st = self.st();
        let (ino, _) = st.inodes.lookup(id);
        Ok(self.told(&mut st, ino, &stat))
    }

    fn do_getattr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let id = self.node_id(ino)?;
        let stat = self.stat(&id)?;
        let mut st = self.st();
        Ok(self.told(&mut st, ino, &stat))
    }

    fn do_readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let id = self.node_id(ino)?;
        match self.stat(&id)?.found.kind {
            Kind::Symlink {
                target: Some(target),
            } => Ok(target.into_bytes()),
            Kind::Symlink { target: None } => {
                tracing::warn!("site tree: {id:?} has a link target that cannot be shown");
                Err(Errno::EIO)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn do_opendir(&self, ino: u64) -> Result<u64, Errno> {
        let id = self.node_id(ino)?;
        let items = match &id {
            NodeId::Root => self.root_items(),
            NodeId::Alias(_) => return Err(Errno::ENOTDIR),
            NodeId::Path(key, dir) => self.dir_items(ino, key, dir)?,
        };
        let mut st = self.st();
        let fh = st.fh();
        st.dirs.insert(fh, items);
        Ok(fh)
    }

    fn root_items(&self) -> Vec<DirItem> {
        let sites = self.sites.site_list();
        let aliases = self.aliases();
        let mut st = self.st();
        st.clocks.retain(|k, _| sites.iter().any(|s| s.key == *k));
        let mut items = vec![
            DirItem {
                ino: ROOT,
                kind: FileType::Directory,
                name: ".".into(),
            },
            DirItem {
                ino: ROOT,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        for site in &sites {
            items.push(DirItem {
                ino: st.inodes.ino_of(&NodeId::Path(site.key, "/".into())),
                kind: FileType::Directory,
                name: site.key.to_hex(),
            });
        }
        for alias in aliases.into_keys() {
            items.push(DirItem {
                ino: st.inodes.ino_of(&NodeId::Alias(alias.clone())),
                kind: FileType::Symlink,
                name: alias,
            });
        }
        items
    }

    fn dir_items(&self, ino: u64, key: &Key, dir: &str) -> Result<Vec<DirItem>, Errno> {
        let site = self.site_now(key).ok_or(Errno::ENOENT)?;
        // The directory may have become a file or gone in a new version.
        if dir != "/" {
            match self.stat(&NodeId::Path(*key, dir.to_string()))?.found.kind {
                Kind::Dir => {}
                _ => return Err(Errno::ENOTDIR),
            }
        }
        let listing = self
            .block_on(view::list_dir(
                &mut CoreReader::new(site.db.clone()),
                site.version,
                dir,
            ))?
            .map_err(|e| drive_errno(&format!("listing {}{dir}", key.short()), e))?;
        let st = self.st();
        let parent = if dir == "/" {
            ROOT
        } else {
            st.inodes
                .ino_of(&NodeId::Path(*key, view::parent_path(dir).to_string()))
        };
        let mut items = vec![
            DirItem {
                ino,
                kind: FileType::Directory,
                name: ".".into(),
            },
            DirItem {
                ino: parent,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        for l in listing {
            let Some(path) = view::child_path(dir, &l.name) else {
                continue;
            };
            let kind = match l.found.kind {
                Kind::Dir => FileType::Directory,
                Kind::File { .. } => FileType::RegularFile,
                Kind::Symlink { .. } => FileType::Symlink,
            };
            items.push(DirItem {
                ino: st.inodes.ino_of(&NodeId::Path(*key, path)),
                kind,
                name: l.name,
            });
        }
        Ok(items)
    }

    fn statfs_numbers(&self) -> (u64, u64) {
        let sites = self.sites.site_list();
        let bytes: u64 = sites
            .iter()
            .map(|s| {
                s.db.info()
                    .byte_length
                    .saturating_add(s.blobs.as_ref().map_or(0, |b| b.info().byte_length))
            })
            .fold(0, u64::saturating_add);
        (bytes.div_ceil(4096), self.st().inodes.len() as u64)
    }
}
