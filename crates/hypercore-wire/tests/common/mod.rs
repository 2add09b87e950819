//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod gen;
pub mod node;
pub mod view;
