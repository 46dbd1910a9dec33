//! The effective chains from the embedded defaults and a policies directory.
//!
//! Every `*.wasm` file in the directory is a policy named after its file stem. A file named
//! like an embedded default (`cleanup.wasm`, ...) replaces that default; any other file
//! extends its kind's chain and runs before the default, in file-name order. A file that
//! fails to load is reported and left out; it never takes the others down.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
/// configuration `config(name)` returns.
pub fn load_policies(
    engine: &PolicyEngine,
    dir: Option<&Path>,
    config: &dyn Fn(&str) -> String,
    cache: Option<&ArtifactCache>,
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
        match load_file(engine, path, config, cache) {
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

/// Reads and loads one policy file, named after its file stem.
pub fn load_file(
    engine: &PolicyEngine,
    path: &Path,
    config: &dyn Fn(&str) -> String,
    cache: Option<&ArtifactCache>,
) -> Result<Policy, LoadError> {
    let name = policy_name(path);
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        name: name.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    Policy::load(
        engine,
        &name,
        &bytes,
        PolicyOrigin::File(path.to_path_buf()),
        &config(&name),
        cache,
    )
}

/// Loads the embedded defaults, except those of the kinds in `skip` (replaced by a file).
pub fn load_embedded(
    engine: &PolicyEngine,
    config: &dyn Fn(&str) -> String,
    cache: Option<&ArtifactCache>,
    skip: &[PolicyKind],
) -> (Vec<Arc<Policy>>, Vec<LoadError>) {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for e in EMBEDDED.iter().filter(|e| !skip.contains(&e.kind)) {
        match Policy::load(
            engine,
            e.name,
            e.bytes,
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
