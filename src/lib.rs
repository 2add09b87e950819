//! dat-mirror: keeps peer-to-peer websites online while their author's laptop is closed.
//!
//! - [`config`]: the configuration file and how each setting is chosen.
//! - [`sync`]: keys, commands, status entries, hypercores on disk, replication, transport.
//! - [`fs`]: the laptop's control folder (FUSE).
//! - [`laptop`]: the laptop daemon behind `mount`: command log, status view, publishing.
//! - [`pi`]: the mirror daemon: mirror set, site replication, status log, HTTP.
//! - [`fuzzing`]: entry points of the fuzz targets and of their regression tests.

pub mod config;
pub mod fs;
pub mod fuzzing;
pub mod laptop;
pub mod pi;
pub mod sync;
