//! The compiler settings of the policy engine, in one place for the two that compile policies:
//! the agent's engine (`engine.rs`) and the build script, which includes this file
//! (`#[path]`) to precompile the embedded defaults into the binary with the same settings.
//! It uses nothing but wasmtime, so that the build script can include it.
//!
//! What wasmtime writes into an artifact and checks when it is loaded
//! (`Component::deserialize`, wasmtime `engine/serialization.rs`, `Metadata`): the target,
//! Cranelift's shared flags, the CPU features the code uses (each must exist on the loading
//! host), the tunables and the wasm features. Only the settings below touch those; the pooling
//! allocator and the limits do not.

use wasmtime::{Config, OptLevel, RegallocAlgorithm, Strategy, WasmBacktraceDetails};

/// The settings every compile of a policy uses.
pub fn compiler_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    // Deep recursion must trap, not crash the agent: keep the wasm stack well inside the
    // native thread's.
    config.max_wasm_stack(512 << 10);
    // Pinned, not read from `WASMTIME_BACKTRACE_DETAILS` (wasmtime's default): that variable
    // changes the tunables, so a process started with it would make artifacts other engines
    // refuse under the same cache key and fingerprint (found in review), and a build run
    // with it would precompile defaults no agent accepts.
    config.wasm_backtrace_details(WasmBacktraceDetails::Disable);
    config
}

/// The settings of the baseline tier: [`compiler_config`] compiled by wasmtime's Winch, a
/// single-pass compiler that compiles the 660 KB default matcher ~9x faster than Cranelift
/// (slower code). A policy whose optimised (Cranelift) build is not in the artifact cache
/// serves with this first; the Cranelift build replaces it when ready (`policy.rs`). Winch
/// honours the same epoch deadline and memory cap (`tests/tiers.rs`).
#[allow(dead_code)] // not used by the build script
pub fn baseline_config() -> Config {
    let mut config = compiler_config();
    config.strategy(Strategy::Winch);
    // Winch compiles the functions; Cranelift still compiles the trampolines (one per
    // function that escapes, through a table or an export: hundreds in a Rust policy) and
    // the component's adapters. Unoptimised, they cost the baseline build less time.
    config.cranelift_opt_level(OptLevel::None);
    // Nor do they need the backtracking register allocator: its allocation was ~8% of the
    // 640 KB matcher's baseline compile; the single-pass one cut the compile's CPU time by
    // ~9% (150 -> 136 ms a compile, same machine, alternating).
    config.cranelift_regalloc_algorithm(RegallocAlgorithm::SinglePass);
    // No wasm-offset address map for this short-lived build: a trap's message still names
    // the trap, only the backtrace loses its wasm offsets until the optimised build is in.
    config.generate_address_map(false);
    config
}

/// The settings the build script precompiles the embedded defaults with: the same as
/// [`compiler_config`], for `target` named explicitly. With the target named, Cranelift does
/// not use the CPU features of the machine that builds the agent but the target's baseline
/// (SSE2 on x86_64), so the precompiled code loads on every host of that architecture; an
/// agent engine (which uses the host's features) accepts it, because wasmtime only requires
/// the features an artifact uses to exist on the host.
///
/// # Errors
///
/// wasmtime's error when `target` is not a target triple it knows.
#[allow(dead_code)] // used by the build script only
pub fn precompile_config(target: &str) -> wasmtime::Result<Config> {
    let mut config = compiler_config();
    config.target(target)?;
    Ok(config)
}
