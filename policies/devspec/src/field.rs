//! One hex-valued spec field (an id or an address part), compiled to an integer test.
//!
//! Nova keeps fields as normalised strings and compares strings; pcitrack compiles them
//! once into [`Field`] so matching is an integer comparison, and keeps Nova's normalised
//! text for messages and introspection.

use crate::error::SpecError;
use crate::pyint::parse_py_hex;

/// What a field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `*`: any value.
    Any,
    /// Exactly this value.
    Is(u32),
    /// Nothing: Python accepts negative numbers (`-1` becomes `-001`), which no device has.
    Never,
}

impl Field {
    /// Whether a device value passes.
    #[inline]
    pub fn accepts(self, value: u32) -> bool {
        match self {
            Field::Any => true,
            Field::Is(v) => v == value,
            Field::Never => false,
        }
    }
}

/// A parsed field: the compiled test and Nova's normalised text (`*`, `0a`, `-001`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedField {
    pub field: Field,
    pub text: String,
}

/// Nova's `_set_pci_dev_info(prop, max, '%0{width}x')` on `raw`.
pub(crate) fn parse_field(
    prop: &str,
    raw: &str,
    max: u64,
    width: usize,
) -> Result<ParsedField, SpecError> {
    if raw == "*" {
        return Ok(ParsedField {
            field: Field::Any,
            text: "*".into(),
        });
    }
    let Some(value) = parse_py_hex(raw) else {
        return Err(SpecError::invalid(format!(
            "property {prop} ('{raw}') does not parse as a hex number."
        )));
    };
    if value.exceeds(max) {
        return Err(SpecError::invalid(format!(
            "property {prop} ({raw}) is greater than the maximum allowable value ({max:X})."
        )));
    }
    let field = match value.non_negative_up_to(max) {
        Ok(v) => Field::Is(v as u32),
        Err(_) => Field::Never,
    };
    Ok(ParsedField {
        field,
        text: value.format(width),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_normalisation() {
        let f = parse_field("bus", "0A", 0xff, 2).unwrap();
        assert_eq!((f.field, f.text.as_str()), (Field::Is(10), "0a"));
        let f = parse_field("domain", "-1", 0xffff, 4).unwrap();
        assert_eq!((f.field, f.text.as_str()), (Field::Never, "-001"));
        assert_eq!(
            parse_field("bus", "0*", 0xff, 2).unwrap_err().message,
            "Invalid [pci]device_spec config: property bus ('0*') does not parse as a hex number."
        );
        assert_eq!(
            parse_field("slot", "20", 0x1f, 2).unwrap_err().message,
            "Invalid [pci]device_spec config: property slot (20) is greater than the maximum \
             allowable value (1F)."
        );
    }
}
