//! The policies the agent runs, file by file, with what happened to each.
//!
//! Hot reload must never leave the agent worse off: a file that fails to load (not wasm, wrong
//! world, refuses its configuration, caught half-written, or a digest that `[policies]
//! allowed_sha256` does not list) is reported with its name and reason, and the version of
//! that policy that was running stays in the chain. Deleting a file
//! removes its policy, so the embedded default of its kind comes back. Each refresh compares
//! the directory with what was loaded (by size, modification time and inode), so create,
//! modify, rename and delete are handled alike, and a burst of events costs one look.
//!
//! The engine is [tiered](Compilers::Tiered): a file whose compiled artifact is not in the
//! cache serves at once on Winch's baseline build, and its Cranelift build replaces it
//! inside the same policy when ready (the listing shows each policy's `tier`); a newer
//! version of the file loaded meanwhile is a new policy, which the late build never touches.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use pcitrack_runtime::{
    AllowedDigests, ArtifactCache, Compilers, LoadError, Policy, PolicyEngine, PolicyKind,
    PolicySet, StatsSnapshot, assemble, load_embedded, load_file, policy_files, policy_name,
};
use serde::Serialize;

use crate::config::Config;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    mtime_ns: i128,
    ino: u64,
}

impl Fingerprint {
    fn of(path: &Path) -> Option<Fingerprint> {
        let m = std::fs::metadata(path).ok()?;
        Some(Fingerprint {
            len: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ino: m.ino(),
        })
    }
}

/// A refusal, kept until the file loads or goes.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// The loader's message (it names the policy and the reason).
    pub error: String,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
    /// The policy refused its configuration (rather than being broken).
    #[serde(skip)]
    config_refused: bool,
}

/// One policy file and what became of it.
#[derive(Debug)]
struct FileEntry {
    fingerprint: Option<Fingerprint>,
    /// The version serving, if any ever loaded.
    active: Option<Arc<Policy>>,
    /// Why the newest version was refused (None once a version loads).
    refused: Option<Refusal>,
}

/// What a refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshReport {
    /// Files whose new version now serves.
    pub loaded: Vec<String>,
    /// Files refused, with the reason (their previous version, if any, still serves).
    pub refused: Vec<(String, String)>,
    /// Files that went away (their kind's default serves again if they replaced it).
    pub removed: Vec<String>,
    /// Kinds whose chain changed.
    pub kinds: Vec<PolicyKind>,
}

impl RefreshReport {
    /// Whether device verdicts may have changed (a matcher or tagger chain changed).
    pub fn affects_assessment(&self) -> bool {
        self.kinds
            .iter()
            .any(|k| matches!(k, PolicyKind::Matcher | PolicyKind::Tagger))
    }
}

/// A policy as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    /// Its name (file stem, or the default's name).
    pub name: String,
    /// matcher, tagger or cleanup (absent for a file that never loaded).
    pub kind: Option<&'static str>,
    /// `embedded`, or the file.
    pub origin: String,
    /// Whether it is in the effective chain.
    pub active: bool,
    /// Its own version string.
    pub version: Option<String>,
    /// Its own description.
    pub description: Option<String>,
    /// Compiled code came from the artifact cache.
    pub from_cache: Option<bool>,
    /// Where its compiled code came from: `compiled` at load, the artifact `cache`, or
    /// `precompiled` into the binary (an embedded default the engine accepted).
    pub code: Option<&'static str>,
    /// How long loading took, in milliseconds (until it served, on the baseline build when
    /// it started on that).
    pub load_ms: Option<f64>,
    /// The code it runs: `baseline` (Winch's build, serving until Cranelift's is ready) or
    /// `optimized`.
    pub tier: Option<&'static str>,
    /// Load start to the optimised build replacing the baseline one, in milliseconds.
    pub optimized_ms: Option<f64>,
    /// Why its optimised build failed (it keeps serving on the baseline build).
    pub optimize_error: Option<String>,
    /// Calls and failures since this version loaded.
    pub stats: Option<StatsSnapshot>,
    /// Why the newest version of its file was refused.
    pub refused: Option<Refusal>,
}

/// The effective chains, in order, and every policy's status.
#[derive(Debug, Clone, Serialize)]
pub struct PoliciesReport {
    /// Policy names per kind, in evaluation order (the built-in rule comes after them).
    pub chain: BTreeMap<&'static str, Vec<String>>,
    /// Every policy, file or embedded.
    pub policies: Vec<PolicyStatus>,
}

/// The loaded policies of one configuration.
pub struct PolicyRegistry {
    engine: PolicyEngine,
    cache: Option<ArtifactCache>,
    config: Config,
    allowed: Option<AllowedDigests>,
    dir: PathBuf,
    defaults: Vec<Arc<Policy>>,
    files: BTreeMap<PathBuf, FileEntry>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl PolicyRegistry {
    /// Starts an engine with `config`'s limits and loads the embedded defaults. A default
    /// that refuses the configuration makes the configuration unusable: that is an error.
    pub fn new(config: &Config, dir: &Path) -> Result<Self, String> {
        let allowed = config
            .allowed_digests()
            .map_err(|e| format!("[policies] {e}"))?;
        let engine = PolicyEngine::with_compilers(config.limits(), Compilers::Tiered)
            .map_err(|e| format!("starting the policy engine: {e}"))?;
        let cache_dir = config.cache_dir();
        let cache = std::fs::create_dir_all(&cache_dir)
            .ok()
            .map(|()| ArtifactCache::new(cache_dir).with_mapped_defaults());
        let (defaults, errors) =
            load_embedded(&engine, &|n| config.policy_config(n), cache.as_ref(), &[]);
        if let Some(e) = errors.first() {
            return Err(format!("embedded policy refused: {e}"));
        }
        Ok(Self {
            engine,
            cache,
            config: config.clone(),
            allowed,
            dir: dir.to_path_buf(),
            defaults,
            files: BTreeMap::new(),
        })
    }

    /// The policies directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Brings the loaded files in line with the directory.
    pub fn refresh(&mut self) -> RefreshReport {
        let mut report = RefreshReport::default();
        let present = match policy_files(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                // An unreadable directory changes nothing: what runs keeps running.
                report
                    .refused
                    .push((self.dir.display().to_string(), e.to_string()));
                return report;
            }
        };
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !present.contains(p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(entry) = self.files.remove(&path)
                && let Some(p) = entry.active
            {
                report.removed.push(p.name().to_string());
                report.kinds.push(p.kind());
            }
        }
        for path in present {
            let fingerprint = Fingerprint::of(&path);
            if self
                .files
                .get(&path)
                .is_some_and(|e| e.fingerprint == fingerprint)
            {
                continue;
            }
            let config = &self.config;
            let loaded = load_file(
                &self.engine,
                &path,
                &|n| config.policy_config(n),
                self.cache.as_ref(),
                self.allowed.as_ref(),
            );
            let entry = self.files.entry(path.clone()).or_insert(FileEntry {
                fingerprint: None,
                active: None,
                refused: None,
            });
            entry.fingerprint = fingerprint;
            match loaded {
                Ok(policy) => {
                    tracing::info!(
                        policy = policy.name(),
                        kind = %policy.kind(),
                        code = %policy.code_source(),
                        tier = %policy.tier(),
                        load_ms = policy.load_time().as_secs_f64() * 1e3,
                        "policy loaded"
                    );
                    report.loaded.push(policy.name().to_string());
                    report.kinds.push(policy.kind());
                    if let Some(old) = &entry.active
                        && old.kind() != policy.kind()
                    {
                        report.kinds.push(old.kind());
                    }
                    entry.active = Some(Arc::new(policy));
                    entry.refused = None;
                }
                Err(e) => {
                    let name = policy_name(&path);
                    tracing::warn!(
                        policy = %name,
                        file = %path.display(),
                        error = %e,
                        kept = entry.active.is_some(),
                        "policy refused; the previous version (if any) stays"
                    );
                    report.refused.push((name, e.to_string()));
                    entry.refused = Some(Refusal {
                        error: e.to_string(),
                        at: now_secs(),
                        config_refused: matches!(e, LoadError::ConfigRefused { .. }),
                    });
                }
            }
        }
        report.kinds.sort_by_key(|k| k.as_str());
        report.kinds.dedup();
        self.evict_unreferenced_artifacts();
        report
    }

    /// Removes the compiled artifacts of policies this registry no longer holds (replaced or
    /// deleted files, another configuration's engine, an older key format), keeping those of
    /// every policy it holds, serving or not.
    fn evict_unreferenced_artifacts(&self) {
        let Some(cache) = &self.cache else { return };
        let held = self
            .defaults
            .iter()
            .chain(self.files.values().filter_map(|e| e.active.as_ref()))
            .filter_map(|p| p.artifact());
        match cache.evict_unreferenced(held) {
            Ok(evicted) if !evicted.files.is_empty() => tracing::info!(
                files = evicted.files.len(),
                bytes = evicted.bytes,
                dir = %cache.dir().display(),
                "evicted compiled policies no loaded policy uses"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(dir = %cache.dir().display(), error = %e, "cannot evict from the compiled-policy cache")
            }
        }
    }

    /// The effective chains now.
    pub fn set(&self) -> PolicySet {
        let active: Vec<Arc<Policy>> = self
            .files
            .values()
            .filter_map(|e| e.active.clone())
            .collect();
        assemble(&active, &self.defaults)
    }

    /// Load errors that come from the configuration (a policy refusing it). A configuration
    /// that any policy refuses is not taken on reload.
    pub fn config_refusals(&self) -> Vec<String> {
        self.files
            .values()
            .filter_map(|e| e.refused.as_ref())
            .filter(|r| r.config_refused)
            .map(|r| r.error.clone())
            .collect()
    }

    /// The chains and every policy's status.
    pub fn report(&self) -> PoliciesReport {
        let set = self.set();
        let mut chain = BTreeMap::new();
        for kind in PolicyKind::ALL {
            chain.insert(
                kind.as_str(),
                set.chain(kind)
                    .iter()
                    .map(|p| p.name().to_string())
                    .collect(),
            );
        }
        let in_chain = |p: &Arc<Policy>| set.chain(p.kind()).iter().any(|q| Arc::ptr_eq(p, q));
        let describe = |p: &Arc<Policy>, refused: Option<Refusal>| {
            let (_, version, description) = p.info();
            PolicyStatus {
                name: p.name().to_string(),
                kind: Some(p.kind().as_str()),
                origin: p.origin().to_string(),
                active: in_chain(p),
                version: Some(version.to_string()),
                description: Some(description.to_string()),
                from_cache: Some(p.from_cache()),
                code: Some(p.code_source().as_str()),
                load_ms: Some(p.load_time().as_secs_f64() * 1e3),
                tier: Some(p.tier().as_str()),
                optimized_ms: p.optimized_after().map(|d| d.as_secs_f64() * 1e3),
                optimize_error: p.optimize_error().map(String::from),
                stats: Some(p.stats()),
                refused,
            }
        };
        let mut policies: Vec<PolicyStatus> = Vec::new();
        for (path, e) in &self.files {
            policies.push(match &e.active {
                Some(p) => describe(p, e.refused.clone()),
                None => PolicyStatus {
                    name: policy_name(path),
                    kind: None,
                    origin: path.display().to_string(),
                    active: false,
                    version: None,
                    description: None,
                    from_cache: None,
                    code: None,
                    load_ms: None,
                    tier: None,
                    optimized_ms: None,
                    optimize_error: None,
                    stats: None,
                    refused: e.refused.clone(),
                },
            });
        }
        policies.extend(self.defaults.iter().map(|p| describe(p, None)));
        PoliciesReport { chain, policies }
    }
}
