//! PCI addresses (`dddd:bb:ss.f`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A PCI function's address: segment (domain), bus, slot (device) and function.
///
/// The domain is 32 bits wide. Linux prints up to 8 hex digits for it and such domains are
/// real (Intel VMD puts its child devices in domains `10000` and above); Nova and several
/// other tools assume 16 bits and mis-handle them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// PCI segment group; up to 32 bits.
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Slot (device) number, 0 to 0x1f.
    pub slot: u8,
    /// Function number, 0 to 7.
    pub function: u8,
}

/// Why a text is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{text:?} is not a PCI address (expected dddd:bb:ss.f in hex): {problem}")]
pub struct AddressError {
    /// The text that was read.
    pub text: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl PciAddress {
    /// Builds an address, checking the slot and function ranges.
    pub fn new(domain: u32, bus: u8, slot: u8, function: u8) -> Option<Self> {
        (slot <= 0x1f && function <= 7).then_some(Self {
            domain,
            bus,
            slot,
            function,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

impl FromStr for PciAddress {
    type Err = AddressError;

    /// Parses the full form only (`dddd:bb:ss.f`, domain of 1 to 8 hex digits), as sysfs
    /// names devices. Partial and wildcard forms are device_spec syntax and belong to the
    /// matcher policy, not here.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |problem| AddressError {
            text: text.to_string(),
            problem,
        };
        let (dbs, function) = text
            .split_once('.')
            .ok_or_else(|| err("no '.' before the function"))?;
        let mut parts = dbs.split(':');
        let (Some(domain), Some(bus), Some(slot), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err("expected three ':'-separated fields before the '.'"));
        };
        let field = |s: &str, max_digits: usize, what| {
            if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                Err(err(what))
            } else {
                Ok(u32::from_str_radix(s, 16).expect("checked hex digits"))
            }
        };
        let domain = field(domain, 8, "the domain must be 1 to 8 hex digits")?;
        let bus = field(bus, 2, "the bus must be 1 or 2 hex digits")?;
        let slot = field(slot, 2, "the slot must be 1 or 2 hex digits")?;
        let function = field(function, 1, "the function must be one hex digit")?;
        if slot > 0x1f {
            return Err(err("the slot must be at most 1f"));
        }
        if function > 7 {
            return Err(err("the function must be at most 7"));
        }
        Ok(Self {
            domain,
            bus: bus as u8,
            slot: slot as u8,
            function: function as u8,
        })
    }
}

impl Serialize for PciAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Reads an address from the text the deserializer lends, without copying it.
struct AddressText;

impl serde::de::Visitor<'_> for AddressText {
    type Value = PciAddress;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PciAddress, E> {
        text.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for PciAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(AddressText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_the_sysfs_form() {
        let a: PciAddress = "0000:0a:00.1".parse().unwrap();
        assert_eq!(a, PciAddress::new(0, 0x0a, 0, 1).unwrap());
        assert_eq!(a.to_string(), "0000:0a:00.1");
    }

    #[test]
    fn keeps_domains_above_16_bits() {
        let a: PciAddress = "10000:e1:00.0".parse().unwrap();
        assert_eq!(a.domain, 0x10000);
        assert_eq!(a.to_string(), "10000:e1:00.0");
    }

    #[test]
    fn refuses_malformed_addresses_with_a_reason() {
        for bad in [
            "",
            "0000:0a:00",
            "0000:0a.1",
            "0000:0a:00:00.1",
            "0000:0a:20.0",
            "0000:0a:00.8",
            "123456789:00:00.0",
            "0000:0g:00.0",
            "0000:0a:00.",
            "*:0a:00.1",
        ] {
            let e = bad.parse::<PciAddress>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e} does not name {bad:?}");
        }
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(domain: u32, bus: u8, slot in 0u8..0x20, function in 0u8..8) {
            let a = PciAddress::new(domain, bus, slot, function).unwrap();
            prop_assert_eq!(a.to_string().parse::<PciAddress>().unwrap(), a);
        }
    }
}
