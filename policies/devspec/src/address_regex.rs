//! The regex-dict form of `address`: `{"domain": re, "bus": re, "slot": re, "function": re}`,
//! each a Python regular expression matched with `re.match` against the device's
//! normalised field (`%04x`, `%02x`, `%02x`, `%1x`); missing keys mean `.*`, other keys are
//! ignored.
//!
//! Bus, slot and function have at most 256 values, so their patterns are evaluated once at
//! parse time into bitmaps and matching a device is three bit tests. The domain has 2^32
//! values: its pattern is pre-evaluated for domains 0 to 15 (nearly every host) and run as
//! a regex only for others. `.*` and empty patterns are not compiled at all.

use pcitrack_model::PciAddress;
use regex::bytes::Regex;

use crate::error::SpecError;
use crate::pyregex::compile_match;
use crate::value::Value;

/// A 256-entry table of which field values a pattern accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bitmap([u64; 4]);

impl Bitmap {
    const ALL: Bitmap = Bitmap([u64::MAX; 4]);

    /// Evaluates `regex` (`None`: matches everything) on `'%0{width}x' % v` for v < count.
    fn build(regex: Option<&Regex>, count: usize, width: usize) -> Self {
        let Some(regex) = regex else {
            return Self::ALL;
        };
        let mut bits = [0u64; 4];
        let mut buf = [0u8; 8];
        for v in 0..count {
            if regex.is_match(hex_text(v as u32, width, &mut buf)) {
                bits[v / 64] |= 1 << (v % 64);
            }
        }
        Bitmap(bits)
    }

    #[inline]
    fn get(&self, v: u8) -> bool {
        self.0[usize::from(v) / 64] & (1 << (v % 64)) != 0
    }
}

/// A compiled regex-dict address.
#[derive(Debug, Clone)]
pub struct RegexSpec {
    patterns: [String; 4],
    /// `None` when the domain pattern is `.*` or empty (matches every domain).
    domain: Option<Regex>,
    /// The domain pattern's verdict for domains 0 to 15.
    low_domains: u16,
    bus: Bitmap,
    /// Slots 0 to 0x1f and functions 0 to 7 (the PCI limits) are pre-evaluated; the
    /// regexes are kept for out-of-range values, which a hand-built `PciAddress` can hold.
    slot: Bitmap,
    func: Bitmap,
    slot_regex: Option<Regex>,
    func_regex: Option<Regex>,
}

const KEYS: [&str; 4] = ["domain", "bus", "slot", "function"];

impl RegexSpec {
    /// Parses the dict `address` (given whole, for the error message) as Nova's
    /// `PciAddressRegexSpec` does. A value that is not a string makes Nova fail with a raw
    /// `TypeError`; pcitrack refuses it as `PciDeviceWrongAddressFormat`.
    pub fn parse(address: &Value) -> Result<Self, SpecError> {
        let wrong = || SpecError::wrong_address(address.py_str());
        let mut patterns: [String; 4] = Default::default();
        let mut compiled: [Option<Regex>; 4] = Default::default();
        for (slot, key) in KEYS.iter().enumerate() {
            let pattern = match address.get(key) {
                None => ".*",
                Some(Value::Str(s)) => s.as_str(),
                Some(_) => return Err(wrong()),
            };
            // `.*` and the empty pattern match every (newline-free) text at its start.
            if !matches!(pattern, ".*" | "") {
                compiled[slot] = Some(compile_match(pattern).ok_or_else(wrong)?);
            }
            patterns[slot] = pattern.to_string();
        }
        let [domain, bus, slot, func] = compiled;
        let low_domains = Bitmap::build(domain.as_ref(), 16, 4).0[0] as u16;
        Ok(RegexSpec {
            bus: Bitmap::build(bus.as_ref(), 256, 2),
            slot: Bitmap::build(slot.as_ref(), 32, 2),
            func: Bitmap::build(func.as_ref(), 8, 1),
            slot_regex: slot,
            func_regex: func,
            domain,
            low_domains,
            patterns,
        })
    }

    /// Whether a device address passes.
    #[inline]
    pub fn accepts(&self, a: PciAddress) -> bool {
        field_ok(&self.func, self.func_regex.as_ref(), a.function, 8, 1)
            && field_ok(&self.slot, self.slot_regex.as_ref(), a.slot, 32, 2)
            && self.bus.get(a.bus)
            && match &self.domain {
                None => true,
                Some(_) if a.domain < 16 => self.low_domains & (1 << a.domain) != 0,
                Some(re) => re.is_match(hex_text(a.domain, 4, &mut [0u8; 8])),
            }
    }

    /// The four patterns as written (defaults filled in): domain, bus, slot, function.
    pub fn patterns(&self) -> [&str; 4] {
        [
            &self.patterns[0],
            &self.patterns[1],
            &self.patterns[2],
            &self.patterns[3],
        ]
    }

    /// The address these patterns spell out, when each is made only of hex digits (Nova's
    /// `is_single_address`) and together they form a canonical sysfs name. Nova asks sysfs
    /// about `"{domain}:{bus}:{slot}.{function}"` built from the raw patterns, so a
    /// non-canonical spelling (`"0"` for bus `00`, upper case) names no device there and is
    /// never a PF; requiring the canonical form keeps that behaviour.
    pub fn single_address(&self) -> Option<PciAddress> {
        if !self
            .patterns
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return None;
        }
        let text = format!(
            "{}:{}:{}.{}",
            self.patterns[0], self.patterns[1], self.patterns[2], self.patterns[3]
        );
        let addr: PciAddress = text.parse().ok()?;
        (addr.to_string() == text).then_some(addr)
    }
}

/// A pre-evaluated field below `limit`, else the regex itself.
#[inline]
fn field_ok(bits: &Bitmap, regex: Option<&Regex>, v: u8, limit: u8, width: usize) -> bool {
    if v < limit {
        bits.get(v)
    } else {
        regex.is_none_or(|re| re.is_match(hex_text(v.into(), width, &mut [0u8; 8])))
    }
}

/// `'%0{width}x' % value` into a stack buffer (no allocation on the match path).
#[inline]
fn hex_text(value: u32, width: usize, buf: &mut [u8; 8]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (8 - value.leading_zeros() as usize / 4).max(width).max(1);
    for (i, b) in buf[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *b = HEX[((value >> shift) & 0xf) as usize];
    }
    &buf[..digits]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::from_json;

    #[test]
    fn hex_text_is_python_percent_x() {
        let mut b = [0u8; 8];
        assert_eq!(hex_text(0, 4, &mut b), b"0000");
        assert_eq!(hex_text(0xa, 4, &mut b), b"000a");
        assert_eq!(hex_text(0x10000, 4, &mut b), b"10000");
        assert_eq!(hex_text(0xffff_ffff, 4, &mut b), b"ffffffff");
        assert_eq!(hex_text(0x1f, 1, &mut b), b"1f");
        assert_eq!(hex_text(0x7, 1, &mut b), b"7");
        assert_eq!(hex_text(0x7, 2, &mut b), b"07");
    }

    #[test]
    fn prefix_semantics_and_single_address() {
        let r = RegexSpec::parse(&from_json(r#"{"bus": "0"}"#).unwrap()).unwrap();
        assert!(r.accepts("0000:0a:00.1".parse().unwrap()));
        assert!(!r.accepts("0000:1a:00.1".parse().unwrap()));
        assert_eq!(r.single_address(), None);
        let r = RegexSpec::parse(
            &from_json(r#"{"domain": "1000", "bus": "0a", "slot": "00", "function": "0"}"#)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r.single_address(), Some("1000:0a:00.0".parse().unwrap()));
        // re.match("1000", "10000") succeeds: a prefix.
        assert!(r.accepts("10000:0a:00.0".parse().unwrap()));
        assert!(!r.accepts("0000:0a:00.0".parse().unwrap()));
        let low = RegexSpec::parse(&from_json(r#"{"domain": "000[1-3]"}"#).unwrap()).unwrap();
        assert!(low.accepts("0002:00:00.0".parse().unwrap()));
        assert!(!low.accepts("0004:00:00.0".parse().unwrap()));
        assert!(!low.accepts("0030:00:00.0".parse().unwrap()));
        // Out-of-range fields (only a hand-built PciAddress has them) use the regex.
        let f = RegexSpec::parse(&from_json(r#"{"function": "1", "slot": "2"}"#).unwrap()).unwrap();
        let odd = PciAddress {
            domain: 0,
            bus: 0,
            slot: 0x2f,
            function: 0x1a,
        };
        assert!(f.accepts(odd));
        assert!(!f.accepts(PciAddress {
            function: 0x2a,
            ..odd
        }));
        let r = RegexSpec::parse(
            &from_json(r#"{"domain": "0000", "bus": "0A", "slot": "00", "function": "0"}"#)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r.single_address(), None);
    }

    #[test]
    fn invalid_patterns_are_refused_with_the_dict() {
        let v = from_json(r#"{"domain": "*", "bus": "02"}"#).unwrap();
        assert_eq!(
            RegexSpec::parse(&v).unwrap_err().message,
            "The PCI address {'domain': '*', 'bus': '02'} has an incorrect format."
        );
    }
}
