//! dat-mirror: keeps peer-to-peer websites online while their author's laptop is closed.
//!
//! # Layout
//!
//! The house is built from the ground up. Every room imports only rooms *below* it; the
//! pure model and the hypercore crates are separate packages under `crates/`, so what they
//! may depend on is checked by their `Cargo.toml`, not by review.
//!
//! ```text
//!  bin/dat-mirror.rs   parse the command line, dispatch to cli::* (nothing else)
//!  cli/                one file per subcommand: serve, mount, publish, status, config, clone,
//!                      invite, pair, peers, unpair, trash, status-link, id, completions
//!  config/             every setting defined once (flag, environment, TOML key, help,
//!                      default) and resolved by one rule for every command
//!  fs/                 FUSE adapters: control/ (the laptop's folder, behind the laptop's
//!                      ControlBackend), site_tree/ (the mirror's read-only tree, behind
//!                      site::SiteSource), fuse.rs (mount and reply glue shared by both)
//!  mirror/  laptop/    the two daemons; mirror/http is the HTTP gateway, mirror/hyperplane
//!                      the mirror on the hypercore network
//!  site/               SiteSource (who holds which sites) and the one reading rule (version,
//!                      lookup of files and folders, symlinks, verified byte ranges) used by
//!                      HTTP and the site tree
//!  host/               DataDir (every file name of the data folder), the lock, state files,
//!                      the start-up both daemons share, Tasks (cancellation + tracking)
//!  ipc.rs  logging.rs  the daemons' control socket; log output
//!  net/                endpoint (identity, QUIC, address lookups) → node (connections,
//!                      iroh Router) → engine (hypercore's replication protocol over any
//!                      Link, via hypercore-peer; counters for /metrics),
//!                      pairing → providers (who holds a site); hypernet (the second plane:
//!                      crates/hypercore-peer over crates/hyperswarm-bridge, sites as drives)
//!  store/              hypercores on disk in the engine (core, cache, space, reader),
//!                      TypedLog (the command and status logs), migrate (0.14 -> engine)
//!  drive/              the hyperdrive format (hyperbee db + hyperblobs), self-contained
//!  util/               clock, atomic file writes, back-off
//!  model               crates/model, PURE: keys, envelope, command, status, invite,
//!                      mirror_set (the mirror's fold), view (the laptop's fold), units
//!
//!  crates/hypercore-wire     the hypercore replication protocol (protomux, messages, Session)
//!  crates/hypercore-engine   our own hypercore storage engine (behind store/)
//!  crates/hyperswarm-bridge  the HyperDHT via Node's hyperswarm, behind a Transport trait
//!  crates/hypercore-peer     engine + protocol + transport: one peer of the hypercore network
//! ```
//!
//! Arrows: model ← drive ← store ← net ← host ← site ← mirror, laptop ← fs ← config ← cli
//! ← bin (util, ipc and logging sit on the ground floor beside the model).
//!
//! # Where a change goes
//!
//! | change | where |
//! |---|---|
//! | a new command kind (e.g. `Pin`) | `model::command` (the entry), `model::mirror_set` and `model::view` (both folds, side by side), `fs::control::ops` (what a name does) |
//! | a new setting | one entry in the `settings!` table of `config/mod.rs`, plus its use |
//! | a new HTTP behaviour | `mirror/http/` (`request.rs` pure parsing, `files.rs` bodies, `pages.rs` own pages, `access.rs` who sees them, `limits.rs` connections) |
//! | how a site path or version resolves | `site/` (HTTP and the site tree both read through it) |
//! | a new file in the data folder | `host::DataDir` (its name), `host::state` if it is JSON state |
//! | a new subcommand | `cli/<name>.rs` with `Args` + `run`, one `Cmd` variant in the binary |
//! | a new network protocol | a `ProtocolHandler` registered on `net::node::NodeBuilder` |
//! | what the mirror does on the hypercore network | `net::hypernet` (the plane), `mirror::hyperplane` (the mirror's use of it) |
//! | a new fuzz target | `fuzzing/` (+ one line in `fuzz/fuzz_targets/`, seeds in `fuzz/regressions/`) |

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
