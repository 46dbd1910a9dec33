//! `[pci] alias` parsed and validated as Nova 34 does at start (`nova/pci/request.py`
//! `get_alias_from_config`, `_validate_aliases`): the schema with `resource_class`, `traits`
//! and `live_migratable`, the 2025 rules (ids or `resource_class` required, one spec per
//! alias under `[filter_scheduler] pci_in_placement`), same-name agreement, and Nova's
//! messages word for word.
//!
//! `cases` pins Nova 34.0.0's answers; with `PCITRACK_NOVA_PYTHON` naming a Python with Nova
//! installed, `agrees_with_nova` asks Nova itself (`oracle/nova_alias.py`, every case in one
//! process). Two documented differences: an entry that is not JSON gets serde_json's wording
//! after Nova's prefix, and a same-name alias without `device_type` (Nova's bare
//! `KeyError`, "'dev_type'") gets Nova's text followed by an explanation.

use pcitrack_tracker::{AliasError, AliasTable};
use serde_json::{Value, json};

const PREFIX: &str = "Invalid PCI alias definition: ";
const STRICT_BOOL: &str = "acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', \
                           'on', 't', 'true', 'y', 'yes'";

/// One case: the alias entries, `pci_in_placement`, and Nova's answer (`Ok` or its message).
struct Case {
    alias: Vec<&'static str>,
    pci_in_placement: bool,
    nova: Result<(), String>,
}

fn ok(alias: &[&'static str], pip: bool) -> Case {
    Case {
        alias: alias.to_vec(),
        pci_in_placement: pip,
        nova: Ok(()),
    }
}

fn refused(alias: &[&'static str], pip: bool, message: &str) -> Case {
    Case {
        alias: alias.to_vec(),
        pci_in_placement: pip,
        nova: Err(message.to_string()),
    }
}

const VF: &str = r#"{"name": "vf", "vendor_id": "8086", "product_id": "154c"}"#;

fn cases() -> Vec<Case> {
    let inv = |m: &str| format!("{PREFIX}{m}");
    vec![
        // Accepted.
        ok(&[VF], false),
        ok(&[VF], true),
        ok(&[], false),
        ok(
            &[
                r#"{"name": "QuickAssist", "capability_type": "pci", "product_id": "4443", "vendor_id": "8086", "device_type": "type-PCI", "numa_policy": "legacy"}"#,
                r#"{"name": "QuickAssist", "product_id": "4444", "vendor_id": "8086", "device_type": "type-PCI"}"#,
            ],
            false,
        ),
        ok(
            &[
                r#"{"name": "nic", "vendor_id": "15b3", "product_id": "1018", "device_type": "type-VF", "numa_policy": "socket", "resource_class": "CUSTOM_NIC", "traits": "CUSTOM_FAST,HW_NIC_SRIOV", "live_migratable": "yes"}"#,
            ],
            false,
        ),
        ok(
            &[r#"{"name": "rc", "resource_class": "custom_gpu", "traits": "a,b"}"#],
            true,
        ),
        ok(
            &[
                r#"{"name": "lm", "vendor_id": "8086", "product_id": "154C", "live_migratable": " OFF "}"#,
            ],
            false,
        ),
        ok(
            &[
                r#"{"name": " spaced ", "vendor_id": "8086", "product_id": "1111", "numa_policy": "preferred"}"#,
            ],
            false,
        ),
        ok(
            &["{\"name\": \"nl\", \"vendor_id\": \"8086\\n\", \"product_id\": \"1111\"}"],
            false,
        ),
        // Refused: the issue's smallest input, a typo in the second entry.
        refused(
            &[
                VF,
                r#"{"name": "vf2", "vendor_id": "8086", "product_id": "154c", "device_typ": "type-VF"}"#,
            ],
            false,
            &inv("Additional properties are not allowed ('device_typ' was unexpected)"),
        ),
        // An alias with no ids (pcitrack used to match it to any PF).
        refused(
            &[r#"{"name": "anypf", "device_type": "type-PF"}"#],
            false,
            "The PCI alias(es) anypf does not have vendor_id and product_id fields set.",
        ),
        refused(
            &[
                r#"{"name": "b", "vendor_id": "8086"}"#,
                VF,
                r#"{"name": "a", "product_id": "1111"}"#,
            ],
            false,
            "The PCI alias(es) a,b does not have vendor_id and product_id fields set.",
        ),
        // resource_class stands in for the ids only under pci_in_placement.
        refused(
            &[r#"{"name": "rc", "resource_class": "CUSTOM_GPU"}"#],
            false,
            "The PCI alias(es) rc does not have vendor_id and product_id fields set.",
        ),
        refused(
            &[r#"{"name": "none", "traits": "CUSTOM_X"}"#],
            true,
            "The PCI alias(es) none does not have vendor_id and product_id fields set or \
             resource_class field set.",
        ),
        // One spec per alias under pci_in_placement (names in definition order).
        refused(
            &[
                r#"{"name": "z", "vendor_id": "8086", "product_id": "1111", "device_type": "type-PCI"}"#,
                r#"{"name": "a", "resource_class": "X", "device_type": "type-PF"}"#,
                r#"{"name": "z", "vendor_id": "8086", "product_id": "2222", "device_type": "type-PCI"}"#,
                r#"{"name": "a", "resource_class": "Y", "device_type": "type-PF"}"#,
            ],
            true,
            "The PCI alias(es) z,a have multiple specs but [filter_scheduler]pci_in_placement is \
             True. The PCI in Placement feature only supports one spec per alias. You can \
             assign the same resource_class to multiple [pci]device_spec matchers to allow \
             using different devices for the same alias.",
        ),
        refused(
            &[
                r#"{"name": "x", "product_id": "1111", "vendor_id": "8086", "device_type": "type-PF"}"#,
                r#"{"name": "x", "product_id": "1111", "vendor_id": "8086", "device_type": "type-PCI"}"#,
            ],
            false,
            &inv("Device type mismatch for alias 'x'"),
        ),
        refused(
            &[
                r#"{"name": "x", "product_id": "1111", "vendor_id": "8086", "numa_policy": "required"}"#,
                r#"{"name": "x", "product_id": "1111", "vendor_id": "8086", "numa_policy": "legacy"}"#,
            ],
            false,
            &inv("NUMA policy mismatch for alias 'x'"),
        ),
        refused(
            &[
                r#"{"name": "x", "product_id": "1111", "vendor_id": "8086"}"#,
                r#"{"name": "x", "product_id": "2222", "vendor_id": "8086"}"#,
            ],
            false,
            &inv("'dev_type'"),
        ),
        refused(
            &[
                r#"{"name": "lm", "vendor_id": "8086", "product_id": "1111", "live_migratable": "maybe"}"#,
            ],
            false,
            &inv(&format!("Unrecognized value 'maybe', {STRICT_BOOL}")),
        ),
        refused(
            &[
                r#"{"name": "lm", "vendor_id": "8086", "product_id": "1111", "live_migratable": true}"#,
            ],
            false,
            &inv("True is not of type 'string'"),
        ),
        refused(
            &[r#"{"name": "t", "vendor_id": "8086", "product_id": "1111", "traits": ["A", "B"]}"#],
            false,
            &inv("['A', 'B'] is not of type 'string'"),
        ),
        refused(
            &[
                r#"{"name": "r", "vendor_id": "8086", "product_id": "1111", "resource_class": null}"#,
            ],
            false,
            &inv("None is not of type 'string'"),
        ),
        refused(
            &[r#"{"name": "", "vendor_id": "8086", "product_id": "1111"}"#],
            false,
            &inv("'' should be non-empty"),
        ),
        refused(
            &[r#"{"name": "xxx", "device_type": "vdpa"}"#],
            false,
            &inv("'vdpa' is not one of ['type-PCI', 'type-PF', 'type-VF']"),
        ),
        refused(
            &[r#"{"name": "xxx", "numa_policy": "derp"}"#],
            false,
            &inv("'derp' is not one of ['required', 'legacy', 'preferred', 'socket']"),
        ),
        // jsonschema's best match: among property errors, the property that sorts last.
        refused(
            &[r#"{"name": 1, "device_type": "x"}"#],
            false,
            &inv("1 is not of type 'string'"),
        ),
        refused(
            &[r#"{"name": "a", "vendor_id": "zz", "product_id": "yy"}"#],
            false,
            &inv(r"'zz' does not match '^([\\da-fA-F]{4})$'"),
        ),
        refused(
            &[r#"{"vendor_id": "zz", "foo": 1, "bar": 2}"#],
            false,
            &inv("Additional properties are not allowed ('bar', 'foo' were unexpected)"),
        ),
        refused(
            &[r#"{"vendor_id": "zz"}"#],
            false,
            &inv("'name' is a required property"),
        ),
        refused(&[r#"["a"]"#], false, &inv("['a'] is not of type 'object'")),
        refused(
            &[r#"{"name": "#],
            false,
            &inv("Expecting value: line 1 column 10 (char 9)"),
        ),
    ]
}

/// pcitrack's answer to a case, in the oracle's shape.
fn pcitrack(case: &Case) -> Result<Value, AliasError> {
    let table = AliasTable::from_config(&case.alias, case.pci_in_placement).map_err(|e| e.error)?;
    Ok(table
        .aliases
        .iter()
        .map(|(name, a)| (name.clone(), json!([a.numa_policy.as_str(), a.specs])))
        .collect::<serde_json::Map<_, _>>()
        .into())
}

/// Whether pcitrack's message is Nova's, allowing the two documented differences.
fn same_message(ours: &str, nova: &str) -> bool {
    if ours == nova {
        return true;
    }
    let json_syntax = nova.starts_with(PREFIX) && nova.contains("(char ");
    let dev_type_key = nova == format!("{PREFIX}'dev_type'");
    (json_syntax && ours.starts_with(PREFIX) && ours.contains("line 1 column"))
        || (dev_type_key && ours.starts_with(nova))
}

#[test]
fn aliases_are_accepted_and_refused_as_in_nova_34() {
    for case in cases() {
        let ours = pcitrack(&case);
        match (&case.nova, &ours) {
            (Ok(()), Ok(_)) => {}
            (Err(nova), Err(e)) => assert!(
                same_message(&e.to_string(), nova),
                "{:?}: pcitrack says {e}, Nova says {nova}",
                case.alias
            ),
            (nova, ours) => panic!("{:?}: Nova {nova:?}, pcitrack {ours:?}", case.alias),
        }
    }
}

#[test]
fn agrees_with_nova() {
    let Some(python) = pcitrack_nova_oracle::python("alias_nova::agrees_with_nova") else {
        return;
    };
    let cases = cases();
    let batch: Vec<Value> = cases
        .iter()
        .map(|c| json!({"alias": c.alias, "pci_in_placement": c.pci_in_placement}))
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/nova_alias.py");
    let answers = pcitrack_nova_oracle::run(&python, script.as_ref(), &Value::from(batch));
    let answers = answers.as_array().expect("a list of answers");
    assert_eq!(answers.len(), cases.len());
    for (case, nova) in cases.iter().zip(answers) {
        let ours = pcitrack(case);
        if nova["ok"] == true {
            assert!(
                case.nova.is_ok(),
                "{:?}: pinned {:?}, Nova accepts",
                case.alias,
                case.nova
            );
            let ours =
                ours.unwrap_or_else(|e| panic!("{:?}: Nova accepts, pcitrack: {e}", case.alias));
            assert_eq!(ours, nova["aliases"], "{:?}: the parsed table", case.alias);
        } else {
            let message = nova["error"].as_str().unwrap();
            assert_eq!(
                case.nova.as_ref().map_err(String::as_str),
                Err(message),
                "{:?}: pinned answer",
                case.alias
            );
            let e = ours.expect_err(message);
            assert!(
                same_message(&e.to_string(), message),
                "{:?}: pcitrack says {e}, Nova says {message}",
                case.alias
            );
        }
    }
    println!("compared {} alias configurations with Nova 34", cases.len());
}

#[test]
fn regression_an_alias_with_nova_2023_and_2025_keys_is_accepted_and_keeps_them() {
    let table = AliasTable::from_config(
        &[r#"{"name": "nic", "vendor_id": "15b3", "product_id": "1018", "resource_class": "custom_nic", "traits": "HW_NIC_SRIOV,fast", "live_migratable": "True"}"#],
        false,
    )
    .unwrap();
    let spec = &table.aliases["nic"].specs[0];
    assert_eq!(spec["resource_class"], "custom_nic", "kept as written");
    assert_eq!(spec["traits"], "HW_NIC_SRIOV,fast", "kept as written");
    assert_eq!(spec["live_migratable"], "true", "normalised like Nova");
}

#[test]
fn regression_a_bad_alias_line_is_refused_at_parse_naming_its_entry() {
    // The issue's smallest input: the good alias must not hide the typo in the second one.
    let e = AliasTable::from_config(
        &[
            VF,
            r#"{"name": "vf2", "vendor_id": "8086", "product_id": "154c", "device_typ": "type-VF"}"#,
        ],
        false,
    )
    .unwrap_err();
    assert_eq!(e.entry, 1);
    assert!(e.to_string().starts_with("alias[1] "), "{e}");
    assert!(e.to_string().contains("'device_typ' was unexpected"), "{e}");
}

#[test]
fn regression_an_alias_without_ids_is_refused_not_matched_to_any_device() {
    let e = AliasTable::from_config(
        &[VF, r#"{"name": "anypf", "device_type": "type-PF"}"#],
        false,
    )
    .unwrap_err();
    assert_eq!(e.entry, 1, "the entry that breaks the rule");
    assert!(matches!(e.error, AliasError::Table(_)), "{e:?}");
}

#[test]
fn a_table_rule_names_the_first_entry_that_breaks_it() {
    let e = AliasTable::from_config(
        &[
            VF,
            r#"{"name": "a", "resource_class": "X", "device_type": "type-PF"}"#,
            r#"{"name": "a", "resource_class": "Y", "device_type": "type-PF"}"#,
        ],
        true,
    )
    .unwrap_err();
    assert_eq!(e.entry, 2, "{e}");
    assert!(e.to_string().contains("have multiple specs"), "{e}");
}
