//! The work behind CLI subcommands that talk to a running daemon or, when none runs, do the
//! job themselves on the data folder: pairing (`invite`, `pair`, `peers`, `unpair`) and `clone`.

pub mod clone;
pub mod peers;
pub mod status;
