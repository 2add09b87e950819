//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod fake;
pub mod gen;
pub mod node;
pub mod pair;
pub mod tcp;
pub mod view;
