//! The glob form of `address`: `[[[[domain]:]bus]:][slot][.[func]]`, each field hex or `*`.
//!
//! Nova's parse, step by step: split on the first `.`; a non-empty function part is
//! stripped and checked first; the rest is split on `:`, more than three parts is a format
//! error, missing leading parts are `*`, each part is stripped and an empty one is `*`;
//! then domain, bus and slot are checked in that order. Wildcards cover whole fields only.
//!
//! Deliberate difference: Nova limits the domain to 0xFFFF; PCI domains are 32 bits on
//! Linux (Intel VMD uses 0x10000 and up), so pcitrack accepts up to 0xFFFFFFFF.

use pcitrack_model::PciAddress;

use crate::error::SpecError;
use crate::field::{Field, ParsedField, parse_field};
use crate::pyint::py_strip;

/// Largest PCI domain pcitrack accepts (Nova: 0xFFFF).
pub const MAX_DOMAIN: u64 = 0xffff_ffff;
pub(crate) const MAX_BUS: u64 = 0xff;
pub(crate) const MAX_SLOT: u64 = 0x1f;
pub(crate) const MAX_FUNC: u64 = 0x7;

/// A compiled glob address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobSpec {
    domain: ParsedField,
    bus: ParsedField,
    slot: ParsedField,
    func: ParsedField,
}

impl GlobSpec {
    /// Parses `text` as Nova's `PciAddressGlobSpec` does.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let any = || ParsedField {
            field: Field::Any,
            text: "*".into(),
        };
        let (dbs, func) = text.split_once('.').unwrap_or((text, ""));
        let func = if func.is_empty() {
            any()
        } else {
            parse_field("func", py_strip(func), MAX_FUNC, 1)?
        };
        let (mut domain, mut bus, mut slot) = (any(), any(), any());
        if !dbs.is_empty() {
            let parts: Vec<&str> = dbs.split(':').collect();
            if parts.len() > 3 {
                return Err(SpecError::wrong_address(text));
            }
            let mut all = vec!["*"; 3 - parts.len()];
            all.extend(parts);
            let part = |s: &str| -> String {
                let s = py_strip(s);
                if s.is_empty() { "*".into() } else { s.into() }
            };
            domain = parse_field("domain", &part(all[0]), MAX_DOMAIN, 4)?;
            bus = parse_field("bus", &part(all[1]), MAX_BUS, 2)?;
            slot = parse_field("slot", &part(all[2]), MAX_SLOT, 2)?;
        }
        Ok(GlobSpec {
            domain,
            bus,
            slot,
            func,
        })
    }

    /// Whether a device address passes.
    #[inline]
    pub fn accepts(&self, a: PciAddress) -> bool {
        self.func.field.accepts(a.function.into())
            && self.slot.field.accepts(a.slot.into())
            && self.bus.field.accepts(a.bus.into())
            && self.domain.field.accepts(a.domain)
    }

    /// Nova's normalised field texts: domain, bus, slot, function.
    pub fn field_texts(&self) -> [&str; 4] {
        [
            &self.domain.text,
            &self.bus.text,
            &self.slot.text,
            &self.func.text,
        ]
    }

    /// The one address this glob names, when every field is a plain value (Nova's
    /// `is_single_address`, for which it asks sysfs whether the address is a PF).
    pub fn single_address(&self) -> Option<PciAddress> {
        match (
            self.domain.field,
            self.bus.field,
            self.slot.field,
            self.func.field,
        ) {
            (Field::Is(d), Field::Is(b), Field::Is(s), Field::Is(f)) => {
                PciAddress::new(d, b as u8, s as u8, f as u8)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> [String; 4] {
        GlobSpec::parse(s).unwrap().field_texts().map(String::from)
    }

    #[test]
    fn partial_forms() {
        assert_eq!(texts("5"), ["*", "*", "05", "*"]);
        assert_eq!(texts(":0a:00."), ["*", "0a", "00", "*"]);
        assert_eq!(texts(" 0a : 00 . 1"), ["*", "0a", "00", "1"]);
        assert_eq!(texts("10000:00:02.0"), ["10000", "00", "02", "0"]);
        let e = GlobSpec::parse("0000:h4.12:6").unwrap_err();
        assert_eq!(
            e.message,
            "Invalid [pci]device_spec config: property func ('12:6') does not parse as a hex \
             number."
        );
    }

    #[test]
    fn single_address_and_match() {
        let g = GlobSpec::parse("0000:0a:00.1").unwrap();
        let a: PciAddress = "0000:0a:00.1".parse().unwrap();
        assert_eq!(g.single_address(), Some(a));
        assert!(g.accepts(a));
        assert!(!g.accepts("0000:0a:00.2".parse().unwrap()));
        assert_eq!(GlobSpec::parse("*:0a:00.1").unwrap().single_address(), None);
        assert_eq!(
            GlobSpec::parse("-1:0a:00.1").unwrap().single_address(),
            None
        );
    }
}
