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
//!   since Rust 1.90; a build that picks another linker (see `ordering_linker_is_lld`)
//!   skips the option, which GNU ld does not know, and says so.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=pcitrack=-Wl,-z,pack-relative-relocs");
    }
    if ordering_linker_is_lld() {
        let list = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("symbol-order.txt");
        // `-Xlinker` rather than `-Wl,`, which would split a path holding a comma.
        for arg in [
            "-Xlinker".to_string(),
            format!("--symbol-ordering-file={}", list.display()),
            "-Xlinker".to_string(),
            "--no-warn-symbol-ordering".to_string(),
        ] {
            println!("cargo:rustc-link-arg-bin=pcitrack={arg}");
        }
    } else {
        println!(
            "cargo:warning=the agent is linked without its code order (host/symbol-order.txt): \
             not x86_64-unknown-linux-gnu with rustc's default linker, lld; an idle agent keeps \
             ~5 MiB more of its code resident (README, \"Memory\")"
        );
    }
}

/// Whether the agent is linked by rustc's default linker for `x86_64-unknown-linux-gnu`,
/// lld (since Rust 1.90). A linker chosen by cargo (`RUSTC_LINKER`: `target.<triple>.linker`,
/// `CARGO_TARGET_<TRIPLE>_LINKER`) or by a rustflag (`-C linker=`, `-C linker-features=`,
/// `-fuse-ld=` another one) may not know lld's options: GNU ld refuses them.
fn ordering_linker_is_lld() -> bool {
    let target = std::env::var("TARGET").unwrap_or_default();
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let other_fuse_ld = rustflags
        .split(['\x1f', ' '])
        .filter_map(|f| f.split_once("-fuse-ld=").map(|(_, ld)| ld))
        .any(|ld| !ld.starts_with("lld"));
    target == "x86_64-unknown-linux-gnu"
        && std::env::var_os("RUSTC_LINKER").is_none()
        && !rustflags.contains("linker")
        && !other_fuse_ld
}
