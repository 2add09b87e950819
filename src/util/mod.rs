//! Small shared pieces every room uses, each written once: the wall clock ([`clock`]),
//! durable file replacement ([`atomic`]) and retry pacing ([`backoff`]).

pub mod atomic;
pub mod backoff;
pub mod clock;
