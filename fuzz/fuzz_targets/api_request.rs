//! The API's request bodies and query strings: `ClaimRequest` and `InstanceRequest` (JSON),
//! `DevicesQuery` (URL-encoded), and a parsed claim turned into a tracker request and run
//! against an in-memory tracker holding a PF and its VFs.
//!
//! Properties: never panics; `request_of` and `claim` return `Ok` or `Err`; a claim either
//! hands out exactly the requested number of devices to the instance or changes nothing.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use pcitrack::ops::{self, ClaimRequest, DevicesQuery, InstanceRequest};
use pcitrack_model::{Assessment, DevType, Device, PciAddress};
use pcitrack_tracker::{AliasTable, DefaultCleanup, DeviceFilter, Tracker};

/// Aliases as an operator writes them in `[pci] alias`.
const ALIASES: &[&str] = &[
    r#"{"name": "vf", "vendor_id": "8086", "product_id": "154c", "device_type": "type-VF"}"#,
    r#"{"name": "pf", "vendor_id": "8086", "product_id": "1572", "device_type": "type-PF"}"#,
    r#"{"name": "nic", "vendor_id": "15b3", "product_id": "1018", "numa_policy": "preferred"}"#,
];

fn address(bus: u8, slot: u8, function: u8) -> PciAddress {
    PciAddress::new(0, bus, slot, function).expect("valid address")
}

/// A fresh tracker with one PF, two of its VFs (one tagged) and a plain device.
fn tracker() -> Tracker<pcitrack_tracker::SqliteStore> {
    let mut tracker = Tracker::in_memory().expect("in-memory tracker");
    let pf = address(0x0a, 0, 0);
    let mut devices = vec![Assessment::assignable(Device::new(
        pf,
        0x8086,
        0x1572,
        DevType::Pf,
    ))];
    for function in 1..3 {
        let mut vf = Device::new(address(0x0a, 0x10, function), 0x8086, 0x154c, DevType::Vf);
        vf.parent_addr = Some(pf);
        vf.numa_node = Some(0);
        let mut assessed = Assessment::assignable(vf);
        if function == 2 {
            assessed.tags = BTreeMap::from([("physical_network".into(), "physnet1".into())]);
        }
        devices.push(assessed);
    }
    devices.push(Assessment::assignable(Device::new(
        address(0x81, 0, 0),
        0x15b3,
        0x1018,
        DevType::Pci,
    )));
    tracker
        .sync(&devices, &DefaultCleanup)
        .expect("initial sync");
    tracker
}

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = serde_urlencoded::from_bytes::<DevicesQuery>(data) {
        let _ = ops::devices(&mut tracker(), &query);
    }
    if let Ok(req) = serde_json::from_slice::<InstanceRequest>(data) {
        let mut t = tracker();
        let _ = ops::allocate(&mut t, &req);
        let _ = ops::free(&mut t, &req);
    }
    let Ok(req) = serde_json::from_slice::<ClaimRequest>(data) else {
        return;
    };
    let aliases = AliasTable::parse(ALIASES).expect("the aliases parse");
    let _ = ops::request_of(&req, &AliasTable::default());
    let wanted: Option<usize> = ops::request_of(&req, &aliases)
        .ok()
        .map(|r| r.iter().map(|r| r.count as usize).sum());

    let mut t = Tracker::in_memory().expect("in-memory tracker");
    let _ = ops::claim(&mut t, &req, &AliasTable::default(), &[]);

    let mut t = tracker();
    let before = t.devices(&DeviceFilter::default()).expect("devices");
    let held = |t: &mut Tracker<_>| {
        t.devices(&DeviceFilter {
            instance: Some(req.instance.clone()),
            ..DeviceFilter::default()
        })
        .expect("devices")
        .len()
    };
    match ops::claim(&mut t, &req, &aliases, &[]) {
        Ok(claimed) => {
            assert_eq!(Some(claimed.len()), wanted, "{req:?}");
            assert_eq!(held(&mut t), claimed.len(), "{req:?}");
        }
        Err(_) => assert_eq!(
            t.devices(&DeviceFilter::default()).expect("devices"),
            before,
            "a refused claim changed the tracker: {req:?}"
        ),
    }
});
