//! The two tiers of a policy's code (issue 14, hot reload): Winch's baseline build decides
//! exactly what Cranelift's optimised build decides, and a tiered load serves on the
//! baseline build, then swaps in the optimised one and leaves its artifact in the cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pcitrack_model::cleanup::CleanupCandidate;
use pcitrack_model::{DevType, Device, DeviceStatus, PciAddress};
use pcitrack_runtime::{
    ArtifactCache, CodeSource, Compilers, EMBEDDED, Limits, Policy, PolicyEngine, PolicyKind,
    PolicyOrigin, PolicySet, Tier,
};

/// A configuration that makes the default matcher assign, tag and refuse: vendor/product
/// and address patterns, a physnet tag, a `remote_managed` tag.
const CONFIG: &str = r#"{"device_spec": [
    "{\"vendor_id\": \"8086\", \"product_id\": \"154c\", \"physical_network\": \"physnet1\"}",
    "{\"address\": \"0000:81:*.*\", \"trusted\": \"true\"}",
    "{\"vendor_id\": \"15b3\", \"remote_managed\": \"true\"}",
    "{\"address\": {\"domain\": \"0000\", \"bus\": \"3b\", \"slot\": \"0[0-3]\", \"function\": \"[0-7]\"}}"
], "alias": []}"#;

fn engine(compilers: Compilers) -> PolicyEngine {
    PolicyEngine::with_compilers(Limits::default(), compilers).unwrap()
}

fn embedded(kind: PolicyKind) -> &'static pcitrack_runtime::EmbeddedPolicy {
    EMBEDDED.iter().find(|e| e.kind == kind).unwrap()
}

fn load(engine: &PolicyEngine, kind: PolicyKind, cache: Option<&ArtifactCache>) -> Policy {
    let e = embedded(kind);
    Policy::load(
        engine,
        e.name,
        e.bytes,
        PolicyOrigin::Embedded,
        CONFIG,
        cache,
    )
    .unwrap()
}

/// 1024 devices across vendors, products, buses and types, sorted by address (as the
/// chain requires).
fn devices() -> Vec<Device> {
    let vendors = [
        (0x8086, 0x154c),
        (0x8086, 0x1572),
        (0x15b3, 0x101e),
        (0x10de, 0x2236),
    ];
    let types = [DevType::Vf, DevType::Pf, DevType::Pci, DevType::Vdpa];
    let mut devices = (0..1024u32)
        .map(|i| {
            let bus = [0x3b, 0x81, 0x5e, 0xaf][(i / 256) as usize];
            let (vendor, product) = vendors[(i / 4 % 4) as usize];
            Device::new(
                PciAddress::new(0, bus, (i / 8 % 32) as u8, (i % 8) as u8).unwrap(),
                vendor,
                product,
                types[(i / 16 % 4) as usize],
            )
        })
        .collect::<Vec<_>>();
    devices.sort_by_key(|d| d.address);
    devices
}

fn candidates() -> Vec<CleanupCandidate> {
    let statuses = [
        DeviceStatus::Available,
        DeviceStatus::Unavailable,
        DeviceStatus::Unclaimable,
        DeviceStatus::Allocated,
        DeviceStatus::Claimed,
    ];
    (0..200u32)
        .map(|i| CleanupCandidate {
            address: PciAddress::new(0, 0x81, (i / 8 % 32) as u8, (i % 8) as u8).unwrap(),
            vendor_id: 0x8086,
            product_id: 0x154c,
            dev_type: [DevType::Vf, DevType::Pf, DevType::Pci][(i % 3) as usize],
            status: statuses[(i % 5) as usize],
            owner: (i % 2 == 0).then(|| format!("vm-{i}")),
            parent: None,
            reported: i % 7 == 0,
            missing_syncs: i % 4,
        })
        .collect()
}

#[test]
fn the_baseline_build_decides_what_the_optimised_one_decides() {
    let baseline = engine(Compilers::Baseline);
    let optimized = engine(Compilers::Optimized);
    let devices = devices();
    let tracked = candidates();
    let all: Vec<usize> = (0..tracked.len()).collect();
    for kind in [PolicyKind::Matcher, PolicyKind::Cleanup] {
        let b = load(&baseline, kind, None);
        let o = load(&optimized, kind, None);
        assert_eq!((b.tier(), o.tier()), (Tier::Baseline, Tier::Optimized));
        assert_eq!(b.info(), o.info());
        let (b, o) = (PolicySet::new([Arc::new(b)]), PolicySet::new([Arc::new(o)]));
        match kind {
            PolicyKind::Matcher => {
                let verdicts = b.assess(&devices);
                assert!(
                    verdicts.iter().any(|v| v.assignable) && verdicts.iter().any(|v| !v.assignable),
                    "the device set must exercise both answers"
                );
                assert_eq!(verdicts, o.assess(&devices));
            }
            _ => assert_eq!(b.cleanup(&tracked, &all), o.cleanup(&tracked, &all)),
        }
    }
}

/// Waits (up to 120 s) for `p`'s optimised build to be swapped in. Waits on the tier, not
/// on `optimized_after`: that is set just before the swap, so a poll that saw it could still
/// read the baseline tier.
fn wait_optimized(p: &Policy) {
    let until = Instant::now() + Duration::from_secs(120);
    while p.tier() != Tier::Optimized && p.optimize_error().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(p.optimize_error(), None);
    assert!(p.optimized_after().is_some(), "no optimised build in 120 s");
}

#[test]
fn a_tiered_load_serves_on_the_baseline_build_then_swaps_in_the_cached_optimised_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path());
    let engine = engine(Compilers::Tiered);
    let devices = devices();

    let policy = Arc::new(load(&engine, PolicyKind::Matcher, Some(&cache)));
    let set = PolicySet::new([policy.clone()]);
    let first = set.assess(&devices);
    wait_optimized(&policy);
    // Only a policy that started on the baseline build is ever swapped.
    assert_eq!(policy.tier(), Tier::Optimized);
    assert_eq!(policy.code_source(), CodeSource::Compiled);
    assert_eq!(set.assess(&devices), first, "the swap changed verdicts");
    let artifact = policy.artifact().expect("a cache key from the start");
    assert!(
        cache.path(artifact).is_file(),
        "the optimised build is not in the cache"
    );

    // The second load of the same bytes takes the optimised build from the cache.
    let again = load(&engine, PolicyKind::Matcher, Some(&cache));
    assert_eq!(
        (again.tier(), again.code_source()),
        (Tier::Optimized, CodeSource::Cache)
    );
    assert_eq!(again.optimized_after(), None);
}

#[test]
fn a_tiered_engine_takes_the_precompiled_defaults_as_they_are() {
    let engine = engine(Compilers::Tiered);
    let e = embedded(PolicyKind::Matcher);
    if e.precompiled.is_empty() {
        return; // the build could not precompile (another target): nothing to show
    }
    let (loaded, errors) = pcitrack_runtime::load_embedded(&engine, &|_| CONFIG.into(), None, &[]);
    assert!(errors.is_empty(), "{errors:?}");
    for p in loaded {
        assert_eq!(
            (p.tier(), p.code_source()),
            (Tier::Optimized, CodeSource::Precompiled),
            "{}",
            p.name()
        );
    }
}

#[test]
fn a_tiered_engine_runs_the_precompiled_defaults_without_a_compiler_and_compiles_when_needed() {
    // The agent's engine: its optimised builds run in an engine without a compiler, and the
    // Cranelift one is built only when something must be compiled (issue 14, idle memory).
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path()).with_mapped_defaults();
    let engine = engine(Compilers::Tiered);
    assert!(!engine.compiler_built(), "built before anything was loaded");
    let (defaults, errors) =
        pcitrack_runtime::load_embedded(&engine, &|_| CONFIG.into(), Some(&cache), &[]);
    assert!(errors.is_empty(), "{errors:?}");
    if !embedded(PolicyKind::Matcher).precompiled.is_empty() {
        for p in &defaults {
            assert_eq!(p.code_source(), CodeSource::Precompiled, "{}", p.name());
        }
        assert!(
            !engine.compiler_built(),
            "loading precompiled code built a compiler"
        );
    }
    let devices = devices();
    let precompiled = PolicySet::new(defaults).assess(&devices);

    // A policy never seen is compiled all the same: baseline first, then Cranelift's build,
    // made by the compiler built now, moved into the running engine and cached.
    let policy = Arc::new(load(&engine, PolicyKind::Matcher, Some(&cache)));
    assert_eq!(policy.tier(), Tier::Baseline);
    assert!(engine.compiler_built(), "the cache key needs the compiler");
    wait_optimized(&policy);
    assert_eq!(policy.tier(), Tier::Optimized);
    let set = PolicySet::new([policy.clone()]);
    assert_eq!(
        set.assess(&devices),
        precompiled,
        "compiled code decided otherwise"
    );
    assert!(cache.path(policy.artifact().unwrap()).is_file());
    let again = load(&engine, PolicyKind::Matcher, Some(&cache));
    assert_eq!(
        (again.tier(), again.code_source()),
        (Tier::Optimized, CodeSource::Cache)
    );

    // What `compile` returns runs in the engine without a compiler.
    let (component, artifact) = engine.compile(embedded(PolicyKind::Cleanup).bytes).unwrap();
    assert!(wasmtime::Engine::same(component.engine(), engine.engine()));
    assert!(artifact.is_some(), "moved as an artifact");
    assert!(
        wasmtime::component::Component::new(engine.engine(), embedded(PolicyKind::Cleanup).bytes)
            .is_err(),
        "the running engine compiles"
    );
}

#[test]
fn the_agents_compiler_shares_its_cache_keys_and_artifacts_with_the_one_shot_commands() {
    // `pcitrack sync` and `policy eval` (an optimised engine that compiles itself) and the
    // agent (a tiered engine whose Cranelift engine is separate and does not pool) write
    // the same state directory's cache: the same bytes must have the same key in both, and
    // either's artifact must load in the other.
    let agent = engine(Compilers::Tiered);
    let tool = engine(Compilers::Optimized);
    assert_eq!(agent.fingerprint().unwrap(), tool.fingerprint().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path());
    let by_tool = load(&tool, PolicyKind::Cleanup, Some(&cache));
    assert_eq!(by_tool.code_source(), CodeSource::Compiled);
    let restarted = engine(Compilers::Tiered);
    let p = load(&restarted, PolicyKind::Cleanup, Some(&cache));
    assert_eq!(
        (p.tier(), p.code_source(), p.artifact()),
        (Tier::Optimized, CodeSource::Cache, by_tool.artifact())
    );

    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path());
    let by_agent = Arc::new(load(&agent, PolicyKind::Cleanup, Some(&cache)));
    assert_eq!(by_agent.tier(), Tier::Baseline);
    wait_optimized(&by_agent);
    let p = load(
        &engine(Compilers::Optimized),
        PolicyKind::Cleanup,
        Some(&cache),
    );
    assert_eq!(
        (p.tier(), p.code_source(), p.artifact()),
        (Tier::Optimized, CodeSource::Cache, by_agent.artifact())
    );
}

#[test]
fn a_tiered_engine_with_other_limits_runs_what_its_compiler_makes() {
    // The running engine pools with the configuration's memory cap; the compiler does not
    // pool at all. Limits are no part of an artifact's compatibility: what the compiler
    // makes must load and decide under any limits.
    let limits = Limits {
        deadline: Duration::from_millis(500),
        memory_bytes: 8 << 20,
    };
    let engine = PolicyEngine::with_compilers(limits, Compilers::Tiered).unwrap();
    // So the fingerprint the artifact cache keeps does not depend on them either.
    assert_eq!(
        engine.fingerprint(),
        self::engine(Compilers::Optimized).fingerprint()
    );
    let reference = PolicySet::new([Arc::new(load(
        &self::engine(Compilers::Optimized),
        PolicyKind::Matcher,
        None,
    ))])
    .assess(&devices());
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path());
    let p = Arc::new(load(&engine, PolicyKind::Matcher, Some(&cache)));
    wait_optimized(&p);
    let set = PolicySet::new([p.clone()]);
    assert_eq!(set.assess(&devices()), reference);
    let again = load(&engine, PolicyKind::Matcher, Some(&cache));
    assert_eq!(again.code_source(), CodeSource::Cache);
    assert_eq!(
        PolicySet::new([Arc::new(again)]).assess(&devices()),
        reference
    );
}

/// A restart of the agent whose policies are all cached (a landed file compiled on an
/// earlier run) only deserializes code, as a restart on the precompiled defaults does: it
/// must not build the Cranelift engine (~3 MiB of the binary's code pages left resident, the
/// idle-memory saving of the run-only engine). The artifact's cache key needs the engine's
/// fingerprint, which is taken by compiling; the cache keeps it (`engine.fingerprint`).
#[test]
fn restart_on_a_cached_policy_builds_no_compiler() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path()).with_mapped_defaults();
    let first = engine(Compilers::Tiered);
    let landed = Arc::new(load(&first, PolicyKind::Cleanup, Some(&cache)));
    wait_optimized(&landed);
    assert!(cache.path(landed.artifact().unwrap()).is_file());
    assert!(dir.path().join("engine.fingerprint").is_file());

    let restarted = engine(Compilers::Tiered);
    let again = load(&restarted, PolicyKind::Cleanup, Some(&cache));
    assert_eq!(
        (again.tier(), again.code_source()),
        (Tier::Optimized, CodeSource::Cache)
    );
    assert!(
        !restarted.compiler_built(),
        "a restart that only loaded cached code built the Cranelift compiler"
    );
    assert_eq!(again.artifact(), landed.artifact());
    // The kept fingerprint is the one the compiler takes.
    assert_eq!(
        cache.fingerprint(&restarted),
        engine(Compilers::Optimized).fingerprint()
    );
}

/// A kept fingerprint is used only by the build, limits and CPU it was taken for: one kept
/// for anything else (another binary, a file damaged or from a future format) is taken again
/// by compiling and written over, and the policy still loads from the cache under the key
/// the compiler gives.
#[test]
fn a_kept_fingerprint_for_something_else_is_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path());
    let first = engine(Compilers::Tiered);
    let landed = Arc::new(load(&first, PolicyKind::Cleanup, Some(&cache)));
    wait_optimized(&landed);
    let kept = dir.path().join("engine.fingerprint");
    let good = std::fs::read(&kept).unwrap();
    let real = engine(Compilers::Optimized).fingerprint().unwrap();
    assert!(good.ends_with(real.as_bytes()));

    let mut other_build = good.clone();
    let at = good.len() - 33; // a byte of the identity's digest
    other_build[at] ^= 1;
    let mut other_fingerprint = good.clone();
    *other_fingerprint.last_mut().unwrap() ^= 1;
    let cases: [(&str, Vec<u8>); 4] = [
        ("kept for another identity", other_build),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("another format", [b"x".as_slice(), &good[1..]].concat()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        std::fs::write(&kept, &bytes).unwrap();
        let restarted = engine(Compilers::Tiered);
        let again = load(&restarted, PolicyKind::Cleanup, Some(&cache));
        assert!(restarted.compiler_built(), "{what}: the kept file was used");
        assert_eq!(again.code_source(), CodeSource::Cache, "{what}");
        assert_eq!(again.artifact(), landed.artifact(), "{what}");
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            good,
            "{what}: not written again"
        );
    }

    // A wrong fingerprint under the right identity (a bug, or an engine whose settings the
    // identity misses, as `WASMTIME_BACKTRACE_DETAILS` once was) gives other keys: the policy is compiled again, never run from another engine's code.
    std::fs::write(&kept, &other_fingerprint).unwrap();
    let restarted = engine(Compilers::Tiered);
    assert_ne!(cache.fingerprint(&restarted), Some(real));
    let again = load(&restarted, PolicyKind::Cleanup, Some(&cache));
    assert_ne!(again.artifact(), landed.artifact());
    assert_eq!(
        again.tier(),
        Tier::Baseline,
        "nothing cached under the wrong key"
    );
    wait_optimized(&again);
}
