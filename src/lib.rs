//! dat-mirror: keeps peer-to-peer websites online while their author's laptop is closed.
//!
//! - [`cli`]: the CLI subcommands that are more than a call into a daemon.
//! - [`config`]: the configuration file and how each setting is chosen.
//! - [`sync`]: keys, commands, status entries, hypercores on disk, replication, transport.
//! - [`fs`]: the laptop's control folder (FUSE).
//! - [`ipc`]: the daemons' control socket, used by CLI commands while a daemon runs.
//! - [`laptop`]: the laptop daemon behind `mount`: command log, status view, publishing.
//! - [`logging`]: log output: stderr or a size-rotated file, text or JSON.
//! - [`pi`]: the mirror daemon: mirror set, site replication, status log, HTTP.
//! - [`fuzzing`]: entry points of the fuzz targets and of their regression tests.

pub mod cli;
pub mod config;
pub mod fs;
pub mod fuzzing;
pub mod ipc;
pub mod laptop;
pub mod logging;
pub mod pi;
pub mod sync;
