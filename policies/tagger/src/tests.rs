//! The tagger through its SDK trait.

use pcitrack_policy_sdk::{
    Candidate, Device, DeviceKind, Inventory, Netdev, PciAddress, SerialNumber, Tag, TagOutput,
    TagVerdict, Tagger,
};

use crate::{NO_SERIAL, RemoteManagedTagger, has_remote_managed_spec};

fn addr(bus: u8, function: u8) -> PciAddress {
    PciAddress {
        domain: 0,
        bus,
        slot: 0,
        function,
    }
}

/// PF 81:00.0 (15b3:101d, VFs 101e) with VFs 81:00.1 (serial) 81:00.2 (empty serial) and
/// 81:00.3 (none); netdev p0 on the PF.
fn inventory() -> Inventory {
    let pf = addr(0x81, 0);
    let dev = |a, product_id, parent: Option<PciAddress>| Device {
        address: a,
        vendor_id: 0x15b3,
        product_id,
        class_code: 0x020000,
        kind: if parent.is_some() {
            DeviceKind::VirtualFunction
        } else {
            DeviceKind::PhysicalFunction
        },
        parent,
        numa_node: None,
        vf_product_id: parent.is_none().then_some(0x101e),
        total_vfs: if parent.is_none() { 8 } else { 0 },
        vf_index: None,
    };
    Inventory {
        devices: vec![
            dev(pf, 0x101d, None),
            dev(addr(0x81, 1), 0x101e, Some(pf)),
            dev(addr(0x81, 2), 0x101e, Some(pf)),
            dev(addr(0x81, 3), 0x101e, Some(pf)),
        ],
        netdevs: vec![Netdev {
            device: 0,
            name: "p0".into(),
            phys_port_name: None,
            mac_address: None,
        }],
        serial_numbers: vec![
            SerialNumber {
                device: 1,
                value: "MT2113X00000".into(),
            },
            SerialNumber {
                device: 2,
                value: String::new(),
            },
        ],
    }
}

fn candidate(device: u32, tags: &[(&str, &str)]) -> (u32, Vec<Tag>) {
    (device, tags.iter().map(|(k, v)| Tag::new(*k, *v)).collect())
}

fn verdicts(
    config: &str,
    candidates: &[(u32, Vec<Tag>)],
) -> Result<Vec<Result<(), String>>, String> {
    let t = RemoteManagedTagger::init(config)?;
    let mut out = TagOutput::default();
    let candidates: Vec<Candidate<'_>> = candidates
        .iter()
        .map(|(device, tags)| Candidate {
            device: *device,
            tags,
        })
        .collect();
    t.evaluate(&inventory(), &candidates, &mut out)?;
    Ok(out
        .verdicts()
        .iter()
        .map(|v| match v {
            TagVerdict::Abstain => Ok(()),
            TagVerdict::Reject(i) => Err(out.reason(*i).to_string()),
            TagVerdict::Retag(_) => panic!("this tagger never retags"),
        })
        .collect())
}

#[test]
fn remote_managed_devices_need_a_serial() {
    let c = [
        candidate(1, &[("remote_managed", "true")]),
        candidate(2, &[("remote_managed", "Yes")]),
        candidate(3, &[("remote_managed", "1"), ("physical_network", "p")]),
        candidate(3, &[("remote_managed", "nope")]),
        candidate(3, &[("physical_network", "p")]),
    ];
    let v = verdicts("{}", &c).unwrap();
    assert_eq!(
        v,
        [
            Ok(()),
            Err(NO_SERIAL.to_string()),
            Err(NO_SERIAL.to_string()),
            Ok(()),
            Ok(())
        ]
    );
}

#[test]
fn remote_managed_pf_specs_are_refused_as_nova_does() {
    let cfg = |spec: &str| format!("{{\"device_spec\": [{spec:?}]}}");
    assert_eq!(
        verdicts(
            &cfg(r#"{"address": "0000:81:00.0", "remote_managed": "true"}"#),
            &[]
        )
        .unwrap_err(),
        "0000:81:00.0"
    );
    assert_eq!(
        verdicts(&cfg(r#"{"devname": "p0", "vendor_id": "15b3", "product_id": "1018", "remote_managed": "true"}"#), &[])
            .unwrap_err(),
        "Invalid [pci]device_spec config: the specified VF vendor ID 15b3 and product ID 1018 do not \
         match the expected VF IDs based on the corresponding PF identified by PCI address 0000:81:00.0"
    );
    assert_eq!(
        verdicts(
            &cfg(r#"{"devname": "gone0", "remote_managed": "true"}"#),
            &[]
        )
        .unwrap_err(),
        "Invalid PCI Whitelist: A device specified as \"remote_managed\" is not actually present on the host"
    );
    // The PF's address with the VF's product id is Nova's way to name the VFs: accepted.
    assert!(
        verdicts(
            &cfg(r#"{"address": "0000:81:00.0", "product_id": "101e", "remote_managed": "true"}"#),
            &[]
        )
        .is_ok()
    );
    // An invalid remote-managed spec is refused; other invalid specs are the matcher's to
    // report (the tagger does not parse a configuration without remote-managed specs).
    assert!(
        RemoteManagedTagger::init(&cfg(r#"{"product_id": "x", "remote_managed": "yes"}"#)).is_err()
    );
    assert!(RemoteManagedTagger::init(&cfg(r#"{"product_id": "x"}"#)).is_ok());
    assert!(!has_remote_managed_spec(&cfg(
        r#"{"remote_managed": "false"}"#
    )));
    assert!(has_remote_managed_spec(&cfg(
        r#"[{"a": "1"}, {"remote_managed": true}]"#
    )));
}

#[test]
fn regression_oslo_bool_x1c_true_reads_true_everywhere() {
    // Python's str.strip() removes U+001C..U+001F, so Nova reads "\x1ctrue" as true: the
    // device is remote-managed and needs a serial (device 3 has none).
    let c = [
        candidate(3, &[("remote_managed", "\u{1c}true")]),
        candidate(3, &[("remote_managed", "\u{1f}YES\u{3000}")]),
        // A JSON `true` from the device_spec arrives in its carried (typed) form.
        candidate(3, &[("remote_managed", "\u{1}true")]),
        candidate(3, &[("remote_managed", "\u{1}false")]),
        candidate(1, &[("remote_managed", "\u{1c}true")]),
    ];
    let v = verdicts("{}", &c).unwrap();
    assert_eq!(
        v,
        [
            Err(NO_SERIAL.to_string()),
            Err(NO_SERIAL.to_string()),
            Err(NO_SERIAL.to_string()),
            Ok(()),
            Ok(())
        ]
    );
    // The configuration pre-check reads the spec's JSON value as Nova's devspec does.
    let cfg = |spec: &str| format!("{{\"device_spec\": [{spec:?}]}}");
    assert!(has_remote_managed_spec(&cfg(
        r#"{"remote_managed": "\u001ctrue"}"#
    )));
    assert!(has_remote_managed_spec(&cfg(r#"{"remote_managed": 1}"#)));
    assert!(!has_remote_managed_spec(&cfg(r#"{"remote_managed": 0}"#)));
}
