//! Python's `int(text, 16)` and `'%0Nx' % value`, which Nova uses for every id and address
//! field, quirks included: surrounding whitespace, a sign, a `0x` prefix and `_` between
//! digits are all accepted (`'0x8086'`, `'80_86'`, `'-1'`).

/// A number as Python's `int(text, 16)` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PyHex {
    /// A leading `-` (and a non-zero value).
    pub negative: bool,
    /// The magnitude in lower-case hex, without leading zeros (`"0"` for zero).
    pub digits: String,
}

impl PyHex {
    /// The magnitude, or `None` when it does not fit in 64 bits.
    pub fn magnitude(&self) -> Option<u64> {
        if self.digits.len() > 16 {
            None
        } else {
            Some(u64::from_str_radix(&self.digits, 16).expect("hex digits"))
        }
    }

    /// The value when it is in `0..=max`; `Err(true)` above `max`, `Err(false)` when negative.
    pub fn non_negative_up_to(&self, max: u64) -> Result<u64, bool> {
        if self.negative {
            return Err(false);
        }
        match self.magnitude() {
            Some(v) if v <= max => Ok(v),
            _ => Err(true),
        }
    }

    /// True when the value is above `max` (negative values never are, as in Python).
    pub fn exceeds(&self, max: u64) -> bool {
        self.non_negative_up_to(max) == Err(true)
    }

    /// Python's `'%0{width}x' % value`: zero-padded, the sign counting towards the width.
    pub fn format(&self, width: usize) -> String {
        if self.negative {
            format!("-{:0>w$}", self.digits, w = width.saturating_sub(1))
        } else {
            format!("{:0>width$}", self.digits)
        }
    }
}

/// Python's `str.strip()` with no argument (the one definition, in pcitrack-model).
pub(crate) use pcitrack_model::python::strip as py_strip;

/// Python's `int(text, 16)`, or `None` where Python raises `ValueError`.
///
/// Not emulated: Python also accepts non-ASCII decimal digits (`'\u0663'` is 3); those are
/// refused here as not hex, which only ever turns an exotic accepted spec into an error.
pub(crate) fn parse_py_hex(text: &str) -> Option<PyHex> {
    let s = py_strip(text);
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    // With base 16 a `0x` prefix is allowed, and an underscore may follow it directly.
    let (s, after_prefix) = match s.get(..2) {
        Some(p) if p.eq_ignore_ascii_case("0x") => (&s[2..], true),
        _ => (s, false),
    };
    let mut digits = String::with_capacity(s.len());
    let mut last_was_digit = false;
    for (i, c) in s.chars().enumerate() {
        if c == '_' {
            // Single underscores between digits, or right after the prefix.
            if !(last_was_digit || (i == 0 && after_prefix)) {
                return None;
            }
            last_was_digit = false;
        } else if c.is_ascii_hexdigit() {
            digits.push(c.to_ascii_lowercase());
            last_was_digit = true;
        } else {
            return None;
        }
    }
    if !last_was_digit {
        return None; // empty, or a trailing underscore
    }
    let trimmed = digits.trim_start_matches('0');
    let digits = if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    };
    Some(PyHex {
        negative: negative && digits != "0",
        digits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str, w: usize) -> Option<String> {
        parse_py_hex(s).map(|v| v.format(w))
    }

    #[test]
    fn python_int_quirks() {
        assert_eq!(norm("0x8086", 4).as_deref(), Some("8086"));
        assert_eq!(norm("80_86", 4).as_deref(), Some("8086"));
        assert_eq!(norm("0x_80_86", 4).as_deref(), Some("8086"));
        assert_eq!(norm("-1", 4).as_deref(), Some("-001"));
        assert_eq!(norm("-0", 4).as_deref(), Some("0000"));
        assert_eq!(norm("+a", 2).as_deref(), Some("0a"));
        assert_eq!(norm(" \t5057\n", 4).as_deref(), Some("5057"));
        assert_eq!(norm("FFFF", 4).as_deref(), Some("ffff"));
        assert_eq!(norm("10000", 4).as_deref(), Some("10000"));
        assert_eq!(norm("-1", 1).as_deref(), Some("-1"));
        for bad in [
            "", " ", "*", "0*", "_1", "1_", "1__2", "0x", "0x_", "--1", "5.1", "g",
        ] {
            assert_eq!(parse_py_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn limits() {
        let v = parse_py_hex("ffffffffffffffffff").unwrap();
        assert!(v.exceeds(0xffff_ffff));
        assert!(!parse_py_hex("-5").unwrap().exceeds(0));
        assert_eq!(
            parse_py_hex("1f").unwrap().non_negative_up_to(0x1f),
            Ok(0x1f)
        );
    }
}
