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

/// The ELF section `name` of a precompiled artifact: its (offset, size) in the file.
fn elf_section(elf: &[u8], name: &str) -> (usize, usize) {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let names = u64_at(header(shstrndx) + 0x18);
    (0..shnum)
        .map(header)
        .find(|&h| {
            let at = names + u32_at(h);
            elf[at..].split(|&b| b == 0).next() == Some(name.as_bytes())
        })
        .map(|h| (u64_at(h + 0x18), u64_at(h + 0x20)))
        .unwrap_or_else(|| panic!("no section {name}"))
}

/// The agent maps each default's precompiled code from `<cache>/<sha256>.precompiled`. A copy
/// of the right length whose bytes are not the binary's (damaged on disk: here the module's
/// data, `.rodata.wasm`, zeroed) was mapped and run as it was, found by its length alone:
/// the matcher then refused its configuration (with no reason) and nothing was assignable,
/// at every start, since the copy is never written again. It must be written again (or not
/// used), and the matcher must serve.
#[test]
fn regression_a_damaged_precompiled_copy_of_the_right_length_is_not_run() {
    let sysfs = FakeSysfs::new();
    sysfs.add_device("0000:00:04.0", 0x1af4, 0x1000, 0x020000);
    let mut d = Daemon::prepare(
        sysfs,
        "[pci]\ndevice_spec = ['{\"vendor_id\": \"1af4\"}']\n",
    );
    let matcher = EMBEDDED
        .iter()
        .find(|e| e.kind == PolicyKind::Matcher)
        .unwrap();
    assert!(!matcher.precompiled.is_empty(), "the build precompiled it");
    let cache = d.dir.path().join("state/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let copy = cache.join(format!("{}.precompiled", matcher.precompiled_sha256));
    let mut damaged = matcher.precompiled.to_vec();
    let (at, len) = elf_section(&damaged, ".rodata.wasm");
    damaged[at..at + len].fill(0);
    std::fs::write(&copy, &damaged).unwrap();

    d.spawn();
    let verdicts = d.get("/v1/verdicts");
    let row = verdicts
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["address"] == "0000:00:04.0")
        .cloned();
    assert_eq!(
        row.as_ref().map(|r| r["assignable"].clone()),
        Some(serde_json::Value::Bool(true)),
        "{row:?}; policies: {}; log:\n{}",
        d.get("/v1/policies"),
        d.log()
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        matcher.precompiled,
        "the damaged copy is written again"
    );
}
