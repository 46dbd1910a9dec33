//! What a workload asks for: Nova's `InstancePCIRequest` (a count and a list of spec dicts) and
//! the `[pci] alias` definitions that name such specs.
//!
//! Alias parsing applies the rules of Nova 34's jsonschema (same keys, same patterns, `vdpa`
//! not an allowed `device_type`) and its 2025 table rules, with Nova's and jsonschema's
//! wording, because operators paste these messages into searches. The configuration parses
//! the aliases once, when it loads ([`AliasTable::from_config`]), as Nova does at start.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use pcitrack_model::tag_value::TagValue;
use pcitrack_model::{oslo, python};
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
    /// One of Nova's rules over the whole alias table (`nova/pci/request.py`
    /// `_validate_multispec`, `_validate_required_ids`); Nova raises these messages without
    /// the "Invalid PCI alias definition" prefix, and so does pcitrack.
    #[error("{0}")]
    Table(String),
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

/// The spec key of an alias's `resource_class` (Nova 2023.1, `nova/pci/request.py`
/// `_ALIAS_SCHEMA`), kept as written: Nova's `request_spec` normalises it only when it builds
/// Placement request groups, and the pools ignore it (`nova/pci/stats.py`
/// `ignored_spec_tags`).
pub const SPEC_RESOURCE_CLASS: &str = "resource_class";
/// The spec key of an alias's `traits` (Nova 2023.1): a comma list, kept as written, ignored
/// by the pools like [`SPEC_RESOURCE_CLASS`].
pub const SPEC_TRAITS: &str = "traits";
/// The spec key of an alias's `live_migratable` (Nova 2025.1): `"true"` or `"false"`, the
/// alias's value read with oslo's strict boolean (`get_alias_from_config`); Nova's stats
/// filter pools on it (`_filter_pools_for_live_migratable_devices`).
pub const SPEC_LIVE_MIGRATABLE: &str = "live_migratable";

/// One alias: its NUMA policy and the specs it ORs.
///
/// A spec holds what Nova 34 keeps of an alias entry (`nova/pci/request.py`
/// `get_alias_from_config`): `vendor_id`, `product_id`, `capability_type`, `dev_type` (the
/// entry's `device_type`), [`SPEC_RESOURCE_CLASS`] and [`SPEC_TRAITS`] as written, and
/// [`SPEC_LIVE_MIGRATABLE`] normalised to `"true"`/`"false"`; `name` and `numa_policy` are
/// taken out of it.
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

/// A `[pci] alias` option refused, naming the entry that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("alias[{entry}] {text}: {error}")]
pub struct AliasConfigError {
    /// The entry's index in the option's list (0-based, as in TOML's `alias[0]`). For a rule
    /// over the whole table, the first entry that breaks it.
    pub entry: usize,
    /// The entry as written.
    pub text: String,
    /// Nova's error (its message is Nova's, word for word, see [`AliasTable::from_config`]).
    pub error: AliasError,
}

/// Every key of Nova 34's `_ALIAS_SCHEMA` (`nova/pci/request.py`).
const ALIAS_KEYS: [&str; 9] = [
    "name",
    "capability_type",
    "product_id",
    "vendor_id",
    "device_type",
    "numa_policy",
    SPEC_RESOURCE_CLASS,
    SPEC_TRAITS,
    SPEC_LIVE_MIGRATABLE,
];
/// `nova/pci/utils.py` `PCI_VENDOR_PATTERN`, as jsonschema prints it.
const HEX4_PATTERN: &str = r"^([\\da-fA-F]{4})$";

/// Python's `repr()` of a JSON-decoded value, as jsonschema's messages print it (`True`,
/// `None`, `'text'`, `{'a': [1]}`).
fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => python::str_repr(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(o) => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{}: {}", python::str_repr(k), py_repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// jsonschema's `enum` message.
fn not_one_of(v: &Value, allowed: &[&str]) -> String {
    let list: Vec<String> = allowed.iter().map(|a| python::str_repr(a)).collect();
    format!("{} is not one of [{}]", py_repr(v), list.join(", "))
}

/// The first error jsonschema finds for one property of `_ALIAS_SCHEMA` (`type` first, then
/// the property's other keywords), or `None`.
fn property_error(key: &str, v: &Value) -> Option<String> {
    let Some(s) = v.as_str() else {
        return Some(format!("{} is not of type 'string'", py_repr(v)));
    };
    match key {
        // jsonschema 4.26's wording for minLength 1 (older releases said "is too short").
        "name" if s.is_empty() => Some(format!("{} should be non-empty", py_repr(v))),
        "name" if s.chars().count() > 256 => Some(format!("{} is too long", py_repr(v))),
        "capability_type" if s != "pci" => Some(not_one_of(v, &["pci"])),
        "product_id" | "vendor_id" if !is_pci_id(s) => {
            Some(format!("{} does not match '{HEX4_PATTERN}'", py_repr(v)))
        }
        "device_type" if !["type-PCI", "type-PF", "type-VF"].contains(&s) => {
            Some(not_one_of(v, &["type-PCI", "type-PF", "type-VF"]))
        }
        "numa_policy" if s.parse::<NumaPolicy>().is_err() => {
            let all = NumaPolicy::ALL.map(NumaPolicy::as_str);
            Some(not_one_of(v, &all))
        }
        _ => None,
    }
}

/// Python's `re.search(r'^([\da-fA-F]{4})$', s)`: four hex digits, and `$` also matches
/// before a final newline. (Python's `\d` would also take other scripts' decimal digits, which
/// no PCI id is made of; pcitrack refuses them.)
fn is_pci_id(s: &str) -> bool {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One entry through Nova's `_ALIAS_SCHEMA` and the per-entry part of
/// `get_alias_from_config`: the stripped name, the NUMA policy, the spec.
///
/// Which error jsonschema reports when there are several follows its `best_match` (4.26):
/// an error about the whole object (`additionalProperties`, then `required`) before one about
/// a property, and among properties the one whose name sorts last.
fn parse_entry(text: &str) -> Result<(String, NumaPolicy, Spec), AliasError> {
    let invalid = AliasError::Invalid;
    let value: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let Value::Object(obj) = &value else {
        return Err(invalid(format!(
            "{} is not of type 'object'",
            py_repr(&value)
        )));
    };
    // serde_json's map iterates in key order, which is the order jsonschema sorts them in.
    let unexpected: Vec<String> = obj
        .keys()
        .filter(|k| !ALIAS_KEYS.contains(&k.as_str()))
        .map(|k| python::str_repr(k))
        .collect();
    if !unexpected.is_empty() {
        let verb = if unexpected.len() == 1 { "was" } else { "were" };
        return Err(invalid(format!(
            "Additional properties are not allowed ({} {verb} unexpected)",
            unexpected.join(", ")
        )));
    }
    if !obj.contains_key("name") {
        return Err(invalid("'name' is a required property".into()));
    }
    if let Some(e) = obj.iter().rev().find_map(|(k, v)| property_error(k, v)) {
        return Err(invalid(e));
    }
    let mut name = "";
    let mut policy = NumaPolicy::Legacy;
    let mut spec = Spec::new();
    for (key, v) in obj {
        // Every value is a string: the schema checks above passed.
        let s = v.as_str().unwrap_or_default();
        match key.as_str() {
            "name" => name = s,
            "numa_policy" => policy = s.parse()?,
            "device_type" => {
                spec.insert("dev_type".into(), s.into());
            }
            SPEC_LIVE_MIGRATABLE => {
                let b = oslo::bool_from_string_strict(s).map_err(|e| invalid(e.to_string()))?;
                spec.insert(key.clone(), if b { "true" } else { "false" }.into());
            }
            _ => {
                spec.insert(key.clone(), TagValue::Str(s).carried().into_owned());
            }
        }
    }
    // Nova: `spec.pop('name').strip()` (Python's white space).
    Ok((python::strip(name).to_string(), policy, spec))
}

impl AliasTable {
    /// [`AliasTable::from_config`] with `[filter_scheduler] pci_in_placement` off, without the
    /// entry's position.
    ///
    /// # Errors
    ///
    /// As [`AliasTable::from_config`].
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, AliasError> {
        Self::from_config(entries, false).map_err(|e| e.error)
    }

    /// Parses and validates every `[pci] alias` entry (each a JSON object) as Nova 34's
    /// `get_alias_from_config` does when nova-api and nova-compute start
    /// (`nova/pci/request.py`): the `_ALIAS_SCHEMA` checks, `device_type` renamed to
    /// `dev_type`, `numa_policy` defaulting to legacy, `live_migratable` read with oslo's strict
    /// boolean, same-name aliases ORed when their NUMA policy and device type agree; then
    /// `_validate_aliases`: with `pci_in_placement` (Nova's `[filter_scheduler]
    /// pci_in_placement`) an alias may have only one spec (`_validate_multispec`, bug
    /// 2102038), and every spec needs `vendor_id` and `product_id`, or `resource_class` when
    /// `pci_in_placement` is on (`_validate_required_ids`, bug 2111440).
    ///
    /// # Errors
    ///
    /// [`AliasConfigError`] naming the entry, holding [`AliasError::Invalid`] with Nova's
    /// message for an entry that is not JSON (serde_json's wording there), fails the schema,
    /// has a bad `live_migratable`, or disagrees with a same-name alias on device type or NUMA
    /// policy; [`AliasError::Table`] with Nova's message for the two table rules.
    pub fn from_config<S: AsRef<str>>(
        entries: &[S],
        pci_in_placement: bool,
    ) -> Result<Self, AliasConfigError> {
        let mut table = AliasTable::default();
        // Names in Nova's dict order (first definition), with the entry of each spec.
        let mut order: Vec<(String, Vec<usize>)> = Vec::new();
        let at = |entry: usize, error: AliasError| AliasConfigError {
            entry,
            text: entries[entry].as_ref().to_string(),
            error,
        };
        for (i, entry) in entries.iter().enumerate() {
            let (name, policy, spec) = parse_entry(entry.as_ref()).map_err(|e| at(i, e))?;
            let Some(existing) = table.aliases.get_mut(&name) else {
                order.push((name.clone(), vec![i]));
                table.aliases.insert(
                    name,
                    Alias {
                        numa_policy: policy,
                        specs: vec![spec],
                    },
                );
                continue;
            };
            if existing.numa_policy != policy {
                return Err(at(
                    i,
                    AliasError::Invalid(format!("NUMA policy mismatch for alias '{name}'")),
                ));
            }
            // Nova compares spec['dev_type'] and fails with a bare KeyError ("'dev_type'") when
            // an alias defined twice lacks it; keep that text first, then explain it.
            match (existing.specs[0].get("dev_type"), spec.get("dev_type")) {
                (Some(a), Some(b)) if a == b => {}
                (Some(_), Some(_)) => {
                    return Err(at(
                        i,
                        AliasError::Invalid(format!("Device type mismatch for alias '{name}'")),
                    ));
                }
                _ => {
                    return Err(at(
                        i,
                        AliasError::Invalid(format!(
                            "'dev_type': alias '{name}' is defined more than once, so every \
                             definition must set device_type"
                        )),
                    ));
                }
            }
            existing.specs.push(spec);
            if let Some((_, seen)) = order.iter_mut().find(|(n, _)| *n == name) {
                seen.push(i);
            }
        }
        if pci_in_placement {
            let multi: Vec<&(String, Vec<usize>)> =
                order.iter().filter(|(_, seen)| seen.len() > 1).collect();
            if let Some((_, seen)) = multi.first() {
                let names: Vec<&str> = multi.iter().map(|(n, _)| n.as_str()).collect();
                return Err(at(
                    seen[1],
                    AliasError::Table(format!(
                        "The PCI alias(es) {} have multiple specs but \
                         [filter_scheduler]pci_in_placement is True. The PCI in Placement \
                         feature only supports one spec per alias. You can assign the same \
                         resource_class to multiple [pci]device_spec matchers to allow using \
                         different devices for the same alias.",
                        names.join(",")
                    )),
                ));
            }
        }
        let mut lacking: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, seen) in &order {
            for (spec, &entry) in table.aliases[name].specs.iter().zip(seen) {
                let ids = spec.contains_key("vendor_id") && spec.contains_key("product_id");
                let rc = pci_in_placement && spec.contains_key(SPEC_RESOURCE_CLASS);
                if !ids && !rc {
                    let first = lacking.entry(name.as_str()).or_insert(entry);
                    *first = (*first).min(entry);
                }
            }
        }
        if let Some(&entry) = lacking.values().min() {
            let names: Vec<&str> = lacking.keys().copied().collect();
            let needs = if pci_in_placement {
                "fields set or resource_class field set."
            } else {
                "fields set."
            };
            return Err(at(
                entry,
                AliasError::Table(format!(
                    "The PCI alias(es) {} does not have vendor_id and product_id {needs}",
                    names.join(",")
                )),
            ));
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
