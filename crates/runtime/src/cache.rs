//! Precompiled policies on disk, so a restart does not recompile (about a second per policy
//! with Cranelift; loading a precompiled artifact takes about a millisecond).
//!
//! An artifact is named by its [key](EngineFingerprint::key): 64 lower-case hex digits, the
//! SHA-256 of the key format's tag, the [engine's fingerprint](EngineFingerprint) and the
//! wasm bytes. Every input is bytes this agent or wasmtime defines, never the output of a
//! `std::hash::Hasher`, so the name of an artifact does not change when the agent is built
//! with another Rust release (std's `DefaultHasher` and the data `Hash` impls feed a hasher
//! may both change between releases). The cache holds the artifacts of the policies in use
//! (and, for the agent, the copies its embedded defaults' precompiled code is mapped from,
//! `SHA256.precompiled`, see `load_precompiled`) and nothing else:
//! [`ArtifactCache::evict_unreferenced`] removes the rest after each load of the policy set.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::embedded::EmbeddedPolicy;
use crate::engine::PolicyEngine;

/// The first bytes hashed into every key; a change to what a key covers changes this tag, so
/// keys of different formats never collide.
const KEY_FORMAT: &[u8] = b"pcitrack compiled policy, key format 1\n";

/// The smallest component (preamble only: magic, component-model version 0x0d, layer 1).
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

/// Artifact files end so; anything else in the directory is not the cache's.
const ARTIFACT_EXTENSION: &str = "cwasm";

/// The copies of the embedded defaults' precompiled code, mapped rather than read
/// ([`load_precompiled`]), end so; named by their SHA-256, evicted like artifacts.
const PRECOMPILED_EXTENSION: &str = "precompiled";

/// The file keeping the engine's fingerprint ([`ArtifactCache::fingerprint`]).
const FINGERPRINT_FILE: &str = "engine.fingerprint";

/// Its format: this tag, then the SHA-256 of the engine's identity, then the fingerprint.
const FINGERPRINT_FORMAT: &[u8] = b"pcitrack engine fingerprint 1\n";

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

/// The code precompiled into the binary for an embedded default, when `engine` accepts it,
/// and the name of the file it was mapped from (its `precompiled_sha256`), if any. wasmtime
/// checks the artifact against the engine (its version, target, compiler flags, the CPU
/// features the code uses, tunables and wasm features) before using it.
///
/// With a `cache` that [maps the defaults](ArtifactCache::with_mapped_defaults), the code is
/// mapped from a copy in the cache's directory (written on first use, named by the digest the
/// build computed, so it is found without reading the binary's bytes): only the pages a call
/// touches are resident, and they are file pages the kernel can drop. Copied out of the binary instead, as wasmtime's `deserialize` does, the
/// three defaults held their whole code twice: 3.5 MiB in an anonymous copy, and the same
/// 3.5 MiB of the binary read to make it (`host/benches/memory.rs`). When the copy cannot
/// be written or mapped, the code is copied from the binary as before (logged).
///
/// # Errors
///
/// Why the code cannot be used: there is none (the build could not precompile it), or
/// wasmtime's reason for refusing it; the caller compiles the component instead.
pub(crate) fn load_precompiled(
    engine: &PolicyEngine,
    policy: &EmbeddedPolicy,
    cache: Option<&ArtifactCache>,
) -> Result<(Component, Option<String>), String> {
    let precompiled = policy.precompiled;
    if precompiled.is_empty() {
        return Err("the build did not precompile it".into());
    }
    if let Some(cache) = cache.filter(|c| c.map_defaults) {
        match cache.map_precompiled(engine, policy) {
            Ok(component) => return Ok((component, Some(policy.precompiled_sha256.into()))),
            Err(MapError::Refused(reason)) => return Err(reason),
            Err(MapError::Io(e)) => {
                tracing::warn!(policy = policy.name, dir = %cache.dir.display(), error = %e, "cannot map a default's precompiled code from the state directory; copying it")
            }
        }
    }
    // SAFETY: wasmtime requires deserialized artifacts to come from a trusted source. These
    // bytes are part of the agent's own binary (`include_bytes!` of what its build script
    // produced with wasmtime's `precompile_component`), as trusted as the agent's code, and
    // immutable for the life of the process.
    let component = unsafe { Component::deserialize(engine.engine(), precompiled) }
        .map_err(|e| format!("{e:#}"))?;
    Ok((component, None))
}

/// Why [`ArtifactCache::map_precompiled`] gave no component.
enum MapError {
    /// The copy could not be written or mapped: copy the code from the binary instead.
    Io(String),
    /// wasmtime refused the code for this engine: compile instead.
    Refused(String),
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
    /// Whether the embedded defaults' precompiled code is mapped from copies in `dir`
    /// ([`ArtifactCache::with_mapped_defaults`]).
    map_defaults: bool,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            map_defaults: false,
        }
    }

    /// This cache, also holding copies of the embedded defaults' precompiled code that the
    /// defaults are mapped from (see `load_precompiled`): what a long-running agent wants,
    /// whose resident memory it cuts by 3.5 MiB (22.4 to 18.9 MiB idle, restarted on a warm
    /// state directory; `host/benches/memory.rs`). A one-shot command does not: the first one
    /// on a state directory would write and sync 3.5 MiB (80 ms, 3.5x its time) to save
    /// memory for a few milliseconds, so without this the code is copied from the binary.
    pub fn with_mapped_defaults(mut self) -> Self {
        self.map_defaults = true;
        self
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

    /// The cache key of `wasm` compiled by `engine`, with the fingerprint from
    /// [`ArtifactCache::fingerprint`]: what the agent and the commands use.
    pub fn key_for(&self, engine: &PolicyEngine, wasm: &[u8]) -> Option<String> {
        self.fingerprint(engine).map(|f| f.key(wasm))
    }

    /// `engine`'s fingerprint, kept in this directory (`engine.fingerprint`) so that a restart
    /// finds its cached policies without building Cranelift: the fingerprint is taken by
    /// compiling, and building the compiler left ~3 MiB of an idle agent resident (issue 14).
    /// The file holds the fingerprint with the SHA-256 of what decides it besides the code
    /// ([`PolicyEngine::fingerprint_identity`]: the build's precompiled defaults and the
    /// host's CPU features); one written by a build with other precompiled defaults, or on
    /// another CPU, is not used, and the fingerprint is taken and written again. Without an identity (an
    /// engine with other settings, another target) it is always taken. A file that cannot be
    /// read or written only costs the compile; nothing is returned but the fingerprint.
    pub fn fingerprint(&self, engine: &PolicyEngine) -> Option<EngineFingerprint> {
        if let Some(f) = engine.fingerprint_taken() {
            return Some(f);
        }
        let Some(identity) = engine.fingerprint_identity() else {
            return engine.fingerprint();
        };
        let identity: [u8; 32] = Sha256::digest(identity.as_bytes()).into();
        let path = self.dir.join(FINGERPRINT_FILE);
        if let Ok(file) = std::fs::read(&path)
            && let Some(rest) = file.strip_prefix(FINGERPRINT_FORMAT)
            && let Some((kept_for, fingerprint)) = rest.split_first_chunk::<32>()
            && *kept_for == identity
            && let Ok(fingerprint) = <[u8; 32]>::try_from(fingerprint)
        {
            return engine.adopt_fingerprint(EngineFingerprint(fingerprint));
        }
        let fingerprint = engine.fingerprint()?;
        let mut bytes = FINGERPRINT_FORMAT.to_vec();
        bytes.extend_from_slice(&identity);
        bytes.extend_from_slice(fingerprint.as_bytes());
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| {
                tempfile::Builder::new()
                    .prefix(TEMP_PREFIX)
                    .tempfile_in(&self.dir)
            })
            .and_then(|mut tmp| {
                tmp.write_all(&bytes)?;
                tmp.persist(&path).map_err(|e| e.error)?;
                Ok(())
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep the engine's fingerprint; the next start takes it again");
        }
        Some(fingerprint)
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
        let key = self.key_for(engine, wasm);
        match key.clone().and_then(|k| self.load_key(engine, k)) {
            Some(compiled) => Ok(compiled),
            None => self.compile_and_store(engine, wasm, key),
        }
    }

    /// The component for the bytes whose [key](ArtifactCache::key) is `key`, from the cache,
    /// when its artifact is there and wasmtime accepts it; `None` otherwise (a damaged or
    /// refused artifact is logged). The caller takes the key once and passes it on to
    /// [`ArtifactCache::compile_and_store`] on a miss (hashing the 640 KB matcher costs
    /// ~0.5 ms).
    pub(crate) fn load_key(&self, engine: &PolicyEngine, key: String) -> Option<Compiled> {
        let wt = engine.engine();
        let path = self.path(&key);
        if let Ok(file) = std::fs::read(&path) {
            match verified_body(&file) {
                Some(body) => {
                    // SAFETY: wasmtime requires deserialized artifacts to come from a trusted
                    // source. Only this agent writes the cache (in its state directory), the
                    // file name binds the artifact to the exact wasm bytes and to the engine's
                    // fingerprint (as kept in `engine.fingerprint`: an engine whose settings
                    // it misses is caught by wasmtime's compatibility check on this very call,
                    // which refuses the artifact, and it is compiled again),
                    // files are written whole by rename, and the SHA-256 trailer was just
                    // checked, so what is deserialized is byte for byte what this agent
                    // serialized. The bytes are read rather than mapped: a mapped file that
                    // is truncated under us would crash the agent with SIGBUS.
                    match unsafe { Component::deserialize(wt, body) } {
                        Ok(component) => {
                            return Some(Compiled {
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
        None
    }

    /// Writes `component` under `key` ([`ArtifactCache::key`] of its bytes; temp file and
    /// rename), from `artifact` when the compile already serialized it
    /// ([`PolicyEngine::compile`]). A failure is logged, not returned: the policy runs all the
    /// same and is compiled again next time.
    pub(crate) fn store_compiled(
        &self,
        key: &str,
        component: &Component,
        artifact: Option<Vec<u8>>,
    ) {
        let stored = match artifact {
            Some(bytes) => Ok(bytes),
            None => component.serialize().map_err(|e| format!("{e:#}")),
        }
        .and_then(|bytes| self.store(&self.path(key), bytes));
        if let Err(e) = stored {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot cache a compiled policy");
        }
    }

    /// `wasm` compiled by Cranelift, its artifact stored (replacing one that was refused);
    /// a cache that cannot be written is logged, not returned. `key` is the bytes' key when
    /// the caller took it already.
    ///
    /// # Errors
    ///
    /// wasmtime's error when the component does not compile (or cannot be serialized).
    pub(crate) fn compile_and_store(
        &self,
        engine: &PolicyEngine,
        wasm: &[u8],
        key: Option<String>,
    ) -> wasmtime::Result<Compiled> {
        let Some(key) = key.or_else(|| self.key_for(engine, wasm)) else {
            return Ok(Compiled {
                component: engine.compile(wasm)?.0,
                source: CodeSource::Compiled,
                key: None,
            });
        };
        let (component, artifact) = engine.compile(wasm)?;
        self.store_compiled(&key, &component, artifact);
        Ok(Compiled {
            component,
            source: CodeSource::Compiled,
            key: Some(key),
        })
    }

    /// The file a default's precompiled code is mapped from: `SHA256.precompiled`.
    fn precompiled_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.{PRECOMPILED_EXTENSION}"))
    }

    /// `policy`'s precompiled code mapped from its copy in this directory, the copy written
    /// first when missing (see [`load_precompiled`]).
    fn map_precompiled(
        &self,
        engine: &PolicyEngine,
        policy: &EmbeddedPolicy,
    ) -> Result<Component, MapError> {
        let path = self.precompiled_path(policy.precompiled_sha256);
        // wasmtime checks a mapped artifact's header and engine settings, not its code or
        // data: a copy damaged in place (same length) would load and run. So the copy is
        // used only when its content hashes to the digest the build computed (reading
        // 3.5 MiB through the page cache, a few milliseconds at start, none of it resident
        // in the process); anything else is written again from the binary.
        if file_sha256(&path).as_deref() != Some(policy.precompiled_sha256) {
            if path.exists() {
                tracing::warn!(policy = policy.name, path = %path.display(), "a default's precompiled copy does not match the build's digest; writing it again");
            }
            self.write_copy(&path, policy).map_err(MapError::Io)?;
        }
        // SAFETY: wasmtime requires deserialized artifacts to come from a trusted source and
        // a mapped file not to change while mapped. The file is this agent's copy of bytes
        // from its own binary, checked against the SHA-256 the build computed for them (or
        // written from them just now): only the agent writes its state directory, it writes
        // a copy whole, synced, and renames it into place, and never writes or truncates it
        // afterwards (an eviction unlinks it, which leaves a mapping intact).
        unsafe { Component::deserialize_file(engine.engine(), &path) }
            .map_err(|e| MapError::Refused(format!("{e:#}")))
    }

    /// Writes `policy`'s precompiled code to `path` by a synced temporary file and a rename:
    /// a file that exists under its final name is complete, even after a power cut (a mapped
    /// file is not checked again, unlike an artifact's trailer).
    ///
    /// The bytes are copied from the binary's file (`/proc/self/exe`, at the place the
    /// process maps them from), not from the mapping: read through the mapping, every page of
    /// the 3.5 MiB stayed resident in the agent after its first start (`benches/memory.rs`).
    /// The copy is used only when it hashes to the build's digest; otherwise (no such file,
    /// a binary not mapped from one) the bytes are written from memory as before.
    fn write_copy(&self, path: &Path, policy: &EmbeddedPolicy) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let temp = || {
            tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .tempfile_in(&self.dir)
                .map_err(|e| e.to_string())
        };
        let mut tmp = temp()?;
        let copied = copy_from_own_binary(policy.precompiled, tmp.as_file_mut()).is_ok()
            && file_sha256(tmp.path()).as_deref() == Some(policy.precompiled_sha256);
        if !copied {
            tmp = temp()?;
            tmp.write_all(policy.precompiled)
                .map_err(|e| e.to_string())?;
        }
        tmp.as_file().sync_all().map_err(|e| e.to_string())?;
        tmp.persist(path).map_err(|e| e.to_string())?;
        Ok(())
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
            let stale = if let Some(key) = [ARTIFACT_EXTENSION, PRECOMPILED_EXTENSION]
                .iter()
                .find_map(|ext| name.strip_suffix(ext).and_then(|s| s.strip_suffix('.')))
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
/// The lower-case hex SHA-256 of the file at `path`; `None` when it is not a regular file
/// or cannot be read.
/// Copies `bytes`, a slice of this process's own binary (an `include_bytes!` static), into
/// `to` from the binary's file rather than from memory: the offset is found from the mapping
/// that holds the slice (`/proc/self/maps`, whose path is `/proc/self/exe`'s target), and the
/// kernel copies file to file. The caller checks what was copied.
///
/// # Errors
///
/// The slice is not in a mapping of the binary's file, or reading or writing failed.
fn copy_from_own_binary(bytes: &[u8], to: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let offset = offset_in_own_binary(bytes).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the bytes are not in a mapping of this binary's file",
        )
    })?;
    let mut exe = std::fs::File::open("/proc/self/exe")?;
    exe.seek(SeekFrom::Start(offset))?;
    let want = bytes.len() as u64;
    let copied = std::io::copy(&mut exe.take(want), to)?;
    if copied != want {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Where `bytes` lies in the file of this process's binary: the file offset of its first
/// byte, when one file-backed mapping of that file holds the whole slice (Linux
/// `/proc/PID/maps`: `start-end perms offset dev inode path`, hex numbers).
fn offset_in_own_binary(bytes: &[u8]) -> Option<u64> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let exe = exe.to_str()?;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let (start, end) = (
        bytes.as_ptr() as usize,
        bytes.as_ptr() as usize + bytes.len(),
    );
    maps.lines().find_map(|line| {
        let mut fields = line.splitn(6, ' ');
        let (from, to) = fields.next()?.split_once('-')?;
        let (from, to) = (
            usize::from_str_radix(from, 16).ok()?,
            usize::from_str_radix(to, 16).ok()?,
        );
        let offset = u64::from_str_radix(fields.nth(1)?, 16).ok()?;
        let path = fields.nth(2)?.trim_start();
        (path == exe && from <= start && end <= to).then(|| offset + (start - from) as u64)
    })
}

fn file_sha256(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use crate::EMBEDDED;

    /// The defaults' copies are written from the binary's file, never through its mapping
    /// (which would leave the pages resident): the offset found must hold those very bytes,
    /// and the copy must be made from the file.
    #[test]
    fn an_embedded_slice_is_found_and_copied_from_the_binarys_file() {
        for e in EMBEDDED.iter().filter(|e| !e.precompiled.is_empty()) {
            let offset = super::offset_in_own_binary(e.precompiled)
                .unwrap_or_else(|| panic!("{}: not found in a mapping of the binary", e.name));
            let file = std::fs::read("/proc/self/exe").unwrap();
            let at = usize::try_from(offset).unwrap();
            assert_eq!(
                &file[at..at + e.precompiled.len()],
                e.precompiled,
                "{}",
                e.name
            );
            let mut to = tempfile::tempfile().unwrap();
            super::copy_from_own_binary(e.precompiled, &mut to).unwrap();
            use std::io::{Read, Seek};
            to.rewind().unwrap();
            let mut copied = Vec::new();
            to.read_to_end(&mut copied).unwrap();
            assert_eq!(copied, e.precompiled, "{}", e.name);
        }
        // Bytes of the heap are in no mapping of the file.
        let heap: Vec<u8> = std::iter::repeat_n(7, 64).collect();
        assert_eq!(super::offset_in_own_binary(&heap), None);
    }
}
