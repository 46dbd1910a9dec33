//! `PciAddress` from arbitrary text (uevents' `PCI_SLOT_NAME`, sysfs names, API input).
//!
//! Properties: never panics; an accepted address prints in the canonical form, which
//! parses back to the same address (also through serde), and printing is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pcitrack_model::PciAddress;

fuzz_target!(|text: &str| {
    let Ok(address) = text.parse::<PciAddress>() else {
        return;
    };
    assert!(address.slot <= 0x1f && address.function <= 7, "{address:?}");
    let printed = address.to_string();
    let again: PciAddress = printed.parse().expect("a printed address parses");
    assert_eq!(again, address);
    assert_eq!(again.to_string(), printed);
    // Hex digits are read in either case.
    assert_eq!(
        text.to_ascii_uppercase().parse::<PciAddress>().ok(),
        Some(address)
    );
    let json = serde_json::to_string(&address).expect("serialises");
    assert_eq!(
        serde_json::from_str::<PciAddress>(&json).expect("deserialises"),
        address
    );
});
