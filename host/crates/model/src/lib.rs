//! The vocabulary every part of pcitrack speaks: PCI addresses, vendor and product ids,
//! device types, tracker statuses and the discovered device record.
//!
//! Parsing and display live here, once, so that discovery, the policy runtime, the tracker
//! and the CLI cannot disagree about what `0000:0a:00.1` or `type-VF` means.
#![deny(missing_docs)]

mod address;
mod device;
mod hex;
mod kinds;
pub mod packed;

pub use address::{AddressError, PciAddress};
pub use device::{Device, NetInterface, Vpd};
pub use hex::{HexIdError, parse_hex_id};
pub use kinds::{DevType, DeviceStatus, UnknownName};
