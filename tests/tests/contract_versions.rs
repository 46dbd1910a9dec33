//! Contract 0.1.1 (`host.get-device-facts`) is additive: policies built against 0.1.0 load
//! unchanged and decide as before, policies of 0.1.1 load, a later 0.1.x or another minor is
//! refused by name, and a policy that does not ask for the facts does not import them (so
//! the agent never builds them for it).
//!
//! The 0.1.0 policies are checked-in components built at commit 5d2ffb4, the last one with
//! contract 0.1.0 (`crates/runtime/tests/fixtures/contract-0.1.0/`, its README says how): the
//! embedded cleanup default and the ConnectX example matcher. A fixture built by this tree's
//! build would be 0.1.1, whatever its source says; the first test checks they are not.

use std::path::PathBuf;
use std::sync::Arc;

use pcitrack_e2e::component_of_world;
use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};
use pcitrack_model::{DevType, Device, DeviceStatus, NetInterface, PciAddress};
use pcitrack_runtime::{
    EMBEDDED, Limits, LoadError, Policy, PolicyEngine, PolicyKind, PolicyOrigin, PolicySet, inspect,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/runtime/tests/fixtures/contract-0.1.0")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn embedded(name: &str) -> &'static [u8] {
    EMBEDDED.iter().find(|p| p.name == name).unwrap().bytes
}

fn engine() -> PolicyEngine {
    PolicyEngine::new(Limits::default()).unwrap()
}

fn load(engine: &PolicyEngine, name: &str, bytes: &[u8], config: &str) -> Policy {
    Policy::load(engine, name, bytes, PolicyOrigin::Embedded, config, None)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The contract interfaces a component imports and exports, by full name, and for each
/// imported interface the functions it imports.
struct ContractUse {
    imports: Vec<(String, Vec<String>)>,
    exports: Vec<String>,
}

fn contract_use(bytes: &[u8]) -> ContractUse {
    let wit_component::DecodedWasm::Component(resolve, world) =
        wit_component::decode(bytes).expect("a component")
    else {
        panic!("not a component")
    };
    let world = &resolve.worlds[world];
    let interface = |key: &wit_parser::WorldKey, item: &wit_parser::WorldItem| match item {
        wit_parser::WorldItem::Interface { id, .. } => Some((
            resolve
                .id_of(*id)
                .unwrap_or_else(|| resolve.name_world_key(key)),
            resolve.interfaces[*id].functions.keys().cloned().collect(),
        )),
        _ => None,
    };
    ContractUse {
        imports: world
            .imports
            .iter()
            .filter_map(|(k, i)| interface(k, i))
            .collect(),
        exports: world
            .exports
            .iter()
            .filter_map(|(k, i)| interface(k, i).map(|(name, _)| name))
            .collect(),
    }
}

#[test]
fn the_fixtures_are_policies_built_against_contract_0_1_0() {
    for (file, export) in [
        ("cleanup.wasm", "pcitrack:policy/cleanup@0.1.0"),
        ("connectx-vf-matcher.wasm", "pcitrack:policy/matcher@0.1.0"),
    ] {
        let used = contract_use(&fixture(file));
        assert_eq!(used.exports, [export], "{file}");
        for (name, _) in &used.imports {
            assert!(name.ends_with("@0.1.0"), "{file} imports {name}");
        }
    }
    // Its types come from types@0.1.0, which the agent's 0.1.1 linker must resolve by the
    // semver track.
    let used = contract_use(&fixture("connectx-vf-matcher.wasm"));
    assert_eq!(used.imports[0].0, "pcitrack:policy/types@0.1.0");
}

/// A 0.1.0 policy that logs imports `host@0.1.0` with `log` alone; neither fixture logs, so a
/// component of the 0.1.0 WIT (kept beside them) shows the agent links it: the load gets past
/// linking and stops only when the dummy body traps in `describe`.
#[test]
fn a_0_1_0_policy_importing_host_log_links_against_the_0_1_1_host() {
    let old_wit = String::from_utf8(fixture("policy.wit")).unwrap();
    assert!(old_wit.contains("package pcitrack:policy@0.1.0;"));
    let engine = engine();
    for world in ["matcher-policy", "tagger-policy", "cleanup-policy"] {
        let bytes = component_of_world(&old_wit, world);
        let used = contract_use(&bytes);
        assert!(
            used.imports
                .iter()
                .any(|(n, f)| n == "pcitrack:policy/host@0.1.0" && *f == ["log"]),
            "{:?}",
            used.imports
        );
        let e = Policy::load(&engine, world, &bytes, PolicyOrigin::Embedded, "", None).unwrap_err();
        assert!(matches!(e, LoadError::Start { .. }), "{world}: {e}");
    }
}

#[test]
fn the_embedded_defaults_speak_0_1_1_and_do_not_import_the_device_facts() {
    for policy in EMBEDDED {
        let used = contract_use(policy.bytes);
        assert_eq!(
            used.exports,
            [format!("pcitrack:policy/{}@0.1.1", policy.kind)],
            "{}",
            policy.name
        );
        for (name, functions) in &used.imports {
            assert!(
                !functions.iter().any(|f| f == "get-device-facts"),
                "{} imports {name}.get-device-facts: the agent would build the facts for \
                 every evaluation",
                policy.name
            );
        }
    }
}

#[test]
fn a_0_1_0_cleanup_policy_loads_and_decides_as_the_0_1_1_default_does() {
    let engine = engine();
    assert_eq!(
        inspect(engine.engine(), "old", &fixture("cleanup.wasm")).unwrap(),
        PolicyKind::Cleanup
    );
    let old = PolicySet::new([Arc::new(load(
        &engine,
        "cleanup",
        &fixture("cleanup.wasm"),
        "",
    ))]);
    let new = PolicySet::new([Arc::new(load(&engine, "cleanup", embedded("cleanup"), ""))]);
    let statuses = [
        DeviceStatus::Available,
        DeviceStatus::Claimed,
        DeviceStatus::Allocated,
        DeviceStatus::Unavailable,
        DeviceStatus::Unclaimable,
        DeviceStatus::Removed,
    ];
    let mut tracked = Vec::new();
    for (i, status) in statuses.into_iter().enumerate() {
        for owned in [false, true] {
            for reported in [false, true] {
                tracked.push(CleanupCandidate {
                    address: PciAddress::new(
                        0,
                        0x81,
                        tracked.len() as u8 / 8,
                        tracked.len() as u8 % 8,
                    )
                    .unwrap(),
                    vendor_id: 0x15b3,
                    product_id: 0x1018,
                    dev_type: if i % 2 == 0 {
                        DevType::Vf
                    } else {
                        DevType::Pci
                    },
                    status,
                    owner: owned.then(|| "vm-1".to_string()),
                    parent: None,
                    reported,
                    missing_syncs: u32::from(!reported),
                });
            }
        }
    }
    let candidates: Vec<usize> = (0..tracked.len()).collect();
    let verdicts = |set: &PolicySet| -> Vec<CleanupVerdict> {
        set.cleanup(&tracked, &candidates)
            .into_iter()
            .map(|o| {
                assert_eq!(o.decided_by, "cleanup", "{o:?}");
                o.verdict
            })
            .collect()
    };
    let (old, new) = (verdicts(&old), verdicts(&new));
    assert_eq!(old, new);
    // Not a vacuous match: the rule deletes some and keeps or abstains on others.
    assert!(old.contains(&CleanupVerdict::Delete), "{old:?}");
    assert!(old.iter().any(|v| *v != CleanupVerdict::Delete), "{old:?}");
}

#[test]
fn a_0_1_0_matcher_loads_and_assigns_from_the_inventory() {
    let engine = engine();
    let old = load(
        &engine,
        "connectx",
        &fixture("connectx-vf-matcher.wasm"),
        r#"{"physnets": {"pf0": "physnet1"}}"#,
    );
    assert_eq!(old.kind(), PolicyKind::Matcher);
    let vf = |function: u8, port: &str| {
        let mut d = Device::new(
            PciAddress::new(0, 0x82, 0, function).unwrap(),
            0x15b3,
            0x101e,
            DevType::Vf,
        );
        d.iommu_group = Some(40 + u32::from(function));
        d.driver = Some("mlx5_core".into());
        d.net.push(NetInterface {
            name: format!("eth{function}"),
            mac_address: None,
            phys_port_name: Some(port.into()),
            phys_switch_id: None,
        });
        d
    };
    let devices = vec![vf(1, "pf0vf0"), vf(2, "pf1vf0")];
    let out = PolicySet::new([Arc::new(old)]).assess(&devices);
    assert!(out[0].assignable, "{:?}", out[0]);
    assert_eq!(
        *out[0].tags,
        [
            ("physical_network".to_string(), "physnet1".to_string()),
            ("port".to_string(), "pf0".to_string())
        ]
    );
    assert!(!out[1].assignable);
    assert_eq!(
        out[1].reason.as_deref(),
        Some("no physical network configured for port pf1")
    );
}

#[test]
fn a_policy_of_a_later_0_1_version_or_another_minor_is_refused_by_name() {
    let engine = engine();
    for version in ["0.1.2", "0.2.0", "1.0.0"] {
        let later = component_of_world(
            &format!(
                "package pcitrack:policy@{version};
                 interface cleanup {{ init: func(config: string) -> result<_, string>; }}
                 world cleanup-policy {{ export cleanup; }}"
            ),
            "cleanup-policy",
        );
        let e =
            Policy::load(&engine, "later", &later, PolicyOrigin::Embedded, "", None).unwrap_err();
        assert!(
            matches!(e, LoadError::WrongVersion { .. }),
            "{version}: {e}"
        );
        let text = e.to_string();
        assert!(
            text.contains(&format!("pcitrack:policy/cleanup@{version}"))
                && text.contains("0.1.0 or 0.1.1"),
            "{text}"
        );
    }
}

#[test]
fn a_policy_importing_host_of_a_version_the_agent_does_not_load_is_refused() {
    let engine = engine();
    let wit = include_str!("../../wit/policy.wit").replace("@0.1.1;", "@0.1.2;");
    let later = component_of_world(
        &format!("{wit}\nworld uses-later-host {{ import host; export cleanup; }}"),
        "uses-later-host",
    );
    let e = Policy::load(&engine, "later", &later, PolicyOrigin::Embedded, "", None).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::ForbiddenImports { .. } | LoadError::WrongVersion { .. }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("@0.1.2"), "{e}");
}

#[test]
fn a_0_1_1_component_of_the_contract_is_accepted_as_its_kind() {
    let engine = engine();
    let wit = include_str!("../../wit/policy.wit");
    for (world, kind) in [
        ("matcher-policy", PolicyKind::Matcher),
        ("tagger-policy", PolicyKind::Tagger),
        ("cleanup-policy", PolicyKind::Cleanup),
    ] {
        let bytes = component_of_world(wit, world);
        assert_eq!(inspect(engine.engine(), world, &bytes).unwrap(), kind);
    }
}
