//! The limits hold under Winch's baseline build as under Cranelift's (issue 14, hot reload):
//! the agent serves a newly landed policy on its baseline build, so the deadline, the
//! memory cap and the wasm stack must stop a hostile policy there too, with the same
//! reasons as in `hostile_policies.rs`.

use std::sync::Arc;

use pcitrack_model::{DevType, Device, PciAddress};
use pcitrack_runtime::{
    Compilers, Limits, LoadError, Policy, PolicyEngine, PolicyOrigin, PolicySet, Tier,
};

const HOSTILE: &str = env!("PCITRACK_TEST_HOSTILE");

fn engine() -> PolicyEngine {
    PolicyEngine::with_compilers(Limits::default(), Compilers::Baseline).unwrap()
}

fn load(engine: &PolicyEngine, misdeed: &str) -> Result<Policy, LoadError> {
    let bytes = std::fs::read(HOSTILE).unwrap();
    let p = Policy::load(
        engine,
        misdeed,
        &bytes,
        PolicyOrigin::Embedded,
        misdeed,
        None,
    )?;
    assert_eq!(p.tier(), Tier::Baseline);
    Ok(p)
}

fn devices() -> Vec<Device> {
    (0..8u8)
        .map(|f| {
            Device::new(
                PciAddress::new(0, 0x3b, 0, f).unwrap(),
                0x8086,
                0x154c,
                DevType::Vf,
            )
        })
        .collect()
}

/// Runs the hostile matcher with `misdeed` on its baseline build: the built-in rule decides
/// every device, and the reason names the failure.
fn run_misdeed(engine: &PolicyEngine, misdeed: &str) -> String {
    let set = PolicySet::new([Arc::new(load(engine, misdeed).unwrap())]);
    let out = set.assess(&devices());
    assert_eq!(out.len(), 8);
    for a in &out {
        assert!(!a.assignable, "{misdeed}: {a:?}");
        assert_eq!(&*a.decided_by, "built-in");
    }
    out[0].reason.as_deref().unwrap().to_string()
}

fn assert_still_answers(engine: &PolicyEngine) {
    let set = PolicySet::new([Arc::new(load(engine, "ok").unwrap())]);
    assert!(set.assess(&devices()).iter().all(|a| a.assignable));
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline_under_winch() {
    let engine = engine();
    let reason = run_misdeed(&engine, "loop");
    assert!(reason.contains("deadline"), "{reason}");
    assert_still_answers(&engine);
}

#[test]
fn an_endless_loop_in_init_is_refused_at_load_under_winch() {
    let engine = engine();
    let e = load(&engine, "loop-init").unwrap_err();
    assert!(matches!(e, LoadError::Start { .. }), "{e}");
    assert!(e.to_string().contains("deadline"), "{e}");
}

#[test]
fn a_memory_bomb_hits_the_cap_under_winch() {
    let engine = engine();
    let reason = run_misdeed(&engine, "memory");
    assert!(reason.contains("policy memory failed"), "{reason}");
    assert_still_answers(&engine);
}

#[test]
fn deep_recursion_overflows_the_wasm_stack_under_winch() {
    let engine = engine();
    let reason = run_misdeed(&engine, "recursion");
    assert!(reason.contains("trapped"), "{reason}");
    assert_still_answers(&engine);
}

#[test]
fn a_baseline_call_runs_the_epoch_clock_only_while_in_flight() {
    let engine = engine();
    assert_still_answers(&engine);
    let after = engine.epoch_ticks();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        engine.epoch_ticks() <= after + 1,
        "the clock must stop once no call is in flight"
    );
}
