//! pcitrack, the agent: configuration, the wiring between discovery, the policy runtime and
//! the tracker, and the command-line interface. The rooms it wires live in `host/crates/`.
#![deny(missing_docs)]

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod ops;
pub mod pipeline;
pub mod policies;
