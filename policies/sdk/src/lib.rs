//! The guest side of the pcitrack policy contract (`wit/policy.wit`), made pleasant.
//!
//! A policy is a type that implements one of [`Matcher`], [`Tagger`] or [`Cleanup`], plus one
//! macro line that exports it:
//!
//! ```ignore
//! use pcitrack_policy_sdk::{Cleanup, CleanupOutput, PolicyInfo, TrackedDevice};
//!
//! struct OnlyAvailable;
//!
//! impl Cleanup for OnlyAvailable {
//!     fn describe() -> PolicyInfo { PolicyInfo::new("only-available", "0.1.0", "...") }
//!     fn init(_config: &str) -> Result<Self, String> { Ok(OnlyAvailable) }
//!     fn evaluate(&self, tracked: &[TrackedDevice], candidates: &[u32], out: &mut CleanupOutput)
//!         -> Result<(), String> {
//!         for &i in candidates { /* out.delete(), out.keep("why"), out.abstain() */ }
//!         Ok(())
//!     }
//! }
//!
//! pcitrack_policy_sdk::export_cleanup!(OnlyAvailable);
//! ```
//!
//! Build it for `wasm32-unknown-unknown` and turn it into a component (`pcitrack policy
//! build`, or `wasm-tools component new`): that target has no WASI, so the component imports
//! nothing but the contract's `host` interface, which is all the agent allows.
//!
//! Policy crates are `crate-type = ["cdylib", "rlib"]` so their logic is unit-tested natively
//! through the same traits; on a native target [`log`] writes to stderr.
#![deny(missing_docs)]

mod address;
mod facts;
mod inventory;
pub mod log;
mod output;
mod policy;
mod tracked;

/// Bindings generated from `wit/policy.wit` for the parts every policy shares (`types` and
/// the `host` import). Policy crates reuse these through the export macros, so one set of
/// Rust types describes the contract everywhere.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package pcitrack:sdk;
            world shared {
                import pcitrack:policy/types@0.1.1;
                import pcitrack:policy/host@0.1.1;
            }
        ",
        world: "pcitrack:sdk/shared",
        generate_unused_types: true,
        generate_all,
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::pcitrack::policy::types::{
    Device, DeviceKind, DeviceStatus, Netdev, PciAddress, PolicyInfo, SerialNumber, Tag,
    TrackedDevice,
};
pub use facts::DeviceFacts;
pub use inventory::Inventory;
pub use output::{CleanupOutput, CleanupVerdict, MatchOutput, MatchVerdict, TagOutput, TagVerdict};
pub use policy::{Candidate, Cleanup, Matcher, Tagger};
pub use tracked::relatives;

/// Re-exported for the export macros (the packed wire format).
pub use pcitrack_model;
/// Re-exported for the export macros; policy crates need not depend on it themselves.
pub use wit_bindgen;

impl PolicyInfo {
    /// Describes a policy for `pcitrack policy check` and `policy list`.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        PolicyInfo {
            name: name.to_string(),
            version: version.to_string(),
            description: description.to_string(),
        }
    }
}

impl Tag {
    /// A tag from a key and a value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

#[doc(hidden)]
pub mod __private {
    //! Glue used by the export macros; not part of the SDK's API.
    pub use crate::output::{CleanupOutput, MatchOutput, TagOutput};

    /// Message for an `evaluate` call that arrives before a successful `init`.
    pub const NOT_INITIALISED: &str =
        "the policy was called before a successful init(config); this is a host bug";
}

include!(concat!(env!("OUT_DIR"), "/export_macros.rs"));
