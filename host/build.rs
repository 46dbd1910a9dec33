//! Link options of the agent binary alone (the tests, benches and library are linked as
//! cargo does by default).
//!
//! `-z pack-relative-relocs` (DT_RELR, binutils >= 2.38 and glibc >= 2.36) packs the
//! binary's ~49 000 relative relocations into a bitmap: `.rela.dyn` shrinks from 1.2 MB to a
//! few KB. The dynamic loader reads that whole section at every start, so its pages were
//! resident in every agent for nothing (issue 14: ~1.1 MiB of an idle agent's 18 MiB;
//! `host/benches/memory.rs`). Only for Linux with glibc, where both tools are new enough.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=pcitrack=-Wl,-z,pack-relative-relocs");
    }
}
