//! The Placement view against Nova 34's translator run as a library
//! (`oracle/nova_translator.py` calls `update_provider_tree_for_pci` with a `ProviderTree`
//! and reads the tree back): for each host, the providers, their inventories and traits, or
//! the refusal and its message, must be Nova's.
//!
//! pcitrack's side runs the real path: the devspec library parses the device_spec and finds
//! each device's spec, its tags become the tracked device's profile as the matcher carries
//! them, and [`pcitrack_placement::view`] computes the providers. Owner traits differ on
//! purpose (Nova's `OWNER_NOVA`, pcitrack's `CUSTOM_OWNER_PCITRACK`) and are left out of the
//! comparison; everything else is compared. With `PCITRACK_NOVA_PYTHON` unset the Nova
//! comparison is skipped; the other tests pin pcitrack's own choices without Nova.

use std::collections::{BTreeMap, BTreeSet};

use pcitrack_devspec::{DeviceInput, EmptyHost, Entry, whitelist_from_config};
use pcitrack_model::{DevType, Device, DeviceStatus, PciAddress};
use pcitrack_placement::{
    Inventory, OWNER_NOVA, OWNER_TRAIT, PciView, ProviderTree, ResourceProvider, ViewError,
    ViewInput, view,
};
use pcitrack_tracker::{Profile, TrackedDevice};
use serde_json::{Value, json};
use uuid::Uuid;

const HOST: &str = "compute-1";
const ROOT: &str = "11111111-1111-4111-8111-111111111111";
const VM1: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const VM2: &str = "aaaaaaaa-0000-4000-8000-000000000002";

/// One device of a host.
#[derive(Clone)]
struct Dev {
    address: &'static str,
    vendor: &'static str,
    product: &'static str,
    dev_type: DevType,
    parent: Option<&'static str>,
    status: DeviceStatus,
    instance: Option<&'static str>,
    /// No longer reported by the host (still held by its instance).
    missing: bool,
    /// The spec it was made assignable by, when the current configuration no longer
    /// matches it (Nova then finds no spec for it).
    old_spec: Option<&'static str>,
}

fn dev(address: &'static str, vendor: &'static str, product: &'static str, t: DevType) -> Dev {
    Dev {
        address,
        vendor,
        product,
        dev_type: t,
        parent: None,
        status: DeviceStatus::Available,
        instance: None,
        missing: false,
        old_spec: None,
    }
}

fn vf(address: &'static str, product: &'static str, pf: &'static str) -> Dev {
    Dev {
        parent: Some(pf),
        ..dev(address, "8086", product, DevType::Vf)
    }
}

impl Dev {
    fn allocated(mut self, instance: &'static str) -> Self {
        self.status = DeviceStatus::Allocated;
        self.instance = Some(instance);
        self
    }
}

/// A provider Placement already holds: name suffix (address), uuid, class, total, usage
/// (consumer, amount), traits.
struct Held {
    address: &'static str,
    uuid: &'static str,
    rc: &'static str,
    total: u32,
    usage: Vec<(&'static str, u32)>,
    traits: Vec<&'static str>,
}

struct Case {
    name: &'static str,
    device_spec: Vec<&'static str>,
    devices: Vec<Dev>,
    held: Vec<Held>,
}

fn case(name: &'static str, device_spec: Vec<&'static str>, devices: Vec<Dev>) -> Case {
    Case {
        name,
        device_spec,
        devices,
        held: Vec::new(),
    }
}

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn id(s: &str) -> u16 {
    u16::from_str_radix(s, 16).unwrap()
}

fn rp_name(address: &str) -> String {
    format!("{HOST}_{}", address.to_uppercase())
}

/// The tags the devspec library gives a device under these specs, or `None` when no spec
/// matches it.
fn tags_for(specs: &[&str], d: &Dev) -> Option<BTreeMap<String, String>> {
    let config = json!({"device_spec": specs, "report_in_placement": true});
    let wl = whitelist_from_config(&config.to_string()).expect("valid device_spec");
    let bound = wl.bind(&EmptyHost).expect("no host-dependent specs");
    let input = DeviceInput {
        address: addr(d.address),
        vendor_id: id(d.vendor),
        product_id: id(d.product),
        parent_addr: d.parent.map(addr),
        card_serial_number: None,
    };
    let i = bound.find(&input)?;
    Some(
        wl.specs()[i]
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
    )
}

/// The tracked devices of a case, as the tracker would hold them.
fn tracked(case: &Case) -> Vec<TrackedDevice> {
    if case.device_spec.iter().any(|s| s.contains("devname")) {
        return Vec::new();
    }
    case.devices
        .iter()
        .map(|d| {
            let tags = match d.old_spec {
                Some(old) => tags_for(&[old], d).expect("the old spec matches"),
                None => tags_for(&case.device_spec, d).expect("a spec matches"),
            };
            let mut device = Device::new(addr(d.address), id(d.vendor), id(d.product), d.dev_type);
            device.parent_addr = d.parent.map(addr);
            let profile = Profile {
                device,
                tags: tags.into(),
                remote_managed: false,
                decided_by: String::new(),
                parent_ifname: None,
            };
            let mut t = TrackedDevice::new(profile);
            t.status = d.status;
            t.instance_uuid = d.instance.map(str::to_string);
            let unreported = d.missing || d.old_spec.is_some();
            t.missing_syncs = u32::from(unreported);
            t.to_be_removed_when_freed = unreported && d.status.is_in_use();
            t.reserved = d.status == DeviceStatus::Allocated && t.profile.one_time_use();
            t
        })
        .collect()
}

/// What Placement holds for a case: the root and the held providers, with their usage.
fn placement(case: &Case) -> ProviderTree {
    let root = Uuid::parse_str(ROOT).unwrap();
    let mut providers = vec![ResourceProvider::new(root, HOST, None)];
    for h in &case.held {
        let mut p = ResourceProvider::new(
            Uuid::parse_str(h.uuid).unwrap(),
            rp_name(h.address),
            Some(root),
        );
        p.inventories
            .insert(h.rc.to_string(), Inventory::new(h.total, h.total));
        p.traits = h.traits.iter().map(|t| t.to_string()).collect();
        p.traits.insert(OWNER_TRAIT.to_string());
        let used: u32 = h.usage.iter().map(|(_, n)| n).sum();
        if used > 0 {
            p.usages.insert(h.rc.to_string(), used);
        }
        providers.push(p);
    }
    ProviderTree { providers }
}

fn our_view(case: &Case) -> Result<PciView, ViewError> {
    let entries: Vec<Entry> = case
        .device_spec
        .iter()
        .map(|s| Entry::Json(s.to_string()))
        .collect();
    let devices = tracked(case);
    let tree = placement(case);
    let known = BTreeMap::new();
    view(&ViewInput {
        host: HOST,
        device_spec: &entries,
        devices: &devices,
        known_uuids: &known,
        placement: &tree,
    })
}

/// Our answer in the oracle's shape (owner traits left out, uuids only of held providers).
fn our_answer(case: &Case) -> Value {
    let held: BTreeSet<Uuid> = placement(case).providers.iter().map(|p| p.uuid).collect();
    match our_view(case) {
        Err(e) => json!({"error": e.to_string()}),
        Ok(v) => json!({"providers": v.providers.iter().map(|p| {
            let inventory: BTreeMap<&String, Value> = p.inventories.iter().map(|(rc, i)| {
                (rc, json!({"total": i.total, "max_unit": i.max_unit,
                            "reserved": i.reserved.unwrap_or(0)}))
            }).collect();
            json!({
                "name": p.name,
                "uuid": held.contains(&p.uuid).then(|| p.uuid.to_string()),
                "inventory": inventory,
                "traits": p.traits.iter().filter(|t| *t != OWNER_TRAIT).collect::<Vec<_>>(),
            })
        }).collect::<Vec<_>>()}),
    }
}

/// Nova's answer reduced to what is compared.
fn nova_answer(case: &Case, nova: &Value) -> Value {
    if let Some(e) = nova.get("error") {
        return json!({"error": e});
    }
    let held: BTreeSet<&str> = case.held.iter().map(|h| h.uuid).collect();
    let providers: Vec<Value> = nova["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let inventory: BTreeMap<String, Value> = p["inventory"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(rc, i)| {
                    (
                        rc.clone(),
                        json!({"total": i["total"], "max_unit": i["max_unit"],
                               "reserved": i.get("reserved").cloned().unwrap_or(json!(0))}),
                    )
                })
                .collect();
            let uuid = p["uuid"].as_str().unwrap();
            json!({
                "name": p["name"],
                "uuid": held.contains(uuid).then_some(uuid),
                "inventory": inventory,
                "traits": p["traits"].as_array().unwrap().iter()
                    .filter(|t| *t != OWNER_NOVA && *t != OWNER_TRAIT).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "providers": providers })
}

fn oracle_input(case: &Case) -> Value {
    let mut allocations: BTreeMap<&str, BTreeMap<&str, Value>> = BTreeMap::new();
    for h in &case.held {
        for (consumer, n) in &h.usage {
            allocations
                .entry(*consumer)
                .or_default()
                .insert(h.uuid, json!({"resources": {h.rc: n}}));
        }
    }
    json!({
        "host": HOST,
        "root_uuid": ROOT,
        "device_spec": case.device_spec,
        "devname_address": "0000:81:00.0",
        "devices": case.devices.iter().map(|d| json!({
            "address": d.address, "vendor_id": d.vendor, "product_id": d.product,
            "dev_type": d.dev_type.as_str(), "parent_addr": d.parent,
            "status": d.status.as_str(), "instance_uuid": d.instance,
        })).collect::<Vec<_>>(),
        "tree": case.held.iter().map(|h| json!({
            "name": rp_name(h.address), "uuid": h.uuid,
            "inventory": {h.rc: {"total": h.total, "max_unit": h.total}},
            "traits": h.traits.iter().copied().chain([OWNER_TRAIT]).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "allocations": allocations.iter().map(|(c, a)| (c.to_string(), json!({"allocations": a})))
            .collect::<serde_json::Map<String, Value>>(),
    })
}

const PF1: &str = "0000:81:00.0";
const PF2: &str = "0000:82:00.0";

fn cases() -> Vec<Case> {
    let vfs1 = || {
        vec![
            vf("0000:81:02.0", "154c", PF1),
            vf("0000:81:02.1", "154c", PF1),
            vf("0000:81:02.2", "154c", PF1),
            vf("0000:81:02.3", "154c", PF1),
        ]
    };
    let vfs2 = || {
        vec![
            vf("0000:82:02.0", "154c", PF2),
            vf("0000:82:02.1", "154c", PF2),
        ]
    };
    let gpus = || {
        vec![
            dev("0000:3b:00.0", "10de", "2330", DevType::Pci),
            dev("0000:3c:00.0", "10de", "2330", DevType::Pci),
        ]
    };
    let mut out = vec![
        case(
            "PFs with VFs, default classes",
            vec![r#"{"vendor_id": "8086", "product_id": "154c"}"#],
            [vfs1(), vfs2()].concat(),
        ),
        case(
            "VFs with resource_class and traits, one VF allocated",
            vec![
                r#"{"address": "0000:81:02.*", "resource_class": "nic-vf", "traits": "fast,HW_NIC_SRIOV,custom_blue"}"#,
                r#"{"address": "0000:82:02.*", "resource_class": "CUSTOM_OTHER", "traits": ""}"#,
            ],
            {
                let mut d = [vfs1(), vfs2()].concat();
                d[1] = d[1].clone().allocated(VM1);
                d
            },
        ),
        case(
            "PFs themselves and plain PCI devices",
            vec![
                r#"{"vendor_id": "8086", "product_id": "1572"}"#,
                r#"{"vendor_id": "10de", "resource_class": "pgpu", "traits": "HW_GPU_API_VULKAN,gpu a"}"#,
            ],
            [
                vec![
                    dev(PF1, "8086", "1572", DevType::Pf),
                    dev(PF2, "8086", "1572", DevType::Pf),
                ],
                gpus(),
            ]
            .concat(),
        ),
        case(
            "one_time_use devices, one allocated",
            vec![r#"{"vendor_id": "10de", "product_id": "2330", "one_time_use": "true"}"#],
            {
                let mut d = gpus();
                d[0] = d[0].clone().allocated(VM1);
                d
            },
        ),
        case(
            "physical_network VFs left out, the others reported",
            vec![
                r#"{"address": "0000:81:02.*", "physical_network": "physnet1"}"#,
                r#"{"address": "0000:82:02.*", "physical_network": ""}"#,
            ],
            [vfs1(), vfs2()].concat(),
        ),
        case(
            "live_migratable VFs and PCI devices",
            vec![
                r#"{"vendor_id": "8086", "product_id": "154c", "live_migratable": "yes"}"#,
                r#"{"vendor_id": "10de", "live_migratable": "false"}"#,
            ],
            [vfs1(), gpus()].concat(),
        ),
        case(
            "vDPA devices counted on their PF",
            vec![r#"{"vendor_id": "15b3", "product_id": "101e"}"#],
            vec![
                Dev {
                    parent: Some(PF1),
                    ..dev("0000:81:00.2", "15b3", "101e", DevType::Vdpa)
                },
                Dev {
                    parent: Some(PF1),
                    ..dev("0000:81:00.3", "15b3", "101e", DevType::Vdpa)
                },
            ],
        ),
        case(
            "a VF gone from the host while allocated still counts",
            vec![r#"{"vendor_id": "8086", "product_id": "154c"}"#],
            {
                let mut d = vfs1();
                d[3] = Dev {
                    missing: true,
                    ..d[3].clone().allocated(VM2)
                };
                d
            },
        ),
        // Guards.
        case(
            "a PF and its VFs both configured",
            vec![r#"{"vendor_id": "8086"}"#],
            [vec![dev(PF1, "8086", "1572", DevType::Pf)], vfs1()].concat(),
        ),
        case(
            "VFs of one PF with different resource classes",
            vec![
                r#"{"address": "0000:81:02.0", "resource_class": "a"}"#,
                r#"{"address": "0000:81:02.*", "resource_class": "b"}"#,
            ],
            vfs1(),
        ),
        case(
            "VFs of one PF with different traits",
            vec![
                r#"{"address": "0000:81:02.1", "traits": "x,y"}"#,
                r#"{"address": "0000:81:02.*", "traits": "y"}"#,
            ],
            vfs1(),
        ),
        case(
            "one_time_use on VFs, even false",
            vec![r#"{"vendor_id": "8086", "product_id": "154c", "one_time_use": "false"}"#],
            vfs2(),
        ),
        case(
            "a devname spec",
            vec![
                r#"{"vendor_id": "10de"}"#,
                r#"{"devname": "ens1f0", "physical_network": "physnet1", "trusted": true}"#,
            ],
            gpus(),
        ),
    ];

    // What Placement already holds.
    let mut c = case(
        "usage above the device count raises the total",
        vec![r#"{"vendor_id": "8086", "product_id": "154c"}"#],
        vfs2(),
    );
    c.held = vec![Held {
        address: PF2,
        uuid: "22222222-2222-4222-8222-222222222222",
        rc: "CUSTOM_PCI_8086_154C",
        total: 3,
        usage: vec![(VM1, 2), (VM2, 1)],
        traits: vec!["COMPUTE_MANAGED_PCI_DEVICE"],
    }];
    out.push(c);
    let mut c = case(
        "a device whose spec went away while allocated keeps its provider",
        vec![r#"{"vendor_id": "10de", "product_id": "9999"}"#],
        vec![Dev {
            old_spec: Some(r#"{"vendor_id": "10de", "traits": "gold"}"#),
            ..dev("0000:3b:00.0", "10de", "2330", DevType::Pci).allocated(VM1)
        }],
    );
    c.held = vec![Held {
        address: "0000:3b:00.0",
        uuid: "33333333-3333-4333-8333-333333333333",
        rc: "CUSTOM_PCI_10DE_2330",
        total: 1,
        usage: vec![(VM1, 1)],
        traits: vec!["COMPUTE_MANAGED_PCI_DEVICE", "CUSTOM_GOLD"],
    }];
    out.push(c);
    let mut c = case(
        "a provider with no device and no usage is dropped",
        vec![r#"{"vendor_id": "10de"}"#],
        gpus(),
    );
    c.held = vec![Held {
        address: PF1,
        uuid: "44444444-4444-4444-8444-444444444444",
        rc: "CUSTOM_PCI_8086_154C",
        total: 4,
        usage: vec![],
        traits: vec!["COMPUTE_MANAGED_PCI_DEVICE"],
    }];
    out.push(c);
    out
}

#[test]
fn the_view_agrees_with_nova() {
    let Some(python) = pcitrack_nova_oracle::python("nova_translator::the_view_agrees_with_nova")
    else {
        return;
    };
    let cases = cases();
    let input = json!({"cases": cases.iter().map(oracle_input).collect::<Vec<_>>()});
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/nova_translator.py"
    );
    let nova = pcitrack_nova_oracle::run(&python, script.as_ref(), &input);
    let answers = nova["cases"].as_array().expect("one answer per case");
    assert_eq!(answers.len(), cases.len());
    let mut refusals = 0;
    for (case, nova) in cases.iter().zip(answers) {
        let theirs = nova_answer(case, nova);
        refusals += usize::from(theirs.get("error").is_some());
        assert_eq!(
            our_answer(case),
            theirs,
            "{}: pcitrack (left) and Nova 34 (right) differ",
            case.name
        );
    }
    assert_eq!(refusals, 5, "every guard case is refused by Nova");
    println!(
        "compared {} hosts with Nova 34's translator ({refusals} refusals)",
        cases.len()
    );
}

/// The guards, without Nova: typed errors naming the devices.
#[test]
fn guards_name_the_devices() {
    let cases = cases();
    let find = |name: &str| cases.iter().find(|c| c.name == name).unwrap();
    assert_eq!(
        our_view(find("a PF and its VFs both configured")),
        Err(ViewError::DependentDevice {
            parent_dev: addr("0000:81:02.0"),
            children_devs: PF1.into()
        })
    );
    assert!(matches!(
        our_view(find("VFs of one PF with different resource classes")),
        Err(ViewError::MixedResourceClass { new_dev, current_devs, .. })
            if new_dev == addr("0000:81:02.1") && current_devs == "0000:81:02.0"
    ));
    assert!(matches!(
        our_view(find("one_time_use on VFs, even false")),
        Err(ViewError::OneTimeUseOnChild { device, .. }) if device == addr("0000:82:02.0")
    ));
    let Err(ViewError::DevnameSpec { spec }) = our_view(find("a devname spec")) else {
        panic!("a devname spec is refused");
    };
    assert_eq!(
        spec,
        "{'devname': 'ens1f0', 'physical_network': 'physnet1', 'trusted': True}"
    );
}

/// Providers carry pcitrack's owner trait, never Nova's, and uuids are kept: the same uuid
/// comes back when the caller passes it in, and a new one is handed out once.
#[test]
fn providers_are_owned_by_pcitrack_and_keep_their_uuids() {
    let cases = cases();
    let c = &cases[0];
    let first = our_view(c).unwrap();
    for p in &first.providers {
        assert!(p.traits.contains(OWNER_TRAIT), "{}", p.name);
        assert!(!p.traits.contains(OWNER_NOVA), "{}", p.name);
    }
    assert_eq!(first.new_uuids.len(), 2);
    assert_eq!(first.new_uuids[&addr(PF1)], first.providers[0].uuid);

    let entries: Vec<Entry> = c
        .device_spec
        .iter()
        .map(|s| Entry::Json(s.to_string()))
        .collect();
    let devices = tracked(c);
    let tree = placement(c);
    let again = view(&ViewInput {
        host: HOST,
        device_spec: &entries,
        devices: &devices,
        known_uuids: &first.new_uuids,
        placement: &tree,
    })
    .unwrap();
    assert_eq!(again.providers, first.providers);
    assert!(again.new_uuids.is_empty());
}

/// Nova counts a VF whose spec went away while allocated only through Placement's usage
/// (its provider's total drops to the other VFs' count while the VF is held); pcitrack
/// counts it with the profile it was handed out with, so Placement offers exactly the VFs
/// that are free locally.
#[test]
fn a_held_vf_whose_spec_went_away_still_counts() {
    let mut devices = vec![
        vf("0000:81:02.0", "154c", PF1),
        vf("0000:81:02.1", "154c", PF1),
        vf("0000:81:02.2", "154c", PF1),
    ];
    devices[2] = Dev {
        old_spec: Some(r#"{"vendor_id": "8086", "product_id": "154c"}"#),
        ..devices[2].clone().allocated(VM1)
    };
    let c = case(
        "held VF",
        vec![
            r#"{"address": "0000:81:02.0", "vendor_id": "8086"}"#,
            r#"{"address": "0000:81:02.1", "vendor_id": "8086"}"#,
        ],
        devices,
    );
    let v = our_view(&c).unwrap();
    let inv = v.providers[0].inventories["CUSTOM_PCI_8086_154C"];
    assert_eq!((inv.total, inv.max_unit), (3, 3));
}

/// A pcitrack provider with no device left but allocations in Placement keeps an inventory
/// at the usage, with its traits (Nova would delete it and Placement refuse the delete).
#[test]
fn a_provider_placement_still_allocates_from_is_kept() {
    let mut c = case("kept", vec![r#"{"vendor_id": "10de"}"#], vec![]);
    c.held = vec![Held {
        address: PF1,
        uuid: "55555555-5555-4555-8555-555555555555",
        rc: "CUSTOM_PCI_8086_154C",
        total: 4,
        usage: vec![(VM1, 2)],
        traits: vec!["COMPUTE_MANAGED_PCI_DEVICE"],
    }];
    let v = our_view(&c).unwrap();
    assert_eq!(v.providers.len(), 1);
    let p = &v.providers[0];
    assert_eq!(p.name, rp_name(PF1));
    assert!(p.devices.is_empty());
    assert_eq!(p.inventories["CUSTOM_PCI_8086_154C"].total, 2);
    assert!(p.traits.contains("COMPUTE_MANAGED_PCI_DEVICE"));
}

/// A tree holding PCI providers that pcitrack did not write (nova-compute reports this
/// host) is refused, naming them.
#[test]
fn nova_owned_pci_providers_are_refused() {
    let cases = cases();
    let c = &cases[0];
    let mut tree = placement(c);
    let root = tree.providers[0].uuid;
    let mut nova = ResourceProvider::new(Uuid::new_v4(), rp_name(PF1), Some(root));
    nova.traits = ["COMPUTE_MANAGED_PCI_DEVICE", OWNER_NOVA]
        .into_iter()
        .map(String::from)
        .collect();
    tree.providers.push(nova);
    let devices = tracked(c);
    let err = view(&ViewInput {
        host: HOST,
        device_spec: &[],
        devices: &devices,
        known_uuids: &BTreeMap::new(),
        placement: &tree,
    })
    .unwrap_err();
    assert!(
        matches!(err, ViewError::ForeignPciProviders { ref providers, .. }
        if *providers == rp_name(PF1))
    );
    assert!(err.to_string().contains("nova-compute"), "{err}");
}
