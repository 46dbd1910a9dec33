//! The compiled-policy cache holds what the agent's policies use and nothing more: through the
//! agent's own loading path (start, a policy file landing, the file deleted), artifacts no
//! loaded policy references are evicted and the ones in use are kept.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use pcitrack_discovery::fixture::FakeSysfs;
use pcitrack_runtime::{ArtifactCache, EMBEDDED, Limits, PolicyEngine, PolicyKind};

mod common;

use common::daemon::Daemon;

const T: Duration = Duration::from_secs(60);

fn artifacts(cache: &Path) -> BTreeSet<String> {
    std::fs::read_dir(cache)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_agent_evicts_artifacts_no_loaded_policy_uses_and_keeps_the_ones_in_use() {
    let mut d = Daemon::prepare(FakeSysfs::new(), "");
    let cache = d.dir.path().join("state/cache");
    std::fs::create_dir_all(&cache).unwrap();
    // Left by an older agent: the old naming, and a policy since removed.
    let old_format = format!("{}-0123456789abcdef.cwasm", "ab".repeat(32));
    let removed_policy = format!("{}.cwasm", "cd".repeat(32));
    for name in [&old_format, &removed_policy] {
        std::fs::write(cache.join(name), b"stale").unwrap();
    }
    std::fs::write(cache.join("NOTES"), b"not the cache's").unwrap();

    // The keys the agent's engine gives (the same settings: the default limits).
    let engine = PolicyEngine::new(Limits::default()).unwrap();
    let name = |bytes: &[u8]| format!("{}.cwasm", ArtifactCache::key(&engine, bytes).unwrap());
    // The defaults load from the code precompiled into the binary: none of it is cached.
    let defaults: BTreeSet<String> = BTreeSet::new();
    // A second cleanup policy: the default with a custom section appended (other bytes,
    // another key, the same behaviour).
    let cleanup = EMBEDDED
        .iter()
        .find(|e| e.kind == PolicyKind::Cleanup)
        .unwrap();
    let mut extra = cleanup.bytes.to_vec();
    extra.extend_from_slice(&[0, 5, 4, b't', b'e', b's', b't']);
    let extra_artifact = name(&extra);

    d.spawn();
    assert_eq!(
        artifacts(&cache),
        defaults,
        "at start, the stale artifacts are evicted; log:\n{}",
        d.log()
    );
    assert!(cache.join("NOTES").exists(), "files not the cache's stay");

    let file = d.dir.path().join("extra.wasm");
    std::fs::write(&file, &extra).unwrap();
    d.drop_policy(&file, "extra-cleanup.wasm", true);
    let mut with_extra = defaults.clone();
    with_extra.insert(extra_artifact.clone());
    assert!(
        d.wait_for(T, |_| artifacts(&cache) == with_extra),
        "the new policy's artifact is stored and the defaults' kept: {:?}; log:\n{}",
        artifacts(&cache),
        d.log()
    );

    std::fs::remove_file(d.policies().join("extra-cleanup.wasm")).unwrap();
    assert!(
        d.wait_for(T, |_| artifacts(&cache) == defaults),
        "the deleted policy's artifact is evicted: {:?}; log:\n{}",
        artifacts(&cache),
        d.log()
    );
}
