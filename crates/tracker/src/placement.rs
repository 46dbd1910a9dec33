//! Placement's names for a device: its resource class and traits, normalised as Nova 34's
//! PCI-in-Placement translator does (`nova/compute/pci_placement_translator.py`), from the
//! device_spec tags `resource_class` and `traits`.
//!
//! Nova keeps a standard name (one `os_resource_classes` or `os_traits` defines) as it is and
//! makes anything else a custom name: upper case, every run of characters outside
//! `[0-9A-Za-z]` one `_`, and a `CUSTOM_` prefix unless the upper-cased name already has one.
//! The standard names are data generated from those packages (`crates/tracker/data/`, by
//! `gen_placement_names.py`) and embedded here. These values never reach pool keys (Nova's
//! `PciDeviceStats.ignored_pool_tags`): Placement matches them, not the PCI filter.

use std::collections::{BTreeSet, HashSet};
use std::sync::OnceLock;

/// `os-traits`' standard trait names, one a line (a `#` line says which release).
const STANDARD_TRAITS: &str = include_str!("../data/standard_traits.txt");
/// `os-resource-classes`' standard resource classes, one a line.
const STANDARD_RESOURCE_CLASSES: &str = include_str!("../data/standard_resource_classes.txt");

/// The prefix of every custom trait and resource class.
pub const CUSTOM_PREFIX: &str = "CUSTOM_";
/// Every PCI provider carries it (`os_traits.COMPUTE_MANAGED_PCI_DEVICE`).
pub const COMPUTE_MANAGED_PCI_DEVICE: &str = "COMPUTE_MANAGED_PCI_DEVICE";
/// A device whose `live_migratable` tag is true (`os_traits.HW_PCI_LIVE_MIGRATABLE`).
pub const HW_PCI_LIVE_MIGRATABLE: &str = "HW_PCI_LIVE_MIGRATABLE";
/// A one-time-use PCI or PF device (`os_traits.HW_PCI_ONE_TIME_USE`).
pub const HW_PCI_ONE_TIME_USE: &str = "HW_PCI_ONE_TIME_USE";

fn names(text: &'static str) -> HashSet<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Whether `name` is one of `os_traits`' standard traits (exactly, case included).
pub fn is_standard_trait(name: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| names(STANDARD_TRAITS)).contains(name)
}

/// Whether `name` is one of `os_resource_classes.STANDARDS` (exactly).
pub fn is_standard_resource_class(name: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| names(STANDARD_RESOURCE_CLASSES))
        .contains(name)
}

/// `os_traits.normalize_name` / `os_resource_classes.normalize_name`: every run of
/// characters outside ASCII `[0-9A-Za-z]` becomes one `_`, then upper case, then the
/// `CUSTOM_` prefix (added even when the name already has one; callers check first).
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(CUSTOM_PREFIX.len() + name.len());
    out.push_str(CUSTOM_PREFIX);
    let mut in_run = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

/// Nova's `get_traits`: the comma-separated `traits` tag as Placement trait names. A standard
/// name stays as written; any other is upper-cased (Python's `str.upper`, full Unicode case
/// mapping) and kept when it then starts with `CUSTOM_`, else normalised
/// ([`normalize_name`]). An empty value is no trait; an empty item (`"A,,B"`) is `CUSTOM_`,
/// as in Nova.
pub fn normalize_traits(traits: &str) -> BTreeSet<String> {
    if traits.is_empty() {
        return BTreeSet::new();
    }
    traits
        .split(',')
        .map(|name| {
            if is_standard_trait(name) {
                return name.to_string();
            }
            let upper = name.to_uppercase();
            if upper.starts_with(CUSTOM_PREFIX) {
                upper
            } else {
                normalize_name(&upper)
            }
        })
        .collect()
}

/// Nova's `get_resource_class`: the `resource_class` tag upper-cased, kept when standard or
/// already custom, else normalised; without one (or with an empty one),
/// `CUSTOM_PCI_<VENDOR>_<PRODUCT>` from the ids as text.
pub fn resource_class(requested: Option<&str>, vendor_id: &str, product_id: &str) -> String {
    match requested.filter(|r| !r.is_empty()) {
        Some(rc) => {
            let upper = rc.to_uppercase();
            if is_standard_resource_class(&upper) || upper.starts_with(CUSTOM_PREFIX) {
                upper
            } else {
                normalize_name(&upper)
            }
        }
        None => format!("CUSTOM_PCI_{vendor_id}_{product_id}").to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_lists_hold_the_names_nova_uses() {
        assert!(is_standard_trait(COMPUTE_MANAGED_PCI_DEVICE));
        assert!(is_standard_trait(HW_PCI_LIVE_MIGRATABLE));
        assert!(is_standard_trait(HW_PCI_ONE_TIME_USE));
        assert!(is_standard_resource_class("PGPU"));
        assert!(!is_standard_resource_class("# os-resource-classes"));
    }

    #[test]
    fn names_normalise_as_nova_does() {
        assert_eq!(
            normalize_traits("HW_GPU_API_VULKAN,foo-bar,custom_x,a..b"),
            BTreeSet::from([
                "HW_GPU_API_VULKAN".to_string(),
                "CUSTOM_FOO_BAR".into(),
                "CUSTOM_X".into(),
                "CUSTOM_A_B".into(),
            ])
        );
        // A standard trait in lower case is not standard: it becomes custom.
        assert_eq!(
            normalize_traits("hw_gpu_api_vulkan"),
            BTreeSet::from(["CUSTOM_HW_GPU_API_VULKAN".to_string()])
        );
        assert_eq!(resource_class(Some("pgpu"), "10de", "1eb8"), "PGPU");
        assert_eq!(
            resource_class(Some("my-gpu"), "10de", "1eb8"),
            "CUSTOM_MY_GPU"
        );
        assert_eq!(resource_class(None, "10de", "1eb8"), "CUSTOM_PCI_10DE_1EB8");
        assert_eq!(
            resource_class(Some(""), "10de", "1eb8"),
            "CUSTOM_PCI_10DE_1EB8"
        );
    }
}
