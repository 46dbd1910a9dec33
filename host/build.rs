//! Link options of the agent binary alone (the tests, benches and library are linked as
//! cargo does by default).
//!
//! * `-z pack-relative-relocs` (DT_RELR, binutils >= 2.38 and glibc >= 2.36) packs the
//!   binary's ~49 000 relative relocations into a bitmap: `.rela.dyn` shrinks from 1.2 MB to
//!   a few KB. The dynamic loader reads that whole section at every start, so its pages were
//!   resident in every agent for nothing (issue 14: ~1.1 MiB of an idle agent's 18 MiB;
//!   `host/benches/memory.rs`). Only for Linux with glibc, where both tools are new enough.
//! * `--symbol-ordering-file=symbol-order.txt` (lld): the functions an agent runs from start
//!   to idle are laid out together at the front of `.text`. Linux maps a file's large
//!   page-cache folio whole at the first fault in it (`mm/filemap.c`,
//!   `filemap_map_folio_range`, since 6.18), so the ~2.4 MiB of code an agent runs, spread
//!   over the 21 MiB of text, kept ~8.5 MiB of it resident. The list is made by
//!   `scripts/symbol-order.sh` (the functions the release agent runs under callgrind, in the
//!   memory bench's scenarios). A name the build does not have is skipped, so a stale list
//!   costs memory, never correctness. lld is the default linker of `x86_64-unknown-linux-gnu`
//!   since Rust 1.90; a build that picks another linker (a `linker`/`linker-features`
//!   rustflag) skips the option, which GNU ld does not know.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=pcitrack=-Wl,-z,pack-relative-relocs");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if target == "x86_64-unknown-linux-gnu" && !rustflags.contains("linker") {
        let list = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("symbol-order.txt");
        println!(
            "cargo:rustc-link-arg-bin=pcitrack=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bin=pcitrack=-Wl,--no-warn-symbol-ordering");
    }
}
