//! Precompiled policies on disk, so a restart does not recompile (about a second per policy
//! with Cranelift; loading a precompiled artifact takes about a millisecond).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components, keyed by the wasm's SHA-256 and the engine's
/// compatibility hash (wasmtime version, target, settings), so an artifact is only ever
/// loaded by an engine that could have produced it.
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

    fn path_for(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        let mut engine_hash = DefaultHasher::new();
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let digest = Sha256::digest(wasm);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir
            .join(format!("{hex}-{:016x}.cwasm", engine_hash.finish()))
    }

    /// The compiled component for `wasm`, from the cache when present, else compiled and
    /// stored. A cache that cannot be read or written, or an artifact that is damaged, only
    /// costs a compile: the failure is logged, never returned.
    ///
    /// # Errors
    ///
    /// wasmtime's error when the component does not compile (or cannot be serialized).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, bool)> {
        let path = self.path_for(engine, wasm);
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
                    match unsafe { Component::deserialize(engine, body) } {
                        Ok(component) => return Ok((component, true)),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "ignoring unusable precompiled policy")
                        }
                    }
                }
                None => {
                    tracing::warn!(path = %path.display(), "ignoring a damaged precompiled policy (checksum mismatch)")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(e) = self.store(&path, component.serialize()?) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot cache a compiled policy");
        }
        Ok((component, false))
    }

    fn store(&self, path: &Path, mut bytes: Vec<u8>) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| e.to_string())?;
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
