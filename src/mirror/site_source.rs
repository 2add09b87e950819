//! The mirror as a [`SiteSource`]: the running sites, their aliases and the gateway's custom
//! domains, for the site readers (HTTP gateway, FUSE site tree).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{MirrorInner, SiteSnapshot};
use crate::model::keys::Key;
use crate::site::{SiteHandle, SiteSource};

fn handle(s: SiteSnapshot) -> SiteHandle {
    SiteHandle {
        key: s.key,
        alias: s.alias,
        db: s.db,
        blobs: s.blobs,
        updated_ms: s.updated_ms,
    }
}

impl SiteSource for MirrorInner {
    fn site_list(&self) -> Vec<SiteHandle> {
        self.sites().into_iter().map(handle).collect()
    }

    fn site_handle(&self, key: &Key) -> Option<SiteHandle> {
        self.site_snapshot(key).map(handle)
    }

    fn key_for_alias(&self, alias: &str) -> Option<Key> {
        self.site_by_alias(alias)
    }

    fn custom_domains(&self) -> Arc<BTreeMap<String, Key>> {
        self.domains()
    }
}
