//! A tag value as Nova holds it, carried in the contract's string.
//!
//! Nova keeps a device_spec tag with the type JSON gave it: `"trusted": true` is Python's
//! `True`, not `"true"`, and the pools compare it with the request's value by Python `==`
//! (`nova/pci/utils.py` `pci_device_prop_match`, after lower-casing strings). A request's
//! values are always strings or `None` (`InstancePCIRequest.spec` is a dict of nullable
//! strings, so `True` arrives as `"True"`), so a non-string tag never matches a request for
//! that key, while `"trusted": "true"` matches `"true"` and `"True"`. The contract
//! (`pcitrack:policy@0.1.0`) carries tags as string pairs, so the type rides in the text:
//!
//! * a string is carried as it is, unless it begins with [`TYPED_MARKER`];
//! * a value that is not a string is carried as [`TYPED_MARKER`] followed by its JSON text
//!   (`"\u{1}true"`, `"\u{1}null"`, `"\u{1}1"`, `"\u{1}[\"a\"]"`);
//! * a string that begins with the marker is carried as two markers and the string's
//!   remainder, so every string round-trips.
//!
//! The marker is U+0001 (START OF HEADING): not Python white space (so `strip()` keeps it),
//! not printable, not NUL (which C strings and SQLite text functions cut at), and never the
//! first character of JSON text. Policies that write plain strings need not know of it; a
//! vendor tagger that wants to set a typed value writes the marker and JSON text.
//! Requests use the same form for `None` (`"\u{1}null"`).

use std::borrow::Cow;
use std::fmt;

use crate::oslo;

/// The first character of a tag value that is not a plain string.
pub const TYPED_MARKER: char = '\u{1}';

/// A tag value read from its carried text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagValue<'a> {
    /// A string (Python `str`).
    Str(&'a str),
    /// Any other JSON value, as its JSON text (Python `True`, `None`, `1`, a list, ...).
    Json(&'a str),
}

impl<'a> TagValue<'a> {
    /// Reads a carried value.
    pub fn parse(carried: &'a str) -> Self {
        match carried.strip_prefix(TYPED_MARKER) {
            None => TagValue::Str(carried),
            Some(rest) if rest.starts_with(TYPED_MARKER) => TagValue::Str(rest),
            Some(json) => TagValue::Json(json),
        }
    }

    /// The carried text of this value.
    pub fn carried(&self) -> Cow<'a, str> {
        match *self {
            TagValue::Str(s) if s.starts_with(TYPED_MARKER) => {
                Cow::Owned(format!("{TYPED_MARKER}{s}"))
            }
            TagValue::Str(s) => Cow::Borrowed(s),
            TagValue::Json(json) => Cow::Owned(format!("{TYPED_MARKER}{json}")),
        }
    }

    /// Python's `value is None` (JSON `null`).
    pub fn is_none(&self) -> bool {
        *self == TagValue::Json("null")
    }

    /// oslo's lenient `bool_from_string(value)` ([`oslo::bool_from_string`]) on this value:
    /// a JSON boolean is itself; any other value reads as Python's `str(value)`. For the
    /// JSON that can read as true that is its JSON text (an integer's digits); `null`,
    /// floats, lists and objects print differently in Python (`None`, `1.0`, `['a']`) but
    /// never as a boolean word either way.
    pub fn bool_from_string(&self) -> bool {
        match *self {
            TagValue::Str(s) => oslo::bool_from_string(s),
            TagValue::Json("true") => true,
            TagValue::Json("false") => false,
            TagValue::Json(json) => oslo::bool_from_string(json),
        }
    }
}

impl fmt::Display for TagValue<'_> {
    /// The carried text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.carried())
    }
}

/// oslo's lenient `bool_from_string` of a carried tag value, as Nova reads
/// `remote_managed`: what the tagger, the runtime's pooling value and the tracker's pools
/// all call. Does not allocate.
pub fn bool_from_tag(carried: &str) -> bool {
    TagValue::parse(carried).bool_from_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips() {
        for v in [
            TagValue::Str(""),
            TagValue::Str("true"),
            TagValue::Str("\u{1}"),
            TagValue::Str("\u{1}true"),
            TagValue::Str("\u{1}\u{1}x"),
            TagValue::Json("true"),
            TagValue::Json("null"),
            TagValue::Json("[\"a\"]"),
        ] {
            assert_eq!(TagValue::parse(&v.carried()), v, "{v:?}");
        }
        assert_eq!(TagValue::Json("true").carried(), "\u{1}true");
        assert_eq!(TagValue::Str("physnet1").carried(), "physnet1");
    }

    #[test]
    fn typed_values_read_like_oslo() {
        assert!(bool_from_tag("\u{1}true"));
        assert!(!bool_from_tag("\u{1}false"));
        assert!(bool_from_tag("\u{1}1"));
        assert!(!bool_from_tag("\u{1}1.0"));
        assert!(!bool_from_tag("\u{1}null"));
        assert!(bool_from_tag("\u{1c}yes"));
        // A string that merely starts with the marker is a string.
        assert!(!bool_from_tag("\u{1}\u{1}true"));
        assert!(TagValue::parse("\u{1}null").is_none());
        assert!(!TagValue::parse("null").is_none());
    }
}
