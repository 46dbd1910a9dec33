//! The compiled-policy cache: its key (a documented SHA-256, the same in every process and
//! for every Rust release, different when the wasm or the engine differs), its eviction of
//! what no policy references, its recompiling of artifacts wasmtime refuses, and the mapped
//! copies of the embedded defaults' precompiled code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use pcitrack_runtime::{
    ArtifactCache, CodeSource, EMBEDDED, EmbeddedPolicy, EngineFingerprint, Limits, Policy,
    PolicyEngine, PolicyOrigin, load_embedded,
};
use sha2::{Digest, Sha256};

/// The key format's tag, as documented in `cache.rs`.
const KEY_FORMAT: &[u8] = b"pcitrack compiled policy, key format 1\n";

fn engine() -> PolicyEngine {
    PolicyEngine::new(Limits::default()).unwrap()
}

fn load(engine: &PolicyEngine, name: &str, bytes: &[u8], cache: &ArtifactCache) -> Policy {
    Policy::load(engine, name, bytes, PolicyOrigin::Embedded, "", Some(cache)).unwrap()
}

/// `wasm` with a custom section appended: another component that behaves the same.
fn with_custom_section(wasm: &[u8]) -> Vec<u8> {
    let mut bytes = wasm.to_vec();
    bytes.extend_from_slice(&[0, 5, 4, b't', b'e', b's', b't']);
    bytes
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn is_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[test]
fn regression_artifact_named_by_a_default_hasher_output() {
    // The artifact used to be named `<wasm sha256>-<DefaultHasher of the engine>.cwasm`;
    // DefaultHasher (and the data Hash impls feed it) may change with any Rust release,
    // which renamed every artifact. The name is now the documented key and nothing else.
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path());
    let engine = engine();
    let p = &EMBEDDED[0];
    let policy = load(&engine, p.name, p.bytes, &cache);
    let key = policy.artifact().expect("loaded through the cache");
    assert!(is_key(key), "{key}");
    let mut expected = vec![format!("{key}.cwasm"), "engine.fingerprint".to_string()];
    expected.sort();
    assert_eq!(files(dir.path()), expected);

    // The documented formula: SHA-256(tag || engine fingerprint || wasm), where the
    // fingerprint is the SHA-256 of the engine's artifact for the empty component.
    let empty = engine
        .engine()
        .precompile_component(b"\0asm\x0d\x00\x01\x00")
        .unwrap();
    let fingerprint = engine.fingerprint().unwrap();
    assert_eq!(
        fingerprint.as_bytes().as_slice(),
        Sha256::digest(&empty).as_slice()
    );
    let expected: String = Sha256::new()
        .chain_update(KEY_FORMAT)
        .chain_update(fingerprint.as_bytes())
        .chain_update(p.bytes)
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(key, expected);
}

#[test]
fn the_key_is_the_same_for_the_same_inputs_and_differs_for_another_wasm() {
    let (a, b) = (engine(), engine());
    let wasm = EMBEDDED[0].bytes;
    let key = ArtifactCache::key(&a, wasm).unwrap();
    assert_eq!(ArtifactCache::key(&b, wasm).unwrap(), key);
    assert_eq!(ArtifactCache::key(&a, wasm).unwrap(), key);
    assert_ne!(
        ArtifactCache::key(&a, &with_custom_section(wasm)).unwrap(),
        key
    );
    assert_ne!(ArtifactCache::key(&a, EMBEDDED[1].bytes).unwrap(), key);
}

/// Prints the key of the first embedded policy when run by the test below, in its own
/// process (and does nothing otherwise).
#[test]
fn print_key_for_another_process() {
    if std::env::var_os("PCITRACK_PRINT_CACHE_KEY").is_some() {
        println!(
            "KEY={}",
            ArtifactCache::key(&engine(), EMBEDDED[0].bytes).unwrap()
        );
    }
}

/// The key [`print_key_for_another_process`] prints in a process of its own, with `env` set.
fn key_in_another_process(env: &[(&str, &str)]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["print_key_for_another_process", "--exact", "--nocapture"])
        .env("PCITRACK_PRINT_CACHE_KEY", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("KEY="))
        .unwrap_or_else(|| panic!("no key printed: {stdout}"))
        .to_string()
}

#[test]
fn the_key_is_the_same_in_another_process() {
    // Another process has other hash-map seeds and addresses; the key must not depend on them.
    assert_eq!(
        key_in_another_process(&[]),
        ArtifactCache::key(&engine(), EMBEDDED[0].bytes).unwrap()
    );
}

#[test]
fn the_environment_does_not_change_the_key() {
    // wasmtime's default reads WASMTIME_BACKTRACE_DETAILS into the tunables; an agent or a
    // command started with it would make artifacts the others refuse under the same key
    // and kept fingerprint (found in review). The engine's settings pin it.
    assert_eq!(
        key_in_another_process(&[("WASMTIME_BACKTRACE_DETAILS", "1")]),
        ArtifactCache::key(&engine(), EMBEDDED[0].bytes).unwrap()
    );
}

#[test]
fn the_key_differs_when_the_engine_configuration_differs() {
    let make = |opt: wasmtime::OptLevel, epochs: bool| {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(opt);
        config.epoch_interruption(epochs);
        wasmtime::Engine::new(&config).unwrap()
    };
    let wasm = EMBEDDED[0].bytes;
    let key = |e: &wasmtime::Engine| EngineFingerprint::of(e).unwrap().key(wasm);
    let base = key(&make(wasmtime::OptLevel::Speed, true));
    assert!(is_key(&base), "{base}");
    assert_eq!(key(&make(wasmtime::OptLevel::Speed, true)), base);
    assert_ne!(
        key(&make(wasmtime::OptLevel::None, true)),
        base,
        "opt level"
    );
    assert_ne!(
        key(&make(wasmtime::OptLevel::Speed, false)),
        base,
        "epoch interruption"
    );
    // The agent's engine is one more configuration (pooling, stack size).
    let agent = engine();
    assert_eq!(
        agent.fingerprint().unwrap(),
        EngineFingerprint::of(agent.engine()).unwrap()
    );
}

#[test]
fn an_artifact_wasmtime_refuses_is_recompiled_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path());
    let engine = engine();
    let p = &EMBEDDED[0];
    let key = ArtifactCache::key(&engine, p.bytes).unwrap();
    // The same component compiled by an engine without epoch interruption, stored under
    // this engine's key with a valid SHA-256 trailer: only wasmtime's check can refuse it.
    let other = {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        wasmtime::Engine::new(&config).unwrap()
    };
    let mut foreign = other.precompile_component(p.bytes).unwrap();
    let trailer = Sha256::digest(&foreign);
    foreign.extend_from_slice(&trailer);
    std::fs::write(cache.path(&key), &foreign).unwrap();

    let first = load(&engine, p.name, p.bytes, &cache);
    assert!(
        !first.from_cache(),
        "a foreign engine's artifact must not load"
    );
    assert_eq!(first.artifact(), Some(key.as_str()));
    assert_ne!(
        std::fs::read(cache.path(&key)).unwrap(),
        foreign,
        "replaced"
    );
    assert!(load(&engine, p.name, p.bytes, &cache).from_cache());

    // A damaged one (torn write, bad disk) likewise.
    let mut damaged = std::fs::read(cache.path(&key)).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(cache.path(&key), &damaged).unwrap();
    assert!(!load(&engine, p.name, p.bytes, &cache).from_cache());
    assert!(load(&engine, p.name, p.bytes, &cache).from_cache());
}

#[test]
fn eviction_removes_unreferenced_artifacts_and_keeps_referenced_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path());
    let engine = engine();
    let kept = load(&engine, EMBEDDED[0].name, EMBEDDED[0].bytes, &cache);
    let replaced = load(&engine, EMBEDDED[1].name, EMBEDDED[1].bytes, &cache);
    let kept_key = kept.artifact().unwrap().to_string();
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    // An artifact of the old naming, a left-over temporary file, a fresh one (a write in
    // progress), and a file that is not the cache's.
    let old_format = format!("{}-0123456789abcdef.cwasm", "ab".repeat(32));
    std::fs::write(path(&old_format), b"old").unwrap();
    let stale_tmp = path(".artifact-dead01");
    std::fs::write(&stale_tmp, b"torn").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale_tmp)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    std::fs::write(path(".artifact-live01"), b"being written").unwrap();
    std::fs::write(path("NOTES"), b"not an artifact").unwrap();

    let evicted = cache.evict_unreferenced([kept_key.as_str()]).unwrap();
    let mut removed: Vec<String> = evicted
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    removed.sort();
    let mut expected = vec![
        old_format,
        format!("{}.cwasm", replaced.artifact().unwrap()),
        ".artifact-dead01".to_string(),
    ];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(evicted.bytes > 0);
    let mut left = vec![
        ".artifact-live01".to_string(),
        format!("{kept_key}.cwasm"),
        "NOTES".to_string(),
        // The engine's kept fingerprint is no artifact: eviction leaves it.
        "engine.fingerprint".to_string(),
    ];
    left.sort();
    assert_eq!(files(dir.path()), left);
    // What is kept still loads without compiling.
    assert!(load(&engine, EMBEDDED[0].name, EMBEDDED[0].bytes, &cache).from_cache());
    // A cache directory that does not exist yet has nothing to evict.
    let none = ArtifactCache::new(dir.path().join("missing"));
    assert_eq!(none.evict_unreferenced([]).unwrap().files.len(), 0);
}

#[test]
fn a_precompiled_default_is_mapped_from_a_copy_named_by_the_builds_digest() {
    // Copied out of the binary, the defaults' code was resident twice (the binary's pages
    // and wasmtime's copy, 7 MiB of an idle agent's 22); mapped from a copy in the cache's
    // directory, only the pages a call touches are.
    let dir = tempfile::tempdir().unwrap();
    let config = |_: &str| r#"{"device_spec": [], "alias": []}"#.to_string();
    let engine = engine();
    // A cache that does not map the defaults (a one-shot command's) copies nothing.
    let plain = ArtifactCache::new(dir.path());
    let (loaded, errors) = load_embedded(&engine, &config, Some(&plain), &[]);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(loaded.iter().all(|p| p.artifact().is_none()));
    assert_eq!(files(dir.path()), Vec::<String>::new());
    let cache = ArtifactCache::new(dir.path()).with_mapped_defaults();
    let load_all = || {
        let (loaded, errors) = load_embedded(&engine, &config, Some(&cache), &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(
            loaded
                .iter()
                .all(|p| p.code_source() == CodeSource::Precompiled),
            "nothing compiled"
        );
        loaded
    };
    let copy = |e: &EmbeddedPolicy| {
        dir.path()
            .join(format!("{}.precompiled", e.precompiled_sha256))
    };
    let loaded = load_all();
    for (policy, e) in loaded.iter().zip(EMBEDDED) {
        let digest: String = Sha256::digest(e.precompiled)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            e.precompiled_sha256, digest,
            "{}: the build's digest",
            e.name
        );
        assert_eq!(std::fs::read(copy(e)).unwrap(), e.precompiled, "{}", e.name);
        assert_eq!(policy.artifact(), Some(e.precompiled_sha256));
    }
    assert!(
        !files(dir.path()).iter().any(|f| f.ends_with(".cwasm")),
        "no compiled artifact: {:?}",
        files(dir.path())
    );

    // A restart maps the copies already there; a damaged one (torn by a crash, truncated
    // by hand while no agent runs: truncating a mapped file under a live agent is SIGBUS, as
    // for any mapped file, which is why the agent only ever replaces a copy by rename) is
    // written again.
    drop(loaded);
    use std::os::unix::fs::MetadataExt;
    let inode = |e: &EmbeddedPolicy| std::fs::metadata(copy(e)).unwrap().ino();
    let before: Vec<u64> = EMBEDDED.iter().map(inode).collect();
    let damaged = &EMBEDDED[0];
    std::fs::File::options()
        .write(true)
        .open(copy(damaged))
        .unwrap()
        .set_len(damaged.precompiled.len() as u64 / 2)
        .unwrap();
    let again = load_all();
    assert_eq!(std::fs::read(copy(damaged)).unwrap(), damaged.precompiled);
    let after: Vec<u64> = EMBEDDED.iter().map(inode).collect();
    assert_ne!(after[0], before[0], "the damaged copy is replaced");
    assert_eq!(after[1..], before[1..], "intact copies are kept");

    // The copies are evicted like artifacts: kept while a loaded policy names them.
    let in_use: Vec<&str> = again.iter().filter_map(|p| p.artifact()).collect();
    assert!(cache.evict_unreferenced(in_use).unwrap().files.is_empty());
    assert_eq!(
        cache.evict_unreferenced([]).unwrap().files.len(),
        EMBEDDED.len()
    );
}

/// A copy is named by the digest of what it must hold, and mapped code is run as it is
/// (wasmtime checks the header and the engine settings, not the code). A copy that holds
/// other bytes of the same length (a disk's damage, a write through another path) must not
/// be mapped: it is written again, as a truncated one is.
#[test]
fn regression_a_same_length_damaged_copy_is_not_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let config = |_: &str| r#"{"device_spec": [], "alias": []}"#.to_string();
    let engine = engine();
    let cache = ArtifactCache::new(dir.path()).with_mapped_defaults();
    let (loaded, errors) = load_embedded(&engine, &config, Some(&cache), &[]);
    assert!(errors.is_empty(), "{errors:?}");
    drop(loaded);
    let damaged = &EMBEDDED[0];
    let copy = dir
        .path()
        .join(format!("{}.precompiled", damaged.precompiled_sha256));
    // Same length, a block in the middle (code) zeroed; replaced by rename, as a writer would.
    let mut bytes = damaged.precompiled.to_vec();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 4096].fill(0);
    assert_ne!(bytes, damaged.precompiled);
    let tmp = dir.path().join("tmp");
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::rename(&tmp, &copy).unwrap();

    let (again, errors) = load_embedded(&engine, &config, Some(&cache), &[]);
    assert!(errors.is_empty(), "{errors:?}");
    let mapped_garbage = std::fs::read(&copy).unwrap() != damaged.precompiled
        && again[0].artifact() == Some(damaged.precompiled_sha256);
    assert!(
        !mapped_garbage,
        "{}: a copy of the right length but other content was mapped and would be run",
        damaged.name
    );
}
