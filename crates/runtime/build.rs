//! Builds the default policies (`policies/*`) into components and leaves them in `OUT_DIR`
//! for `include_bytes!`, so the agent ships with them and `cargo run` needs no extra step.

use std::path::{Path, PathBuf};

use pcitrack_wasm_build::{POLICY_TARGET, PolicyBuild, target_dir_from_out_dir};

/// The embedded defaults: (package, file name in OUT_DIR).
const DEFAULTS: &[(&str, &str)] = &[
    ("pcitrack-policy-matcher", "matcher.wasm"),
    ("pcitrack-policy-tagger", "tagger.wasm"),
    ("pcitrack-policy-cleanup", "cleanup.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..");
    for watched in ["wit", "policies", "Cargo.lock"] {
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
    for ((_, file), (_, component)) in DEFAULTS.iter().zip(built) {
        copy(&component, &out_dir.join(file));
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
}
