//! The default policies, built from `policies/*` by the build script and compiled into the
//! binary, so the agent works with no policies directory at all; each with its code
//! precompiled by the build script, so that a first start does not wait for Cranelift.

use crate::PolicyKind;

/// A default policy shipped inside the agent.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedPolicy {
    /// Its name; a file `<name>.wasm` in the policies directory replaces it.
    pub name: &'static str,
    /// Its kind.
    pub kind: PolicyKind,
    /// The component.
    pub bytes: &'static [u8],
    /// The component compiled when the agent was built, with the agent engine's compiler
    /// settings for the target's baseline CPU (`engine_config.rs`); empty when the build
    /// could not precompile it. Loaded when the engine accepts it, else the component is
    /// compiled ([`crate::CodeSource`]).
    pub precompiled: &'static [u8],
    /// The SHA-256 of `precompiled`, 64 lower-case hex digits, computed by the build: the
    /// name of its copy in the artifact cache's directory, found without reading the bytes.
    pub precompiled_sha256: &'static str,
}

/// Every embedded default, one per kind that has one.
pub static EMBEDDED: &[EmbeddedPolicy] = &[
    EmbeddedPolicy {
        name: "matcher",
        kind: PolicyKind::Matcher,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/matcher.wasm")),
        precompiled: include_bytes!(concat!(env!("OUT_DIR"), "/matcher.cwasm")),
        precompiled_sha256: env!("PCITRACK_MATCHER_CWASM_SHA256"),
    },
    EmbeddedPolicy {
        name: "tagger",
        kind: PolicyKind::Tagger,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/tagger.wasm")),
        precompiled: include_bytes!(concat!(env!("OUT_DIR"), "/tagger.cwasm")),
        precompiled_sha256: env!("PCITRACK_TAGGER_CWASM_SHA256"),
    },
    EmbeddedPolicy {
        name: "cleanup",
        kind: PolicyKind::Cleanup,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/cleanup.wasm")),
        precompiled: include_bytes!(concat!(env!("OUT_DIR"), "/cleanup.cwasm")),
        precompiled_sha256: env!("PCITRACK_CLEANUP_CWASM_SHA256"),
    },
];

#[cfg(test)]
mod tests {
    use pcitrack_model::{DevType, Device, PciAddress};

    use super::*;
    use crate::{
        ArtifactCache, CodeSource, DeviceVerdict, Limits, PolicyEngine, PolicySet, load_embedded,
    };

    /// Intel's 8086 devices are assignable, on physnet1; the others are not.
    const CONFIG: &str = r#"{"device_spec": ["{\"vendor_id\": \"8086\", \"physical_network\": \"physnet1\"}"], "alias": []}"#;

    fn devices() -> Vec<Device> {
        let at = |bus, function| PciAddress::new(0, bus, 0, function).unwrap();
        let mut pf = Device::new(at(0x3b, 0), 0x8086, 0x1572, DevType::Pf);
        pf.sriov_totalvfs = Some(2);
        pf.sriov_numvfs = Some(2);
        let parent = pf.address;
        let vfs = (1..=2).map(|f| {
            let mut vf = Device::new(at(0x3b, f), 0x8086, 0x154c, DevType::Vf);
            vf.parent_addr = Some(parent);
            vf.vf_index = Some(u16::from(f) - 1);
            vf
        });
        let gpu = Device::new(at(0x5e, 0), 0x10de, 0x2330, DevType::Pci);
        let mut all: Vec<Device> = std::iter::once(pf).chain(vfs).chain([gpu]).collect();
        all.sort_by_key(|d| d.address);
        all
    }

    /// The defaults loaded by `engine` through `cache`: where each one's code came from, and
    /// the matcher and tagger chains' verdicts on [`devices`].
    fn load(engine: &PolicyEngine, cache: &ArtifactCache) -> (Vec<CodeSource>, Vec<DeviceVerdict>) {
        let (loaded, errors) = load_embedded(engine, &|_| CONFIG.to_string(), Some(cache), &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(loaded.len(), EMBEDDED.len());
        let sources = loaded.iter().map(|p| p.code_source()).collect();
        let verdicts = PolicySet::new(loaded).assess(&devices());
        (sources, verdicts)
    }

    fn artifacts(cache: &ArtifactCache) -> usize {
        std::fs::read_dir(cache.dir()).map_or(0, |d| d.count())
    }

    #[test]
    fn the_agents_engine_loads_every_default_from_its_precompiled_code() {
        for e in EMBEDDED {
            assert!(
                !e.precompiled.is_empty(),
                "{} was not precompiled by the build",
                e.name
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(dir.path().join("cache"));
        let engine = PolicyEngine::new(Limits::default()).unwrap();
        let (sources, verdicts) = load(&engine, &cache);
        assert_eq!(sources, vec![CodeSource::Precompiled; EMBEDDED.len()]);
        assert_eq!(artifacts(&cache), 0, "nothing compiled, nothing cached");
        let assignable: Vec<bool> = verdicts.iter().map(|v| v.assignable).collect();
        assert_eq!(assignable, [true, true, true, false], "{verdicts:?}");
    }

    #[test]
    fn regression_a_refused_precompiled_default_is_compiled_and_decides_alike() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(dir.path().join("cache"));
        let agent = PolicyEngine::new(Limits::default()).unwrap();
        // Another guard size is another tunable: wasmtime refuses code compiled without it.
        let other = PolicyEngine::adjusted(Limits::default(), &|c| {
            c.memory_guard_size(64 << 10);
        })
        .unwrap();
        let (sources, compiled) = load(&other, &cache);
        assert_eq!(sources, vec![CodeSource::Compiled; EMBEDDED.len()]);
        assert_eq!(
            artifacts(&cache),
            EMBEDDED.len(),
            "the compiled code is cached"
        );
        let (sources, _) = load(&other, &cache);
        assert_eq!(sources, vec![CodeSource::Cache; EMBEDDED.len()]);
        let (_, precompiled) = load(&agent, &cache);
        assert_eq!(precompiled, compiled, "the same verdicts from either code");
    }
}
