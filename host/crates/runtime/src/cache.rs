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
    /// stored. A cache that cannot be read or written only costs a compile: the failure is
    /// logged, never returned.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, bool)> {
        let path = self.path_for(engine, wasm);
        if path.exists() {
            // SAFETY: wasmtime requires that deserialized artifacts come from a trusted
            // source. Only this agent writes into the cache directory (it lives in the
            // agent's state directory, mode 0700), the file name binds the artifact to the
            // exact wasm bytes and engine configuration, and files are written whole by
            // rename, so a half-written artifact is never seen.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable precompiled policy")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot cache a compiled policy");
        }
        Ok((component, false))
    }

    fn store(&self, path: &Path, component: &Component) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let bytes = component.serialize().map_err(|e| e.to_string())?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| e.to_string())?;
        tmp.write_all(&bytes).map_err(|e| e.to_string())?;
        tmp.as_file().sync_all().map_err(|e| e.to_string())?;
        tmp.persist(path).map_err(|e| e.to_string())?;
        Ok(())
    }
}
