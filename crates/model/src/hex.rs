//! Hexadecimal ids as sysfs and Nova write them.

use thiserror::Error;

/// A vendor, product or class id that is not the hexadecimal number it should be.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{value:?} is not a hexadecimal number of at most {max_digits} digits")]
pub struct HexIdError {
    /// The text that was read.
    pub value: String,
    /// How many hex digits the id may have.
    pub max_digits: usize,
}

/// Parses a hexadecimal id as sysfs writes it (`0x8086\n`) or as Nova writes it (`8086`).
///
/// Surrounding white space and one `0x`/`0X` prefix are accepted; anything else (empty,
/// signs, too many digits) is refused, because a silently truncated id would match the
/// wrong devices.
pub fn parse_hex_id(text: &str, max_digits: usize) -> Result<u32, HexIdError> {
    let err = || HexIdError {
        value: text.to_string(),
        max_digits,
    };
    let trimmed = text.trim();
    let digits = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    if digits.is_empty()
        || digits.len() > max_digits
        || !digits.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(err());
    }
    u32::from_str_radix(digits, 16).map_err(|_| err())
}

/// serde helpers that write ids the way Nova and lspci do: fixed-width lowercase hex.
pub(crate) mod serde_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::parse_hex_id;

    pub fn ser_u16<S: Serializer>(v: &u16, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:04x}"))
    }

    pub fn de_u16<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        let text = String::deserialize(d)?;
        parse_hex_id(&text, 4)
            .map(|v| v as u16)
            .map_err(serde::de::Error::custom)
    }

    pub fn ser_opt_u16<S: Serializer>(v: &Option<u16>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&format!("{v:04x}")),
            None => s.serialize_none(),
        }
    }

    pub fn de_opt_u16<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| parse_hex_id(&t, 4).map(|v| v as u16))
            .transpose()
            .map_err(serde::de::Error::custom)
    }

    pub fn ser_class<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:06x}"))
    }

    pub fn de_class<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        parse_hex_id(&text, 6).map_err(serde::de::Error::custom)
    }

    pub fn ser_opt_u8<S: Serializer>(v: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&format!("{v:02x}")),
            None => s.serialize_none(),
        }
    }

    pub fn de_opt_u8<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| parse_hex_id(&t, 2).map(|v| v as u8))
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sysfs_and_nova_forms() {
        assert_eq!(parse_hex_id("0x8086\n", 4), Ok(0x8086));
        assert_eq!(parse_hex_id("15b3", 4), Ok(0x15b3));
        assert_eq!(parse_hex_id("0X020000", 6), Ok(0x020000));
    }

    #[test]
    fn refuses_garbage_and_overlong_ids() {
        for bad in ["", "0x", "zz12", "0x18086", "-1", "0x 8086", "80 86"] {
            assert!(parse_hex_id(bad, 4).is_err(), "{bad:?} was accepted");
        }
    }
}
