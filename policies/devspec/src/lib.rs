//! Nova's `[pci] device_spec` (formerly `passthrough_whitelist`): parsing and matching, as a
//! pure library for pcitrack's matcher and tagger policies.
//!
//! ```
//! use pcitrack_devspec::{DeviceInput, EmptyHost, Whitelist};
//!
//! let wl = Whitelist::parse(&[r#"{"vendor_id": "8086", "address": "*:0a:*.*",
//!                                 "physical_network": "physnet1"}"#]).unwrap();
//! let bound = wl.bind(&EmptyHost).unwrap();
//! let dev = DeviceInput {
//!     address: "0000:0a:00.1".parse().unwrap(),
//!     vendor_id: 0x8086,
//!     product_id: 0x154c,
//!     parent_addr: None,
//!     card_serial_number: None,
//! };
//! let i = bound.find(&dev).unwrap();
//! assert_eq!(wl.specs()[i].tags().get("physical_network"), Some("physnet1"));
//! ```
//!
//! Three steps, because in pcitrack the configuration arrives before the inventory:
//! [`Whitelist::parse`] compiles the specs (ids and address fields to integers, regexes
//! compiled, tags computed) and refuses what Nova refuses with Nova's class and message;
//! [`Whitelist::bind`] resolves what Nova reads from sysfs through a [`HostView`] (PF-ness
//! of single addresses, `devname`, the remote-managed checks); [`BoundWhitelist::find`]
//! returns the index of the first matching spec without allocating.
//!
//! Where pcitrack deliberately differs from Nova, because Nova misreads the host or the
//! value cannot occur in pcitrack: PCI domains above 0xFFFF are valid; a PF's device id is
//! sysfs `device` (Nova reads `product`); the PF in remote-managed messages is its address
//! (Nova prints a Python object repr); device ids and addresses are integers, so there is
//! no case-sensitive comparison of device ids; non-string ids, `devname` and regex values
//! are refused with `PciConfigInvalidSpec`/`PciDeviceWrongAddressFormat` (Nova crashes with
//! a raw Python exception); regex syntax differences are listed in the
//! [section below](crate#regex-syntax). `one_time_use=true` is refused unless
//! `[pci] report_in_placement` is on ([`Settings`]), as in Nova; on a VF or vDPA device any
//! `one_time_use` refuses that device alone ([`DeviceSpec::check_one_time_use`]) where Nova
//! fails its whole Placement update.
//!
//! # Regex syntax
//!
//! Regex-dict patterns are Python `re` patterns applied with `re.match` (anchored at the
//! start only). pcitrack parses them by Python 3.11's grammar, with Python's errors, and
//! runs them on the `regex-lite` crate with literals escaped and every group balanced
//! (`pyregex.rs`), so a pattern is accepted exactly when Python accepts it and matches the
//! same addresses (`tests/python_re_differential.rs` compares 4 000 random patterns with
//! Python's `re` on every run). Refused although Python accepts them: backreferences,
//! look-around, conditionals, atomic groups, possessive quantifiers, `\N{...}`, the `t`
//! flag, surrogate code points, non-ASCII group names, groups nested deeper than 64, and
//! repeats too large for the engine's 10 MiB program limit.
#![deny(missing_docs)]

mod address_glob;
mod address_regex;
mod boolstr;
mod config;
mod error;
mod field;
mod host;
mod ids;
mod physical;
mod pyint;
mod pyregex;
mod spec;
mod tags;
mod value;
mod whitelist;

pub use address_glob::{GlobSpec, MAX_DOMAIN};
pub use address_regex::RegexSpec;
pub use config::whitelist_from_config;
pub use error::{ErrorClass, INVALID_SPEC_PREFIX, SpecError};
pub use field::Field;
pub use host::{DeviceFacts, DeviceInput, EmptyHost, HostView};
pub use ids::IdSpec;
pub use physical::parse_physical_address;
pub use spec::{AddressKind, AddressSpec, DeviceSpec, Settings, Target};
pub use tags::{Tag, Tags};
pub use value::{Value, from_json};
pub use whitelist::{BoundWhitelist, Entry, Resolution, Whitelist};

/// oslo's lenient `bool_from_string` on a Python `str` (the one definition, in
/// pcitrack-model). A tag value carried over the contract may be typed (see
/// [`pcitrack_model::tag_value`]): read those with
/// [`pcitrack_model::tag_value::bool_from_tag`].
pub use pcitrack_model::oslo::bool_from_string;
