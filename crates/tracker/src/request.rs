//! What a workload asks for: Nova's `InstancePCIRequest` (a count and a list of spec dicts) and
//! the `[pci] alias` definitions that name such specs.
//!
//! Alias parsing applies the rules of Nova's jsonschema (same keys, same patterns, `vdpa` not
//! an allowed `device_type`) with jsonschema's wording, because operators paste these messages
//! into searches.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use pcitrack_model::python;
use pcitrack_model::tag_value::TagValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Nova's `PCINUMAAffinityPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumaPolicy {
    /// Only devices on the instance's NUMA nodes.
    Required,
    /// Devices on the instance's NUMA nodes, else devices without NUMA information (default).
    Legacy,
    /// Like legacy, then any device, closest first.
    Preferred,
    /// Devices on a NUMA node in the same socket as one of the instance's nodes.
    Socket,
}

impl NumaPolicy {
    /// Every policy, in Nova's order.
    pub const ALL: [NumaPolicy; 4] = [
        NumaPolicy::Required,
        NumaPolicy::Legacy,
        NumaPolicy::Preferred,
        NumaPolicy::Socket,
    ];

    /// Nova's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NumaPolicy::Required => "required",
            NumaPolicy::Legacy => "legacy",
            NumaPolicy::Preferred => "preferred",
            NumaPolicy::Socket => "socket",
        }
    }
}

impl fmt::Display for NumaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NumaPolicy {
    type Err = AliasError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NumaPolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                AliasError::Invalid(format!(
                    "'{s}' is not one of ['required', 'legacy', 'preferred', 'socket']"
                ))
            })
    }
}

/// One spec dict: every key must match the pool (vendor_id, product_id, dev_type, and tags
/// such as physical_network, remote_managed, trusted).
///
/// Nova's `InstancePCIRequest.spec` is a list of dicts of *nullable strings*: whatever a
/// request says is coerced to `str` (`True` becomes `"True"`, `1` becomes `"1"`) except
/// `None`, which stays `None` and matches a pool without the key. The values here are in
/// the carried form of [`pcitrack_model::tag_value`]: a string as it is, `None` as
/// `"\u{1}null"` (see [`null_value`]).
pub type Spec = BTreeMap<String, String>;

/// A request spec's `None` in carried form.
pub fn null_value() -> String {
    TagValue::Json("null").carried().into_owned()
}

/// Nova's `InstancePCIRequest`: `count` devices, each matching any one of `spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciRequest {
    /// How many devices.
    pub count: u32,
    /// Alternatives: a device must match every key of at least one.
    pub spec: Vec<Spec>,
    /// The alias the request came from, if any.
    #[serde(default)]
    pub alias_name: Option<String>,
    /// NUMA affinity; `None` means legacy.
    #[serde(default)]
    pub numa_policy: Option<NumaPolicy>,
    /// Recorded on the claimed devices (Nova's `request_id`).
    #[serde(default)]
    pub request_id: Option<String>,
}

impl PciRequest {
    /// A request for `count` devices matching one spec.
    pub fn new(count: u32, spec: Spec) -> Self {
        Self {
            count,
            spec: vec![spec],
            alias_name: None,
            numa_policy: None,
            request_id: None,
        }
    }

    /// Reads a spec given as JSON (an object, or a list of objects as alternatives), e.g. from
    /// `pcitrack claim --spec`. Values are coerced the way Nova's `InstancePCIRequest`
    /// coerces them (oslo.versionedobjects' nullable `String` field): `true` → `"True"`,
    /// `1` → `"1"`, `null` stays `None`.
    ///
    /// # Errors
    ///
    /// [`RequestError::BadSpec`] when the text is not JSON, not an object or list of
    /// objects, or a value is a list or an object (which Nova refuses: "A string is
    /// required").
    pub fn from_spec_json(text: &str, count: u32) -> Result<Self, RequestError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| RequestError::BadSpec(format!("{text:?} is not JSON: {e}")))?;
        let objects = match value {
            Value::Object(o) => vec![o],
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::Object(o) => Ok(o),
                    other => Err(RequestError::BadSpec(format!(
                        "{other} in {text:?} is not an object"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(RequestError::BadSpec(format!(
                    "{other} is not an object or a list of objects"
                )));
            }
        };
        let spec = objects
            .into_iter()
            .map(|o| {
                o.into_iter()
                    .map(|(k, v)| {
                        let carried = coerce(&v).ok_or_else(|| {
                            RequestError::BadSpec(format!(
                                "the value of {k:?} in {text:?} is {v}: a request value must be \
                                 a string, a number, a boolean or null (Nova: A string is required)"
                            ))
                        })?;
                        Ok((k, carried))
                    })
                    .collect::<Result<Spec, RequestError>>()
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            count,
            spec,
            alias_name: None,
            numa_policy: None,
            request_id: None,
        })
    }
}

/// oslo.versionedobjects' nullable `String.coerce` of a JSON-decoded request value, as
/// `InstancePCIRequest.spec` applies it, in carried form: strings as they are, `None`
/// kept ([`null_value`]), booleans and numbers as Python's `str()`, lists and objects
/// refused (`None`). (A float prints with Rust's shortest round-trip digits, which differ
/// from Python's `repr` only in the exponent form, e.g. `1e20` for `1e+20`.)
pub fn coerce(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(TagValue::Str(s).carried().into_owned()),
        Value::Null => Some(null_value()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// A request that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// The spec JSON is malformed.
    #[error("invalid PCI request spec: {0}")]
    BadSpec(String),
}

/// A bad `[pci] alias` definition or alias reference.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AliasError {
    /// Nova's `PciInvalidAlias`.
    #[error("Invalid PCI alias definition: {0}")]
    Invalid(String),
    /// Nova's `PciRequestAliasNotDefined`.
    #[error("PCI alias {0} is not defined")]
    NotDefined(String),
    /// A `name:count` item without a usable count (Nova raises a bare ValueError).
    #[error("PCI alias request {item:?} is not NAME:COUNT: {problem}")]
    BadCount {
        /// The item as written.
        item: String,
        /// What is wrong.
        problem: &'static str,
    },
}

/// One alias: its NUMA policy and the specs it ORs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The policy (legacy when not given).
    pub numa_policy: NumaPolicy,
    /// The alternatives; same-name definitions are appended in order.
    pub specs: Vec<Spec>,
}

/// The parsed `[pci] alias` option: name → alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AliasTable {
    /// The aliases by (stripped) name.
    pub aliases: BTreeMap<String, Alias>,
}

const ALIAS_KEYS: [&str; 6] = [
    "name",
    "capability_type",
    "product_id",
    "vendor_id",
    "device_type",
    "numa_policy",
];
const HEX4_PATTERN: &str = r"^([\\da-fA-F]{4})$";

fn py_repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

fn check_string<'a>(key: &str, v: &'a Value) -> Result<&'a str, AliasError> {
    v.as_str().ok_or_else(|| {
        AliasError::Invalid(format!("{} is not of type 'string' ({key})", py_repr(v)))
    })
}

fn check_enum(key: &str, v: &Value, allowed: &[&str]) -> Result<String, AliasError> {
    let s = check_string(key, v)?;
    if allowed.contains(&s) {
        Ok(s.to_string())
    } else {
        let list: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
        Err(AliasError::Invalid(format!(
            "'{s}' is not one of [{}]",
            list.join(", ")
        )))
    }
}

fn check_hex4(key: &str, v: &Value) -> Result<String, AliasError> {
    let s = check_string(key, v)?;
    if s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_string())
    } else {
        Err(AliasError::Invalid(format!(
            "'{s}' does not match '{HEX4_PATTERN}'"
        )))
    }
}

impl AliasTable {
    /// Parses every `[pci] alias` entry (each a JSON object) the way Nova's
    /// `_get_alias_from_config` does: schema checks, `device_type` renamed to `dev_type`,
    /// `numa_policy` defaulting to legacy, and same-name aliases ORed when their policy and
    /// device type agree.
    ///
    /// # Errors
    ///
    /// [`AliasError::Invalid`] with Nova's message for an entry that is not JSON, fails the
    /// schema, or disagrees with a same-name alias on device type or NUMA policy.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, AliasError> {
        let mut table = AliasTable::default();
        for entry in entries {
            let value: Value = serde_json::from_str(entry.as_ref())
                .map_err(|e| AliasError::Invalid(e.to_string()))?;
            let Value::Object(obj) = value else {
                return Err(AliasError::Invalid(format!(
                    "{value} is not of type 'object'"
                )));
            };
            let unexpected: Vec<String> = obj
                .keys()
                .filter(|k| !ALIAS_KEYS.contains(&k.as_str()))
                .map(|k| format!("'{k}'"))
                .collect();
            if !unexpected.is_empty() {
                let verb = if unexpected.len() == 1 { "was" } else { "were" };
                return Err(AliasError::Invalid(format!(
                    "Additional properties are not allowed ({} {verb} unexpected)",
                    unexpected.join(", ")
                )));
            }
            let name = obj
                .get("name")
                .ok_or_else(|| AliasError::Invalid("'name' is a required property".into()))?;
            let name = check_string("name", name)?;
            if name.is_empty() {
                return Err(AliasError::Invalid("'' is too short".into()));
            }
            if name.chars().count() > 256 {
                return Err(AliasError::Invalid(format!("'{name}' is too long")));
            }
            let mut spec = Spec::new();
            let mut policy = NumaPolicy::Legacy;
            for (key, v) in &obj {
                match key.as_str() {
                    "name" => {}
                    "capability_type" => {
                        spec.insert(key.clone(), check_enum(key, v, &["pci"])?);
                    }
                    "product_id" | "vendor_id" => {
                        spec.insert(key.clone(), check_hex4(key, v)?);
                    }
                    "device_type" => {
                        let t = check_enum(key, v, &["type-PCI", "type-PF", "type-VF"])?;
                        spec.insert("dev_type".into(), t);
                    }
                    "numa_policy" => {
                        policy = check_string(key, v)?.parse()?;
                    }
                    _ => unreachable!("unexpected keys were refused above"),
                }
            }
            // Nova: `spec.pop('name').strip()` (Python's white space).
            let name = python::strip(name).to_string();
            match table.aliases.get_mut(&name) {
                None => {
                    table.aliases.insert(
                        name,
                        Alias {
                            numa_policy: policy,
                            specs: vec![spec],
                        },
                    );
                }
                Some(existing) => {
                    if existing.numa_policy != policy {
                        return Err(AliasError::Invalid(format!(
                            "NUMA policy mismatch for alias '{name}'"
                        )));
                    }
                    // Nova compares spec['dev_type'] and fails with a bare KeyError when an
                    // alias defined twice lacks it; keep the key in the message, explain it.
                    let first = existing.specs[0].get("dev_type");
                    let this = spec.get("dev_type");
                    match (first, this) {
                        (Some(a), Some(b)) if a == b => {}
                        (Some(_), Some(_)) => {
                            return Err(AliasError::Invalid(format!(
                                "Device type mismatch for alias '{name}'"
                            )));
                        }
                        _ => {
                            return Err(AliasError::Invalid(format!(
                                "'dev_type': alias '{name}' is defined more than once, so every \
                                 definition must set device_type"
                            )));
                        }
                    }
                    existing.specs.push(spec);
                }
            }
        }
        Ok(table)
    }

    /// Nova's `_translate_alias_to_requests`: `"name:count, name:count"` (names stripped) into
    /// requests; `affinity` (the flavor's or image's policy) overrides the alias's policy.
    ///
    /// # Errors
    ///
    /// [`AliasError::NotDefined`] for an unknown name, [`AliasError::BadCount`] for an item
    /// that is not `NAME:COUNT` with a positive count.
    pub fn requests(
        &self,
        extra_spec: &str,
        affinity: Option<NumaPolicy>,
    ) -> Result<Vec<PciRequest>, AliasError> {
        let mut out = Vec::new();
        for item in extra_spec.split(',') {
            let mut parts = item.split(':');
            let (Some(name), Some(count), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(AliasError::BadCount {
                    item: item.to_string(),
                    problem: "expected exactly one ':'",
                });
            };
            // Nova: `int(count)`, which ignores Python's white space around the digits.
            let count: u32 = python::strip(count)
                .parse()
                .map_err(|_| AliasError::BadCount {
                    item: item.to_string(),
                    problem: "the count is not a non-negative integer",
                })?;
            out.push(self.request(python::strip(name), count, affinity)?);
        }
        Ok(out)
    }

    /// A request for `count` devices of alias `name`.
    ///
    /// # Errors
    ///
    /// [`AliasError::NotDefined`] when no alias has that name.
    pub fn request(
        &self,
        name: &str,
        count: u32,
        affinity: Option<NumaPolicy>,
    ) -> Result<PciRequest, AliasError> {
        let alias = self
            .aliases
            .get(name)
            .ok_or_else(|| AliasError::NotDefined(name.to_string()))?;
        Ok(PciRequest {
            count,
            spec: alias.specs.clone(),
            alias_name: Some(name.to_string()),
            numa_policy: Some(affinity.unwrap_or(alias.numa_policy)),
            request_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_json_coerces_values_like_nova() {
        let r = PciRequest::from_spec_json(
            r#"{"physical_network":"physnet1","remote_managed":false,"x":null}"#,
            2,
        )
        .unwrap();
        assert_eq!(r.count, 2);
        assert_eq!(r.spec[0]["remote_managed"], "False");
        assert_eq!(r.spec[0]["x"], null_value());
        assert!(TagValue::parse(&r.spec[0]["x"]).is_none());
        let r = PciRequest::from_spec_json(r#"{"n": 1, "s": "\u0001x"}"#, 1).unwrap();
        assert_eq!(r.spec[0]["n"], "1");
        assert_eq!(TagValue::parse(&r.spec[0]["s"]), TagValue::Str("\u{1}x"));
        let e = PciRequest::from_spec_json(r#"{"n": [1]}"#, 1).unwrap_err();
        assert!(e.to_string().contains("\"n\""), "{e}");
        let e = PciRequest::from_spec_json("[1]", 1).unwrap_err();
        assert!(e.to_string().contains("not an object"));
    }

    #[test]
    fn two_keys_unexpected_use_were() {
        let e = AliasTable::parse(&[r#"{"name":"a","foo":1,"bar":2}"#]).unwrap_err();
        assert!(
            e.to_string().contains("'bar', 'foo' were unexpected"),
            "{e}"
        );
        let e = AliasTable::parse(&[r#"{"vendor_id":"8086"}"#]).unwrap_err();
        assert!(e.to_string().contains("'name' is a required property"));
    }
}
