//! Hostile policies are refused at load or stopped at run time, and the runtime keeps
//! answering afterwards (issue 2's "must show", and the start of the hostile corpus).
//! The run-time misdeeds run under both code tiers (issue 14): the agent serves a newly
//! landed policy on Winch's baseline build until Cranelift's is ready, so the deadline, the
//! memory cap and the wasm stack must stop a hostile policy there too, with the same reasons.

use std::sync::Arc;

use pcitrack_e2e::component_of_world;
use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};
use pcitrack_model::{DevType, Device, DeviceStatus, PciAddress};
use pcitrack_runtime::{
    Compilers, Limits, LoadError, Policy, PolicyEngine, PolicyKind, PolicyOrigin, PolicySet, Tier,
};

const HOSTILE: &str = env!("PCITRACK_TEST_HOSTILE");
const CORE_MODULE: &str = env!("PCITRACK_TEST_CORE_MODULE");
const WASI_READER: &str = env!("PCITRACK_TEST_WASI_READER");
const DELETE_EVERYTHING: &str = env!("PCITRACK_TEST_DELETE_EVERYTHING");

fn engine() -> PolicyEngine {
    PolicyEngine::new(Limits::default()).unwrap()
}

/// An engine of each code tier: Cranelift's optimised build, and Winch's baseline build.
fn tiers() -> [PolicyEngine; 2] {
    [Compilers::Optimized, Compilers::Baseline]
        .map(|c| PolicyEngine::with_compilers(Limits::default(), c).unwrap())
}

fn load(
    engine: &PolicyEngine,
    name: &str,
    bytes: &[u8],
    config: &str,
) -> Result<Policy, LoadError> {
    let p = Policy::load(engine, name, bytes, PolicyOrigin::Embedded, config, None)?;
    let tier = match engine.compilers() {
        Compilers::Baseline => Tier::Baseline,
        _ => Tier::Optimized,
    };
    assert_eq!(p.tier(), tier, "{name}");
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

/// A matcher known to behave, to check the runtime still answers after a hostile call.
fn good_set(engine: &PolicyEngine) -> PolicySet {
    let bytes = std::fs::read(HOSTILE).unwrap();
    PolicySet::new([Arc::new(load(engine, "good", &bytes, "ok").unwrap())])
}

fn assert_still_answers(engine: &PolicyEngine) {
    let out = good_set(engine).assess(&devices());
    assert!(
        out.iter()
            .all(|a| a.assignable && *a.tags == [("policy".to_string(), "hostile-ok".to_string())])
    );
}

/// Loads the hostile matcher with `misdeed`, runs it, and returns the reason every device
/// was given (all the same), checking that the broken policy had no say: with nothing else
/// in the chain the built-in rule decides (not assignable), naming the failure.
fn run_misdeed(engine: &PolicyEngine, misdeed: &str) -> String {
    let bytes = std::fs::read(HOSTILE).unwrap();
    let policy = load(engine, misdeed, &bytes, misdeed).unwrap();
    let set = PolicySet::new([Arc::new(policy)]);
    let out = set.assess(&devices());
    assert_eq!(out.len(), 8);
    for a in &out {
        assert!(!a.assignable, "{misdeed}: {a:?}");
        assert_eq!(&*a.decided_by, "built-in");
    }
    out[0].reason.as_deref().unwrap().to_string()
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline() {
    for engine in tiers() {
        let reason = run_misdeed(&engine, "loop");
        assert!(reason.contains("deadline"), "{reason}");
        assert_still_answers(&engine);
    }
}

#[test]
fn an_endless_loop_in_init_is_refused_at_load() {
    for engine in tiers() {
        let bytes = std::fs::read(HOSTILE).unwrap();
        let e = load(&engine, "loop-init", &bytes, "loop-init").unwrap_err();
        assert!(matches!(e, LoadError::Start { .. }), "{e}");
        assert!(e.to_string().contains("deadline"), "{e}");
        assert_still_answers(&engine);
    }
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    // A deadline the growth cannot reach, so that only the cap can stop it: the policy is
    // named "memory", and "policy memory failed" alone would also read a timeout as a pass.
    // The cap is a plain failure (wasmtime's growth error), neither a timeout nor a trap.
    let limits = Limits {
        deadline: std::time::Duration::from_secs(30),
        ..Limits::default()
    };
    for compilers in [Compilers::Optimized, Compilers::Baseline] {
        let engine = PolicyEngine::with_compilers(limits, compilers).unwrap();
        let reason = run_misdeed(&engine, "memory");
        assert!(
            reason.contains("policy memory failed: failed: "),
            "{reason}"
        );
        assert!(!reason.contains("deadline"), "{reason}");
        assert_still_answers(&engine);
    }
}

#[test]
fn a_panic_and_unreachable_trap_alone() {
    for engine in tiers() {
        for misdeed in ["panic", "unreachable"] {
            let reason = run_misdeed(&engine, misdeed);
            assert!(reason.contains("trapped"), "{misdeed}: {reason}");
        }
        assert_still_answers(&engine);
    }
}

#[test]
fn deep_recursion_overflows_the_wasm_stack_not_the_agents() {
    for engine in tiers() {
        let reason = run_misdeed(&engine, "recursion");
        assert!(reason.contains("trapped"), "{reason}");
        assert_still_answers(&engine);
    }
}

#[test]
fn huge_and_malformed_outputs_are_refused_as_garbage() {
    for engine in tiers() {
        for misdeed in ["million-tags", "huge-string", "extra-verdicts", "bad-index"] {
            let reason = run_misdeed(&engine, misdeed);
            assert!(
                reason.contains("garbage") || reason.contains("failed"),
                "{misdeed}: {reason}"
            );
        }
        assert_still_answers(&engine);
    }
}

#[test]
fn a_policy_gets_a_fresh_instance_for_every_call() {
    for engine in tiers() {
        let bytes = std::fs::read(HOSTILE).unwrap();
        let set = PolicySet::new([Arc::new(load(&engine, "flip", &bytes, "flip").unwrap())]);
        let first = set.assess(&devices());
        let second = set.assess(&devices());
        assert_eq!(first, second, "state leaked from one call into the next");
        assert!(first.iter().all(|a| a.assignable));
    }
}

#[test]
fn a_refused_configuration_is_reported_verbatim() {
    let engine = engine();
    let bytes = std::fs::read(HOSTILE).unwrap();
    let e = load(&engine, "refuse", &bytes, "refuse").unwrap_err();
    assert!(matches!(e, LoadError::ConfigRefused { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("refused: this config is wrong on purpose"),
        "{e}"
    );
}

#[test]
fn a_component_importing_wasi_filesystem_is_refused_at_load() {
    let engine = engine();
    let bytes = std::fs::read(WASI_READER).unwrap();
    let e = load(&engine, "wasi-reader", &bytes, "").unwrap_err();
    let LoadError::ForbiddenImports { imports, .. } = &e else {
        panic!("{e}")
    };
    assert!(imports.contains("wasi:filesystem"), "{imports}");
    assert_still_answers(&engine);
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let engine = engine();
    for garbage in [&b"#!/bin/sh\nrm -rf /\n"[..], b"", b"\0asm"] {
        let e = load(&engine, "garbage", garbage, "").unwrap_err();
        assert!(matches!(e, LoadError::NotWasm { .. }), "{e}");
        assert!(
            e.to_string().starts_with("garbage: not a WebAssembly file"),
            "{e}"
        );
    }
    let mut truncated = std::fs::read(HOSTILE).unwrap();
    truncated.truncate(truncated.len() / 2);
    let e = load(&engine, "half-written", &truncated, "").unwrap_err();
    assert!(matches!(e, LoadError::Invalid { .. }), "{e}");
}

#[test]
fn a_core_module_is_refused_with_how_to_make_a_component() {
    let engine = engine();
    let e = load(&engine, "core", &std::fs::read(CORE_MODULE).unwrap(), "").unwrap_err();
    assert!(matches!(e, LoadError::CoreModule { .. }), "{e}");
    assert!(e.to_string().contains("component new"), "{e}");
}

#[test]
fn a_component_of_another_world_is_refused() {
    let engine = engine();
    let other = component_of_world(
        "package acme:other; interface greeter { greet: func(name: string) -> string; } world w { export greeter; }",
        "w",
    );
    let e = load(&engine, "other", &other, "").unwrap_err();
    assert!(matches!(e, LoadError::NotAPolicy { .. }), "{e}");
    assert!(e.to_string().contains("acme:other/greeter"), "{e}");
}

#[test]
fn a_policy_of_another_contract_version_is_refused() {
    let engine = engine();
    let future = component_of_world(
        "package pcitrack:policy@0.2.0;
         interface cleanup { init: func(config: string) -> result<_, string>; }
         world cleanup-policy { export cleanup; }",
        "cleanup-policy",
    );
    let e = load(&engine, "future", &future, "").unwrap_err();
    assert!(matches!(e, LoadError::WrongVersion { .. }), "{e}");
    assert!(
        e.to_string().contains("pcitrack:policy/cleanup@0.2.0"),
        "{e}"
    );
}

#[test]
fn a_policy_whose_exports_have_the_wrong_types_is_refused() {
    let engine = engine();
    let wrong = component_of_world(
        "package pcitrack:policy@0.1.0;
         interface cleanup { init: func(config: u32) -> u32; }
         world cleanup-policy { export cleanup; }",
        "cleanup-policy",
    );
    let e = load(&engine, "wrong", &wrong, "").unwrap_err();
    assert!(matches!(e, LoadError::WrongShape { .. }), "{e}");
}

#[test]
fn a_flooding_logger_is_cut_and_the_call_still_counts() {
    let engine = engine();
    let bytes = std::fs::read(HOSTILE).unwrap();
    let set = PolicySet::new([Arc::new(
        load(&engine, "log-flood", &bytes, "log-flood").unwrap(),
    )]);
    // 10 000 lines of 60 kB each would be 600 MB of log; each is cut to 4 KiB, and the
    // call either completes within its deadline or is stopped by it.
    let out = set.assess(&devices());
    assert_eq!(out.len(), 8);
}

/// A policy that asks to delete every candidate is reported as it said, devices in use
/// included: the runtime rewrites nothing. The guard that a claimed or allocated device is
/// never deleted while held is the tracker's, which defers those deletes until the device is
/// freed (issue 15; `crates/tracker/tests/tracker.rs`, and through the agent in
/// `host/tests/daemon_hostile.rs`).
#[test]
fn a_delete_everything_policy_is_reported_as_it_said_for_the_tracker_to_defer() {
    let engine = engine();
    let bytes = std::fs::read(DELETE_EVERYTHING).unwrap();
    let set = PolicySet::new([Arc::new(
        load(&engine, "delete-everything", &bytes, "").unwrap(),
    )]);
    let candidate = |f: u8, status: DeviceStatus, owner: Option<&str>| CleanupCandidate {
        address: PciAddress::new(0, 0x81, 0, f).unwrap(),
        vendor_id: 0x15b3,
        product_id: 0x1018,
        dev_type: DevType::Vf,
        status,
        owner: owner.map(Into::into),
        parent: None,
        reported: false,
        missing_syncs: 3,
    };
    let tracked = vec![
        candidate(1, DeviceStatus::Available, None),
        candidate(2, DeviceStatus::Claimed, Some("vm-1")),
        candidate(3, DeviceStatus::Allocated, Some("vm-2")),
        // As a corrupted row might look: allocated with no owner recorded.
        candidate(4, DeviceStatus::Allocated, None),
    ];
    let out = set.cleanup(&tracked, &[0, 1, 2, 3]);
    assert_eq!(out.len(), 4);
    for (o, t) in out.iter().zip(&tracked) {
        assert_eq!(o.address, t.address);
        assert_eq!(o.verdict, CleanupVerdict::Delete, "{}", o.address);
        assert_eq!(o.decided_by, "delete-everything");
    }
}

/// A matcher broken from its first call has no say: the rest of the chain decides.
#[test]
fn a_broken_matcher_in_front_of_another_has_no_say() {
    let engine = engine();
    let bytes = std::fs::read(HOSTILE).unwrap();
    for misdeed in ["panic", "loop", "memory", "bad-index"] {
        let set = PolicySet::new([
            Arc::new(load(&engine, misdeed, &bytes, misdeed).unwrap()),
            Arc::new(load(&engine, "good", &bytes, "ok").unwrap()),
        ]);
        let out = set.assess(&devices());
        assert!(
            out.iter().all(|a| a.assignable && &*a.decided_by == "good"),
            "{misdeed}: {out:?}"
        );
        let stats = set.chain(PolicyKind::Matcher)[0].stats();
        assert_eq!((stats.calls, stats.failures), (1, 1), "{misdeed}");
    }
}

/// The agent hands policies a JSON object: the hostile corpus reads its misdeed from it.
#[test]
fn the_hostile_policy_reads_its_misdeed_from_the_agents_json_config() {
    let engine = engine();
    let bytes = std::fs::read(HOSTILE).unwrap();
    let e = load(
        &engine,
        "h",
        &bytes,
        r#"{"device_spec": [], "misdeed": "refuse"}"#,
    )
    .unwrap_err();
    assert!(matches!(e, LoadError::ConfigRefused { .. }), "{e}");
}

#[test]
fn a_call_runs_the_epoch_clock_only_while_in_flight() {
    for engine in tiers() {
        assert_still_answers(&engine);
        let after = engine.epoch_ticks();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            engine.epoch_ticks() <= after + 1,
            "{:?}: the clock must stop once no call is in flight",
            engine.compilers()
        );
    }
}

/// The agent's engine (tiered) runs a policy's optimised build, once swapped in, in an
/// engine without a compiler, from an artifact its separate Cranelift engine made: the
/// deadline, the memory cap and the wasm stack must stop a hostile policy there with the
/// reasons the one-shot commands' engine gives.
#[test]
fn misdeeds_are_stopped_alike_in_the_agents_run_only_engine() {
    let bytes = std::fs::read(HOSTILE).unwrap();
    // A deadline well beyond what the other misdeeds need: with the default 50 ms, growing
    // memory to the cap could run past the deadline on a loaded CI machine (this file's tests
    // run in parallel on 2 cores), and the two engines then stopped the same policy for two
    // different reasons (a CI run failed so). The loop still meets the deadline.
    let limits = Limits {
        deadline: std::time::Duration::from_secs(2),
        ..Limits::default()
    };
    let agent = PolicyEngine::with_compilers(limits, Compilers::Tiered).unwrap();
    let tool = PolicyEngine::new(limits).unwrap();
    for misdeed in ["loop", "memory", "panic", "unreachable", "recursion"] {
        let p = Arc::new(
            Policy::load(
                &agent,
                misdeed,
                &bytes,
                PolicyOrigin::Embedded,
                misdeed,
                None,
            )
            .unwrap(),
        );
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while p.tier() != Tier::Optimized && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            (p.tier(), p.optimize_error()),
            (Tier::Optimized, None),
            "{misdeed}"
        );
        let out = PolicySet::new([p]).assess(&devices());
        assert!(
            out.iter()
                .all(|a| !a.assignable && &*a.decided_by == "built-in"),
            "{misdeed}: {out:?}"
        );
        let reason = out[0].reason.as_deref().unwrap().to_string();
        assert_eq!(reason, run_misdeed(&tool, misdeed), "{misdeed}");
    }
}
