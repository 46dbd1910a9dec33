//! `vendor_id` and `product_id`.
//!
//! Nova strips the vendor id but not the product id before `int(x, 16)` (so a product id
//! of `' * '` is an error while a vendor id of `' * '` means any), and compares the
//! normalised spec text with the device's text verbatim. pcitrack's device ids are
//! integers, so the comparison is numeric; Nova's "a device reporting `15B3` never
//! matches" cannot arise (libvirt and sysfs report lower case anyway).

use crate::error::SpecError;
use crate::field::{Field, ParsedField, parse_field};
use crate::pyint::py_strip;
use crate::value::Value;

/// Largest vendor or product id.
const MAX_ID: u64 = 0xffff;

/// A compiled id test with Nova's normalised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdSpec {
    pub(crate) field: Field,
    pub(crate) text: String,
}

impl IdSpec {
    /// Matches any id.
    pub(crate) fn any() -> Self {
        IdSpec {
            field: Field::Any,
            text: "*".into(),
        }
    }

    /// Nova's normalised text: `*`, `8086`, or (for negative input) `-001`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The compiled test.
    pub fn field(&self) -> Field {
        self.field
    }

    /// Whether a device id passes.
    #[inline]
    pub fn accepts(&self, id: u16) -> bool {
        self.field.accepts(id.into())
    }

    /// True when the spec is `*` or names exactly `id` (Nova's `x in (ANY, id)`).
    pub(crate) fn is_any_or(&self, id: u16) -> bool {
        matches!(self.field, Field::Any) || self.field == Field::Is(id.into())
    }

    /// True when the spec names exactly `id` (`*` does not count).
    pub(crate) fn is_exactly(&self, id: u16) -> bool {
        self.field == Field::Is(id.into())
    }
}

/// Reads `vendor_id` (`strip` first) or `product_id` (verbatim).
///
/// A non-string value makes Nova fail with a raw Python `AttributeError`/`TypeError`;
/// pcitrack refuses it as `PciConfigInvalidSpec` instead (documented deviation).
pub(crate) fn parse_id(prop: &str, value: Option<&Value>) -> Result<IdSpec, SpecError> {
    let Some(value) = value else {
        return Ok(IdSpec::any());
    };
    let Value::Str(raw) = value else {
        return Err(SpecError::invalid(format!(
            "property {prop} ({}) is not a string.",
            value.py_repr()
        )));
    };
    let raw = if prop == "vendor_id" {
        py_strip(raw)
    } else {
        raw
    };
    let ParsedField { field, text } = parse_field(prop, raw, MAX_ID, 4)?;
    Ok(IdSpec { field, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_is_stripped_product_is_not() {
        let s = |t: &str| Value::Str(t.into());
        assert_eq!(parse_id("vendor_id", Some(&s(" * "))).unwrap().text(), "*");
        assert!(parse_id("product_id", Some(&s(" * "))).is_err());
        assert_eq!(
            parse_id("vendor_id", Some(&s(" 80860 ")))
                .unwrap_err()
                .message,
            "Invalid [pci]device_spec config: property vendor_id (80860) is greater than the \
             maximum allowable value (FFFF)."
        );
        let p = parse_id("product_id", Some(&s("0x154C"))).unwrap();
        assert!(p.accepts(0x154c) && !p.accepts(0x154d));
        assert!(
            parse_id("vendor_id", Some(&Value::Int(8086)))
                .unwrap_err()
                .message
                .contains("not a string")
        );
    }
}
