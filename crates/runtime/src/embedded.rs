//! The default policies, built from `policies/*` by the build script and compiled into the
//! binary, so the agent works with no policies directory at all.

use crate::PolicyKind;

/// A default policy shipped inside the agent.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedPolicy {
    /// Its name; a file `<name>.wasm` in the policies directory replaces it.
    pub name: &'static str,
    /// Its kind.
    pub kind: PolicyKind,
    /// The component.
    pub bytes: &'static [u8],
}

/// Every embedded default, one per kind that has one.
pub static EMBEDDED: &[EmbeddedPolicy] = &[
    EmbeddedPolicy {
        name: "matcher",
        kind: PolicyKind::Matcher,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/matcher.wasm")),
    },
    EmbeddedPolicy {
        name: "tagger",
        kind: PolicyKind::Tagger,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/tagger.wasm")),
    },
    EmbeddedPolicy {
        name: "cleanup",
        kind: PolicyKind::Cleanup,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/cleanup.wasm")),
    },
];
