//! The same device_spec text, given as configuration to the embedded matcher policy running
//! in wasmtime (`Policy::load` runs its `describe` and `init`).
//!
//! Properties: the host never panics or crashes, whatever the guest does; a load ends in
//! `Ok` or `Err`, within the call deadline; and the guest decides as the native library
//! does: it accepts exactly what `whitelist_from_config` accepts and refuses the rest with
//! the same message. Only the limits (deadline, memory) may stop it instead; a trap (a
//! panic inside the policy) is a bug.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pcitrack_runtime::{
    ArtifactCache, CallError, EMBEDDED, Limits, LoadError, Policy, PolicyEngine, PolicyOrigin,
};

struct Matcher {
    engine: PolicyEngine,
    bytes: &'static [u8],
    cache: ArtifactCache,
}

/// The engine, the embedded matcher, and a compiled-policy cache so that each run costs an
/// instantiation, not a Cranelift compile (the input only reaches `init`).
fn matcher() -> &'static Matcher {
    static MATCHER: OnceLock<Matcher> = OnceLock::new();
    MATCHER.get_or_init(|| {
        let engine = PolicyEngine::new(Limits::default()).expect("wasm engine");
        let bytes = EMBEDDED
            .iter()
            .find(|p| p.name == "matcher")
            .expect("an embedded matcher")
            .bytes;
        let dir = std::env::var_os("PCITRACK_FUZZ_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("pcitrack-fuzz-policy-cache"));
        let cache = ArtifactCache::new(dir);
        Policy::load(
            &engine,
            "matcher",
            bytes,
            PolicyOrigin::Embedded,
            "{}",
            Some(&cache),
        )
        .expect("the embedded matcher loads with an empty configuration");
        Matcher {
            engine,
            bytes,
            cache,
        }
    })
}

fuzz_target!(|text: &str| {
    let m = matcher();
    let config = serde_json::json!({ "device_spec": [text], "alias": [] }).to_string();
    let native = pcitrack_devspec::whitelist_from_config(&config);
    let loaded = Policy::load(
        &m.engine,
        "matcher",
        m.bytes,
        PolicyOrigin::Embedded,
        &config,
        Some(&m.cache),
    );
    match (loaded, native) {
        (Ok(_), Ok(_)) => {}
        (Err(LoadError::ConfigRefused { reason, .. }), Err(e)) => assert_eq!(reason, e.message),
        (
            Err(LoadError::Start {
                source: CallError::Timeout { .. } | CallError::Failed(_),
                ..
            }),
            _,
        ) => {}
        (loaded, native) => panic!(
            "the policy says {:?}, the library says {native:?}",
            loaded.map(|p| p.name().to_string())
        ),
    }
});
