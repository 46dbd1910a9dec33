//! Builds the default policies (`policies/*`) into components and leaves them in `OUT_DIR`
//! for `include_bytes!`, so the agent ships with them and `cargo run` needs no extra step.
//!
//! It also precompiles each component with Cranelift, with the agent engine's compiler
//! settings (`src/engine_config.rs`, included below), so that an agent starting on an empty
//! state directory loads its defaults in milliseconds instead of compiling them (about a
//! second of Cranelift per large policy). When wasmtime cannot precompile for the target, the
//! artifact is left empty and the agent compiles the default at run time, as before.

use std::path::{Path, PathBuf};

use pcitrack_wasm_build::{POLICY_TARGET, PolicyBuild, target_dir_from_out_dir};
use sha2::{Digest, Sha256};

#[path = "src/engine_config.rs"]
mod engine_config;

/// The embedded defaults: (package, file name in OUT_DIR). Each one's precompiled artifact is
/// the same name with `.cwasm` for `.wasm`.
const DEFAULTS: &[(&str, &str)] = &[
    ("pcitrack-policy-matcher", "matcher.wasm"),
    ("pcitrack-policy-tagger", "tagger.wasm"),
    ("pcitrack-policy-cleanup", "cleanup.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..");
    for watched in [
        "wit",
        "policies",
        "Cargo.lock",
        "crates/runtime/src/engine_config.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = target_dir_from_out_dir(&out_dir)
        .unwrap_or_else(|| out_dir.clone())
        .join("policy-build");
    let build = PolicyBuild {
        manifest: root.join("Cargo.toml"),
        packages: DEFAULTS.iter().map(|(p, _)| p.to_string()).collect(),
        target_dir,
        profile: "policy".into(),
        target: POLICY_TARGET.into(),
    };
    let built = build.run().unwrap_or_else(|e| panic!("{e}"));
    let target = std::env::var("TARGET").unwrap();
    let engine =
        engine_config::precompile_config(&target).and_then(|config| wasmtime::Engine::new(&config));
    for ((_, file), (_, component)) in DEFAULTS.iter().zip(built) {
        let wasm = out_dir.join(file);
        copy(&component, &wasm);
        let artifact = wasm.with_extension("cwasm");
        let precompiled = match &engine {
            Ok(engine) => std::fs::read(&wasm)
                .map_err(wasmtime::Error::from)
                .and_then(|bytes| engine.precompile_component(&bytes)),
            Err(e) => Err(wasmtime::format_err!("no engine for {target}: {e:#}")),
        };
        let precompiled = precompiled.unwrap_or_else(|e| {
            println!(
                "cargo:warning={file} is not precompiled (the agent will compile it at start): {e:#}"
            );
            Vec::new()
        });
        // The digest names the artifact's copy in the agent's state directory (see
        // `cache.rs`, `load_precompiled`): the agent finds its copy without reading the bytes.
        let digest: String = Sha256::digest(&precompiled)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let stem = file.trim_end_matches(".wasm").to_uppercase();
        println!("cargo:rustc-env=PCITRACK_{stem}_CWASM_SHA256={digest}");
        std::fs::write(&artifact, precompiled)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", artifact.display()));
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
}
