//! Building the effective policy chains from a configuration.

use std::path::Path;

use anyhow::Context;
use pcitrack_runtime::{ArtifactCache, Loaded, PolicyEngine, load_policies};

use crate::config::Config;

/// The engine, the loaded chains, and what was refused.
pub struct Policies {
    /// The engine the policies run in.
    pub engine: PolicyEngine,
    /// The chains and the refusals.
    pub loaded: Loaded,
}

/// Loads the embedded defaults and the policy files of `dir` (when given) with `config`'s
/// limits, per-policy settings and digest allowlist (an unlisted file is refused, like any
/// other file that fails to load), caching compiled policies in the state directory when it
/// is writable.
///
/// # Errors
///
/// The engine cannot start, or the allowlist has an entry that is not a digest.
pub fn load(config: &Config, dir: Option<&Path>) -> anyhow::Result<Policies> {
    let allowed = config
        .allowed_digests()
        .map_err(|e| anyhow::anyhow!("[policies] {e}"))?;
    let engine = PolicyEngine::new(config.limits())
        .map_err(anyhow::Error::msg)
        .context("starting the policy engine")?;
    let cache_dir = config.cache_dir();
    let cache = std::fs::create_dir_all(&cache_dir)
        .ok()
        .map(|()| ArtifactCache::new(cache_dir));
    let loaded = load_policies(
        &engine,
        dir,
        &|name| config.policy_config(name),
        cache.as_ref(),
        allowed.as_ref(),
    );
    Ok(Policies { engine, loaded })
}
