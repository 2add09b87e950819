//! dat-mirror: keeps peer-to-peer websites online while their author's laptop is closed.
//!
//! - [`sync`]: keys, commands, status entries, hypercores on disk, replication, transport.
//! - [`fs`]: the laptop's control folder (FUSE).
//! - [`pi`]: the mirror daemon: mirror set, site replication, status log, HTTP.

pub mod sync;
