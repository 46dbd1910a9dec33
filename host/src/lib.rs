//! pcitrack, the agent: configuration, the wiring between discovery, the policy runtime and
//! the tracker, and the command-line interface. The rooms it wires live in `crates/`.
//!
//! Layers, each using only those below it: `cli` (arguments and presentation) → `daemon`
//! (the agent and its API), `ops` (the operations both the API and the CLI run), `client`,
//! `pipeline`, `policies`, `store`, `config` → the library crates. Nothing outside `cli`
//! uses `cli`. `large_pages` is the binary's allocator (`main.rs`), turned to huge pages by
//! `cli` for the one-shot commands.
#![deny(missing_docs)]

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod large_pages;
pub mod ops;
pub mod pipeline;
pub mod policies;
pub mod store;

/// The agent binary's link order (`host/build.rs`, `host/symbol-order.txt`): the list names
/// functions by their mangled names, whose crate disambiguators follow Cargo.lock and the
/// compiler, so a list made for another lockfile or toolchain no longer matches the build and
/// the idle agent's code is spread over the binary again (issue 14, README "Memory").
#[cfg(test)]
mod link_order {
    use sha2::{Digest, Sha256};
    use std::path::Path;

    fn header<'a>(list: &'a str, key: &str) -> &'a str {
        list.lines()
            .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
            .unwrap_or_else(|| panic!("host/symbol-order.txt has no `# {key}:` line"))
    }

    #[test]
    fn the_symbol_order_was_made_for_this_lockfile_and_toolchain() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let list = std::fs::read_to_string(root.join("symbol-order.txt")).unwrap();
        let lock = std::fs::read(root.join("../Cargo.lock")).unwrap();
        let lock: String = Sha256::digest(&lock)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let toolchain = std::fs::read_to_string(root.join("../rust-toolchain.toml")).unwrap();
        let channel = toolchain
            .lines()
            .find_map(|l| l.strip_prefix("channel = "))
            .map(|c| c.trim_matches('"'))
            .unwrap();
        let stale = "is stale: run scripts/symbol-order.sh (README, \"Memory\")";
        assert_eq!(
            header(&list, "Cargo.lock sha256"),
            lock,
            "host/symbol-order.txt was made for another Cargo.lock and {stale}"
        );
        assert_eq!(
            header(&list, "toolchain"),
            channel,
            "host/symbol-order.txt was made with another compiler and {stale}"
        );
        let names: Vec<&str> = list.lines().filter(|l| !l.starts_with('#')).collect();
        let functions: usize = header(&list, "functions").parse().unwrap();
        assert!(
            functions > 1000 && names.len() >= functions,
            "{functions} functions, {} names",
            names.len()
        );
        for name in names {
            assert!(
                !name.is_empty() && !name.contains(char::is_whitespace),
                "not a symbol name: {name:?}"
            );
        }
    }
}
