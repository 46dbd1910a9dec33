//! A loaded policy: validated, compiled, pre-linked and with its configuration accepted.
//!
//! Its code comes in one of two tiers: the optimised build (Cranelift: compiled at load,
//! from the artifact cache, or precompiled into the binary) or, with a
//! [tiered](Compilers::Tiered) engine and no optimised build at hand, the baseline build
//! (Winch, ~9x faster to compile) that serves at once while a background thread makes the
//! optimised one, stores it in the cache and swaps it into this same policy. A policy
//! replaced by a newer version before then is not touched: the swap lands in the
//! `Arc<Policy>` it was started for, which no chain holds any more.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, InstancePre};

use crate::cache::{ArtifactCache, CodeSource, load_precompiled};
use crate::contract::{cleanup, host_api, matcher, tagger, wit};
use crate::embedded::EmbeddedPolicy;
use crate::engine::{Compilers, PolicyEngine};
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

impl Entry {
    /// The entry points of `kind` in `pre`.
    fn of(kind: PolicyKind, pre: &InstancePre<StoreState>) -> wasmtime::Result<Entry> {
        Ok(match kind {
            PolicyKind::Matcher => Entry::Matcher(matcher::GuestIndices::new(pre)?),
            PolicyKind::Tagger => Entry::Tagger(tagger::GuestIndices::new(pre)?),
            PolicyKind::Cleanup => Entry::Cleanup(cleanup::GuestIndices::new(pre)?),
        })
    }
}

/// Which compiler made the code a policy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Winch's build: compiled fast, runs slower; the optimised build replaces it when ready.
    Baseline,
    /// Cranelift's build.
    Optimized,
}

impl Tier {
    /// `baseline` or `optimized`, as the API and the logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimized => "optimized",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One build of a policy's code, pre-linked.
struct Build {
    pre: InstancePre<StoreState>,
    entry: Entry,
    tier: Tier,
}

impl Build {
    /// `component` pre-linked against the host, with `kind`'s entry points.
    fn of(component: &Component, kind: PolicyKind, tier: Tier) -> wasmtime::Result<Build> {
        let pre = linker(component.engine())?.instantiate_pre(component)?;
        let entry = Entry::of(kind, &pre)?;
        Ok(Build { pre, entry, tier })
    }
}

/// The build a policy serves with now, and what became of its optimised build when it
/// started on the baseline one. Shared with the thread making the optimised build (weakly:
/// a policy dropped meanwhile is not optimised), and with later loads of the same bytes
/// while that build is made ([`PolicyEngine::optimizing`]).
pub(crate) struct Builds {
    current: RwLock<Arc<Build>>,
    /// Load start to the optimised build serving.
    optimized_after: OnceLock<Duration>,
    /// Why the optimised build failed (the baseline one keeps serving).
    optimize_error: OnceLock<String>,
}

impl Builds {
    fn current(&self) -> Arc<Build> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
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
    builds: Arc<Builds>,
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
    ($policy:expr, $build:expr, $ix:expr, $facts:expr, |$g:ident, $store:ident| $call:expr) => {{
        let p = $policy;
        let facts = $facts;
        let pre = &$build.pre;
        let r = with_instance_and_facts(pre, &p.engine, &p.name, facts, |store, instance| {
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
    /// evaluation. With a [tiered](Compilers::Tiered) engine and no artifact in `cache`, it
    /// compiles with Winch, and a background thread makes, caches and swaps in the Cranelift
    /// build ([`Policy::tier`]).
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
        // An embedded default's bytes were made by the build script (and its tests load
        // them); when its precompiled code is taken they are never read. Checking their
        // header anyway touched a page of each in the binary at every start, and the kernel
        // maps the whole page-cache folio around it (~0.15 MiB each; `benches/memory.rs`).
        // When they are compiled after all, wasmtime's own parse still checks them.
        if precompiled.is_none() {
            check_header(name, bytes)?;
        }
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            name: name.into(),
            reason: format!("{e:#}"),
        };
        let mut shared: Option<Arc<Builds>> = None;
        let key = LazyKey::new(engine, bytes, cache);
        let code = match engine.compilers() {
            Compilers::Baseline => {
                let wt = engine.baseline().map_err(|reason| LoadError::Invalid {
                    name: name.into(),
                    reason,
                })?;
                Code {
                    component: Component::new(wt, bytes).map_err(invalid)?,
                    source: CodeSource::Compiled,
                    artifact: None,
                    tier: Tier::Baseline,
                }
            }
            Compilers::Optimized => optimized_code(engine, name, bytes, precompiled, &key)?,
            Compilers::Tiered => match ready_code(engine, name, precompiled, &key) {
                Some(code) => code,
                None => {
                    let key_now = key.get();
                    // The same bytes landing again (a rewritten file, a copy under another
                    // name) while their optimised build is being made share that policy's
                    // builds: nothing is compiled twice, and the one swap serves both.
                    shared = key_now.as_deref().and_then(|k| engine.optimizing(k));
                    match (
                        &shared,
                        baseline_code(engine, name, bytes, shared.is_some()),
                    ) {
                        (Some(builds), _) => {
                            let current = builds.current();
                            Code {
                                component: current.pre.component().clone(),
                                source: CodeSource::Compiled,
                                artifact: key_now,
                                tier: current.tier,
                            }
                        }
                        (None, Some(component)) => Code {
                            component,
                            source: CodeSource::Compiled,
                            artifact: key_now,
                            tier: Tier::Baseline,
                        },
                        (None, None) => optimized_code(engine, name, bytes, None, &key)?,
                    }
                }
            },
        };
        let wt = code.component.engine();
        let kind = classify(name, wt, &code.component)?;
        let reads_facts = reads_device_facts(wt, &code.component);
        let shape = |e: wasmtime::Error| LoadError::WrongShape {
            name: name.into(),
            kind: kind.as_str(),
            reason: format!("{e:#}"),
        };
        let optimize = shared.is_none()
            && code.tier == Tier::Baseline
            && engine.compilers() == Compilers::Tiered;
        let builds = match shared {
            Some(builds) => builds,
            None => Arc::new(Builds {
                current: RwLock::new(Arc::new(
                    Build::of(&code.component, kind, code.tier).map_err(shape)?,
                )),
                optimized_after: OnceLock::new(),
                optimize_error: OnceLock::new(),
            }),
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
            builds,
            reads_facts,
            code: code.source,
            artifact: code.artifact,
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
        if optimize {
            let builds = Arc::downgrade(&policy.builds);
            if let Some(key) = &policy.artifact {
                engine.start_optimizing(key, builds.clone());
            }
            spawn_optimize(Optimize {
                engine: engine.clone(),
                name: policy.name.clone(),
                kind,
                bytes: bytes.to_vec(),
                cache: cache.cloned(),
                key: policy.artifact.clone(),
                builds,
                started,
            });
        }
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
        let build = self.builds.current();
        let r = with_instance(
            &build.pre,
            &self.engine,
            &self.name,
            |store, instance| match &build.entry {
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

    /// How long loading took (compile or cache load, pre-link, first init): until it could
    /// serve, with the baseline build when it started on that.
    pub fn load_time(&self) -> std::time::Duration {
        self.load_time
    }

    /// The tier of the code it runs now: [`Tier::Baseline`] from a load that found no
    /// optimised build (tiered engine) until the optimised one is swapped in.
    pub fn tier(&self) -> Tier {
        self.builds.current().tier
    }

    /// From the start of its load until its optimised build replaced the baseline one;
    /// `None` when it started optimised or the swap has not happened (it is set just before
    /// the swap, so a policy seen on its optimised tier always has it).
    pub fn optimized_after(&self) -> Option<Duration> {
        self.builds.optimized_after.get().copied()
    }

    /// Why its optimised build could not be made, when it failed after the baseline build
    /// loaded (the baseline build keeps serving).
    pub fn optimize_error(&self) -> Option<&str> {
        self.builds.optimize_error.get().map(String::as_str)
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
        let build = self.builds.current();
        let Entry::Matcher(ix) = &build.entry else {
            return Err(self.wrong_kind(PolicyKind::Matcher));
        };
        call!(self, build, ix, self.facts_for(facts), |g, store| g
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
        let build = self.builds.current();
        let Entry::Tagger(ix) = &build.entry else {
            return Err(self.wrong_kind(PolicyKind::Tagger));
        };
        call!(self, build, ix, self.facts_for(facts), |g, store| g
            .call_evaluate(store, inventory, tag_sets, candidates))
    }

    /// One cleanup call.
    pub(crate) fn call_cleanup(
        &self,
        tracked: &[wit::TrackedDevice],
        candidates: &[u32],
    ) -> Result<cleanup::Verdicts, CallError> {
        let build = self.builds.current();
        let Entry::Cleanup(ix) = &build.entry else {
            return Err(self.wrong_kind(PolicyKind::Cleanup));
        };
        call!(self, build, ix, None, |g, store| g
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

/// A policy's compiled code, before pre-linking.
struct Code {
    component: Component,
    source: CodeSource,
    artifact: Option<String>,
    tier: Tier,
}

/// A policy's artifact key in the cache it loads through, taken on first use and once: not
/// at all for a precompiled default the engine accepts (the key needs the engine's
/// fingerprint, which needs a compiler, see [`PolicyEngine::compiler`]).
struct LazyKey<'a> {
    engine: &'a PolicyEngine,
    bytes: &'a [u8],
    cache: Option<&'a ArtifactCache>,
    key: std::cell::OnceCell<Option<String>>,
}

impl<'a> LazyKey<'a> {
    fn new(engine: &'a PolicyEngine, bytes: &'a [u8], cache: Option<&'a ArtifactCache>) -> Self {
        Self {
            engine,
            bytes,
            cache,
            key: std::cell::OnceCell::new(),
        }
    }

    /// The key; `None` without a cache or when the engine has no fingerprint.
    fn get(&self) -> Option<String> {
        self.key
            .get_or_init(|| self.cache.and_then(|c| c.key_for(self.engine, self.bytes)))
            .clone()
    }
}

/// The optimised build when it needs no compile: precompiled into the binary (and accepted
/// by the engine) or in the cache.
fn ready_code(
    engine: &PolicyEngine,
    name: &str,
    precompiled: Option<&EmbeddedPolicy>,
    key: &LazyKey<'_>,
) -> Option<Code> {
    let cache = key.cache;
    if let Some(p) = precompiled {
        match load_precompiled(engine, p, cache) {
            Ok((component, artifact)) => {
                return Some(Code {
                    component,
                    source: CodeSource::Precompiled,
                    artifact,
                    tier: Tier::Optimized,
                });
            }
            Err(reason) => {
                tracing::info!(policy = name, %reason, "compiling a default whose precompiled code this engine does not accept");
            }
        }
    }
    let c = cache?.load_key(engine, key.get()?)?;
    Some(Code {
        component: c.component,
        source: c.source,
        artifact: c.key,
        tier: Tier::Optimized,
    })
}

/// The optimised build: [`ready_code`], else compiled by Cranelift (and stored in the
/// cache).
fn optimized_code(
    engine: &PolicyEngine,
    name: &str,
    bytes: &[u8],
    precompiled: Option<&EmbeddedPolicy>,
    key: &LazyKey<'_>,
) -> Result<Code, LoadError> {
    if let Some(code) = ready_code(engine, name, precompiled, key) {
        return Ok(code);
    }
    let cache = key.cache;
    let invalid = |e: wasmtime::Error| LoadError::Invalid {
        name: name.into(),
        reason: format!("{e:#}"),
    };
    let (component, artifact) = match cache {
        Some(cache) => {
            let c = cache
                .compile_and_store(engine, bytes, key.get())
                .map_err(invalid)?;
            (c.component, c.key)
        }
        None => (engine.compile(bytes).map_err(invalid)?.0, None),
    };
    Ok(Code {
        component,
        source: CodeSource::Compiled,
        artifact,
        tier: Tier::Optimized,
    })
}

/// The baseline build, or `None` (logged) when Winch cannot compile these bytes or has no
/// engine on this host: then Cranelift compiles them at once, and its error, if any, is
/// the one reported.
fn baseline_code(
    engine: &PolicyEngine,
    name: &str,
    bytes: &[u8],
    shared: bool,
) -> Option<Component> {
    if shared {
        return None;
    }
    let compiled = engine
        .baseline()
        .and_then(|wt| Component::new(wt, bytes).map_err(|e| format!("{e:#}")));
    match compiled {
        Ok(component) => Some(component),
        Err(reason) => {
            tracing::info!(policy = name, %reason, "no baseline build; compiling the optimised one now");
            None
        }
    }
}

/// The optimised build of a policy serving on its baseline build, to make in the
/// background.
struct Optimize {
    engine: PolicyEngine,
    name: Arc<str>,
    kind: PolicyKind,
    bytes: Vec<u8>,
    cache: Option<ArtifactCache>,
    /// Its artifact key, under which later loads of the same bytes find `builds`.
    key: Option<String>,
    builds: Weak<Builds>,
    started: Instant,
}

/// Starts a thread that compiles `job`'s policy with Cranelift, stores the artifact in the
/// cache (as a load would) and swaps the build into the policy, unless the policy is gone by
/// then (replaced by a newer version: nothing is swapped). A failure is logged and kept
/// ([`Policy::optimize_error`]); the baseline build keeps serving.
fn spawn_optimize(job: Optimize) {
    let builds = job.builds.clone();
    let name = job.name.clone();
    let spawned = std::thread::Builder::new()
        .name("pcitrack-optimize".into())
        .spawn(move || optimize(job));
    if let Err(e) = spawned {
        fail_optimize(
            &builds,
            &name,
            format!("cannot start the compile thread: {e}"),
        );
    }
}

fn optimize(job: Optimize) {
    optimize_once(&job);
    if let Some(key) = &job.key {
        job.engine.end_optimizing(key, &job.builds);
    }
}

fn optimize_once(job: &Optimize) {
    if job.builds.strong_count() == 0 {
        tracing::debug!(policy = %job.name, "replaced before its optimised build started");
        return;
    }
    let compiled = job.engine.compile(&job.bytes);
    let Some(builds) = job.builds.upgrade() else {
        tracing::info!(policy = %job.name, "replaced before its optimised build was ready; not swapped");
        return;
    };
    // Stored only now that a policy is known to still hold it: the build of a file replaced
    // meanwhile is not written after the refresh that replaced it has evicted (it would stay
    // in the cache, referenced by nothing, until the next refresh).
    let compiled = compiled.map(|(component, artifact)| {
        if let (Some(cache), Some(key)) = (&job.cache, &job.key) {
            cache.store_compiled(key, &component, artifact);
        }
        component
    });
    let build = compiled
        .and_then(|c| Build::of(&c, job.kind, Tier::Optimized))
        .map_err(|e| format!("{e:#}"));
    match build {
        Ok(build) => {
            // Recorded before the swap: whoever sees the optimised tier also sees when it
            // came (set after it, a listing read in between showed `optimized` without its
            // time: a flaky `reload_tiers` on a loaded machine).
            let after = job.started.elapsed();
            let _ = builds.optimized_after.set(after);
            *builds
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Arc::new(build);
            tracing::info!(
                policy = %job.name,
                after_ms = after.as_secs_f64() * 1e3,
                "optimised build swapped in"
            );
        }
        Err(reason) => fail_optimize(&job.builds, &job.name, reason),
    }
}

fn fail_optimize(builds: &Weak<Builds>, name: &str, reason: String) {
    tracing::warn!(policy = name, error = %reason, "no optimised build; the baseline build keeps serving");
    if let Some(builds) = builds.upgrade() {
        let _ = builds.optimize_error.set(reason);
    }
}
