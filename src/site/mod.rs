//! Reading mirrored sites, for every reader alike: the HTTP gateway's site path
//! (`crate::mirror::http`) and the FUSE site tree (`crate::fs::site_tree`).
//!
//! - [`source`]: the [`SiteSource`] trait, what the readers need from whoever holds sites
//!   (the mirror implements it; the readers never see the daemon).

pub mod source;

pub use source::{SiteHandle, SiteSource};
