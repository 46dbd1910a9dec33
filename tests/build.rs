//! Builds the test-only policies (the hostile corpus) into components and tells the tests
//! where they are through compile-time environment variables.

use std::path::PathBuf;

use pcitrack_wasm_build::{POLICY_TARGET, PolicyBuild, target_dir_from_out_dir};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    for watched in ["wit", "policies/sdk", "tests/policies"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = target_dir_from_out_dir(&out_dir)
        .unwrap_or(out_dir)
        .join("policy-build");
    let build = |package: &str, target: &str| {
        PolicyBuild {
            manifest: root.join("Cargo.toml"),
            packages: vec![package.into()],
            target_dir: target_dir.clone(),
            profile: "policy".into(),
            target: target.into(),
        }
        .run()
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0)
        .1
    };
    let hostile = build("pcitrack-test-hostile", POLICY_TARGET);
    println!(
        "cargo:rustc-env=PCITRACK_TEST_HOSTILE={}",
        hostile.display()
    );
    let core = hostile.with_file_name("pcitrack_test_hostile.wasm");
    println!(
        "cargo:rustc-env=PCITRACK_TEST_CORE_MODULE={}",
        core.display()
    );
    let wasi = build("pcitrack-test-wasi-reader", "wasm32-wasip2");
    println!(
        "cargo:rustc-env=PCITRACK_TEST_WASI_READER={}",
        wasi.display()
    );
    let delete = build("pcitrack-test-delete-everything", POLICY_TARGET);
    println!(
        "cargo:rustc-env=PCITRACK_TEST_DELETE_EVERYTHING={}",
        delete.display()
    );
}
