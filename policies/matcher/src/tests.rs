//! The matcher through its SDK trait, on small inventories.

use pcitrack_policy_sdk::{
    Device, DeviceKind, Inventory, MatchOutput, MatchVerdict, Matcher, Netdev, PciAddress,
    SerialNumber, Tag,
};

use crate::{NO_MATCH, NONE_CONFIGURED, NovaMatcher};

fn addr(bus: u8, slot: u8, function: u8) -> PciAddress {
    PciAddress {
        domain: 0,
        bus,
        slot,
        function,
    }
}

fn device(a: PciAddress, vendor_id: u16, product_id: u16, parent: Option<PciAddress>) -> Device {
    Device {
        address: a,
        vendor_id,
        product_id,
        class_code: 0x020000,
        kind: if parent.is_some() {
            DeviceKind::VirtualFunction
        } else {
            DeviceKind::Standard
        },
        parent,
        numa_node: None,
        vf_product_id: None,
        total_vfs: 0,
        vf_index: None,
    }
}

/// A PF 0a:00.0 (8086:1572, VFs 154c) with VFs 0a:02.0 and 0a:02.1, a plain NIC 0b:00.0,
/// a Mellanox PF 81:00.0 with one VF; netdev ens1f0 on the Intel PF.
fn inventory() -> Inventory {
    let pf = addr(0x0a, 0, 0);
    let mlx = addr(0x81, 0, 0);
    let mut intel_pf = device(pf, 0x8086, 0x1572, None);
    intel_pf.kind = DeviceKind::PhysicalFunction;
    intel_pf.total_vfs = 64;
    intel_pf.vf_product_id = Some(0x154c);
    let mut mlx_pf = device(mlx, 0x15b3, 0x101d, None);
    mlx_pf.kind = DeviceKind::PhysicalFunction;
    mlx_pf.total_vfs = 8;
    mlx_pf.vf_product_id = Some(0x101e);
    Inventory {
        devices: vec![
            intel_pf,
            device(addr(0x0a, 2, 0), 0x8086, 0x154c, Some(pf)),
            device(addr(0x0a, 2, 1), 0x8086, 0x154c, Some(pf)),
            device(addr(0x0b, 0, 0), 0x8086, 0x10fb, None),
            mlx_pf,
            device(addr(0x81, 0, 2), 0x15b3, 0x101e, Some(mlx)),
        ],
        netdevs: vec![Netdev {
            device: 0,
            name: "ens1f0".into(),
            phys_port_name: None,
            mac_address: None,
        }],
        serial_numbers: vec![SerialNumber {
            device: 5,
            value: "MT2113X00000".into(),
        }],
    }
}

fn config(specs: &[&str]) -> String {
    format!("{{\"device_spec\": {}}}", serde_json_list(specs))
}

fn serde_json_list(specs: &[&str]) -> String {
    let quoted: Vec<String> = specs
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// (assigned tags or None, reject reason) per device of the inventory.
fn run(specs: &[&str]) -> Result<Vec<Result<Vec<Tag>, String>>, String> {
    let m = NovaMatcher::init(&config(specs))?;
    let inv = inventory();
    let targets: Vec<u32> = (0..inv.devices.len() as u32).collect();
    let mut out = MatchOutput::with_capacity(targets.len());
    m.evaluate(&inv, &targets, &mut out)?;
    Ok(out
        .verdicts()
        .iter()
        .map(|v| match v {
            MatchVerdict::Assign(i) => Ok(out.tag_set(*i).to_vec()),
            MatchVerdict::Reject(i) => Err(out.reason(*i).to_string()),
            MatchVerdict::Abstain => panic!("the Nova matcher never abstains"),
        })
        .collect())
}

fn assigned(results: &[Result<Vec<Tag>, String>]) -> Vec<bool> {
    results.iter().map(Result::is_ok).collect()
}

#[test]
fn first_match_wins_with_tags_as_written() {
    let r = run(&[
        r#"{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet1", "trusted": "true", "managed": "Yes"}"#,
        r#"{"address": "*:0a:*.*", "physical_network": "physnet2"}"#,
    ])
    .unwrap();
    assert_eq!(assigned(&r), [true, true, true, false, false, false]);
    assert_eq!(
        r[1].as_ref().unwrap(),
        &vec![
            Tag::new("physical_network", "physnet1"),
            Tag::new("trusted", "true"),
            Tag::new("managed", "true")
        ]
    );
    assert_eq!(
        r[0].as_ref().unwrap(),
        &vec![Tag::new("physical_network", "physnet2")]
    );
    assert_eq!(r[3].as_ref().unwrap_err(), NO_MATCH);
}

#[test]
fn pf_address_matches_its_vfs_and_devname_resolves_through_the_inventory() {
    let r = run(&[r#"{"address": "0000:0a:00.0"}"#]).unwrap();
    assert_eq!(assigned(&r), [true, true, true, false, false, false]);
    let r = run(&[r#"{"devname": "ens1f0"}"#]).unwrap();
    assert_eq!(assigned(&r), [true, true, true, false, false, false]);
    let r = run(&[r#"{"devname": "nosuch0"}"#]).unwrap();
    assert_eq!(assigned(&r), [false; 6]);
    // A non-PF single address matches only itself.
    let r = run(&[r#"{"address": "0000:0b:00.0"}"#]).unwrap();
    assert_eq!(assigned(&r), [false, false, false, true, false, false]);
}

#[test]
fn regex_addresses_are_anchored_at_the_start_only() {
    let r = run(&[r#"{"address": {"bus": "0", "function": "[1-7]"}}"#]).unwrap();
    assert_eq!(assigned(&r), [false, false, true, false, false, false]);
}

#[test]
fn invalid_specs_fail_init_with_novas_message() {
    let err = |specs: &[&str]| NovaMatcher::init(&config(specs)).err().unwrap();
    assert_eq!(
        err(&[r#"{"vendor_id": "80860"}"#]),
        "Invalid [pci]device_spec config: property vendor_id (80860) is greater than the maximum allowable value (FFFF)."
    );
    assert_eq!(
        err(&[r#"{"devname": "eth0", "address": "*:0a:*.*"}"#]),
        "Invalid PCI Whitelist: The PCI whitelist can specify devname or address, but not both"
    );
    assert_eq!(
        err(&[r#"{"address": {"bus": "*"}}"#]),
        "The PCI address {'bus': '*'} has an incorrect format."
    );
    assert_eq!(
        err(&["{\"a\":"]),
        "Invalid [pci]device_spec config: Invalid entry: '{\"a\":'"
    );
    assert!(NovaMatcher::init("not json").is_err());
}

#[test]
fn inventory_dependent_errors_fail_evaluate() {
    assert_eq!(
        run(&[r#"{"devname": "nosuch0", "remote_managed": "true"}"#]).unwrap_err(),
        "Invalid PCI Whitelist: A device specified as \"remote_managed\" is not actually present on the host"
    );
    assert_eq!(
        run(&[r#"{"address": "0000:81:00.0", "remote_managed": "true"}"#]).unwrap_err(),
        "0000:81:00.0"
    );
    // Written with the PF's address but the VF's ids: allowed, matches the VFs with a serial.
    let r =
        run(&[r#"{"address": "0000:81:00.0", "product_id": "101e", "remote_managed": "true"}"#])
            .unwrap();
    assert_eq!(assigned(&r), [false, false, false, false, false, true]);
}

#[test]
fn remote_managed_needs_a_serial_and_falls_through_to_later_specs() {
    let r = run(&[
        r#"{"vendor_id": "8086", "product_id": "154c", "remote_managed": "yes"}"#,
        r#"{"vendor_id": "8086", "physical_network": "fallback"}"#,
    ])
    .unwrap();
    // The Intel VFs have no serial: the first spec does not match them, the second does.
    assert_eq!(
        r[1].as_ref().unwrap(),
        &vec![Tag::new("physical_network", "fallback")]
    );
    let r =
        run(&[r#"{"vendor_id": "15b3", "product_id": "101e", "remote_managed": "true"}"#]).unwrap();
    assert_eq!(
        r[5].as_ref().unwrap(),
        &vec![Tag::new("remote_managed", "true")]
    );
}

#[test]
fn empty_config_makes_nothing_assignable() {
    for cfg in ["{}", "{\"device_spec\": []}", ""] {
        let m = NovaMatcher::init(cfg).unwrap();
        let inv = inventory();
        let mut out = MatchOutput::default();
        m.evaluate(&inv, &[0, 3], &mut out).unwrap();
        assert_eq!(out.verdicts().len(), 2);
        assert!(
            out.verdicts()
                .iter()
                .all(|v| matches!(v, MatchVerdict::Reject(i) if out.reason(*i) == NONE_CONFIGURED))
        );
    }
}

#[test]
fn tag_sets_are_registered_once_per_spec() {
    let m = NovaMatcher::init(&config(&[
        r#"{"vendor_id": "8086", "physical_network": "p"}"#,
    ]))
    .unwrap();
    let inv = inventory();
    let mut out = MatchOutput::default();
    m.evaluate(&inv, &[0, 1, 2, 3], &mut out).unwrap();
    assert_eq!(out.verdicts(), &[MatchVerdict::Assign(0); 4]);
}
