//! The wasmtime engine every policy runs in, with its limits and its epoch clock.

use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// How often the epoch advances. A deadline is a whole number of ticks, so this is the
/// deadline's resolution; one millisecond costs nothing measurable.
const TICK: Duration = Duration::from_millis(1);

/// Per-call limits. Every evaluation (and every `init`) runs under them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU deadline of one call.
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

/// The engine plus its limits. Cheap to clone; the epoch thread stops when the last clone
/// is dropped (it holds only a weak reference).
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    limits: Limits,
    pooling: bool,
}

impl PolicyEngine {
    /// Builds an engine with `limits`. Tries the pooling allocator first (instantiation in a
    /// few microseconds, which is what makes a fresh instance per call affordable) and falls
    /// back to on-demand allocation where the host cannot reserve the address space.
    pub fn new(limits: Limits) -> Result<Self, String> {
        let (engine, pooling) = match Engine::new(&config(limits, true)) {
            Ok(engine) => (engine, true),
            Err(pooling_err) => {
                let engine = Engine::new(&config(limits, false)).map_err(|e| {
                    format!(
                        "cannot create the wasm engine: {e:#} (pooling allocator: {pooling_err:#})"
                    )
                })?;
                tracing::warn!(error = %pooling_err, "pooling allocator unavailable; using on-demand allocation");
                (engine, false)
            }
        };
        let inner = Arc::new(Inner {
            engine,
            limits,
            pooling,
        });
        spawn_epoch_ticker(Arc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The per-call limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }
}

fn config(limits: Limits, pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    // Deep recursion must trap, not crash the agent: keep the wasm stack well inside the
    // native thread's.
    config.max_wasm_stack(512 << 10);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        // Sized for a few policies evaluated at once, not for a multi-tenant server.
        pool.total_component_instances(64);
        pool.total_core_instances(128);
        pool.total_memories(64);
        pool.total_tables(128);
        pool.max_memory_size(limits.memory_bytes);
        // A fresh instance per call touches the same first megabytes every time (its stack,
        // its heap, the batch it receives). Keeping them resident and zeroing them on reuse
        // is cheaper than returning them to the kernel and faulting them back in.
        pool.linear_memory_keep_resident(4 << 20);
        pool.table_keep_resident(64 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

fn spawn_epoch_ticker(engine: Weak<Inner>) {
    thread::Builder::new()
        .name("pcitrack-epoch".into())
        .spawn(move || {
            while let Some(inner) = engine.upgrade() {
                inner.engine.increment_epoch();
                drop(inner);
                thread::sleep(TICK);
            }
        })
        .expect("cannot start the epoch thread");
}
