//! The policy runtime: the only part of pcitrack that knows wasmtime.
//!
//! It loads policy components, refuses anything that is not a policy of this contract or
//! that asks for capabilities (WASI or anything beyond the `host` log import), compiles and
//! pre-links them off the hot path, and runs each evaluation in a fresh store with a CPU
//! deadline and a memory cap, so a trap, a timeout or a leak is contained to that one call.
//! Policies of one kind form a chain, in file-name order; the first verdict that is not
//! "abstain" wins, and the built-in rule applies when all abstain (for cleanup, Nova's rule
//! from `pcitrack_model::cleanup`, applied by the tracker). The records it speaks in (the
//! [`pcitrack_model::Assessment`] it produces, the cleanup candidate and verdict) are the
//! vocabulary's, shared with the tracker.
#![deny(missing_docs)]

mod cache;
mod chain;
mod contract;
mod directory;
mod embedded;
mod engine;
mod engine_config;
mod error;
mod evaluate;
mod load;
mod policy;
mod stats;
mod verdicts;

pub use cache::{ArtifactCache, CodeSource, Compiled, EngineFingerprint, Evicted};
pub use chain::{BUILT_IN, CleanupOutcome, DeviceVerdict, PolicySet};
pub use contract::{CONTRACT_VERSION, NodeSockets, SUPPORTED_VERSIONS};
pub use directory::{
    AllowedDigests, DigestError, Loaded, assemble, load_embedded, load_file, load_policies,
    policy_files, policy_name, sha256_hex,
};
pub use embedded::{EMBEDDED, EmbeddedPolicy};
pub use engine::{Compilers, Limits, PolicyEngine};
pub use error::{CallError, LoadError};
pub use load::{PolicyKind, inspect};
pub use policy::{Policy, PolicyOrigin, Tier};
pub use stats::{PolicyStats, StatsSnapshot};
pub use verdicts::Tags;
