//! Bakes the contract (`wit/policy.wit`) into the SDK's export macros as inline WIT, so a
//! policy crate needs no path to the `wit/` folder: the SDK is the single place that knows
//! where the contract lives, and a policy can never be built against a stale copy of it.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let wit_path = manifest.join("../../wit/policy.wit");
    println!("cargo:rerun-if-changed={}", wit_path.display());
    println!("cargo:rerun-if-changed=src/export_macros.rs.in");
    let wit = fs::read_to_string(&wit_path).unwrap_or_else(|e| {
        panic!(
            "cannot read the policy contract {}: {e}",
            wit_path.display()
        )
    });
    assert!(
        !wit.contains("\"###"),
        "wit/policy.wit contains the raw-string terminator \"###"
    );
    let template = fs::read_to_string(manifest.join("src/export_macros.rs.in"))
        .expect("src/export_macros.rs.in is part of the SDK");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join("export_macros.rs");
    fs::write(out, template.replace("@WIT@", &format!("r###\"{wit}\"###")))
        .expect("OUT_DIR is writable");
}
