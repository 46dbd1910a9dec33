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

/// An address written out (`dddd:bb:ss.f`, up to 17 bytes), on the stack: what
/// [`PciAddress`]'s `Display` writes, for writers that take bytes (a large JSON output
/// formats hundreds of thousands of them).
#[derive(Debug, Clone, Copy)]
pub struct AddressText {
    bytes: [u8; 17],
    len: u8,
}

impl AddressText {
    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("hex digits, ':' and '.'")
    }
}

impl PciAddress {
    /// The address as sysfs writes it: the domain in at least 4 lower-case hex digits, the
    /// bus and slot in 2, the function in 1.
    pub fn text(&self) -> AddressText {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; 17];
        let mut len = 0;
        for (value, width, then) in [
            (self.domain, 4, b':'),
            (self.bus.into(), 2, b':'),
            (self.slot.into(), 2, b'.'),
            (self.function.into(), 1, 0),
        ] {
            let digits = (8 - value.leading_zeros() as usize / 4).max(width);
            for i in (0..digits).rev() {
                bytes[len] = HEX[(value >> (4 * i)) as usize & 0xf];
                len += 1;
            }
            if then != 0 {
                bytes[len] = then;
                len += 1;
            }
        }
        AddressText {
            bytes,
            len: len as u8,
        }
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl FromStr for PciAddress {
    type Err = AddressError;

    /// Parses the full form only (`dddd:bb:ss.f`, domain of 1 to 8 hex digits), as sysfs
    /// names devices. Partial and wildcard forms are device_spec syntax and belong to the
    /// matcher policy, not here.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        canonical(text.as_bytes()).map_or_else(|| parse_general(text), Ok)
    }
}

/// The full form read field by field, with the reason when it is not one.
fn parse_general(text: &str) -> Result<PciAddress, AddressError> {
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
    Ok(PciAddress {
        domain,
        bus: bus as u8,
        slot: slot as u8,
        function: function as u8,
    })
}

/// The address written `dddd:bb:ss.f` exactly (4-digit domain), as sysfs names nearly every
/// device, read without splitting: `None` for any other text, which the general parse then
/// reads, or refuses with its reason. A large devices file spends a measurable part of its
/// parse here.
fn canonical(text: &[u8]) -> Option<PciAddress> {
    let &[d0, d1, d2, d3, b':', b0, b1, b':', s0, s1, b'.', f0] = text else {
        return None;
    };
    let digit = |c: u8| char::from(c).to_digit(16);
    let [d0, d1, d2, d3, b0, b1, s0, s1, f0] = [d0, d1, d2, d3, b0, b1, s0, s1, f0].map(digit);
    let slot = s0? << 4 | s1?;
    PciAddress::new(
        d0? << 12 | d1? << 8 | d2? << 4 | d3?,
        (b0? << 4 | b1?) as u8,
        u8::try_from(slot).ok()?,
        f0? as u8,
    )
}

impl Serialize for PciAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Reads an address from the text the deserializer lends, without copying it.
struct AddressVisitor;

impl serde::de::Visitor<'_> for AddressVisitor {
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
        d.deserialize_str(AddressVisitor)
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
        /// The address's text is what `format!` gives with the widths sysfs uses.
        #[test]
        fn text_is_the_sysfs_form(domain: u32, bus: u8, slot in 0u8..0x20, function in 0u8..8) {
            let a = PciAddress::new(domain, bus, slot, function).unwrap();
            let text = a.text();
            prop_assert_eq!(
                text.as_str(),
                format!("{domain:04x}:{bus:02x}:{slot:02x}.{function:x}")
            );
        }

        /// The fast path gives what the general rule gives on every 12-byte text of
        /// address-like characters (upper case, signs, out-of-range slots and functions).
        #[test]
        fn the_canonical_fast_path_agrees_with_the_general_parse(
            text in "[0-9a-fA-Fg+:. ]{4}[:.][0-9a-fA-F+]{2}[:.][0-9a-fA-F]{2}[.:][0-9a-fA-F-]"
        ) {
            let fast = super::canonical(text.as_bytes());
            let general = super::parse_general(&text).ok();
            prop_assert_eq!(fast, general);
            prop_assert_eq!(text.parse::<PciAddress>().ok(), general);
        }

        #[test]
        fn display_then_parse_is_identity(domain: u32, bus: u8, slot in 0u8..0x20, function in 0u8..8) {
            let a = PciAddress::new(domain, bus, slot, function).unwrap();
            prop_assert_eq!(a.to_string().parse::<PciAddress>().unwrap(), a);
        }
    }
}
