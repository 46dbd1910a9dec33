//! Precompiled policies on disk, so a restart does not recompile (about a second per policy
//! with Cranelift; loading a precompiled artifact takes about a millisecond).
//!
//! An artifact is named by its [key](EngineFingerprint::key): 64 lower-case hex digits, the
//! SHA-256 of the key format's tag, the [engine's fingerprint](EngineFingerprint) and the
//! wasm bytes. Every input is bytes this agent or wasmtime defines, never the output of a
//! `std::hash::Hasher`, so the name of an artifact does not change when the agent is built
//! with another Rust release (std's `DefaultHasher` and the data `Hash` impls feed a hasher
//! may both change between releases). The cache holds the artifacts of the policies in use
//! and nothing else: [`ArtifactCache::evict_unreferenced`] removes the rest after each load
//! of the policy set.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::engine::PolicyEngine;

/// The first bytes hashed into every key; a change to what a key covers changes this tag, so
/// keys of different formats never collide.
const KEY_FORMAT: &[u8] = b"pcitrack compiled policy, key format 1\n";

/// The smallest component (preamble only: magic, component-model version 0x0d, layer 1).
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

/// Artifact files end so; anything else in the directory is not the cache's.
const ARTIFACT_EXTENSION: &str = "cwasm";

/// Temporary files (an artifact being written) start so.
const TEMP_PREFIX: &str = ".artifact-";

/// A temporary file older than this is left over from a writer that died between write and
/// rename (a write takes well under a second) and is removed by an eviction.
const TEMP_MAX_AGE: Duration = Duration::from_secs(600);

/// What decides whether wasmtime will load an engine's compiled code: the SHA-256 of the
/// artifact the engine makes for the empty component. wasmtime writes into every artifact
/// exactly what `Component::deserialize` checks against the loading engine: its version
/// marker, the target triple, Cranelift's shared and ISA flags (the CPU features found on this
/// host), the tunables and the enabled wasm features (wasmtime `engine/serialization.rs`,
/// `Metadata`), and Cranelift's output is deterministic, so two engines with the same
/// fingerprint accept each other's artifacts and engines that differ in any of those do not
/// share one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EngineFingerprint([u8; 32]);

impl EngineFingerprint {
    /// The fingerprint of `engine` (compiles the empty component: well under a millisecond
    /// after the engine's first compile).
    ///
    /// # Errors
    ///
    /// wasmtime's error when the engine cannot compile (it has no compiler).
    pub fn of(engine: &Engine) -> wasmtime::Result<Self> {
        let artifact = engine.precompile_component(EMPTY_COMPONENT)?;
        Ok(Self(Sha256::digest(&artifact).into()))
    }

    /// The fingerprint's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The cache key of `wasm` compiled by this engine: 64 lower-case hex digits, the SHA-256
    /// of the key format's tag, this fingerprint's 32 bytes and the wasm bytes, in that order.
    pub fn key(&self, wasm: &[u8]) -> String {
        let digest = Sha256::new()
            .chain_update(KEY_FORMAT)
            .chain_update(self.0)
            .chain_update(wasm)
            .finalize();
        hex(&digest)
    }
}

impl std::fmt::Debug for EngineFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EngineFingerprint({})", hex(&self.0))
    }
}

/// Where a policy's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeSource {
    /// Compiled by Cranelift when the policy was loaded.
    Compiled,
    /// Loaded from the artifact cache ([`ArtifactCache`]).
    Cache,
    /// Precompiled into the agent's binary when it was built (an embedded default,
    /// [`crate::EmbeddedPolicy::precompiled`]).
    Precompiled,
}

impl CodeSource {
    /// `compiled`, `cache` or `precompiled`, as the API and the logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeSource::Compiled => "compiled",
            CodeSource::Cache => "cache",
            CodeSource::Precompiled => "precompiled",
        }
    }
}

impl std::fmt::Display for CodeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The code precompiled into the binary for an embedded default, when `engine` accepts it.
/// wasmtime checks the artifact against the engine (its version, target, compiler flags, the
/// CPU features the code uses, tunables and wasm features) before using it.
///
/// # Errors
///
/// Why the code cannot be used: there is none (the build could not precompile it), or
/// wasmtime's reason for refusing it; the caller compiles the component instead.
pub(crate) fn load_precompiled(
    engine: &PolicyEngine,
    precompiled: &'static [u8],
) -> Result<Component, String> {
    if precompiled.is_empty() {
        return Err("the build did not precompile it".into());
    }
    // SAFETY: wasmtime requires deserialized artifacts to come from a trusted source. These
    // bytes are part of the agent's own binary (`include_bytes!` of what its build script
    // produced with wasmtime's `precompile_component`), as trusted as the agent's code, and
    // immutable for the life of the process.
    unsafe { Component::deserialize(engine.engine(), precompiled) }.map_err(|e| format!("{e:#}"))
}

/// A compiled component and where it came from.
pub struct Compiled {
    /// The component, ready to pre-link.
    pub component: Component,
    /// [`CodeSource::Cache`] when loaded from the cache, else [`CodeSource::Compiled`].
    pub source: CodeSource,
    /// Its cache key ([`EngineFingerprint::key`]); `None` when the engine's fingerprint could
    /// not be taken and the cache was not used.
    pub key: Option<String>,
}

/// What [`ArtifactCache::evict_unreferenced`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Evicted {
    /// The files removed (artifacts and left-over temporary files).
    pub files: Vec<PathBuf>,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// A directory of compiled components, one file `KEY.cwasm` per key, so an artifact is only
/// ever looked up by an engine that could have produced it. wasmtime's own compatibility
/// check still runs on every load: an artifact it refuses (or one whose SHA-256 trailer does
/// not match) is compiled again and replaced.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cache key of `wasm` compiled by `engine` ([`EngineFingerprint::key`]), or `None`
    /// when the engine's fingerprint cannot be taken.
    pub fn key(engine: &PolicyEngine, wasm: &[u8]) -> Option<String> {
        engine.fingerprint().map(|f| f.key(wasm))
    }

    /// The file the artifact with `key` is stored in.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.{ARTIFACT_EXTENSION}"))
    }

    /// The compiled component for `wasm`, from the cache when present and accepted by
    /// wasmtime, else compiled and stored (replacing an artifact that was refused). A cache
    /// that cannot be read or written, or an artifact that is damaged or was made by an
    /// incompatible engine, only costs a compile: the failure is logged, never returned.
    ///
    /// # Errors
    ///
    /// wasmtime's error when the component does not compile (or cannot be serialized).
    pub fn load_or_compile(
        &self,
        engine: &PolicyEngine,
        wasm: &[u8],
    ) -> wasmtime::Result<Compiled> {
        let wt = engine.engine();
        let Some(key) = Self::key(engine, wasm) else {
            return Ok(Compiled {
                component: Component::new(wt, wasm)?,
                source: CodeSource::Compiled,
                key: None,
            });
        };
        let path = self.path(&key);
        if let Ok(file) = std::fs::read(&path) {
            match verified_body(&file) {
                Some(body) => {
                    // SAFETY: wasmtime requires deserialized artifacts to come from a trusted
                    // source. Only this agent writes the cache (in its state directory), the
                    // file name binds the artifact to the exact wasm bytes and engine settings,
                    // files are written whole by rename, and the SHA-256 trailer was just
                    // checked, so what is deserialized is byte for byte what this agent
                    // serialized. The bytes are read rather than mapped: a mapped file that
                    // is truncated under us would crash the agent with SIGBUS.
                    match unsafe { Component::deserialize(wt, body) } {
                        Ok(component) => {
                            return Ok(Compiled {
                                component,
                                source: CodeSource::Cache,
                                key: Some(key),
                            });
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "recompiling a precompiled policy wasmtime refused")
                        }
                    }
                }
                None => {
                    tracing::warn!(path = %path.display(), "recompiling a damaged precompiled policy (checksum mismatch)")
                }
            }
        }
        let component = Component::new(wt, wasm)?;
        if let Err(e) = self.store(&path, component.serialize()?) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot cache a compiled policy");
        }
        Ok(Compiled {
            component,
            source: CodeSource::Compiled,
            key: Some(key),
        })
    }

    /// Removes every artifact whose key is not in `in_use`, and temporary files a writer left
    /// behind (older than ten minutes), so the directory holds the compiled code of the
    /// policies in use and nothing more. Other files in the directory are left alone. The
    /// agent calls it after each load or reload of its policy set, with the keys of every
    /// policy it holds ([`crate::Policy::artifact`]); an artifact another process still
    /// wants is only compiled again.
    ///
    /// # Errors
    ///
    /// The error reading the directory (a missing directory is an empty one). A file that
    /// cannot be removed is logged and skipped.
    pub fn evict_unreferenced<'a>(
        &self,
        in_use: impl IntoIterator<Item = &'a str>,
    ) -> std::io::Result<Evicted> {
        let in_use: HashSet<&str> = in_use.into_iter().collect();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Evicted::default()),
            Err(e) => return Err(e),
        };
        let mut evicted = Evicted::default();
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = if let Some(key) = name
                .strip_suffix(ARTIFACT_EXTENSION)
                .and_then(|s| s.strip_suffix('.'))
            {
                !key.starts_with('.') && !in_use.contains(key)
            } else if name.starts_with(TEMP_PREFIX) {
                meta.modified()
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .is_some_and(|age| age > TEMP_MAX_AGE)
            } else {
                false
            };
            if !stale {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    evicted.bytes += meta.len();
                    evicted.files.push(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot evict a precompiled policy")
                }
            }
        }
        evicted.files.sort();
        Ok(evicted)
    }

    fn store(&self, path: &Path, mut bytes: Vec<u8>) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(|e| e.to_string())?;
        tmp.write_all(&bytes).map_err(|e| e.to_string())?;
        // No fsync: this write is on the path from a policy file landing to its verdicts
        // (an fsync there cost milliseconds to tens of them on a busy disk), and a cache
        // needs none. A file torn by a power cut fails the SHA-256 check when read and the
        // policy is compiled again; the rename still makes a half-written file invisible
        // while the agent runs.
        tmp.persist(path).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The artifact without its SHA-256 trailer, when the trailer matches.
fn verified_body(file: &[u8]) -> Option<&[u8]> {
    let split = file.len().checked_sub(32)?;
    let (body, digest) = file.split_at(split);
    (Sha256::digest(body).as_slice() == digest).then_some(body)
}

/// Lower-case hex, two digits a byte.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
