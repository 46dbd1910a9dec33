//! Precompiled policies are cached, so a restart does not recompile.

use pcitrack_runtime::{ArtifactCache, EMBEDDED, Limits, Policy, PolicyEngine, PolicyOrigin};

#[test]
fn a_second_load_comes_from_the_cache_and_a_damaged_artifact_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path().join("cache"));
    let engine = PolicyEngine::new(Limits::default()).unwrap();
    let p = &EMBEDDED[0];
    let first = Policy::load(
        &engine,
        p.name,
        p.bytes,
        PolicyOrigin::Embedded,
        "",
        Some(&cache),
    )
    .unwrap();
    assert!(!first.from_cache());
    // One artifact and the engine's kept fingerprint; no temp files left.
    let (artifacts, others): (Vec<_>, Vec<_>) = std::fs::read_dir(cache.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .partition(|p| !p.ends_with("engine.fingerprint"));
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(
        artifacts.len(),
        1,
        "one artifact, no temp files left: {artifacts:?}"
    );
    assert!(artifacts[0].extension().is_some_and(|e| e == "cwasm"));

    // A new engine (a restart) with the same settings loads it without compiling.
    let engine = PolicyEngine::new(Limits::default()).unwrap();
    let second = Policy::load(
        &engine,
        p.name,
        p.bytes,
        PolicyOrigin::Embedded,
        "",
        Some(&cache),
    )
    .unwrap();
    assert!(second.from_cache());

    // A damaged artifact is not trusted: the policy is compiled again and still works.
    std::fs::write(&artifacts[0], b"garbage").unwrap();
    let third = Policy::load(
        &engine,
        p.name,
        p.bytes,
        PolicyOrigin::Embedded,
        "",
        Some(&cache),
    )
    .unwrap();
    assert!(!third.from_cache());
}
