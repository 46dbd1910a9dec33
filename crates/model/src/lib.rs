//! The vocabulary every part of pcitrack speaks: PCI addresses, vendor and product ids,
//! device types, tracker statuses, the discovered device record, the assessed record the
//! policies produce, and what the cleanup chain sees and says (with Nova's rule).
//!
//! Parsing and display live here, once, so that discovery, the policy runtime, the tracker
//! and the CLI cannot disagree about what `0000:0a:00.1` or `type-VF` means.
#![deny(missing_docs)]

mod address;
mod assessment;
pub mod cleanup;
mod device;
mod device_json;
mod hex;
mod kinds;
pub mod oslo;
pub mod packed;
pub mod python;
pub mod tag_value;

pub use address::{AddressError, AddressText, PciAddress};
pub use assessment::Assessment;
pub use device::{Device, NetInterface, Vpd};
pub use device_json::device_prefix;
pub use hex::{HexIdError, parse_hex_id};
pub use kinds::{DevType, DeviceStatus, UnknownName};
