//! What a site reader needs from whoever holds sites ([`SiteSource`]): the list of sites, a
//! snapshot of one site by key, alias → key, and the custom domains of the HTTP gateway.
//! No daemon types appear here: the mirror implements it (`crate::mirror`'s `site_source`),
//! tests and benches may implement it over plain cores.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::keys::Key;
use crate::store::Core;

/// One site as its holder sees it at one moment: its cores, and what the holder knows
/// about it. Cheap to clone (the cores are shared).
#[derive(Clone)]
pub struct SiteHandle {
    pub key: Key,
    /// The name the laptop gave the site (its link file's name), if any.
    pub alias: Option<String>,
    /// The db core (a Hyperbee).
    pub db: Arc<Core>,
    /// The blobs core, once the db header naming it has arrived.
    pub blobs: Option<Arc<Core>>,
    /// Unix ms when the holder first saw the db core's current length, if known.
    pub updated_ms: Option<u64>,
}

/// Whoever holds sites, as the site readers (the HTTP gateway's site path and the FUSE
/// site tree) see it. Every call answers from memory and quickly: readers call it on every
/// request or filesystem operation.
pub trait SiteSource: Send + Sync + 'static {
    /// Every site held now, in key order.
    fn site_list(&self) -> Vec<SiteHandle>;
    /// The site `key`, if held.
    fn site_handle(&self, key: &Key) -> Option<SiteHandle>;
    /// The site an alias names, if any (of two sites with one alias, either).
    fn key_for_alias(&self, alias: &str) -> Option<Key>;
    /// Custom domains of the HTTP gateway: lower-case host name (no trailing dot) → site.
    fn custom_domains(&self) -> Arc<BTreeMap<String, Key>>;
}
