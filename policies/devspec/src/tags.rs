//! A spec's tags: every key left after `vendor_id`, `product_id`, `devname` and `address`.
//!
//! They are what Nova's `get_tags()` returns, in written order: values as written, except
//! `managed`, `live_migratable` and `one_time_use`, which current Nova normalises to
//! `"true"`/`"false"`. Nova keeps each value's JSON type, and the type decides matching:
//! `"trusted": true` (Python `True`) matches no request, `"trusted": "true"` matches a
//! request for `"true"` (`nova/pci/utils.py` `pci_device_prop_match`). pcitrack's tags are
//! strings over the contract, so [`Tag::value`] is the value's carried form
//! ([`pcitrack_model::tag_value`]): a string as it is, any other value as a marker and its
//! JSON text as Python's `json.dumps` writes it (also how Nova stores such a value in a
//! device's `extra_info`). The original value stays available through [`Tag::raw`]. Tags
//! are built once at parse time; a match returns the spec's index and callers borrow its
//! tags.

use pcitrack_model::tag_value::TagValue;

use crate::value::Value;

/// One tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    key: String,
    value: String,
    raw: Value,
}

impl Tag {
    pub(crate) fn new(key: String, raw: Value) -> Self {
        let value = match &raw {
            Value::Str(s) => TagValue::Str(s).carried().into_owned(),
            other => TagValue::Json(&other.py_json()).carried().into_owned(),
        };
        Tag { key, value, raw }
    }

    /// The key, e.g. `physical_network`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value as carried over the contract: a string as it is, any other JSON value as
    /// [`pcitrack_model::tag_value::TYPED_MARKER`] and its JSON text (`"\u{1}true"`).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The value as written in the spec (after Nova's normalisation of boolean tags).
    pub fn raw(&self) -> &Value {
        &self.raw
    }
}

/// A spec's tags, in written order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tags(pub(crate) Vec<Tag>);

impl Tags {
    /// The carried text of `key`'s value (see [`Tag::value`]).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }

    /// All tags, in written order.
    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the spec has no tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tags as an ordered object, as Nova's `get_tags()` returns them.
    pub fn to_value(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|t| (t.key.clone(), t.raw.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use pcitrack_model::tag_value::TagValue;

    use crate::Whitelist;

    #[test]
    fn regression_json_bool_tag_does_not_match_string_request() {
        // The type reaches the contract: `true` is carried typed, `"true"` as the string,
        // so the tracker can tell them apart as Nova does.
        let wl = Whitelist::parse(&[r#"{"vendor_id": "8086", "trusted": true, "s": "true",
             "n": 1, "x": null, "l": ["a", 1.5], "m": "\u0001a", "managed": true}"#])
        .unwrap();
        let tags = wl.specs()[0].tags();
        assert_eq!(tags.get("trusted"), Some("\u{1}true"));
        assert_eq!(tags.get("s"), Some("true"));
        assert_eq!(tags.get("n"), Some("\u{1}1"));
        assert_eq!(tags.get("x"), Some("\u{1}null"));
        assert_eq!(tags.get("l"), Some("\u{1}[\"a\", 1.5]"));
        assert_eq!(tags.get("m"), Some("\u{1}\u{1}a"));
        assert_eq!(
            TagValue::parse(tags.get("m").unwrap()),
            TagValue::Str("\u{1}a")
        );
        // Nova normalises the boolean tags to the strings "true"/"false".
        assert_eq!(tags.get("managed"), Some("true"));
    }
}
