//! The data folder (`--data DIR`): the one place that knows the name of every file in it, so
//! a new file is added here and nowhere else. Both daemons and the offline CLI paths take a
//! [`DataDir`] instead of joining names onto a path.
//!
//! | name | who | what |
//! |---|---|---|
//! | `identity` | both | the node's secret key (0600) |
//! | `lock` | both | held (flock) by the one process using the folder |
//! | `engine/` | both | every hypercore (own log, peers' logs, sites): the engine's store |
//! | `cores/` | both | the previous release's hypercore 0.14 files (converted at start) |
//! | `cores.pre-engine/` | both | those files after conversion, kept until the user deletes them |
//! | `control.sock` | both | the running daemon's control socket (0600) |
//! | `mirrors.json` | laptop | paired mirrors |
//! | `allow.json`, `revoked.json` | mirror | paired and unpaired laptops |
//! | `invites.json`, `invites.lock` | mirror | the invite book and its lock |
//! | `laptop-addrs.json` | mirror | where each paired laptop was last seen (dialled at start) |
//! | `deletions.json` | mirror | sites whose data an applied `Unmirror` is deleting |
//! | `trash/` | mirror | site data no command explains, moved aside instead of deleted |
//!
//! Each state file `X.json` keeps its previous good version as `X.json.last-good`
//! (see [`super::state`]).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The data folder of one node (laptop or mirror).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the folder if needed and makes it private (0700): it holds the identity and
    /// the control socket, which only its owner may use.
    pub fn create_private(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create the data folder {}", self.root.display()))?;
        let meta = std::fs::metadata(&self.root)
            .with_context(|| format!("cannot read {}", self.root.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
                .with_context(|| {
                    format!(
                        "cannot make the data folder {} private (chmod 700 it yourself)",
                        self.root.display()
                    )
                })?;
        }
        Ok(())
    }

    pub fn identity(&self) -> PathBuf {
        self.root.join("identity")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
    /// The engine's store of every core.
    pub fn engine(&self) -> PathBuf {
        self.root.join(crate::store::ENGINE_DIR)
    }
    /// The previous release's cores (hypercore 0.14 layout), converted at start.
    pub fn cores(&self) -> PathBuf {
        self.root.join("cores")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    pub fn mirrors(&self) -> PathBuf {
        self.root.join("mirrors.json")
    }
    pub fn allow(&self) -> PathBuf {
        self.root.join("allow.json")
    }
    pub fn revoked(&self) -> PathBuf {
        self.root.join("revoked.json")
    }
    pub fn invites(&self) -> PathBuf {
        self.root.join("invites.json")
    }
    pub fn invites_lock(&self) -> PathBuf {
        self.root.join("invites.lock")
    }
    pub fn laptop_addrs(&self) -> PathBuf {
        self.root.join("laptop-addrs.json")
    }
    pub fn deletions(&self) -> PathBuf {
        self.root.join("deletions.json")
    }
    pub fn trash(&self) -> PathBuf {
        self.root.join("trash")
    }

    /// Does the folder hold a laptop's files / a mirror's files?
    pub fn has_laptop_files(&self) -> bool {
        self.mirrors().exists()
    }
    pub fn has_mirror_files(&self) -> bool {
        self.allow().exists()
    }
}

impl From<&Path> for DataDir {
    fn from(p: &Path) -> DataDir {
        DataDir::new(p)
    }
}
