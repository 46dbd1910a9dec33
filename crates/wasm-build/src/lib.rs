//! Builds policy crates into WebAssembly components.
//!
//! Policies are compiled for `wasm32-unknown-unknown`, which has no WASI at all, and then
//! wrapped into a component with `wit-component`. The resulting component imports nothing
//! but the contract's `host` interface, so it passes the agent's "no capabilities" check
//! by construction. (Built for `wasm32-wasip2` instead, the same crate would import WASI
//! random, clocks and stdio through std's hash maps and panic path, and be refused.)
//!
//! The embedded default policies are built by a build script with this crate, and
//! `pcitrack policy build` uses it for vendors' and operators' own policy crates.
#![deny(missing_docs)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// The target policies are compiled for.
pub const POLICY_TARGET: &str = "wasm32-unknown-unknown";

/// Why a policy could not be built.
#[derive(Debug, Error)]
pub enum BuildError {
    /// `cargo` could not be started.
    #[error("could not run {cargo:?}: {source}")]
    Spawn {
        /// The cargo that was run.
        cargo: OsString,
        /// The OS error.
        source: std::io::Error,
    },
    /// `cargo build` failed; its output was shown above.
    #[error(
        "building {packages} for {target} failed (see cargo's output above); if it says the \
         target is missing, run: rustup target add {target} --toolchain 1.95.0"
    )]
    Cargo {
        /// The packages being built.
        packages: String,
        /// The target.
        target: String,
    },
    /// The built module could not be read.
    #[error("cannot read the built module {path}: {source}")]
    Read {
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `wit-component` refused the module.
    #[error("cannot make a component of {path}: {reason}")]
    Componentize {
        /// The module.
        path: PathBuf,
        /// What wit-component said.
        reason: String,
    },
}

/// One cargo invocation's worth of policy crates.
#[derive(Debug, Clone)]
pub struct PolicyBuild {
    /// The `Cargo.toml` of the workspace or crate holding the packages.
    pub manifest: PathBuf,
    /// Package names to build (each a `cdylib`).
    pub packages: Vec<String>,
    /// Where cargo puts its output; keep it apart from the calling build's own target
    /// directory, or a build script calling this would wait forever on cargo's lock.
    pub target_dir: PathBuf,
    /// The cargo profile (`policy` in this workspace; `release` elsewhere).
    pub profile: String,
    /// The compilation target; [`POLICY_TARGET`] unless a test wants WASI on purpose.
    pub target: String,
}

impl PolicyBuild {
    /// Runs cargo and returns, per package, the path of the component file written next
    /// to the core module (`<name>.component.wasm`).
    pub fn run(&self) -> Result<Vec<(String, PathBuf)>, BuildError> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(&self.manifest)
            .arg("--target")
            .arg(&self.target)
            .arg("--profile")
            .arg(&self.profile)
            .arg("--target-dir")
            .arg(&self.target_dir);
        for p in &self.packages {
            cmd.arg("-p").arg(p);
        }
        // A build script inherits the outer build's settings for the *host* target; none of
        // them apply to a wasm build, and a clippy wrapper would only slow it down.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTC_WRAPPER",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd.status().map_err(|source| BuildError::Spawn {
            cargo: cargo.clone(),
            source,
        })?;
        if !status.success() {
            return Err(BuildError::Cargo {
                packages: self.packages.join(", "),
                target: self.target.clone(),
            });
        }
        let out_dir = self.target_dir.join(&self.target).join(&self.profile);
        self.packages
            .iter()
            .map(|p| {
                let core = out_dir.join(format!("{}.wasm", p.replace('-', "_")));
                let component = if self.target == POLICY_TARGET {
                    let bytes = std::fs::read(&core).map_err(|source| BuildError::Read {
                        path: core.clone(),
                        source,
                    })?;
                    let component =
                        componentize(&bytes).map_err(|reason| BuildError::Componentize {
                            path: core.clone(),
                            reason,
                        })?;
                    let path = core.with_extension("component.wasm");
                    write_if_changed(&path, &component).map_err(|source| BuildError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    path
                } else {
                    // wasm32-wasip2's linker already emits a component.
                    core
                };
                Ok((p.clone(), component))
            })
            .collect()
    }
}

/// Wraps a core module built with wit-bindgen (which embeds its world in a custom section)
/// into a component.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(core)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}

/// Writes only when the content differs, so that whatever depends on the file's time stamp
/// (cargo's `rerun-if-changed`, the agent's policy watcher) sees a change only on a change.
fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes)
}

/// The directory cargo's target directory is in, found from a build script's `OUT_DIR`
/// (`<target>/<profile>/build/<pkg>-<hash>/out`).
pub fn target_dir_from_out_dir(out_dir: &Path) -> Option<PathBuf> {
    out_dir.ancestors().nth(4).map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bytes_that_are_not_a_module() {
        let e = componentize(b"not wasm").unwrap_err();
        assert!(!e.is_empty());
    }

    #[test]
    fn finds_the_target_dir_above_out_dir() {
        let out = Path::new("/w/target/debug/build/pcitrack-runtime-0123/out");
        assert_eq!(
            target_dir_from_out_dir(out),
            Some(PathBuf::from("/w/target"))
        );
    }
}
