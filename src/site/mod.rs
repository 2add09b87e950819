//! Reading mirrored sites, the same way for every reader: the HTTP gateway's site path
//! (`crate::mirror::http`) and the FUSE site tree (`crate::fs::site_tree`). Both take an
//! `Arc<dyn SiteSource>` and never see the daemon.
//!
//! - [`source`]: the [`SiteSource`] trait, what the readers need from whoever holds sites.
//! - [`version`]: the one version rule — show the newest version whose db blocks are all
//!   held, keep the one shown while a newer one arrives; a file of that version whose
//!   content is not held yet is "not synced yet" (HTTP 503 + `Retry-After`, FUSE `EIO`).
//!   An explicit `?version=N` (HTTP) is served if the db has it.
//! - [`lookup`]: a file by path (following one symlink for readers that serve bytes) and a
//!   directory's entries, at one version — one lookup for both readers.
//! - [`paths`]: names, path bounds, and the one symlink rule (links resolve inside the site).
//! - [`blobs_key`]: the one lookup of a site's blobs core (header or manifest).
//! - [`content`]: a file's bytes, only from blocks verified for that file (its entry's
//!   offsets are checked against the blobs core's Merkle tree first), and the one range
//!   computation both readers use; [`placed`] remembers entries already checked.
//!
//! Arrows: `site` ← `drive`, `store`, `model`; `fs::site_tree`, `mirror::http` → `site`;
//! `mirror` implements [`SiteSource`] (`mirror/site_source.rs`).

pub mod blobs_key;
pub mod content;
pub mod lookup;
pub mod paths;
pub mod placed;
pub mod source;
pub mod version;

pub use content::{ContentError, FileContent};
pub use source::{SiteHandle, SiteSource};
pub use version::pick_version;
