//! The policy configuration the host builds from the agent's `[pci]` section:
//! `{"device_spec": ["<json>", {native table}, ...], ...}`. Shared by the matcher and the
//! tagger, which receive the same text.

use crate::error::SpecError;
use crate::spec::Settings;
use crate::value::{Value, from_json};
use crate::whitelist::{Entry, Whitelist};

/// Reads `device_spec` from a policy configuration and parses it.
///
/// Strings are Nova's JSON entries; objects and lists are native (TOML) specs. A single
/// string instead of a list is one entry, as oslo.config reads a single
/// `device_spec = {...}` line. A missing or `null` `device_spec` is an empty list (nothing
/// assignable, as in Nova); `report_in_placement` (a boolean, or a string read as oslo
/// does; absent is false, Nova's default) is the [`Settings`] the specs parse under; other
/// keys (`alias`, ...) belong to other consumers and are ignored. Text that is not a JSON
/// object is refused with `PciConfigInvalidSpec`.
///
/// # Errors
///
/// [`SpecError`] with Nova's message for the first bad entry.
pub fn whitelist_from_config(config: &str) -> Result<Whitelist, SpecError> {
    if config.trim().is_empty() {
        return Ok(Whitelist::default());
    }
    let value = from_json(config)
        .map_err(|e| SpecError::invalid(format!("the policy configuration is not JSON: {e}")))?;
    let Value::Object(_) = value else {
        return Err(SpecError::invalid(
            "the policy configuration must be a JSON object with a device_spec list",
        ));
    };
    let entries: Vec<Entry> = match value.get("device_spec") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Str(s)) => vec![Entry::Json(s.clone())],
        Some(Value::List(items)) => items
            .iter()
            .map(|item| match item {
                Value::Str(s) => Entry::Json(s.clone()),
                other => Entry::Native(other.clone()),
            })
            .collect(),
        Some(other) => vec![Entry::Native(other.clone())],
    };
    let settings = Settings {
        report_in_placement: crate::boolstr::lenient(value.get("report_in_placement")),
    };
    Whitelist::parse_entries_with(&entries, settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_tables_and_defaults() {
        let wl = whitelist_from_config(
            r#"{"alias": [], "device_spec": ["{\"vendor_id\": \"8086\"}",
                 {"vendor_id": "15b3", "physical_network": "p"}, [{}, {}]]}"#,
        )
        .unwrap();
        assert_eq!(wl.len(), 4);
        assert_eq!(wl.specs()[1].tags().get("physical_network"), Some("p"));
        assert!(whitelist_from_config("{}").unwrap().is_empty());
        assert!(whitelist_from_config("").unwrap().is_empty());
        assert_eq!(
            whitelist_from_config(r#"{"device_spec": "{\"vendor_id\": \"8086\"}"}"#)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            whitelist_from_config(r#"{"device_spec": [5]}"#)
                .unwrap_err()
                .message,
            "Invalid [pci]device_spec config: Invalid entry: '5'; Expecting list or dict"
        );
        assert!(whitelist_from_config("[1]").is_err());
    }

    #[test]
    fn toml_tables_are_the_same_specs() {
        let toml_text = r#"
            [pci]
            device_spec = [
              '{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet1"}',
              { vendor_id = "15b3", address = { bus = "3[0-9]" }, trusted = "true" },
            ]
        "#;
        let pci: Value = toml::from_str::<Value>(toml_text).unwrap();
        let json = format!(
            "{{\"device_spec\": {}}}",
            pci.get("pci")
                .unwrap()
                .get("device_spec")
                .unwrap()
                .py_json()
        );
        let wl = whitelist_from_config(&json).unwrap();
        assert_eq!(wl.len(), 2);
        assert_eq!(wl.specs()[1].address().unwrap().field_texts()[1], "3[0-9]");
        assert_eq!(wl.specs()[1].tags().get("trusted"), Some("true"));
    }
}
