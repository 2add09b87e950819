//! Publishing a folder as a site: creates the site's two cores (db + blobs, each with a key
//! pair of its own, kept by the engine store with the cores) the first time, and writes a new version of
//! the same site on later publishes. Used in-process by the laptop daemon, or directly by
//! `dat-mirror publish` when no daemon holds the data folder.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::drive::{self, PublishReport};
use crate::model::keys::Key;
use crate::store::{Core, CoreStore};

/// A published site (`key`) and what the publish did (the drive's report, read through
/// `Deref`: `published.version`, `published.files`, …). Sent over the control socket.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Published {
    pub key: Key,
    #[serde(flatten)]
    pub report: PublishReport,
}

impl std::ops::Deref for Published {
    type Target = PublishReport;
    fn deref(&self) -> &PublishReport {
        &self.report
    }
}

/// The cores of a site published from this data folder, if `key` is one.
pub async fn open_site(
    store: &CoreStore,
    key: &Key,
) -> anyhow::Result<Option<(Arc<Core>, Arc<Core>)>> {
    let Some(db) = store.open_existing(key).await? else {
        return Ok(None);
    };
    let Ok(Some(blobs_key)) = crate::site::blobs_key::blobs_key(&db).await else {
        return Ok(None);
    };
    let Some(blobs) = store.open_existing(&blobs_key).await? else {
        return Ok(None);
    };
    Ok(Some((db, blobs)))
}

/// Imports `dir` as a new site, or as a new version of `key`.
pub async fn publish_dir(
    store: &CoreStore,
    dir: &Path,
    key: Option<Key>,
) -> anyhow::Result<Published> {
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the folder {}", dir.display()))?;
    if !meta.is_dir() {
        anyhow::bail!(
            "{} is not a folder: publish takes the folder that holds the site",
            dir.display()
        );
    }
    let (db, blobs) = match key {
        None => {
            let db = store.open_or_create_writable(&new_key_pair()).await?;
            let blobs = store.open_or_create_writable(&new_key_pair()).await?;
            (db, blobs)
        }
        Some(key) => {
            let (db, blobs) = open_site(store, &key).await?.with_context(|| {
                format!("site {key} was not published from this data folder, so it cannot get a new version here")
            })?;
            if !db.info().writable || !blobs.info().writable {
                anyhow::bail!("site {key} is a copy (its secret key is not here): only its author can publish it");
            }
            (db, blobs)
        }
    };
    let report: PublishReport = {
        let mut db_core = drive::EngineCore::new(store.engine().clone(), db.key().0);
        let mut blobs_core = drive::EngineCore::new(store.engine().clone(), blobs.key().0);
        let report = drive::publish(&mut db_core, &mut blobs_core, dir).await;
        blobs.refresh_info();
        db.refresh_info();
        report?
    };
    Ok(Published {
        key: db.key(),
        report,
    })
}

/// A fresh key pair for a new core.
fn new_key_pair() -> hypercore_engine::KeyPair {
    hypercore_engine::KeyPair::from_seed(&rand::random::<[u8; 32]>())
}
