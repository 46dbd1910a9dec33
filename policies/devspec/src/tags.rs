//! A spec's tags: every key left after `vendor_id`, `product_id`, `devname` and `address`.
//!
//! They are what Nova's `get_tags()` returns, in written order: values as written, except
//! `managed`, `live_migratable` and `one_time_use`, which current Nova normalises to
//! `"true"`/`"false"`. pcitrack's tags are strings, so a value that is not a JSON string
//! (`true`, `null`, `["a"]`) is rendered as Python's `json.dumps` would write it, which is
//! also how Nova stores such a value in a device's `extra_info`. The original value stays
//! available through [`Tag::raw`]. Tags are built once at parse time; a match returns the
//! spec's index and callers borrow its tags.

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
            Value::Str(s) => s.clone(),
            other => other.py_json(),
        };
        Tag { key, value, raw }
    }

    /// The key, e.g. `physical_network`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value as text.
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
    /// The text of `key`'s value.
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
