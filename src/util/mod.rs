//! Small shared pieces every room uses, each written once: the wall clock ([`clock`]),
//! durable file replacement ([`atomic`]), retry pacing ([`backoff`]) and terminal output that
//! cannot panic ([`console`]).

pub mod atomic;
pub mod backoff;
pub mod clock;
pub mod console;
