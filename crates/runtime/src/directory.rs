//! The effective chains from the embedded defaults and a policies directory.
//!
//! Every `*.wasm` file in the directory is a policy named after its file stem. A file named
//! like an embedded default (`cleanup.wasm`, ...) replaces that default; any other file
//! extends its kind's chain and runs before the default, in file-name order. A file that
//! fails to load is reported and left out; it never takes the others down.
//!
//! An operator may pin which files may run with a digest allowlist ([`AllowedDigests`]): a
//! file whose SHA-256 is not listed is refused before wasmtime sees a byte of it. The
//! embedded defaults are part of the binary and are always allowed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::PolicySet;
use crate::cache::ArtifactCache;
use crate::embedded::EMBEDDED;
use crate::engine::PolicyEngine;
use crate::error::LoadError;
use crate::load::PolicyKind;
use crate::policy::{Policy, PolicyOrigin};

/// The outcome of loading a directory: the set that loaded, and what was refused.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The effective chains.
    pub set: PolicySet,
    /// Files (or defaults) that were refused, with the reason.
    pub errors: Vec<LoadError>,
}

/// An allowlist entry that is not a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("allowed_sha256 entry {index} ({entry:?}) is not a SHA-256 digest: {reason}")]
pub struct DigestError {
    /// Its position in the list, from 0.
    pub index: usize,
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The SHA-256 digests of the policy files allowed to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedDigests(BTreeSet<[u8; 32]>);

impl AllowedDigests {
    /// Parses digests written as 64 hex digits (either case; `sha256sum`'s output).
    ///
    /// # Errors
    ///
    /// [`DigestError`] naming the first entry that is not 64 hex digits.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, DigestError> {
        let mut set = BTreeSet::new();
        for (index, entry) in entries.iter().enumerate() {
            let text = entry.as_ref();
            let bad = |reason: String| DigestError {
                index,
                entry: text.to_string(),
                reason,
            };
            if text.len() != 64 {
                return Err(bad(format!(
                    "expected 64 hex digits, found {} characters",
                    text.chars().count()
                )));
            }
            let mut digest = [0u8; 32];
            for (i, pair) in text.as_bytes().chunks(2).enumerate() {
                let pair = std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "{:?} at position {} is not a hex digit pair",
                            String::from_utf8_lossy(pair),
                            2 * i
                        ))
                    })?;
                digest[i] = pair;
            }
            set.insert(digest);
        }
        Ok(Self(set))
    }

    /// Whether a file with these bytes may run.
    pub fn permits(&self, bytes: &[u8]) -> bool {
        self.0.contains(Sha256::digest(bytes).as_slice())
    }
}

/// The SHA-256 of `bytes` in lower-case hex, as `sha256sum` prints it and
/// [`AllowedDigests::parse`] reads it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `*.wasm` files of `dir`, sorted by name. A missing directory is an empty one.
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    files.sort();
    Ok(files)
}

/// A policy's name: its file stem.
pub fn policy_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Loads the embedded defaults and every policy file in `dir` (if any), giving each the
/// configuration `config(name)` returns. With `allowed`, a file whose digest is not listed
/// is refused ([`LoadError::NotAllowed`]).
pub fn load_policies(
    engine: &PolicyEngine,
    dir: Option<&Path>,
    config: &dyn Fn(&str) -> String,
    cache: Option<&ArtifactCache>,
    allowed: Option<&AllowedDigests>,
) -> Loaded {
    let mut errors = Vec::new();
    let files = match dir.map(policy_files).transpose() {
        Ok(files) => files.unwrap_or_default(),
        Err(source) => {
            let path = dir.map(Path::to_path_buf).unwrap_or_default();
            errors.push(LoadError::Read {
                name: path.display().to_string(),
                path,
                source,
            });
            Vec::new()
        }
    };
    let mut from_files: Vec<Arc<Policy>> = Vec::new();
    for path in &files {
        match load_file(engine, path, config, cache, allowed) {
            Ok(p) => from_files.push(Arc::new(p)),
            Err(e) => errors.push(e),
        }
    }
    let replaced: Vec<PolicyKind> = PolicyKind::ALL
        .into_iter()
        .filter(|&k| {
            from_files
                .iter()
                .any(|p| is_default_name_of(p.name(), k) && p.kind() == k)
        })
        .collect();
    let (defaults, default_errors) = load_embedded(engine, config, cache, &replaced);
    errors.extend(default_errors);
    Loaded {
        set: assemble(&from_files, &defaults),
        errors,
    }
}

/// Reads and loads one policy file, named after its file stem. With `allowed`, the file's
/// SHA-256 must be listed, checked on the bytes read (the same bytes that are compiled).
///
/// # Errors
///
/// [`LoadError::Read`] when the file cannot be read, [`LoadError::NotAllowed`] when its
/// digest is not in `allowed`, and whatever [`Policy::load`] refuses.
pub fn load_file(
    engine: &PolicyEngine,
    path: &Path,
    config: &dyn Fn(&str) -> String,
    cache: Option<&ArtifactCache>,
    allowed: Option<&AllowedDigests>,
) -> Result<Policy, LoadError> {
    let name = policy_name(path);
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        name: name.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(allowed) = allowed
        && !allowed.permits(&bytes)
    {
        return Err(LoadError::NotAllowed {
            name,
            path: path.to_path_buf(),
            sha256: sha256_hex(&bytes),
        });
    }
    Policy::load(
        engine,
        &name,
        &bytes,
        PolicyOrigin::File(path.to_path_buf()),
        &config(&name),
        cache,
    )
}

/// Loads the embedded defaults, except those of the kinds in `skip` (replaced by a file),
/// from the code precompiled into the binary when the engine accepts it (no compile, nothing
/// written to `cache`), else compiled or from `cache` ([`Policy::code_source`] says which).
pub fn load_embedded(
    engine: &PolicyEngine,
    config: &dyn Fn(&str) -> String,
    cache: Option<&ArtifactCache>,
    skip: &[PolicyKind],
) -> (Vec<Arc<Policy>>, Vec<LoadError>) {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for e in EMBEDDED.iter().filter(|e| !skip.contains(&e.kind)) {
        match Policy::load_code(
            engine,
            e.name,
            e.bytes,
            Some(e),
            PolicyOrigin::Embedded,
            &config(e.name),
            cache,
        ) {
            Ok(p) => loaded.push(Arc::new(p)),
            Err(err) => errors.push(err),
        }
    }
    (loaded, errors)
}

/// The effective chains from the policies loaded from files (in file-name order) and the
/// embedded defaults: per kind, the files first, then the file named like that kind's default
/// if there is one, else the default itself.
pub fn assemble(from_files: &[Arc<Policy>], defaults: &[Arc<Policy>]) -> PolicySet {
    let mut chain = Vec::new();
    for kind in PolicyKind::ALL {
        chain.extend(
            from_files
                .iter()
                .filter(|p| p.kind() == kind && !is_default_name(p.name()))
                .cloned(),
        );
        let replacement = from_files
            .iter()
            .find(|p| p.kind() == kind && is_default_name_of(p.name(), kind));
        match replacement {
            Some(p) => chain.push(p.clone()),
            None => chain.extend(defaults.iter().filter(|p| p.kind() == kind).cloned()),
        }
    }
    // A file named like a default but of another kind extends its own kind's chain.
    for p in from_files {
        if is_default_name(p.name()) && !is_default_name_of(p.name(), p.kind()) {
            chain.push(p.clone());
        }
    }
    PolicySet::new(chain)
}

fn is_default_name(name: &str) -> bool {
    EMBEDDED.iter().any(|e| e.name == name)
}

fn is_default_name_of(name: &str, kind: PolicyKind) -> bool {
    EMBEDDED.iter().any(|e| e.name == name && e.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_digest_is_read_in_either_case_and_matches_sha256sum() {
        assert_eq!(sha256_hex(b""), EMPTY);
        let allowed = AllowedDigests::parse(&[EMPTY.to_uppercase()]).unwrap();
        assert!(allowed.permits(b""));
        assert!(!allowed.permits(b"x"));
    }

    #[test]
    fn a_bad_allowlist_entry_is_named_with_its_position() {
        let short = AllowedDigests::parse(&[EMPTY, "abc"]).unwrap_err();
        assert_eq!((short.index, short.entry.as_str()), (1, "abc"));
        assert!(short.to_string().contains("64 hex digits"), "{short}");
        let not_hex = EMPTY.replace('e', "g");
        let e = AllowedDigests::parse(&[not_hex.as_str()]).unwrap_err();
        assert!(e.to_string().contains("not a hex digit pair"), "{e}");
        let multibyte = format!("é{}", &EMPTY[2..]);
        assert!(AllowedDigests::parse(&[multibyte]).is_err());
    }
}
