//! `dat-mirror clone KEY OUT_DIR`: fetch a site as a reader would — from any peer that has it
//! (a mirror, the author's laptop, another reader), proving knowledge of the key, verifying
//! every block against the site's signed tree — and write its latest version into a folder.
//!
//! The reader keeps the site's whole history (both cores, every block) in its own data
//! folder, so every version is verified, and a second clone of the same site is quick. Files
//! are written into `OUT_DIR.partial` and renamed into place once all are written; paths are
//! checked to stay inside the folder, and symlinks are made last, only if they point inside.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::drive::{self, DirEntry};
use crate::host::DataLock;
use crate::model::keys::Key;
use crate::net::endpoint::{self, NetworkConfig, RelayChoice};
use crate::net::endpoint::{Identity, PeerAddr};
use crate::net::node::{Node, Policy};
use crate::net::providers::Providers;
use crate::store::{Core, CoreReader, CoreStore};

/// Fetch a site as a reader would (verified, whole history) and write it into a folder
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
dat-mirror clone hyper://<KEY> ./site --from <MIRROR_ID>@192.168.1.20:7070\n\
The site's hypercores are kept in this data folder (every block verified against the site's \
signature); OUT_DIR gets the files of its latest version.")]
pub struct Args {
    /// The site: its key or hyper:// link
    #[arg(value_parser = crate::config::parse_key)]
    pub key: Key,
    /// Folder to write the files into (created; must be empty if it exists)
    pub out_dir: PathBuf,
    /// A peer that has the site: <ID>@<IP:PORT> (repeatable) [default: look it up by mDNS,
    /// the DHT or a relay]
    #[arg(long = "from", value_name = "ID@IP:PORT")]
    pub from: Vec<PeerAddr>,
    /// Give up after this long: 90s, 10m, 1h
    #[arg(long, default_value = "10m", value_parser = crate::model::invite::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub settings: crate::config::SettingFlags<{ crate::config::on::CLONE }>,
}

/// `dat-mirror clone`: clones the site and says what was written.
pub async fn run(args: Args, s: &crate::config::Settings) -> anyhow::Result<()> {
    let report = clone_site(CloneOptions {
        data: s.data_dir()?,
        key: args.key,
        out: args.out_dir.clone(),
        from: args.from,
        listen: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        timeout: args.timeout,
        network: s.network(),
    })
    .await?;
    crate::outln!(
        "cloned {} version {} into {}: {} files, {} bytes ({} blocks verified)",
        args.key.to_link(),
        report.version,
        args.out_dir.display(),
        report.files,
        report.bytes,
        report.blocks
    )?;
    for link in &report.skipped_links {
        crate::noteln!("skipped {link} (it would point outside the folder)");
    }
    Ok(())
}

/// How often a reader with no `--from` asks again who has the site.
const LOOKUP_EVERY: Duration = Duration::from_secs(10);

pub struct CloneOptions {
    pub data: PathBuf,
    pub key: Key,
    pub out: PathBuf,
    /// Peers to fetch from (none: look the site up).
    pub from: Vec<PeerAddr>,
    pub listen: std::net::SocketAddr,
    /// Give up when the site is not complete after this long.
    pub timeout: Duration,
    /// Discovery routes (to find peers by id, and who has the site when `from` is empty).
    pub network: NetworkConfig,
}

/// What a clone fetched and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneReport {
    pub version: u64,
    pub files: u64,
    pub bytes: u64,
    /// Blocks of both cores held, each verified when it arrived.
    pub blocks: u64,
    pub skipped_links: Vec<String>,
}

/// A reader serves what it holds (the sites it cloned) to anyone who knows their keys, and
/// never its own id's core (it has none).
struct ReaderPolicy {
    own: Key,
    store: Arc<CoreStore>,
}

impl Policy for ReaderPolicy {
    fn may_serve(&self, _peer: &Key, core: &Key) -> bool {
        *core != self.own && self.store.get_open(core).is_some()
    }
}

/// Clones a site; see the module docs.
pub async fn clone_site(opts: CloneOptions) -> anyhow::Result<CloneReport> {
    check_out_dir(&opts.out)?;
    let net = &opts.network;
    if opts.from.is_empty() && !net.mdns && !net.dht && net.relay == RelayChoice::Off {
        anyhow::bail!(
            "no way to find the site: give --from <ID>@<IP:PORT> (a mirror's `dat-mirror id` and its listen address), or enable mDNS or the DHT"
        );
    }
    let _lock = DataLock::acquire(&opts.data)?;
    let identity = Identity::load_or_create(&opts.data)?;
    crate::host::migrate_old_layout(&opts.data).await?;
    let store = Arc::new(CoreStore::new(&opts.data)?);
    let bound = endpoint::bind(&identity, opts.listen, net).await?;
    let endpoint = bound.endpoint;
    let policy = ReaderPolicy {
        own: identity.key(),
        store: store.clone(),
    };
    let node = Node::start(endpoint, store.clone(), Arc::new(policy));
    let mut dialers: Vec<_> = opts
        .from
        .iter()
        .map(|p| node.keep_connected(p.clone()))
        .collect();
    if opts.from.is_empty() {
        // Who has it: connected peers, then the local network, then the DHT; asked again
        // every LOOKUP_EVERY until the site is complete.
        let providers = Providers::start(node.clone(), &bound.lookups, &identity);
        let (node2, dk) = (node.clone(), opts.key.discovery_key());
        dialers.push(tokio::spawn(async move {
            let mut dialled = std::collections::HashMap::new();
            loop {
                for id in providers.find(&dk).await {
                    dialled
                        .entry(id)
                        .or_insert_with(|| node2.keep_connected(PeerAddr::id_only(id)));
                }
                tokio::time::sleep(LOOKUP_EVERY).await;
            }
        }));
    }
    let result = tokio::time::timeout(opts.timeout, fetch(&node, &store, opts.key)).await;
    for d in &dialers {
        d.abort();
    }
    let fetched = match result {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!(
            "the site was not complete after {}s (connected peers: {}); check that --from names a peer that holds it, or raise --timeout",
            opts.timeout.as_secs(),
            node.connected_peers().len()
        )),
    };
    let out = match fetched {
        Ok((db, blobs)) => write_site(&db, &blobs, &opts.out).await,
        Err(e) => Err(e),
    };
    node.endpoint().close().await;
    out
}

/// Replicates both cores of the site until every block of every version is held.
async fn fetch(
    node: &Arc<Node>,
    store: &CoreStore,
    key: Key,
) -> anyhow::Result<(Arc<Core>, Arc<Core>)> {
    let db = store.open_or_create_replica(&key).await?;
    node.want(db.clone());
    let mut db_rx = db.subscribe();
    let blobs_key = loop {
        match crate::site::blobs_key::blobs_key(&db).await {
            Ok(Some(k)) => break k,
            Ok(None) => {}
            Err(reason) => anyhow::bail!("{key} cannot be cloned: {reason}"),
        }
        db_rx.changed().await?;
    };
    let blobs = store.open_or_create_replica(&blobs_key).await?;
    node.want(blobs.clone());
    let mut blobs_rx = blobs.subscribe();
    let mut last_report = Instant::now();
    loop {
        let (d, b) = (db.info(), blobs.info());
        if d.synced() && b.synced() && d.length > 0 {
            return Ok((db, blobs));
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            crate::noteln!(
                "fetching: {} of {} blocks",
                d.held_blocks + b.held_blocks,
                d.length + b.length
            );
            last_report = Instant::now();
        }
        tokio::select! {
            r = db_rx.changed() => r?,
            r = blobs_rx.changed() => r?,
        }
    }
}

/// Refuses to write into a folder that has anything in it.
fn check_out_dir(out: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} is not empty; clone into a new folder (it is created) or an empty one",
                    out.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot use {}", out.display())),
    }
}

/// The site path as a path below the output folder, or `None` if it could leave it.
pub fn relative_site_path(path: &str) -> Option<PathBuf> {
    let rel = PathBuf::from(path.trim_start_matches('/'));
    if rel.as_os_str().is_empty() || path.contains('\0') {
        return None;
    }
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(rel)
}

/// A symlink target that stays inside the site when resolved from `link` (both relative).
pub fn link_stays_inside(link: &Path, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in Path::new(target).components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

async fn write_site(db: &Arc<Core>, blobs: &Arc<Core>, out: &Path) -> anyhow::Result<CloneReport> {
    let version = db.info().length;
    let mut db_reader = CoreReader::new(db.clone());
    let mut blobs_reader = CoreReader::new(blobs.clone());
    let entries = drive::list(&mut db_reader, version, "/", true).await?;
    let partial = out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut report = CloneReport {
        version,
        files: 0,
        bytes: 0,
        blocks: db.info().held_blocks + blobs.info().held_blocks,
        skipped_links: vec![],
    };
    let mut links = Vec::new();
    for e in entries {
        let DirEntry::File { path, entry } = e else {
            continue;
        };
        let Some(rel) = relative_site_path(&path) else {
            report.skipped_links.push(path);
            continue;
        };
        if let Some(target) = entry.linkname.clone() {
            links.push((rel, target));
            continue;
        }
        let bytes = match &entry.blob {
            Some(blob) => drive::read_file(&mut blobs_reader, blob).await?,
            None => Vec::new(),
        };
        let dest = partial.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&dest, &bytes)
            .with_context(|| format!("cannot write {}", dest.display()))?;
        if entry.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
        }
        report.files += 1;
        report.bytes += bytes.len() as u64;
    }
    for (rel, target) in links {
        if !link_stays_inside(&rel, &target) {
            report
                .skipped_links
                .push(format!("/{} -> {target}", rel.display()));
            continue;
        }
        let dest = partial.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink(&target, &dest)
            .with_context(|| format!("cannot create the link {}", dest.display()))?;
    }
    // An empty `out` that exists is replaced; a non-empty one was refused before fetching.
    let _ = std::fs::remove_dir(out);
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot move {} to {}", partial.display(), out.display()))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_paths_stay_inside() {
        assert_eq!(
            relative_site_path("/a/b.txt"),
            Some(PathBuf::from("a/b.txt"))
        );
        assert_eq!(
            relative_site_path("/index.html"),
            Some(PathBuf::from("index.html"))
        );
        assert_eq!(relative_site_path("/"), None);
        assert_eq!(relative_site_path("/../etc/passwd"), None);
        assert_eq!(relative_site_path("/a/../../x"), None);
        assert_eq!(relative_site_path("/a/./b"), Some(PathBuf::from("a/b")));
        assert_eq!(relative_site_path("/a\0b"), None);
    }

    #[test]
    fn links_must_point_inside() {
        let l = Path::new("docs/latest");
        assert!(link_stays_inside(l, "v2"));
        assert!(link_stays_inside(l, "../index.html"));
        assert!(!link_stays_inside(l, "../../etc/passwd"));
        assert!(!link_stays_inside(l, "/etc/passwd"));
        assert!(!link_stays_inside(Path::new("top"), "../x"));
        assert!(!link_stays_inside(l, ""));
    }
}
