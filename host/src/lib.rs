//! pcitrack, the agent: configuration, the wiring between discovery, the policy runtime and
//! the tracker, and the command-line interface. The rooms it wires live in `crates/`.
//!
//! Layers, each using only those below it: `cli` (arguments and presentation) → `daemon`
//! (the agent and its API), `ops` (the operations both the API and the CLI run), `client`,
//! `pipeline`, `policies`, `store`, `config` → the library crates. Nothing outside `cli`
//! uses `cli`.
#![deny(missing_docs)]

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod ops;
pub mod pipeline;
pub mod policies;
pub mod store;
