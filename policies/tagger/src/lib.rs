//! The default tagger policy: Nova's `remote_managed` rules.
//!
//! * A device whose tags say `remote_managed` (oslo's lenient reading, the one in
//!   [`pcitrack_model::tag_value::bool_from_tag`]: `true`, `yes`, `1`, ..., or a JSON
//!   `true`) is assignable only if it has a card serial number: its own VPD's, or for a VF
//!   its PF's (the host resolves that inheritance into `inventory.serial_numbers`). Nova checks
//!   this inside spec matching; the default matcher does too, and this tagger enforces it
//!   for whatever matcher produced the tags (vendor matchers included).
//! * A remote-managed spec that names a PF by address or `devname` is refused with Nova's
//!   reason unless its ids are the PF's VF ids, and a remote-managed `devname` the host
//!   lacks is refused: the tagger receives the same `{"device_spec": [...]}` configuration
//!   as the matcher and applies these checks itself, so they hold even under another
//!   matcher.
//! * Devices that are not remote-managed are left alone (abstain). Their pooling value
//!   `remote_managed=false` is not a tag: the host derives it from the final tags with the
//!   same [`pcitrack_model::tag_value::bool_from_tag`], so tags stay exactly as Nova's
//!   `get_tags()`.
#![deny(missing_docs)]

use pcitrack_devspec::{Value, Whitelist, from_json, whitelist_from_config};
use pcitrack_model::tag_value::bool_from_tag;
use pcitrack_policy_sdk::{Candidate, Inventory, PolicyInfo, TagOutput, Tagger};

use pcitrack_policy_nova_view::InventoryView;

/// Why a remote-managed device without a serial number is rejected.
pub const NO_SERIAL: &str =
    "remote_managed device has no card serial number (VPD), its own or its PF's";

/// Nova's remote-managed rules.
pub struct RemoteManagedTagger {
    /// The specs, parsed only when one of them is remote-managed: the tagger's own checks
    /// concern those alone, and parsing every spec (regular expressions included) in each
    /// fresh instance would cost as much as the matching itself. The matcher parses and
    /// reports the whole configuration anyway.
    whitelist: Option<Whitelist>,
}

/// True when some spec of `config` has a `remote_managed` that reads as true (oslo's lenient
/// reading of the JSON value, as Nova's devspec: `true`, `"yes"`, `1`), or when the
/// configuration cannot be read cheaply (then the full parse decides and reports).
fn has_remote_managed_spec(config: &str) -> bool {
    fn spec_is_remote_managed(spec: &Value) -> bool {
        match spec {
            Value::List(items) => items.iter().any(spec_is_remote_managed),
            other => other
                .get("remote_managed")
                .is_some_and(Value::bool_from_string),
        }
    }
    if config.trim().is_empty() || !config.contains("remote_managed") {
        return false;
    }
    let Ok(value) = from_json(config) else {
        return true;
    };
    let entries: Vec<&Value> = match value.get("device_spec") {
        Some(Value::List(items)) => items.iter().collect(),
        Some(other) => vec![other],
        None => Vec::new(),
    };
    entries.into_iter().any(|entry| match entry {
        Value::Str(text) => from_json(text).map_or(true, |spec| spec_is_remote_managed(&spec)),
        native => spec_is_remote_managed(native),
    })
}

impl Tagger for RemoteManagedTagger {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "nova-remote-managed",
            env!("CARGO_PKG_VERSION"),
            "remote_managed devices need a card serial number; PFs cannot be remote-managed (Nova)",
        )
    }

    fn init(config: &str) -> Result<Self, String> {
        let whitelist = if has_remote_managed_spec(config) {
            Some(whitelist_from_config(config).map_err(|e| e.message)?)
        } else {
            None
        };
        Ok(RemoteManagedTagger { whitelist })
    }

    fn evaluate(
        &self,
        inventory: &Inventory,
        candidates: &[Candidate<'_>],
        out: &mut TagOutput,
    ) -> Result<(), String> {
        // Nova's parse-time checks; only remote-managed specs can fail them.
        if let Some(whitelist) = &self.whitelist {
            whitelist
                .bind(&InventoryView(inventory))
                .map_err(|e| e.message)?;
        }
        let mut serials: Option<Vec<bool>> = None;
        // Candidates share a handful of tag sets; read each set once.
        let mut last: Option<(*const pcitrack_policy_sdk::Tag, bool)> = None;
        for c in candidates {
            let remote_managed = match last {
                Some((set, value)) if std::ptr::eq(set, c.tags.as_ptr()) => value,
                _ => {
                    let value = c
                        .tags
                        .iter()
                        .rev() // a later tagger's value wins if a key was repeated
                        .find(|t| t.key == "remote_managed")
                        .is_some_and(|t| bool_from_tag(&t.value));
                    last = Some((c.tags.as_ptr(), value));
                    value
                }
            };
            if !remote_managed {
                out.abstain();
                continue;
            }
            let has_serial = serials.get_or_insert_with(|| serial_table(inventory));
            if has_serial.get(c.device as usize).copied().unwrap_or(false) {
                out.abstain();
            } else {
                out.reject(NO_SERIAL);
            }
        }
        Ok(())
    }
}

/// Which devices have a non-empty card serial number, built once per batch.
fn serial_table(inventory: &Inventory) -> Vec<bool> {
    let mut table = vec![false; inventory.devices.len()];
    for s in &inventory.serial_numbers {
        if let Some(slot) = table.get_mut(s.device as usize) {
            *slot |= !s.value.is_empty();
        }
    }
    table
}

pcitrack_policy_sdk::export_tagger!(RemoteManagedTagger);

#[cfg(test)]
mod tests;
