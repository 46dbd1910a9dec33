//! The wasmtime engine every policy runs in, with its limits and its epoch clock.
//!
//! Deadlines are wall-clock: wasmtime's epoch interruption traps a call once the epoch has
//! advanced past the store's deadline, and a thread advances the epoch every [`TICK`]. That
//! thread runs only while at least one policy call is in flight ([`PolicyEngine::awake`]);
//! between calls it waits on a condition variable with no timeout, so an idle agent pays no
//! wake-ups for it (it used to tick 1000 times a second whether or not anything ran).
//!
//! A [tiered](Compilers::Tiered) engine has a second wasmtime engine, built on first use, that
//! compiles with Winch (the baseline tier, `engine_config::baseline_config`) under the same
//! limits and pooling; the one clock advances the epochs of both.
//!
//! A tiered engine (the agent's) runs its optimised builds in an engine without a compiler
//! (`Config::enable_compiler(false)`): a restart on the precompiled defaults only maps their
//! code, and building Cranelift's ISA and settings touched ~1 MB of the binary's code pages
//! that then stayed resident. The Cranelift engine that compiles (same settings, no pooling:
//! it never instantiates) is built on the first compile or fingerprint, and its code moves to
//! the running engine as an artifact ([`PolicyEngine::compile`]). A policy file needs the
//! fingerprint for its cache key; the artifact cache keeps it, with what decides it
//! ([`PolicyEngine::fingerprint_identity`]), so a restart whose files are all cached builds
//! no compiler either (`ArtifactCache::fingerprint`; it used to leave ~3 MiB more resident).
//! wasmtime's compatibility check of an artifact does not depend on the loading engine having
//! a compiler (target, host CPU features, tunables, wasm features), so a mismatching artifact
//! is still refused and compiled again.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, Weak};
use std::thread;
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::EngineFingerprint;
use crate::engine_config::{baseline_config, compiler_config};
use crate::policy::Builds;

/// How often the epoch advances while a call is in flight. A deadline is a whole number of
/// ticks, so this is the deadline's resolution.
const TICK: Duration = Duration::from_millis(1);

/// Per-call limits. Every evaluation (and every `init`) runs under them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one call (`init` and `evaluate` together), measured from
    /// the moment its store is created.
    pub deadline: Duration,
    /// Linear memory a policy instance may have, in bytes.
    pub memory_bytes: usize,
}

impl Default for Limits {
    /// 50 ms and 64 MiB: a matcher over 4096 devices needs well under 1 ms and a few MiB, so
    /// these leave room for heavy policies while a runaway one is stopped long before it
    /// holds up a sync.
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(50),
            memory_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// The deadline in epoch ticks (at least one).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        (self.deadline.as_micros() / TICK.as_micros()).max(1) as u64
    }
}

/// Which compilers make a policy's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compilers {
    /// Cranelift only: every policy runs its optimised build, compiled at load or taken
    /// from the artifact cache or the binary (one-shot commands).
    #[default]
    Optimized,
    /// A policy whose optimised build is neither precompiled nor in the artifact cache
    /// serves first with Winch's baseline build (~9x faster to compile, slower code); its
    /// Cranelift build is made on a background thread, stored in the cache and swapped in
    /// when ready (the agent's hot reload, [`crate::Policy::tier`]). A policy Winch cannot
    /// compile is compiled by Cranelift at once.
    Tiered,
    /// Winch only: nothing precompiled, cached or optimised (tests and measurements
    /// comparing the tiers).
    Baseline,
}

/// The engine plus its limits. Cheap to clone; the epoch thread stops when the last clone
/// is dropped (it holds only a weak reference to the engine).
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

struct Inner {
    /// Runs the optimised builds; without a compiler for a tiered engine.
    engine: Engine,
    /// The Cranelift engine that compiles for `engine` when `engine` has no compiler, built
    /// on first use.
    compiler: OnceLock<Result<Engine, String>>,
    /// Whether `engine` was built without a compiler.
    run_only: bool,
    limits: Limits,
    pooling: bool,
    clock: Arc<Clock>,
    compilers: Compilers,
    /// The Winch engine, built on first use (not at all unless tiered or baseline): its
    /// pooling allocator reserves address space of its own.
    baseline: OnceLock<Result<Engine, String>>,
    /// Taken on first use of the artifact cache (or read back from it, see
    /// [`ArtifactCache::fingerprint`](crate::ArtifactCache::fingerprint)); `None` when it
    /// could not be.
    fingerprint: OnceLock<Option<EngineFingerprint>>,
    /// Whether the engine has the standard settings, so that its fingerprint follows from
    /// the build, the limits and the host's CPU ([`PolicyEngine::fingerprint_identity`]); not
    /// for [`PolicyEngine::adjusted`] ones.
    standard: bool,
    /// The policies serving on a baseline build while a thread makes their optimised one,
    /// by artifact key: a load of the same bytes meanwhile shares their builds.
    optimizing: Mutex<HashMap<String, Weak<Builds>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.clock.update(|s| s.stopped = true);
    }
}

/// The epoch thread's switch: how many calls are in flight, and whether the engine is gone.
#[derive(Default)]
struct Clock {
    state: Mutex<ClockState>,
    changed: Condvar,
    /// The baseline engine, once built: its epoch advances with the main engine's.
    baseline: OnceLock<EngineWeak>,
}

#[derive(Default)]
struct ClockState {
    in_flight: usize,
    stopped: bool,
    ticks: u64,
}

impl Clock {
    fn update(&self, f: impl FnOnce(&mut ClockState)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state);
        drop(state);
        self.changed.notify_all();
    }

    /// Blocks until a call is in flight (true) or the engine is gone (false).
    fn wait_for_work(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while state.in_flight == 0 && !state.stopped {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.ticks += 1;
        !state.stopped
    }
}

/// Keeps the epoch clock running while it lives: held by every policy call, from its store's
/// creation to its end. See [`PolicyEngine::awake`].
#[must_use = "the clock stops when the guard is dropped"]
pub struct Awake {
    clock: Arc<Clock>,
}

impl Drop for Awake {
    fn drop(&mut self) {
        self.clock.update(|s| s.in_flight -= 1);
    }
}

impl PolicyEngine {
    /// Builds an engine with `limits`. Tries the pooling allocator first (instantiation in a
    /// few microseconds, which is what makes a fresh instance per call affordable) and falls
    /// back to on-demand allocation where the host cannot reserve the address space.
    ///
    /// # Errors
    ///
    /// A message naming both failures when neither allocation strategy gives an engine
    /// (wasmtime refuses the configuration on this host).
    pub fn new(limits: Limits) -> Result<Self, String> {
        Self::with_compilers(limits, Compilers::Optimized)
    }

    /// [`PolicyEngine::new`] with the given compilers (the agent uses
    /// [`Compilers::Tiered`]).
    ///
    /// # Errors
    ///
    /// As [`PolicyEngine::new`].
    pub fn with_compilers(limits: Limits, compilers: Compilers) -> Result<Self, String> {
        Self::build(limits, compilers, true, &|_| {})
    }

    /// An engine whose compiler settings differ from the agent's by `adjust` (tests: an
    /// engine that refuses the precompiled defaults).
    #[cfg(test)]
    pub(crate) fn adjusted(limits: Limits, adjust: &dyn Fn(&mut Config)) -> Result<Self, String> {
        Self::build(limits, Compilers::Optimized, false, adjust)
    }

    fn build(
        limits: Limits,
        compilers: Compilers,
        standard: bool,
        adjust: &dyn Fn(&mut Config),
    ) -> Result<Self, String> {
        let run_only = compilers == Compilers::Tiered;
        let (engine, pooling) = new_engine(compiler_config, limits, &|c| {
            adjust(c);
            if run_only {
                c.enable_compiler(false);
            }
        })?;
        let clock = Arc::new(Clock::default());
        spawn_epoch_ticker(engine.weak(), clock.clone());
        let inner = Arc::new(Inner {
            engine,
            compiler: OnceLock::new(),
            run_only,
            limits,
            pooling,
            clock,
            compilers,
            baseline: OnceLock::new(),
            fingerprint: OnceLock::new(),
            standard,
            optimizing: Mutex::default(),
        });
        Ok(Self { inner })
    }

    /// Which compilers make this engine's policies' code.
    pub fn compilers(&self) -> Compilers {
        self.inner.compilers
    }

    /// The Winch engine of the baseline tier, built on first use with the same limits and
    /// allocation strategy as [`PolicyEngine::engine`]; its epoch advances with the main
    /// engine's clock.
    ///
    /// # Errors
    ///
    /// wasmtime's reason when it cannot build a Winch engine on this host (Winch supports
    /// x86_64 and aarch64 only).
    pub fn baseline(&self) -> Result<&Engine, String> {
        let built = self.inner.baseline.get_or_init(|| {
            let (engine, _) = new_engine(baseline_config, self.inner.limits, &|_| {})?;
            // Set once, with the engine: the ticker advances it from its next tick.
            let _ = self.inner.clock.baseline.set(engine.weak());
            Ok(engine)
        });
        built.as_ref().map_err(Clone::clone)
    }

    /// The engine that compiles optimised builds for [`PolicyEngine::engine`]: that engine
    /// itself, or for a tiered engine, whose running engine has no compiler, a Cranelift
    /// engine with the same settings built on first use (without the pooling allocator: it
    /// never instantiates).
    ///
    /// # Errors
    ///
    /// wasmtime's reason when the compiling engine cannot be built.
    pub fn compiler(&self) -> Result<&Engine, String> {
        if !self.inner.run_only {
            return Ok(&self.inner.engine);
        }
        let built = self.inner.compiler.get_or_init(|| {
            Engine::new(&config(compiler_config(), self.inner.limits, false))
                .map_err(|e| format!("cannot create the wasm compiler: {e:#}"))
        });
        built.as_ref().map_err(Clone::clone)
    }

    /// Whether this engine's Cranelift compiler exists yet: always for an engine that is not
    /// tiered; for a tiered one, once something was compiled by Cranelift or the artifact
    /// cache's key was needed (tests show that loading precompiled code builds none).
    pub fn compiler_built(&self) -> bool {
        !self.inner.run_only || self.inner.compiler.get().is_some()
    }

    /// `wasm` compiled by Cranelift into a component of [`PolicyEngine::engine`], and, when
    /// it was compiled by a separate engine ([`PolicyEngine::compiler`]), the artifact it
    /// moved through (what the artifact cache stores, so it is not serialized twice).
    ///
    /// # Errors
    ///
    /// wasmtime's error when the bytes do not compile, or the compiling engine cannot be
    /// built.
    pub fn compile(&self, wasm: &[u8]) -> wasmtime::Result<(Component, Option<Vec<u8>>)> {
        let compiler = self.compiler().map_err(wasmtime::Error::msg)?;
        if !self.inner.run_only {
            return Ok((Component::new(compiler, wasm)?, None));
        }
        let artifact = Component::new(compiler, wasm)?.serialize()?;
        // SAFETY: wasmtime requires deserialized artifacts to come from a trusted source. These
        // bytes were serialized just now, in this process, by wasmtime from a component it
        // compiled with this engine's settings, and are not shared with anything else.
        let component = unsafe { Component::deserialize(&self.inner.engine, &artifact) }?;
        Ok((component, Some(artifact)))
    }

    /// The builds of a live policy whose optimised build is being made from the bytes
    /// with artifact key `key`.
    pub(crate) fn optimizing(&self, key: &str) -> Option<Arc<Builds>> {
        let map = self.inner.optimizing.lock();
        map.unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .and_then(Weak::upgrade)
    }

    /// Records that `builds`' optimised build (artifact key `key`) is being made.
    pub(crate) fn start_optimizing(&self, key: &str, builds: Weak<Builds>) {
        let mut map = self
            .inner
            .optimizing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.insert(key.to_string(), builds);
    }

    /// Forgets `key`'s entry once the optimised build of `builds` is made or has failed
    /// (not a newer entry of the same key, made after `builds`' policy was dropped).
    pub(crate) fn end_optimizing(&self, key: &str, builds: &Weak<Builds>) {
        let mut map = self
            .inner
            .optimizing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.get(key).is_some_and(|b| Weak::ptr_eq(b, builds)) {
            map.remove(key);
        }
    }

    /// Starts (or keeps) the epoch clock for one call; it stops again when every guard is
    /// dropped. A deadline only advances while the clock runs, so every store with a
    /// deadline must be created and used under a guard.
    pub fn awake(&self) -> Awake {
        self.inner.clock.update(|s| s.in_flight += 1);
        Awake {
            clock: self.inner.clock.clone(),
        }
    }

    /// How many times the epoch thread has advanced the epoch since the engine was built:
    /// zero while no call has run (tests use it to show an idle engine does not tick).
    pub fn epoch_ticks(&self) -> u64 {
        let state = self
            .inner
            .clock
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.ticks
    }

    /// The wasmtime engine optimised builds run in (precompiled, cached or compiled). A
    /// tiered engine's has no compiler: compile with [`PolicyEngine::compile`].
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The per-call limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// What decides which compiled artifacts this engine accepts (see [`EngineFingerprint`]),
    /// taken once, on first use, from its [compiler](PolicyEngine::compiler); `None` (logged)
    /// when it cannot be taken, and then the artifact cache is not used.
    pub fn fingerprint(&self) -> Option<EngineFingerprint> {
        *self
            .inner
            .fingerprint
            .get_or_init(|| match self.compiler().and_then(|c| {
                EngineFingerprint::of(c).map_err(|e| format!("{e:#}"))
            }) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot fingerprint the wasm engine; compiled policies are not cached");
                    None
                }
            })
    }

    /// The fingerprint if it was taken (or adopted) already; never compiles.
    pub(crate) fn fingerprint_taken(&self) -> Option<EngineFingerprint> {
        self.inner.fingerprint.get().copied().flatten()
    }

    /// Takes `fingerprint` as this engine's, read back from where it was kept
    /// ([`ArtifactCache::fingerprint`](crate::ArtifactCache::fingerprint)); returns the
    /// engine's fingerprint (the one taken meanwhile, if another thread was first).
    pub(crate) fn adopt_fingerprint(
        &self,
        fingerprint: EngineFingerprint,
    ) -> Option<EngineFingerprint> {
        *self.inner.fingerprint.get_or_init(|| Some(fingerprint))
    }

    /// What decides this engine's fingerprint besides the code it was built from: the
    /// embedded defaults' precompiled code (whose bytes carry wasmtime's version marker, the
    /// target, the compiler settings, the tunables and the wasm features, everything the
    /// fingerprint does but the host's CPU features) and the CPU features Cranelift reads on
    /// this host. Not the limits: they and the pooling allocator touch no artifact's metadata
    /// (`engine_config.rs`; `tests/tiers.rs` checks that engines with other limits have the
    /// same fingerprint), and an agent and a command with other `[limits]` share one cache
    /// directory. The compiler settings are all in `engine_config.rs`, none read from the
    /// environment. `None` for an engine with other settings
    /// ([`PolicyEngine::adjusted`]), a build without precompiled defaults, or a target whose
    /// features are not listed here (x86-64 only): its fingerprint is always taken by
    /// compiling.
    pub(crate) fn fingerprint_identity(&self) -> Option<String> {
        let defaults: Vec<&str> = crate::EMBEDDED
            .iter()
            .map(|p| p.precompiled_sha256)
            .collect();
        if !self.inner.standard || defaults.iter().any(|d| d.is_empty()) {
            return None;
        }
        Some(format!(
            "defaults {}\ncpu {}\n",
            defaults.join(" "),
            cpu_features()?
        ))
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }
}

/// The x86-64 features Cranelift's host detection reads (`cranelift-native` 0.137's
/// `infer_native_flags`: each one a flag of the ISA, so part of the engine's fingerprint), as
/// `name=0|1` words. A feature missing
/// from the list can only make a kept fingerprint stale on a host whose CPU changed under the
/// same state directory; wasmtime still checks every artifact against this host's CPU, and
/// one it refuses is compiled again (`ArtifactCache`).
#[cfg(target_arch = "x86_64")]
fn cpu_features() -> Option<String> {
    macro_rules! detect {
        ($($f:tt),*) => {
            [$(($f, std::arch::is_x86_feature_detected!($f))),*]
        };
    }
    let found = detect!(
        "sse3",
        "ssse3",
        "cmpxchg16b",
        "sse4.1",
        "sse4.2",
        "popcnt",
        "avx",
        "avx2",
        "fma",
        "bmi1",
        "bmi2",
        "lzcnt",
        "avx512f",
        "avx512vl",
        "avx512dq",
        "avx512bitalg",
        "avx512vbmi",
        "avx512vnni",
        "avxvnni"
    );
    Some(
        found
            .iter()
            .map(|(name, on)| format!("{name}={}", u8::from(*on)))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_features() -> Option<String> {
    None
}

/// An engine with `settings` and `limits`: pooling allocation when the host can reserve it,
/// else on-demand; whether it pools.
fn new_engine(
    settings: fn() -> Config,
    limits: Limits,
    adjust: &dyn Fn(&mut Config),
) -> Result<(Engine, bool), String> {
    let config = |pooling| {
        let mut c = config(settings(), limits, pooling);
        adjust(&mut c);
        c
    };
    match Engine::new(&config(true)) {
        Ok(engine) => Ok((engine, true)),
        Err(pooling_err) => {
            let engine = Engine::new(&config(false)).map_err(|e| {
                format!("cannot create the wasm engine: {e:#} (pooling allocator: {pooling_err:#})")
            })?;
            tracing::warn!(error = %pooling_err, "pooling allocator unavailable; using on-demand allocation");
            Ok((engine, false))
        }
    }
}

fn config(mut config: Config, limits: Limits, pooling: bool) -> Config {
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        // Sized for a few policies evaluated at once, not for a multi-tenant server.
        pool.total_component_instances(64);
        pool.total_core_instances(128);
        pool.total_memories(64);
        pool.total_tables(128);
        pool.max_memory_size(limits.memory_bytes);
        // Nothing of a finished call's memory stays resident: wasmtime zeroes what it keeps
        // by writing it, so every slot a call ever used kept up to its first 4 MiB resident
        // (4.3 MiB of an idle agent's 28; host/benches/memory.rs, tests/pool_memory.rs).
        // Returning the pages costs a fault per page a call touches again, well under a
        // millisecond for a 4112-device batch.
        pool.linear_memory_keep_resident(0);
        pool.table_keep_resident(0);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// The epoch thread: ticks every [`TICK`] while a call is in flight, sleeps on the clock's
/// condition variable otherwise, and ends when the engine is dropped.
fn spawn_epoch_ticker(engine: EngineWeak, clock: Arc<Clock>) {
    thread::Builder::new()
        .name("pcitrack-epoch".into())
        .spawn(move || {
            while clock.wait_for_work() {
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                engine.increment_epoch();
                drop(engine);
                if let Some(baseline) = clock.baseline.get().and_then(EngineWeak::upgrade) {
                    baseline.increment_epoch();
                }
                thread::sleep(TICK);
            }
        })
        .expect("cannot start the epoch thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_clock_ticks_only_while_a_call_is_in_flight() {
        let engine = PolicyEngine::new(Limits::default()).expect("engine");
        thread::sleep(Duration::from_millis(30));
        assert_eq!(engine.epoch_ticks(), 0, "an idle engine must not tick");
        let guard = engine.awake();
        // On a loaded machine the clock thread may wait to be scheduled: poll for the ticks
        // (up to 10 s) rather than assume a number of them in a fixed time.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.epoch_ticks() < 2 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let running = engine.epoch_ticks();
        assert!(
            running >= 2,
            "a call in flight must advance the epoch ({running} ticks in 10 s)"
        );
        drop(guard);
        thread::sleep(Duration::from_millis(10));
        let stopped = engine.epoch_ticks();
        thread::sleep(Duration::from_millis(30));
        assert!(
            engine.epoch_ticks() <= stopped + 1,
            "the clock must stop once no call is in flight"
        );
    }
}
