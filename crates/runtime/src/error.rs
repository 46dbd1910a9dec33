//! What can go wrong loading or calling a policy.

use std::path::PathBuf;

use thiserror::Error;

/// Why a policy was refused at load time. Every message names the policy.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{name}: cannot read {path}: {source}")]
    Read {
        /// The policy's name.
        name: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file's SHA-256 is not in the configured allowlist (`[policies] allowed_sha256`).
    #[error(
        "{name}: {path} has SHA-256 {sha256}, which is not in [policies] allowed_sha256; \
         add the digest to the list to let it run"
    )]
    NotAllowed {
        /// The policy's name.
        name: String,
        /// The file.
        path: PathBuf,
        /// Its SHA-256, lower-case hex.
        sha256: String,
    },
    /// Not WebAssembly at all.
    #[error(
        "{name}: not a WebAssembly file (no \\0asm header); a policy is a WebAssembly component"
    )]
    NotWasm {
        /// The policy's name.
        name: String,
    },
    /// A core module rather than a component.
    #[error(
        "{name}: a core WebAssembly module, not a component; wrap it with `wasm-tools component new` \
         or build it with `pcitrack policy build`"
    )]
    CoreModule {
        /// The policy's name.
        name: String,
    },
    /// wasmtime could not compile it.
    #[error("{name}: invalid component: {reason}")]
    Invalid {
        /// The policy's name.
        name: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// It exports none of the contract's interfaces.
    #[error(
        "{name}: not a pcitrack policy: it exports none of pcitrack:policy/matcher, tagger or \
         cleanup at version {version} (exports: {exports})"
    )]
    NotAPolicy {
        /// The policy's name.
        name: String,
        /// The contract versions this agent loads.
        version: &'static str,
        /// What it does export.
        exports: String,
    },
    /// It exports a contract interface of another version.
    #[error("{name}: built for contract {found}, but this agent loads pcitrack:policy {expected}")]
    WrongVersion {
        /// The policy's name.
        name: String,
        /// The export it has.
        found: String,
        /// The versions this agent loads.
        expected: &'static str,
    },
    /// It exports more than one kind.
    #[error("{name}: exports several policy kinds ({kinds}); a policy is exactly one kind")]
    SeveralKinds {
        /// The policy's name.
        name: String,
        /// The kinds found.
        kinds: String,
    },
    /// It imports something beyond the contract.
    #[error(
        "{name}: imports {imports}, beyond the contract (a policy may import only \
         pcitrack:policy/host); policies get no filesystem, network, clock, environment or random"
    )]
    ForbiddenImports {
        /// The policy's name.
        name: String,
        /// The offending imports.
        imports: String,
    },
    /// Its exports do not have the contract's types.
    #[error("{name}: its {kind} export does not match the contract: {reason}")]
    WrongShape {
        /// The policy's name.
        name: String,
        /// The kind.
        kind: &'static str,
        /// wasmtime's reason.
        reason: String,
    },
    /// Its `init` refused the configuration, or failed.
    #[error("{name}: refused its configuration: {reason}")]
    ConfigRefused {
        /// The policy's name.
        name: String,
        /// The policy's own message, verbatim.
        reason: String,
    },
    /// Its `init` or `describe` trapped, timed out or ran out of memory.
    #[error("{name}: failed while starting: {source}")]
    Start {
        /// The policy's name.
        name: String,
        /// What happened.
        source: CallError,
    },
}

/// Why one policy call failed. The call's verdicts are discarded and the chain falls back.
#[derive(Debug, Clone, Error)]
pub enum CallError {
    /// It ran past its wall-clock deadline (`[limits] deadline_ms`).
    #[error("ran past its deadline of {deadline_ms} ms and was stopped")]
    Timeout {
        /// The deadline.
        deadline_ms: u64,
    },
    /// It trapped (panic, unreachable, out-of-bounds, stack overflow...).
    #[error("trapped: {0}")]
    Trap(String),
    /// It tried to grow its memory past the cap, or failed otherwise inside wasmtime.
    #[error("failed: {0}")]
    Failed(String),
    /// It returned an error value (its own message).
    #[error("returned an error: {0}")]
    Refused(String),
    /// It returned something that breaks the contract (wrong count, bad index...).
    #[error("returned garbage: {0}")]
    Garbage(String),
}
