//! Small JSON state files of the data folder (`mirrors.json`, `allow.json`, `revoked.json`,
//! `invites.json`, `deletions.json`): written durably ([`crate::util::atomic`]), each with a
//! last-good copy (`X.json.last-good`, the version before the last save, kept only if it
//! was readable).
//!
//! Reading: a missing file is the empty default. An unreadable one (zero length after a power
//! loss on a file system that lost the data, hand edits) is an error that names the file and
//! says how to recover, unless the caller says falling back is safe: then the last-good copy
//! is used (logged loudly) and the next save rewrites the file. A missing file whose
//! last-good copy exists is treated the same way (the file was deleted, not emptied by us).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::util::atomic::write_atomic;

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path} is unreadable ({reason}); {recover}")]
    Unreadable {
        path: PathBuf,
        reason: String,
        recover: String,
    },
    #[error("cannot write {path}: {source}; check that the data folder is writable and not full")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One JSON state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    /// What deleting the file loses, for the recovery hint ("paired laptops must pair again").
    loses: &'static str,
    /// May an older version be used when this one is unreadable?
    fallback: bool,
}

fn last_good_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".last-good");
    path.with_file_name(name)
}

fn parse<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.is_empty() => Err("it is empty".into()),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("not the expected JSON: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

impl StateFile {
    /// `loses`: what is lost if the user deletes the file; `fallback`: whether the last-good
    /// copy may be used in its place without asking.
    pub fn new(path: PathBuf, loses: &'static str, fallback: bool) -> StateFile {
        StateFile {
            path,
            loses,
            fallback,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn last_good(&self) -> PathBuf {
        last_good_of(&self.path)
    }

    /// Reads the file (the default if there is none).
    pub fn load<T: DeserializeOwned + Default>(&self) -> Result<T, StateError> {
        let last_good = self.last_good();
        let reason = match parse::<T>(&self.path) {
            Ok(Some(v)) => return Ok(v),
            Ok(None) if !last_good.exists() => return Ok(T::default()),
            Ok(None) => "it is missing but its last-good copy exists".to_string(),
            Err(reason) => reason,
        };
        let older = parse::<T>(&last_good).ok().flatten();
        match older {
            Some(v) if self.fallback => {
                tracing::error!(
                    "{} is unreadable ({reason}); using its last-good copy {} (the next change \
                     rewrites it)",
                    self.path.display(),
                    last_good.display()
                );
                Ok(v)
            }
            Some(_) => Err(StateError::Unreadable {
                path: self.path.clone(),
                reason,
                recover: format!(
                    "restore the previous version with `cp {} {}`, or delete it ({})",
                    last_good.display(),
                    self.path.display(),
                    self.loses
                ),
            }),
            None => Err(StateError::Unreadable {
                path: self.path.clone(),
                reason,
                recover: format!("fix or delete it ({})", self.loses),
            }),
        }
    }

    /// Replaces the file durably, keeping the current version (if readable) as last-good.
    pub fn save<T: Serialize + DeserializeOwned>(&self, value: &T) -> Result<(), StateError> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Write { path, source }
        };
        if let Ok(bytes) = std::fs::read(&self.path) {
            if !bytes.is_empty() && serde_json::from_slice::<T>(&bytes).is_ok() {
                let lg = self.last_good();
                write_atomic(&lg, &bytes).map_err(write_err(&lg))?;
            }
        }
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&self.path, &bytes).map_err(write_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn file(dir: &Path, fallback: bool) -> StateFile {
        StateFile::new(dir.join("list.json"), "the list is lost", fallback)
    }

    #[test]
    fn a_damaged_file_falls_back_to_its_last_good_copy_where_that_is_safe() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), true);
        assert_eq!(f.load::<BTreeSet<u32>>().unwrap(), BTreeSet::new());
        f.save(&BTreeSet::from([1u32])).unwrap();
        f.save(&BTreeSet::from([1u32, 2])).unwrap();
        // Power loss on a file system that lost the data: zero length.
        std::fs::write(f.path(), b"").unwrap();
        assert_eq!(f.load::<BTreeSet<u32>>().unwrap(), BTreeSet::from([1]));
        // Deleted: the last-good copy too.
        std::fs::remove_file(f.path()).unwrap();
        assert_eq!(f.load::<BTreeSet<u32>>().unwrap(), BTreeSet::from([1]));
    }

    #[test]
    fn a_damaged_file_is_named_with_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), false);
        f.save(&BTreeSet::from([1u32])).unwrap();
        f.save(&BTreeSet::from([1u32, 2])).unwrap();
        std::fs::write(f.path(), b"").unwrap();
        let e = f.load::<BTreeSet<u32>>().unwrap_err().to_string();
        assert!(e.contains("list.json is unreadable (it is empty)"), "{e}");
        assert!(
            e.contains("cp ") && e.contains("list.json.last-good"),
            "{e}"
        );
        // No last-good copy: fix or delete.
        std::fs::remove_file(f.last_good()).unwrap();
        let e = f.load::<BTreeSet<u32>>().unwrap_err().to_string();
        assert!(e.contains("fix or delete it (the list is lost)"), "{e}");
    }
}
