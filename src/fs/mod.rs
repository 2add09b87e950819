//! FUSE adapters: the laptop's control folder (`control`: `touch`/`rm`/`cat` steer the
//! mirrors, behind the `ControlBackend` trait the laptop implements), the mirror's read-only
//! site tree (`site_tree`), and the fuser glue both share (`fuse`: mounting, reply helpers,
//! whether FUSE works here).
//!
//! Tests that mount: call `require_fuse_or_skip("my_test")` first and return if it says
//! `false`. Outside CI a machine without FUSE skips such tests loudly (a line on stderr);
//! with `CI=true` the same situation fails the test, so CI cannot silently skip them:
//!
//! ```ignore
//! #[test]
//! fn touch_appends_mirror() {
//!     if !dat_mirror::fs::require_fuse_or_skip("touch_appends_mirror") {
//!         return;
//!     }
//!     // mount, use std::fs, drop the session
//! }
//! ```

pub mod control;
pub mod fuse;
pub mod site_tree;

pub use control::names;
pub use control::{mount, AppendError, ControlBackend, ControlFs};
pub use fuse::{detach_stale, fuse_available, require_fuse_or_skip};
