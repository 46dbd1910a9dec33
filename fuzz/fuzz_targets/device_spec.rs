//! Nova's `[pci] device_spec` text as the operator writes it: `whitelist_from_config` on the
//! raw text (the policy configuration), on the text wrapped as a one-entry
//! `{"device_spec": [...]}` configuration, and `Whitelist::parse` on it as one entry.
//!
//! Properties: never panics; the two ways of giving one entry agree (same specs, or the
//! same Nova error); an accepted list binds to a small host and matches devices without
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pcitrack_devspec::{
    DeviceFacts, DeviceInput, EmptyHost, HostView, Whitelist, whitelist_from_config,
};
use pcitrack_model::PciAddress;

const PF: PciAddress = PciAddress {
    domain: 0,
    bus: 0x0a,
    slot: 0,
    function: 0,
};
const VF: PciAddress = PciAddress {
    domain: 0,
    bus: 0x0a,
    slot: 0x10,
    function: 1,
};
const WIDE: PciAddress = PciAddress {
    domain: 0x1_0000,
    bus: 0xe1,
    slot: 0,
    function: 7,
};

/// One Intel PF with a netdev and VFs, enough for PF-ness, `devname` and remote-managed
/// checks to resolve both ways.
struct SmallHost;

impl HostView for SmallHost {
    fn device(&self, address: PciAddress) -> Option<DeviceFacts> {
        match address {
            PF => Some(DeviceFacts {
                vendor_id: 0x8086,
                product_id: 0x1572,
                is_pf: true,
                vf_product_id: Some(0x154c),
            }),
            VF => Some(DeviceFacts {
                vendor_id: 0x8086,
                product_id: 0x154c,
                is_pf: false,
                vf_product_id: None,
            }),
            _ => None,
        }
    }
    fn netdev(&self, name: &str) -> Option<PciAddress> {
        (name == "ens1f0").then_some(PF)
    }
}

fn exercise(wl: &Whitelist) {
    let devices = [
        DeviceInput {
            address: PF,
            vendor_id: 0x8086,
            product_id: 0x1572,
            parent_addr: None,
            card_serial_number: Some("MT2113X00000"),
        },
        DeviceInput {
            address: VF,
            vendor_id: 0x8086,
            product_id: 0x154c,
            parent_addr: Some(PF),
            card_serial_number: Some("MT2113X00000"),
        },
        DeviceInput {
            address: WIDE,
            vendor_id: 0x15b3,
            product_id: 0x101e,
            parent_addr: None,
            card_serial_number: None,
        },
    ];
    for bound in [wl.bind(&EmptyHost), wl.bind(&SmallHost)]
        .into_iter()
        .flatten()
    {
        for d in &devices {
            if let Some(i) = bound.find(d) {
                assert!(i < wl.len());
                let _ = bound.resolution(i);
                let _ = wl.specs()[i].tags();
            }
        }
    }
}

fuzz_target!(|text: &str| {
    if let Ok(wl) = whitelist_from_config(text) {
        exercise(&wl);
    }

    let wrapped = serde_json::json!({ "device_spec": [text] }).to_string();
    let from_config = whitelist_from_config(&wrapped);
    let direct = Whitelist::parse(&[text]);
    match (&from_config, &direct) {
        (Ok(a), Ok(b)) => assert_eq!(a.len(), b.len()),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("configuration {from_config:?} but direct parse {direct:?}"),
    }
    if let Ok(wl) = direct {
        exercise(&wl);
    }
});
