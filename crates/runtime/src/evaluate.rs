//! One call into a policy: a fresh store under the limits, instantiate from the pre-linked
//! component, `init` with the policy's configuration, then the call itself.
//!
//! A fresh store per call is what makes a failure contained: a trapped instance cannot be
//! entered again, and a policy that leaked memory or corrupted its own state in one call
//! starts clean in the next. With the pooling allocator instantiation costs microseconds.

use std::sync::Arc;

use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};

use crate::contract::{Agent, LogLevel, host_api, wit};
use crate::engine::{Limits, PolicyEngine};
use crate::error::CallError;

/// Longest log line a policy may write; longer ones are cut, so a policy cannot flood the
/// agent's log with one call.
const MAX_LOG_LINE: usize = 4096;

/// What a store carries: its limits, the name of the policy (for its log lines) and the
/// device facts of the call in flight (for `host.get-device-facts`; `None` when the policy
/// does not import the function or the call has no inventory).
pub(crate) struct StoreState {
    limits: StoreLimits,
    policy: Arc<str>,
    facts: Option<Arc<host_api::DeviceFacts>>,
}

impl host_api::Host for StoreState {
    fn log(&mut self, level: LogLevel, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [cut]");
        }
        let policy = &*self.policy;
        match level {
            LogLevel::Debug => tracing::debug!(policy, "{message}"),
            LogLevel::Info => tracing::info!(policy, "{message}"),
            LogLevel::Warn => tracing::warn!(policy, "{message}"),
            LogLevel::Error => tracing::error!(policy, "{message}"),
        }
    }

    fn get_device_facts(&mut self) -> host_api::DeviceFacts {
        match &self.facts {
            Some(facts) => host_api::DeviceFacts::clone(facts),
            None => host_api::DeviceFacts {
                devices: Vec::new(),
                drivers: Vec::new(),
            },
        }
    }
}

impl wit::Host for StoreState {}

/// The linker every policy is linked against: the `host` interface and nothing else. It is
/// built from the newest contract (0.1.1); wasmtime's linker resolves an import of
/// `host@0.1.0` to it by the semver track `@0.1`, and an older policy imports only what it
/// knows (`log`), so one linker serves every supported version.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    Agent::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A store with the limits applied and the deadline armed, answering
/// `host.get-device-facts` with `facts`.
pub(crate) fn new_store(
    engine: &Engine,
    limits: Limits,
    policy: &Arc<str>,
    facts: Option<Arc<host_api::DeviceFacts>>,
) -> Store<StoreState> {
    let state = StoreState {
        limits: StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .instances(16)
            .tables(16)
            .memories(4)
            .table_elements(100_000)
            .trap_on_grow_failure(true)
            .build(),
        policy: policy.clone(),
        facts,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(limits.deadline_ticks());
    store.epoch_deadline_trap();
    store
}

/// Turns whatever wasmtime returned into a [`CallError`]. Any error counts, not only traps:
/// a memory cap hit, for one, surfaces as a plain error.
pub(crate) fn call_error(e: wasmtime::Error, limits: Limits) -> CallError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout {
            deadline_ms: limits.deadline.as_millis() as u64,
        },
        Some(trap) => CallError::Trap(format!("{trap}: {}", root_message(&e))),
        None => CallError::Failed(format!("{e:#}")),
    }
}

fn root_message(e: &wasmtime::Error) -> String {
    e.chain().last().map(|c| c.to_string()).unwrap_or_default()
}

/// Runs `body` in a fresh instance of `pre`, with the epoch clock running (the deadline
/// only advances while it does).
pub(crate) fn with_instance<R>(
    pre: &InstancePre<StoreState>,
    engine: &PolicyEngine,
    policy: &Arc<str>,
    body: impl FnOnce(&mut Store<StoreState>, &wasmtime::component::Instance) -> wasmtime::Result<R>,
) -> Result<R, CallError> {
    with_instance_and_facts(pre, engine, policy, None, body)
}

/// [`with_instance`] for a call whose policy may ask for the device facts of its inventory.
pub(crate) fn with_instance_and_facts<R>(
    pre: &InstancePre<StoreState>,
    engine: &PolicyEngine,
    policy: &Arc<str>,
    facts: Option<Arc<host_api::DeviceFacts>>,
    body: impl FnOnce(&mut Store<StoreState>, &wasmtime::component::Instance) -> wasmtime::Result<R>,
) -> Result<R, CallError> {
    let limits = engine.limits();
    let _clock = engine.awake();
    let mut store = new_store(pre.engine(), limits, policy, facts);
    let instance = pre
        .instantiate(&mut store)
        .map_err(|e| call_error(e, limits))?;
    body(&mut store, &instance).map_err(|e| call_error(e, limits))
}
