//! dat-mirror: keeps peer-to-peer websites online while their author's laptop is closed.

pub use dat_mirror_model as model;

pub mod cli;
pub mod config;
pub mod drive;
pub mod fs;
pub mod fuzzing;
pub mod host;
pub mod ipc;
pub mod laptop;
pub mod logging;
pub mod mirror;
pub mod net;
pub mod site;
pub mod store;
pub mod util;
