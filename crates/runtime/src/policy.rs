//! A loaded policy: validated, compiled, pre-linked and with its configuration accepted.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::InstancePre;

use crate::cache::{ArtifactCache, CodeSource, load_precompiled};
use crate::contract::{cleanup, host_api, matcher, tagger, wit};
use crate::embedded::EmbeddedPolicy;
use crate::engine::PolicyEngine;
use crate::error::{CallError, LoadError};
use crate::evaluate::{StoreState, linker, with_instance, with_instance_and_facts};
use crate::load::{PolicyKind, check_header, classify, reads_device_facts};
use crate::stats::{PolicyStats, StatsSnapshot};
use crate::verdicts::VerdictMemory;

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOrigin {
    /// Compiled into the agent.
    Embedded,
    /// A file in the policies directory.
    File(PathBuf),
}

impl fmt::Display for PolicyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyOrigin::Embedded => f.write_str("embedded"),
            PolicyOrigin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The typed entry points of the one interface a policy exports.
enum Entry {
    Matcher(matcher::GuestIndices),
    Tagger(tagger::GuestIndices),
    Cleanup(cleanup::GuestIndices),
}

/// A policy ready to evaluate. Immutable once built; share it behind an `Arc` and replace
/// it whole on reload, so evaluations in flight finish on the version they started with.
pub struct Policy {
    name: Arc<str>,
    kind: PolicyKind,
    origin: PolicyOrigin,
    info: wit::PolicyInfo,
    config: String,
    engine: PolicyEngine,
    pre: InstancePre<StoreState>,
    entry: Entry,
    /// Whether it imports `host.get-device-facts` (contract 0.1.1): only then are the facts
    /// handed to its calls.
    reads_facts: bool,
    code: CodeSource,
    /// The key of its compiled artifact, when loaded through a cache.
    artifact: Option<String>,
    load_time: std::time::Duration,
    /// Each device's last verdict from this policy (matcher or tagger), for when a call
    /// fails.
    pub(crate) last_verdicts: VerdictMemory,
    /// Calls and failures of this version.
    pub(crate) stats: PolicyStats,
}

/// The body every call shares: a fresh instance, `init` with the policy's configuration
/// (an `Err` from it is the policy refusing), then the call itself. A macro because the
/// generated guest types differ per kind. `$facts` answers `host.get-device-facts`.
macro_rules! call {
    ($policy:expr, $ix:expr, $facts:expr, |$g:ident, $store:ident| $call:expr) => {{
        let p = $policy;
        let facts = $facts;
        let r = with_instance_and_facts(&p.pre, &p.engine, &p.name, facts, |store, instance| {
            let $g = $ix.load(&mut *store, instance)?;
            if let Err(e) = $g.call_init(&mut *store, &p.config)? {
                return Ok(Err(e));
            }
            let $store = &mut *store;
            $call
        })?;
        r.map_err(CallError::Refused)
    }};
}

impl Policy {
    /// Validates, compiles (or loads from `cache`), pre-links, and starts the policy once
    /// with `config` so that a configuration it refuses is refused now, not at the first
    /// evaluation.
    ///
    /// # Errors
    ///
    /// Everything [`crate::inspect`] refuses; [`LoadError::WrongShape`] when the exports do
    /// not have the contract's types; [`LoadError::ConfigRefused`] when the policy's `init`
    /// returns an error for `config`; [`LoadError::Start`] when `describe` or `init` traps,
    /// runs out of time or memory.
    pub fn load(
        engine: &PolicyEngine,
        name: &str,
        bytes: &[u8],
        origin: PolicyOrigin,
        config: &str,
        cache: Option<&ArtifactCache>,
    ) -> Result<Policy, LoadError> {
        Self::load_code(engine, name, bytes, None, origin, config, cache)
    }

    /// [`Policy::load`], trying first the code `precompiled` into the binary for these bytes
    /// (an embedded default's, [`crate::EmbeddedPolicy::precompiled`]): when the engine
    /// accepts it, nothing is compiled (with a `cache` that maps the defaults, the code is
    /// mapped from its copy in the cache's directory, see `cache::load_precompiled`), and
    /// nothing is written to the cache otherwise; when it does not (the
    /// build could not precompile, or the engine's settings differ), the refusal is logged
    /// and the bytes are compiled (or taken from `cache`) as [`Policy::load`] does.
    pub(crate) fn load_code(
        engine: &PolicyEngine,
        name: &str,
        bytes: &[u8],
        precompiled: Option<&EmbeddedPolicy>,
        origin: PolicyOrigin,
        config: &str,
        cache: Option<&ArtifactCache>,
    ) -> Result<Policy, LoadError> {
        let started = Instant::now();
        check_header(name, bytes)?;
        let wt = engine.engine();
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            name: name.into(),
            reason: format!("{e:#}"),
        };
        let precompiled = precompiled.and_then(|p| match load_precompiled(engine, p, cache) {
            Ok(loaded) => Some(loaded),
            Err(reason) => {
                tracing::info!(policy = name, %reason, "compiling a default whose precompiled code this engine does not accept");
                None
            }
        });
        let (component, code, artifact) = match (precompiled, cache) {
            (Some((component, copy)), _) => (component, CodeSource::Precompiled, copy),
            (None, Some(cache)) => {
                let c = cache.load_or_compile(engine, bytes).map_err(invalid)?;
                (c.component, c.source, c.key)
            }
            (None, None) => (
                wasmtime::component::Component::new(wt, bytes).map_err(invalid)?,
                CodeSource::Compiled,
                None,
            ),
        };
        let kind = classify(name, wt, &component)?;
        let reads_facts = reads_device_facts(wt, &component);
        let shape = |e: wasmtime::Error| LoadError::WrongShape {
            name: name.into(),
            kind: kind.as_str(),
            reason: format!("{e:#}"),
        };
        let pre = linker(wt)
            .and_then(|l| l.instantiate_pre(&component))
            .map_err(shape)?;
        let entry = match kind {
            PolicyKind::Matcher => Entry::Matcher(matcher::GuestIndices::new(&pre).map_err(shape)?),
            PolicyKind::Tagger => Entry::Tagger(tagger::GuestIndices::new(&pre).map_err(shape)?),
            PolicyKind::Cleanup => Entry::Cleanup(cleanup::GuestIndices::new(&pre).map_err(shape)?),
        };
        let mut policy = Policy {
            name: name.into(),
            kind,
            origin,
            info: wit::PolicyInfo {
                name: name.into(),
                version: String::new(),
                description: String::new(),
            },
            config: config.to_string(),
            engine: engine.clone(),
            pre,
            entry,
            reads_facts,
            code,
            artifact,
            load_time: std::time::Duration::ZERO,
            last_verdicts: VerdictMemory::default(),
            stats: PolicyStats::default(),
        };
        policy.info = policy.start().map_err(|e| match e {
            CallError::Refused(reason) => LoadError::ConfigRefused {
                name: name.into(),
                reason,
            },
            source => LoadError::Start {
                name: name.into(),
                source,
            },
        })?;
        policy.load_time = started.elapsed();
        Ok(policy)
    }

    /// Runs `describe` and `init` in a throwaway instance.
    fn start(&self) -> Result<wit::PolicyInfo, CallError> {
        let config = self.config.as_str();
        // The three arms differ only in the generated guest type.
        macro_rules! describe_and_init {
            ($ix:expr, $store:expr, $instance:expr) => {{
                let g = $ix.load(&mut *$store, $instance)?;
                let info = g.call_describe(&mut *$store)?;
                Ok(g.call_init(&mut *$store, config)?.map(|()| info))
            }};
        }
        let r = with_instance(
            &self.pre,
            &self.engine,
            &self.name,
            |store, instance| match &self.entry {
                Entry::Matcher(ix) => describe_and_init!(ix, store, instance),
                Entry::Tagger(ix) => describe_and_init!(ix, store, instance),
                Entry::Cleanup(ix) => describe_and_init!(ix, store, instance),
            },
        )?;
        r.map_err(CallError::Refused)
    }

    /// The policy's name (its file stem, or the embedded default's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its name, shared (every verdict it decides carries it).
    pub fn shared_name(&self) -> Arc<str> {
        self.name.clone()
    }

    /// Its kind.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// Where it came from.
    pub fn origin(&self) -> &PolicyOrigin {
        &self.origin
    }

    /// What the policy says of itself: (name, version, description).
    pub fn info(&self) -> (&str, &str, &str) {
        (&self.info.name, &self.info.version, &self.info.description)
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Whether the compiled code came from the artifact cache.
    pub fn from_cache(&self) -> bool {
        self.code == CodeSource::Cache
    }

    /// Where its compiled code came from: compiled at load, the artifact cache, or
    /// precompiled into the binary.
    pub fn code_source(&self) -> CodeSource {
        self.code
    }

    /// The key of its compiled artifact in the cache it was loaded through (see
    /// [`ArtifactCache::evict_unreferenced`]), or for a precompiled default the digest its
    /// mapped copy there is named by; `None` when no cache was used.
    pub fn artifact(&self) -> Option<&str> {
        self.artifact.as_deref()
    }

    /// How long loading took (compile or cache load, pre-link, first init).
    pub fn load_time(&self) -> std::time::Duration {
        self.load_time
    }

    /// Its calls and failures since it was loaded.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Whether it imports `host.get-device-facts`: a chain builds the facts only when one
    /// of its policies does.
    pub(crate) fn reads_facts(&self) -> bool {
        self.reads_facts
    }

    /// The facts to hand to one of its calls: `facts` when it reads them.
    fn facts_for(
        &self,
        facts: Option<&Arc<host_api::DeviceFacts>>,
    ) -> Option<Arc<host_api::DeviceFacts>> {
        facts.filter(|_| self.reads_facts).cloned()
    }

    /// One matcher call: a fresh instance, `init`, `evaluate`. `facts` are the inventory's
    /// device facts, when the chain built them.
    pub(crate) fn call_matcher(
        &self,
        inventory: &wit::Inventory,
        facts: Option<&Arc<host_api::DeviceFacts>>,
        targets: &[u32],
    ) -> Result<matcher::Verdicts, CallError> {
        let Entry::Matcher(ix) = &self.entry else {
            return Err(self.wrong_kind(PolicyKind::Matcher));
        };
        call!(self, ix, self.facts_for(facts), |g, store| g
            .call_evaluate(store, inventory, targets))
    }

    /// One tagger call.
    pub(crate) fn call_tagger(
        &self,
        inventory: &wit::Inventory,
        facts: Option<&Arc<host_api::DeviceFacts>>,
        tag_sets: &[Vec<wit::Tag>],
        candidates: &[u64],
    ) -> Result<tagger::Verdicts, CallError> {
        let Entry::Tagger(ix) = &self.entry else {
            return Err(self.wrong_kind(PolicyKind::Tagger));
        };
        call!(self, ix, self.facts_for(facts), |g, store| g
            .call_evaluate(store, inventory, tag_sets, candidates))
    }

    /// One cleanup call.
    pub(crate) fn call_cleanup(
        &self,
        tracked: &[wit::TrackedDevice],
        candidates: &[u32],
    ) -> Result<cleanup::Verdicts, CallError> {
        let Entry::Cleanup(ix) = &self.entry else {
            return Err(self.wrong_kind(PolicyKind::Cleanup));
        };
        call!(self, ix, None, |g, store| g
            .call_evaluate(store, tracked, candidates))
    }

    fn wrong_kind(&self, wanted: PolicyKind) -> CallError {
        CallError::Garbage(format!(
            "{} is a {} policy, not a {wanted}",
            self.name, self.kind
        ))
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}
