//! The regex-dict form of `address`: `{"domain": re, "bus": re, "slot": re, "function": re}`,
//! each a Python regular expression matched with `re.match` against the device's
//! normalised field (`%04x`, `%02x`, `%02x`, `%1x`); missing keys mean `.*`, other keys are
//! ignored.
//!
//! Bus, slot and function have at most 256 values, so each pattern's verdict per value is
//! remembered in a bitmap and matching a device is (after the first device with that value)
//! three bit tests. The bitmaps fill on demand rather than at parse time: a policy parses its
//! configuration in every fresh instance, and evaluating a pattern on all 256 buses up front
//! cost more than the whole batch's matching, while a host uses a few dozen buses at most.
//! The domain has 2^32 values: its pattern is remembered for domains 0 to 0xff, in a bitmap
//! like the bus's (every domain of nearly every host: VMD's, from 0x10000, are the exception),
//! and run as a regex for others. It was remembered for domains 0 to 15 only, and a file of
//! several hosts' devices moved to domains of their own ran the regex for most devices
//! (issue 14: `policy eval` on 200 000 devices over 49 domains went from 1.42 to 1.19 us per
//! device when they were remembered). `.*` and empty patterns are not compiled at all.

use std::sync::atomic::{AtomicU64, Ordering};

use pcitrack_model::PciAddress;
use regex_lite::Regex;

use crate::error::SpecError;
use crate::pyregex::compile_match;
use crate::value::Value;

/// Which of a field's first 256 values a pattern accepts, learnt value by value. Atomics
/// (not `Cell`) keep the spec `Sync`; two threads evaluating one value write the same bit.
#[derive(Debug, Default)]
struct Memo {
    known: [AtomicU64; 4],
    accepted: [AtomicU64; 4],
}

impl Clone for Memo {
    fn clone(&self) -> Self {
        let copy = |a: &[AtomicU64; 4], order| a.each_ref().map(|w| AtomicU64::new(w.load(order)));
        // `known` first, acquired, as `accepts` reads them: a copied known bit has its answer.
        let known = copy(&self.known, Ordering::Acquire);
        Memo {
            known,
            accepted: copy(&self.accepted, Ordering::Relaxed),
        }
    }
}

/// One field's pattern: absent (`.*`, matches everything) or a regex with its memo.
#[derive(Debug, Clone)]
struct FieldPattern {
    regex: Option<Regex>,
    memo: Memo,
    /// Values below this are remembered; others run the regex each time.
    limit: u32,
    /// Digits of `'%0{width}x'`.
    width: usize,
}

impl FieldPattern {
    fn new(regex: Option<Regex>, limit: u32, width: usize) -> Self {
        FieldPattern {
            regex,
            memo: Memo::default(),
            limit,
            width,
        }
    }

    /// Whether the pattern accepts `'%0{width}x' % v`.
    #[inline]
    fn accepts(&self, v: u32) -> bool {
        let Some(regex) = &self.regex else {
            return true;
        };
        if v >= self.limit {
            return regex.is_match(hex_text(v, self.width, &mut [0u8; 8]));
        }
        let (word, bit) = ((v / 64) as usize, 1u64 << (v % 64));
        // `accepted` is written before `known` is released, and read after `known` is
        // acquired: a thread that sees the value known sees its answer (on any CPU).
        if self.memo.known[word].load(Ordering::Acquire) & bit != 0 {
            return self.memo.accepted[word].load(Ordering::Relaxed) & bit != 0;
        }
        let accepted = regex.is_match(hex_text(v, self.width, &mut [0u8; 8]));
        if accepted {
            self.memo.accepted[word].fetch_or(bit, Ordering::Relaxed);
        }
        self.memo.known[word].fetch_or(bit, Ordering::Release);
        accepted
    }
}

/// A compiled regex-dict address.
#[derive(Debug, Clone)]
pub struct RegexSpec {
    patterns: [String; 4],
    /// Remembered for domains 0 to 0xff; others run the regex.
    domain: FieldPattern,
    bus: FieldPattern,
    /// Remembered up to the PCI limits (slots 0 to 0x1f, functions 0 to 7); a hand-built
    /// `PciAddress` beyond them runs the regex.
    slot: FieldPattern,
    func: FieldPattern,
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
        Ok(RegexSpec {
            domain: FieldPattern::new(domain, 256, 4),
            bus: FieldPattern::new(bus, 256, 2),
            slot: FieldPattern::new(slot, 32, 2),
            func: FieldPattern::new(func, 8, 1),
            patterns,
        })
    }

    /// Whether a device address passes.
    #[inline]
    pub fn accepts(&self, a: PciAddress) -> bool {
        self.func.accepts(a.function.into())
            && self.slot.accepts(a.slot.into())
            && self.bus.accepts(a.bus.into())
            && self.domain.accepts(a.domain)
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

/// `'%0{width}x' % value` into a stack buffer (no allocation on the match path).
#[inline]
fn hex_text(value: u32, width: usize, buf: &mut [u8; 8]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (8 - value.leading_zeros() as usize / 4).max(width).max(1);
    for (i, b) in buf[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *b = HEX[((value >> shift) & 0xf) as usize];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(&buf[..digits]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::from_json;

    #[test]
    fn hex_text_is_python_percent_x() {
        let mut b = [0u8; 8];
        assert_eq!(hex_text(0, 4, &mut b), "0000");
        assert_eq!(hex_text(0xa, 4, &mut b), "000a");
        assert_eq!(hex_text(0x10000, 4, &mut b), "10000");
        assert_eq!(hex_text(0xffff_ffff, 4, &mut b), "ffffffff");
        assert_eq!(hex_text(0x1f, 1, &mut b), "1f");
        assert_eq!(hex_text(0x7, 1, &mut b), "7");
        assert_eq!(hex_text(0x7, 2, &mut b), "07");
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
    fn remembered_domains_answer_as_the_regex_does_asked_once_or_again() {
        // Python's `re.match` of the pattern against `'%04x' % domain`, by hand.
        let nova = |d: u32| {
            let t = format!("{d:04x}");
            t.starts_with("00") && (b'2'..=b'4').contains(&t.as_bytes()[2]) || t.starts_with("ab")
        };
        let r = RegexSpec::parse(&from_json(r#"{"domain": "00[2-4]|ab"}"#).unwrap()).unwrap();
        // Remembered up to 0xff, asked of the regex from 0x100.
        let domains = (0..0x60).chain([
            0xfe, 0xff, 0x100, 0x101, 0x234, 0xab00, 0xabff, 0xac00, 0xffff, 0x10024, 0xab000,
        ]);
        for d in domains {
            let a = PciAddress::new(d, 0x3b, 0, 0).unwrap();
            for asked in ["first", "again"] {
                assert_eq!(r.accepts(a), nova(d), "domain {d:#x}, asked {asked}");
            }
        }
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
