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
    // Digits alone (`8086`, as Nova and a devices file write ids): nothing to trim or strip.
    if !text.is_empty() && text.len() <= max_digits.min(8) {
        let mut digits = text.bytes().map(|b| char::from(b).to_digit(16));
        if let Some(value) = digits.try_fold(0u32, |v, d| Some(v << 4 | d?)) {
            return Ok(value);
        }
    }
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
///
/// Both directions go without a `String` per id: an id is formatted straight into the
/// serializer, and read from the text the deserializer lends (`pcitrack policy eval
/// --devices` reads hundreds of thousands of records).
pub(crate) mod serde_hex {
    use std::fmt;

    use serde::Serializer;
    use serde::de::{self, Deserializer, Visitor};

    use super::parse_hex_id;

    /// Reads a string as a hex id of at most `max_digits` digits, borrowing the text.
    struct HexText {
        max_digits: usize,
    }

    impl Visitor<'_> for HexText {
        type Value = u32;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<u32, E> {
            parse_hex_id(text, self.max_digits).map_err(E::custom)
        }
    }

    /// An optional hex id: `null` or a string.
    struct OptHexText {
        max_digits: usize,
    }

    impl<'de> Visitor<'de> for OptHexText {
        type Value = Option<u32>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("option")
        }

        fn visit_none<E: de::Error>(self) -> Result<Option<u32>, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Option<u32>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<u32>, D::Error> {
            hex(d, self.max_digits).map(Some)
        }
    }

    fn hex<'de, D: Deserializer<'de>>(d: D, max_digits: usize) -> Result<u32, D::Error> {
        d.deserialize_str(HexText { max_digits })
    }

    fn opt_hex<'de, D: Deserializer<'de>>(
        d: D,
        max_digits: usize,
    ) -> Result<Option<u32>, D::Error> {
        d.deserialize_option(OptHexText { max_digits })
    }

    pub fn ser_u16<S: Serializer>(v: &u16, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:04x}"))
    }

    pub fn de_u16<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        hex(d, 4).map(|v| v as u16)
    }

    pub fn ser_opt_u16<S: Serializer>(v: &Option<u16>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => ser_u16(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn de_opt_u16<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
        opt_hex(d, 4).map(|v| v.map(|v| v as u16))
    }

    pub fn ser_class<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:06x}"))
    }

    pub fn de_class<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        hex(d, 6)
    }

    pub fn ser_opt_u8<S: Serializer>(v: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(&format_args!("{v:02x}")),
            None => s.serialize_none(),
        }
    }

    pub fn de_opt_u8<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        opt_hex(d, 2).map(|v| v.map(|v| v as u8))
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
    fn ids_and_addresses_read_alike_from_borrowed_escaped_and_streamed_json() {
        let plain = r#"{"address": "0000:3b:00.1", "vendor_id": "8086", "product_id": "154c",
            "class_code": "020000", "revision": "02", "subsystem_vendor_id": null,
            "dev_type": "type-VF", "parent_addr": "0000:3b:00.0"}"#;
        // `\u0038` is "8": serde_json then hands over copied text, not borrowed.
        let escaped = plain.replace("\"8086\"", "\"\\u0038086\"");
        let a: crate::Device = serde_json::from_str(plain).unwrap();
        let b: crate::Device = serde_json::from_str(&escaped).unwrap();
        let c: crate::Device = serde_json::from_reader(plain.as_bytes()).unwrap();
        assert_eq!(
            (a.vendor_id, a.class_code, a.revision),
            (0x8086, 0x020000, Some(2))
        );
        assert_eq!(a.subsystem_vendor_id, None);
        assert_eq!(a.parent_addr.unwrap().to_string(), "0000:3b:00.0");
        assert_eq!((&a, &a), (&b, &c));
        let bad = plain.replace("\"154c\"", "\"0x1154c\"");
        let e = serde_json::from_str::<crate::Device>(&bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"0x1154c\" is not a hexadecimal number of at most 4 digits"),
            "{e}"
        );
        let e = serde_json::from_str::<crate::Device>(&plain.replace("\"8086\"", "32902"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a string"), "{e}");
    }

    #[test]
    fn refuses_garbage_and_overlong_ids() {
        for bad in ["", "0x", "zz12", "0x18086", "-1", "0x 8086", "80 86"] {
            assert!(parse_hex_id(bad, 4).is_err(), "{bad:?} was accepted");
        }
    }
}
