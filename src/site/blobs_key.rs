//! The one lookup of a site's blobs core: named by the db core's header (compat drives:
//! hyperdrive 10/11 and dat-mirror's own) or derived from the db core's manifest
//! (manifest-keyed drives: hyperdrive 12/13). The mirror's site task, its start-up settle and
//! removal, the laptop's `open_site` and `clone` all ask here.

use std::sync::Arc;

use crate::model::keys::Key;
use crate::store::{run_blocking, Core};

/// The blobs key of the site whose db core is `db`. `Ok(None)`: not known yet (neither the
/// header nor the manifest is held). `Err`: not a hyperdrive (the reason, for the user).
/// Reads the engine (its database and the db core's data file) on the blocking pool.
pub async fn blobs_key(db: &Arc<Core>) -> Result<Option<Key>, String> {
    let db = db.clone();
    run_blocking(move || {
        hypercore_peer::drive::blobs_key(db.engine(), &db.key().0)
            .map(|k| k.map(Key))
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
