//! dat-mirror's pure domain: what the two machines say to each other, and the two folds that
//! turn what was said into state. No I/O, no clocks, no randomness, no async: every function
//! here is a plain function of its inputs (the caller passes `now` and fresh secrets), so the
//! rules are tested without a network, a disk or a mount. This crate's dependency list is the
//! proof: serde, hashing and hex, nothing that can touch the outside.
//!
//! - [`keys`]: the 32-byte keys and their spellings (hex, z-base32, `hyper://` links), discovery keys.
//! - [`envelope`]: the versioned JSON envelope every log entry is wrapped in.
//! - [`command`]: the laptop's command entries (`Mirror`, `Unmirror`).
//! - [`status`]: the mirror's status entries (acks and per-site progress).
//! - [`invite`]: invite codes (the pairing credential a person copies).
//! - [`mirror_set`]: the mirror's fold: command entries → the sites to keep.
//! - [`view`]: the laptop's fold: its commands + the mirrors' status → what the folder shows.
//! - [`units`]: byte sizes and dates for people (parse and format).

pub mod command;
pub mod envelope;
pub mod invite;
pub mod keys;
pub mod mirror_set;
pub mod status;
pub mod units;
pub mod view;
