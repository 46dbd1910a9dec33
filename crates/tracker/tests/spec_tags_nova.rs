//! The device_spec tags that act beyond matching, against Nova 34: `resource_class` and
//! `traits` (normalised as the PCI-in-Placement translator does, kept out of pool keys as
//! `PciDeviceStats` does), `live_migratable` (filters pools against requests as
//! `_filter_pools_for_live_migratable_devices` does), `one_time_use` (accepted only under
//! `report_in_placement`).
//!
//! pcitrack's side runs the real path: the devspec library parses the configuration and
//! finds each device's spec, its tags are carried as the matcher carries them, the tracker
//! builds pool keys and filters requests. With `PCITRACK_NOVA_PYTHON` naming a Python with
//! Nova 34, `*_agree_with_nova` ask Nova (`oracle/nova_spec_tags.py`); the `regression_*`
//! tests pin the faults of issue 12 without Nova.

use std::collections::{BTreeMap, BTreeSet};

use pcitrack_devspec::{DeviceInput, EmptyHost, whitelist_from_config};
use pcitrack_model::{DevType, Device, PciAddress};
use pcitrack_tracker::placement::{normalize_traits, resource_class};
use pcitrack_tracker::pools::{PoolEntry, pool_key};
use pcitrack_tracker::{AliasTable, PciRequest, PoolSet, Profile};
use serde_json::{Value, json};

/// One device: address, vendor, product, type, NUMA node, PF.
type Dev = (
    &'static str,
    &'static str,
    &'static str,
    DevType,
    Option<u32>,
    Option<&'static str>,
);

fn dev_json(d: &Dev) -> Value {
    json!({"address": d.0, "vendor_id": d.1, "product_id": d.2, "dev_type": d.3.as_str(),
           "numa_node": d.4, "parent_addr": d.5})
}

/// A pool-building case: device_spec entries, report_in_placement, devices, requests.
struct Case {
    device_spec: Vec<Value>,
    report_in_placement: bool,
    devices: Vec<Dev>,
    requests: Vec<Value>,
}

/// What pcitrack makes of a case: the refusal, or the pools (key and sorted addresses) and
/// for each request the sorted addresses of the pools `_filter_pools` keeps (or null).
fn pcitrack_answer(case: &Case) -> Value {
    let specs: Vec<String> = case.device_spec.iter().map(Value::to_string).collect();
    let config = json!({"device_spec": specs, "report_in_placement": case.report_in_placement});
    let wl = match whitelist_from_config(&config.to_string()) {
        Ok(wl) => wl,
        Err(e) => return json!({"error": e.message}),
    };
    let bound = wl
        .bind(&EmptyHost)
        .expect("no host-dependent specs in these cases");
    let mut devices = Vec::new();
    for d in &case.devices {
        let address: PciAddress = d.0.parse().unwrap();
        let vendor = u16::from_str_radix(d.1, 16).unwrap();
        let product = u16::from_str_radix(d.2, 16).unwrap();
        let input = DeviceInput {
            address,
            vendor_id: vendor,
            product_id: product,
            parent_addr: d.5.map(|p| p.parse().unwrap()),
            card_serial_number: None,
        };
        let Some(i) = bound.find(&input) else {
            continue;
        };
        let spec = &wl.specs()[i];
        let tags: BTreeMap<String, String> = spec
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        let key = pool_key(d.1, d.2, d.4, d.3, &tags, spec.remote_managed(), None);
        devices.push((
            key,
            PoolEntry {
                address,
                parent_addr: input.parent_addr,
                dev_type: d.3,
            },
        ));
    }
    let set = PoolSet::from_devices(devices);
    let pools: Vec<Value> = set
        .pools()
        .iter()
        .map(|p| {
            let mut addrs: Vec<String> = p.devices.iter().map(|d| d.address.to_string()).collect();
            addrs.sort();
            json!({"key": p.key, "devices": addrs})
        })
        .collect();
    let filtered: Vec<Value> = case
        .requests
        .iter()
        .map(|spec| {
            let request = PciRequest::from_spec_json(&spec.to_string(), 1).unwrap();
            match set.filter_pools(&request, None) {
                None => Value::Null,
                Some(kept) => {
                    let mut addrs: Vec<String> = kept
                        .iter()
                        .flat_map(|p| p.devices.iter().map(|d| d.address.to_string()))
                        .collect();
                    addrs.sort();
                    json!(addrs)
                }
            }
        })
        .collect();
    json!({"pools": pools, "filtered": filtered})
}

/// Pools compared as a set (Nova's order among pools of equal size is insertion order, as
/// is pcitrack's, but the comparison should not hinge on it).
fn normalised(answer: &Value) -> Value {
    let mut out = answer.clone();
    if let Some(pools) = out.get_mut("pools").and_then(Value::as_array_mut) {
        pools.sort_by_key(Value::to_string);
    }
    out
}

const PF: &str = "0000:0a:00.0";

fn sriov_devices() -> Vec<Dev> {
    vec![
        (PF, "8086", "1572", DevType::Pf, Some(0), None),
        (
            "0000:0a:02.0",
            "8086",
            "154c",
            DevType::Vf,
            Some(0),
            Some(PF),
        ),
        (
            "0000:0a:02.1",
            "8086",
            "154c",
            DevType::Vf,
            Some(0),
            Some(PF),
        ),
        ("0000:0b:00.0", "10de", "1eb8", DevType::Pci, Some(1), None),
        ("0000:0c:00.0", "10de", "1eb8", DevType::Pci, Some(1), None),
        ("0000:0d:00.0", "10de", "1eb8", DevType::Pci, None, None),
    ]
}

/// Requests over the live_migratable values on both sides, and the ignored keys.
fn requests() -> Vec<Value> {
    let gpu = |extra: Value| {
        let mut spec = json!({"vendor_id": "10de", "product_id": "1eb8"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec
    };
    vec![
        json!([gpu(json!({}))]),
        json!([gpu(json!({"live_migratable": "true"}))]),
        json!([gpu(json!({"live_migratable": "false"}))]),
        json!([gpu(json!({"live_migratable": "True"}))]),
        json!([gpu(json!({"live_migratable": true}))]),
        json!([gpu(json!({"live_migratable": "true"})), gpu(json!({}))]),
        json!([
            gpu(json!({"live_migratable": "true"})),
            gpu(json!({"live_migratable": "false"}))
        ]),
        json!([gpu(
            json!({"resource_class": "CUSTOM_GPU", "traits": "A,B"})
        )]),
        json!([gpu(json!({"rp_uuids": "x,y", "rp_uuid": "z"}))]),
        json!([{"dev_type": "type-VF", "live_migratable": "true"}]),
        json!([{"dev_type": "type-PF", "resource_class": "NIC"}]),
        json!([]),
    ]
}

fn cases() -> Vec<Case> {
    vec![
        // resource_class and traits on every kind; two specs that differ only in them.
        Case {
            device_spec: vec![
                json!({"vendor_id": "8086", "resource_class": "my-nic", "traits": "a,HW_NIC_SRIOV",
                       "physical_network": "physnet1"}),
                json!({"address": "*:0b:*.*", "resource_class": "CUSTOM_GPU", "traits": "fast",
                       "live_migratable": "yes"}),
                json!({"address": "*:0c:*.*", "resource_class": "pgpu", "traits": "slow",
                       "live_migratable": true}),
                json!({"address": "*:0d:*.*", "live_migratable": "0", "rp_uuid": "u",
                       "rp_uuids": "v"}),
            ],
            report_in_placement: false,
            devices: sriov_devices(),
            requests: requests(),
        },
        // live_migratable absent on the GPUs, false on the VFs.
        Case {
            device_spec: vec![
                json!({"vendor_id": "8086", "product_id": "154c", "live_migratable": "false"}),
                json!({"vendor_id": "10de"}),
            ],
            report_in_placement: false,
            devices: sriov_devices(),
            requests: requests(),
        },
        // one_time_use: refused without report_in_placement, accepted with it.
        Case {
            device_spec: vec![json!({"vendor_id": "10de", "one_time_use": true})],
            report_in_placement: false,
            devices: sriov_devices(),
            requests: vec![],
        },
        Case {
            device_spec: vec![
                json!({"vendor_id": "10de", "address": "*:0b:*.*", "one_time_use": "yes"}),
                json!({"vendor_id": "10de", "one_time_use": "false"}),
                json!({"vendor_id": "8086", "product_id": "1572", "one_time_use": "true"}),
            ],
            report_in_placement: true,
            devices: sriov_devices(),
            requests: vec![
                json!([{"vendor_id": "10de"}]),
                json!([{"vendor_id": "10de", "one_time_use": "true"}]),
                json!([{"dev_type": "type-PF"}]),
            ],
        },
        // A bad boolean tag is refused with Nova's message.
        Case {
            device_spec: vec![json!({"vendor_id": "10de", "live_migratable": "maybe"})],
            report_in_placement: true,
            devices: vec![],
            requests: vec![],
        },
    ]
}

fn traits_cases() -> Vec<&'static str> {
    vec![
        "",
        "HW_CPU_X86_AVX",
        "hw_cpu_x86_avx",
        "a,B,,HW_CPU_X86_AVX, x",
        "CUSTOM_a-b,custom_Z",
        "my trait!!,ÿ,ß",
        "COMPUTE_MANAGED_PCI_DEVICE,HW_PCI_LIVE_MIGRATABLE",
        "a,a,A",
    ]
}

fn resource_class_cases() -> Vec<(Option<&'static str>, &'static str, &'static str)> {
    vec![
        (None, "8086", "154c"),
        (Some(""), "10de", "1eb8"),
        (Some("pgpu"), "10de", "1eb8"),
        (Some("PGPU"), "10de", "1eb8"),
        (Some("my-gpu"), "10de", "1eb8"),
        (Some("custom_x-y"), "10de", "1eb8"),
        (Some("VGPU"), "10de", "1eb8"),
        (Some("a  b"), "10de", "1eb8"),
        (Some("ß"), "10de", "1eb8"),
    ]
}

#[test]
fn spec_tags_agree_with_nova() {
    let Some(python) = pcitrack_nova_oracle::python("spec_tags_nova::spec_tags_agree_with_nova")
    else {
        return;
    };
    let cases = cases();
    let input = json!({
        "pools": cases.iter().map(|c| json!({
            "device_spec": c.device_spec.iter().map(Value::to_string).collect::<Vec<_>>(),
            "report_in_placement": c.report_in_placement,
            "devices": c.devices.iter().map(dev_json).collect::<Vec<_>>(),
            "requests": c.requests,
        })).collect::<Vec<_>>(),
        "traits": traits_cases(),
        "resource_classes": resource_class_cases()
            .iter()
            .map(|(rc, v, p)| json!([rc, v, p]))
            .collect::<Vec<_>>(),
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/nova_spec_tags.py"
    );
    let nova = pcitrack_nova_oracle::run(&python, script.as_ref(), &input);

    let nova_pools = nova["pools"].as_array().expect("pool answers");
    assert_eq!(nova_pools.len(), cases.len());
    for (case, nova) in cases.iter().zip(nova_pools) {
        assert_eq!(
            normalised(&pcitrack_answer(case)),
            normalised(nova),
            "device_spec {:?} (report_in_placement {})",
            case.device_spec,
            case.report_in_placement
        );
    }
    for (t, nova) in traits_cases()
        .iter()
        .zip(nova["traits"].as_array().unwrap())
    {
        let ours: Vec<String> = normalize_traits(t).into_iter().collect();
        assert_eq!(json!(ours), *nova, "traits {t:?}");
    }
    for ((rc, v, p), nova) in resource_class_cases()
        .iter()
        .zip(nova["resource_classes"].as_array().unwrap())
    {
        assert_eq!(
            json!(resource_class(*rc, v, p)),
            *nova,
            "resource_class {rc:?}"
        );
    }
    println!(
        "compared {} device_spec cases, {} traits and {} resource classes with Nova",
        cases.len(),
        traits_cases().len(),
        resource_class_cases().len()
    );
}

fn gpu_pools(tags_by_device: &[(&str, Value)]) -> PoolSet {
    PoolSet::from_devices(tags_by_device.iter().map(|(a, tags)| {
        let tags: BTreeMap<String, String> = tags
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), pcitrack_tracker::pools::carried(v)))
            .collect();
        (
            pool_key("10de", "1eb8", Some(0), DevType::Pci, &tags, false, None),
            PoolEntry {
                address: a.parse().unwrap(),
                parent_addr: None,
                dev_type: DevType::Pci,
            },
        )
    }))
}

fn kept(set: &PoolSet, request: &PciRequest) -> BTreeSet<String> {
    set.filter_pools(request, None)
        .unwrap_or_default()
        .iter()
        .flat_map(|p| p.devices.iter().map(|d| d.address.to_string()))
        .collect()
}

#[test]
fn regression_resource_class_and_traits_kept_out_of_pool_keys() {
    // Two GPUs that differ only in their Placement names are one pool, as in Nova.
    let set = gpu_pools(&[
        (
            "0000:0b:00.0",
            json!({"resource_class": "CUSTOM_A", "traits": "X"}),
        ),
        (
            "0000:0c:00.0",
            json!({"resource_class": "CUSTOM_B", "traits": "Y,Z"}),
        ),
    ]);
    assert_eq!(set.pools().len(), 1, "{:?}", set.pools());
    let key = &set.pools()[0].key;
    assert!(
        !key.contains_key("resource_class") && !key.contains_key("traits"),
        "{key:?}"
    );
    // A request naming a resource class or traits is not filtered on them here (Placement
    // matches them).
    let request = PciRequest::from_spec_json(
        r#"{"vendor_id": "10de", "resource_class": "CUSTOM_OTHER", "traits": "W"}"#,
        2,
    )
    .unwrap();
    assert_eq!(kept(&set, &request).len(), 2);
}

#[test]
fn regression_live_migratable_filters_pools() {
    // The alias form (H1's schema): live_migratable read strictly and normalised.
    let aliases = AliasTable::parse(&[
        r#"{"name": "lm", "vendor_id": "10de", "product_id": "1eb8", "live_migratable": "yes"}"#,
        r#"{"name": "nolm", "vendor_id": "10de", "product_id": "1eb8", "live_migratable": "no"}"#,
        r#"{"name": "any", "vendor_id": "10de", "product_id": "1eb8"}"#,
    ])
    .expect("Nova 34 accepts live_migratable in an alias");
    // A vendor tagger may write an unnormalised value: Nova's filter compares exactly.
    let set = gpu_pools(&[
        ("0000:0b:00.0", json!({"live_migratable": "true"})),
        ("0000:0c:00.0", json!({"live_migratable": "false"})),
        ("0000:0d:00.0", json!({})),
        ("0000:0e:00.0", json!({"live_migratable": "TRUE"})),
    ]);
    let req = |name: &str| aliases.request(name, 1, None).unwrap();
    assert_eq!(
        kept(&set, &req("lm")),
        BTreeSet::from(["0000:0b:00.0".to_string()])
    );
    assert_eq!(
        kept(&set, &req("nolm")),
        BTreeSet::from(["0000:0c:00.0".to_string()])
    );
    assert_eq!(kept(&set, &req("any")).len(), 4);
}

#[test]
fn regression_one_time_use_always_refused() {
    let spec = r#"{"vendor_id": "10de", "one_time_use": true}"#;
    let off = json!({"device_spec": [spec]});
    let e = whitelist_from_config(&off.to_string()).unwrap_err();
    assert_eq!(
        e.message,
        "Invalid [pci]device_spec config: one_time_use=true requires pci.report_in_placement \
         to be enabled"
    );
    let on = json!({"device_spec": [spec], "report_in_placement": true});
    let wl = whitelist_from_config(&on.to_string()).expect("accepted under report_in_placement");
    assert_eq!(wl.specs()[0].tags().get("one_time_use"), Some("true"));
    // Only PCI and PF devices may carry it (Nova's translator, `add_child`).
    assert_eq!(wl.check_one_time_use(0, false, "0000:0b:00.0"), Ok(()));
    assert_eq!(
        wl.check_one_time_use(0, true, "0000:0b:02.0").unwrap_err(),
        "Only type-PCI and type-PF devices may set one_time_use and 0000:0b:02.0 does not qualify"
    );
}

#[test]
fn a_profile_reports_its_placement_names() {
    let device: Device = serde_json::from_value(json!({
        "address": "0000:0b:00.0", "vendor_id": "10de", "product_id": "1eb8",
        "dev_type": "type-PF", "class_code": "030000"
    }))
    .unwrap();
    let tags = |t: Value| -> BTreeMap<String, String> {
        t.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), pcitrack_tracker::pools::carried(v)))
            .collect()
    };
    let profile = Profile {
        device,
        tags: tags(
            json!({"resource_class": "gpu", "traits": "fast,HW_GPU_API_VULKAN",
                           "live_migratable": "true", "one_time_use": "true"}),
        )
        .into(),
        remote_managed: false,
        decided_by: "test".into(),
        parent_ifname: None,
    };
    assert_eq!(profile.resource_class(), "CUSTOM_GPU");
    assert!(profile.one_time_use());
    assert_eq!(
        profile.traits(),
        BTreeSet::from(
            [
                "COMPUTE_MANAGED_PCI_DEVICE",
                "CUSTOM_FAST",
                "HW_GPU_API_VULKAN",
                "HW_PCI_LIVE_MIGRATABLE",
                "HW_PCI_ONE_TIME_USE"
            ]
            .map(String::from)
        )
    );
    assert!(!profile.pool_key().contains_key("resource_class"));
    let plain = Profile {
        tags: Default::default(),
        ..profile
    };
    assert_eq!(plain.resource_class(), "CUSTOM_PCI_10DE_1EB8");
    assert_eq!(
        plain.traits(),
        BTreeSet::from(["COMPUTE_MANAGED_PCI_DEVICE".to_string()])
    );
}
