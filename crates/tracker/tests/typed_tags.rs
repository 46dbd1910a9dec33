//! Tag values keep Nova's type from the device_spec to the pools, and every room reads
//! oslo's booleans the same way.
//!
//! Nova keeps a device_spec tag with its JSON type (`"trusted": true` is Python `True`)
//! and compares pool values with request values by Python `==` after lower-casing strings
//! (`nova/pci/utils.py` `pci_device_prop_match`); a request's values are coerced to
//! nullable strings by `objects.InstancePCIRequest`. So a JSON boolean tag matches no
//! request, while a string tag `"true"` matches a request's `"true"` and its `true` (which
//! arrives as `"True"`). `CASES` pins Nova 34.0.0's answers; with `PCITRACK_NOVA_PYTHON`
//! naming a Python with Nova installed, `agrees_with_nova` asks Nova itself
//! (`oracle/nova_prop_match.py`).

use std::collections::BTreeMap;

use pcitrack_model::tag_value::bool_from_tag;
use pcitrack_model::{DevType, PciAddress};
use pcitrack_tracker::pools::{PoolEntry, carried, pool_key, spec_matches};
use pcitrack_tracker::{PciRequest, PoolSet};
use serde_json::{Value, json};

/// (device_spec tags, request spec, Nova's answer: does the pool pass the spec filter).
fn cases() -> Vec<(Value, Value, bool)> {
    vec![
        (json!({"trusted": true}), json!({"trusted": "true"}), false),
        (json!({"trusted": true}), json!({"trusted": true}), false),
        (json!({"trusted": true}), json!({"trusted": "True"}), false),
        (json!({"trusted": "true"}), json!({"trusted": "true"}), true),
        (json!({"trusted": "true"}), json!({"trusted": true}), true),
        (json!({"trusted": "TRUE"}), json!({"trusted": "true"}), true),
        (
            json!({"trusted": false}),
            json!({"trusted": "false"}),
            false,
        ),
        (json!({"x": null}), json!({"x": null}), true),
        (json!({"x": null}), json!({"y": null}), true),
        (json!({"x": null}), json!({"x": "None"}), false),
        (json!({"n": 1}), json!({"n": "1"}), false),
        (json!({"n": 1}), json!({"n": 1}), false),
        (json!({"trusted": "true"}), json!({"numa_node": "0"}), false),
        (json!({"trusted": "true"}), json!({"numa_node": 0}), false),
        (
            json!({"trusted": "true"}),
            json!({"dev_type": "TYPE-vf"}),
            true,
        ),
        (
            json!({"remote_managed": true}),
            json!({"remote_managed": "true"}),
            false,
        ),
        (
            json!({"remote_managed": "true"}),
            json!({"remote_managed": true}),
            true,
        ),
        (
            json!({"remote_managed": null}),
            json!({"remote_managed": "false"}),
            true,
        ),
        (
            json!({"physical_network": "PhysNet1"}),
            json!({"physical_network": "physnet1"}),
            true,
        ),
        // Python's str.lower(): a final capital sigma lower-cases to a final small sigma.
        (
            json!({"physical_network": "ΟΔΟΣ"}),
            json!({"physical_network": "οδος"}),
            true,
        ),
        (
            json!({"physical_network": "ΟΔΟΣ"}),
            json!({"physical_network": "οδοσ"}),
            false,
        ),
        // A string that starts with the carried form's marker is still a string.
        (
            json!({"trusted": "\u{1}true"}),
            json!({"trusted": "\u{1}TRUE"}),
            true,
        ),
        (
            json!({"trusted": "\u{1}true"}),
            json!({"trusted": "true"}),
            false,
        ),
    ]
}

/// The pool key pcitrack builds for a VF 8086:154c on NUMA node 0 that a spec with these
/// tags matched: the matcher carries the tags (devspec's `Tag::value`), the runtime derives
/// the `remote_managed` pooling value from them, the tracker builds the key.
fn key_for(tags: &Value) -> pcitrack_tracker::PoolKey {
    let tags: BTreeMap<String, String> = tags
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), carried(v)))
        .collect();
    let remote_managed = tags.get("remote_managed").is_some_and(|v| bool_from_tag(v));
    pool_key(
        "8086",
        "154c",
        Some(0),
        DevType::Vf,
        &tags,
        remote_managed,
        None,
    )
}

fn pcitrack_answer(tags: &Value, request: &Value) -> bool {
    let request = PciRequest::from_spec_json(&request.to_string(), 1).unwrap();
    spec_matches(&key_for(tags), &request)
}

#[test]
fn typed_tags_match_requests_as_in_nova() {
    for (tags, request, nova) in cases() {
        assert_eq!(
            pcitrack_answer(&tags, &request),
            nova,
            "device_spec tags {tags}, request {request}"
        );
    }
}

#[test]
fn agrees_with_nova() {
    let Some(python) = pcitrack_nova_oracle::python("typed_tags::agrees_with_nova") else {
        return;
    };
    let cases = cases();
    let batch: Vec<Value> = cases
        .iter()
        .map(|(tags, request, _)| json!({"spec": tags, "request": request}))
        .collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/nova_prop_match.py"
    );
    let answer = pcitrack_nova_oracle::run(&python, script.as_ref(), &Value::from(batch));
    let nova: Vec<bool> = serde_json::from_value(answer).expect("oracle answers are booleans");
    assert_eq!(nova.len(), cases.len());
    for ((tags, request, pinned), nova) in cases.iter().zip(nova) {
        assert_eq!(
            *pinned, nova,
            "pinned answer for {tags} / {request} is not Nova's"
        );
        assert_eq!(pcitrack_answer(tags, request), nova, "{tags} / {request}");
    }
    println!("compared {} typed-tag cases with Nova", cases.len());
}

fn vf(function: u8) -> PoolEntry {
    PoolEntry {
        address: PciAddress::new(0, 0x0a, 2, function).unwrap(),
        parent_addr: Some(PciAddress::new(0, 0x0a, 0, 0).unwrap()),
        dev_type: DevType::Vf,
    }
}

fn request(spec: Value) -> PciRequest {
    PciRequest::from_spec_json(&spec.to_string(), 1).unwrap()
}

#[test]
fn regression_json_bool_tag_does_not_match_string_request() {
    // device_spec `{"trusted": true}` (JSON boolean) and `{"trusted": "true"}` (string).
    let typed = PoolSet::from_devices([(key_for(&json!({"trusted": true})), vf(1))]);
    let text = PoolSet::from_devices([(key_for(&json!({"trusted": "true"})), vf(2))]);
    // The pool shows Nova's value: a JSON boolean, not the string.
    assert_eq!(typed.pools()[0].key["trusted"], json!(true));
    assert_eq!(text.pools()[0].key["trusted"], json!("true"));
    for r in [json!({"trusted": "true"}), json!({"trusted": true})] {
        assert!(
            typed.filter_pools(&request(r.clone()), None).is_none(),
            "{r}"
        );
        assert!(
            text.filter_pools(&request(r.clone()), None).is_some(),
            "{r}"
        );
    }
    // numa_node is an integer in Nova's pools: a request's "0" is a string.
    assert!(
        text.filter_pools(&request(json!({"numa_node": "0"})), None)
            .is_none()
    );
    // Nova's has_remote_managed_device_pools asks for `{'remote_managed': True}`, coerced to
    // 'True': a JSON `true` tag does not count, a string "true" does.
    let rm_typed = PoolSet::from_devices([(key_for(&json!({"remote_managed": true})), vf(3))]);
    let rm_text = PoolSet::from_devices([(key_for(&json!({"remote_managed": "true"})), vf(4))]);
    assert!(!rm_typed.has_remote_managed_device_pools());
    assert!(rm_text.has_remote_managed_device_pools());
}

#[test]
fn regression_oslo_bool_x1c_true_reads_true_everywhere() {
    // A spec's `"remote_managed": "\x1ctrue"` is remote-managed to Nova (Python's strip()
    // removes U+001C): the pooling value is true and the pool is kept from requests that do
    // not ask for remote-managed devices.
    let tags = json!({"remote_managed": "\u{1c}true"});
    let set = PoolSet::from_devices([(key_for(&tags), vf(1))]);
    assert_eq!(set.pools()[0].key["remote_managed"], json!("\u{1c}true"));
    assert!(
        set.filter_pools(&request(json!({"vendor_id": "8086"})), None)
            .is_none()
    );
    // A request whose remote_managed reads true the same way may use it.
    assert!(
        set.filter_pools(&request(json!({"remote_managed": "\u{1c}TRUE"})), None)
            .is_some()
    );
    // And a request's "\x1fyes" asks for remote-managed devices.
    let plain = PoolSet::from_devices([(key_for(&json!({"remote_managed": "yes"})), vf(2))]);
    assert!(
        plain
            .filter_pools(&request(json!({"remote_managed": "\u{1f}yes"})), None)
            .is_none(),
        "the spec filter compares strings: \\x1fyes is not yes"
    );
    assert!(
        plain
            .filter_pools(
                &request(json!({"vendor_id": "8086", "remote_managed": "YES"})),
                None
            )
            .is_some()
    );
}
