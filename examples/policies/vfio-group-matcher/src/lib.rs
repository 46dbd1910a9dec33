//! A matcher on the device facts of contract 0.1.1 (`host.get-device-facts`): a device is
//! assignable when it is bound to the configured driver (default `vfio-pci`) and sits in one
//! of the configured IOMMU groups; it is tagged with its group and, when the host knows it,
//! the socket of its NUMA node. Every other device gets no opinion (abstain), so the default
//! matcher decides for it.
//!
//! ```toml
//! [policies.vfio-groups]
//! iommu_groups = [42, 43]
//! driver = "vfio-pci"      # optional
//! ```
//!
//! Why a vendor wants it: a device already bound to `vfio-pci` by the operator is ready to
//! pass through, and the IOMMU group is the unit a hypervisor must hand over whole; neither
//! is in Nova's `device_spec`.

use std::collections::{BTreeMap, BTreeSet};

use pcitrack_policy_sdk::{DeviceFacts, Inventory, MatchOutput, Matcher, PolicyInfo, Tag};

/// The matcher.
pub struct VfioGroupMatcher {
    groups: BTreeSet<u32>,
    driver: String,
}

impl VfioGroupMatcher {
    /// The verdicts for `targets`, given the facts of the inventory (what `evaluate` asks the
    /// host for; unit tests pass their own).
    pub fn decide(&self, facts: &DeviceFacts, targets: &[u32], out: &mut MatchOutput) {
        // One tag set per (group, socket), registered once per batch.
        let mut sets: BTreeMap<(u32, Option<u32>), u32> = BTreeMap::new();
        for &i in targets {
            let i = i as usize;
            let group = facts.iommu_group(i).filter(|g| self.groups.contains(g));
            match (group, facts.driver(i)) {
                (Some(group), Some(driver)) if driver == self.driver => {
                    let socket = facts.socket(i);
                    let set = *sets.entry((group, socket)).or_insert_with(|| {
                        let mut tags = vec![Tag::new("iommu_group", group.to_string())];
                        if let Some(socket) = socket {
                            tags.push(Tag::new("socket", socket.to_string()));
                        }
                        out.add_tag_set(tags)
                    });
                    out.assign(set);
                }
                _ => out.abstain(),
            }
        }
    }
}

impl Matcher for VfioGroupMatcher {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "vfio-group-matcher",
            env!("CARGO_PKG_VERSION"),
            "devices bound to vfio-pci in chosen IOMMU groups, tagged with group and socket",
        )
    }

    fn init(config: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(if config.trim().is_empty() {
            "{}"
        } else {
            config
        })
        .map_err(|e| format!("the configuration is not JSON: {e}"))?;
        let groups = match value.get("iommu_groups") {
            None => BTreeSet::new(),
            Some(list) => list
                .as_array()
                .ok_or("iommu_groups must be a list of IOMMU group numbers")?
                .iter()
                .map(|g| {
                    g.as_u64()
                        .and_then(|g| u32::try_from(g).ok())
                        .ok_or_else(|| format!("iommu_groups: {g} is not an IOMMU group number"))
                })
                .collect::<Result<_, _>>()?,
        };
        let driver = match value.get("driver") {
            None => "vfio-pci".to_string(),
            Some(d) => d.as_str().ok_or("driver must be a string")?.to_string(),
        };
        Ok(VfioGroupMatcher { groups, driver })
    }

    fn evaluate(
        &self,
        _inventory: &Inventory,
        targets: &[u32],
        out: &mut MatchOutput,
    ) -> Result<(), String> {
        if self.groups.is_empty() {
            targets.iter().for_each(|_| out.abstain());
            return Ok(());
        }
        self.decide(&DeviceFacts::read(), targets, out);
        Ok(())
    }
}

pcitrack_policy_sdk::export_matcher!(VfioGroupMatcher);

#[cfg(test)]
mod tests {
    use super::*;
    use pcitrack_policy_sdk::MatchVerdict;

    #[test]
    fn assigns_only_vfio_bound_devices_of_the_chosen_groups() {
        let m = VfioGroupMatcher::init(r#"{"device_spec": [], "iommu_groups": [42, 7]}"#).unwrap();
        let facts = DeviceFacts::from_rows(&[
            (Some(42), Some("vfio-pci"), Some(1)),
            (Some(42), Some("ixgbevf"), Some(1)),
            (Some(43), Some("vfio-pci"), Some(0)),
            (Some(7), Some("vfio-pci"), None),
            (None, Some("vfio-pci"), Some(0)),
        ]);
        let mut out = MatchOutput::default();
        m.decide(&facts, &[0, 1, 2, 3, 4], &mut out);
        let v = out.verdicts().to_vec();
        let MatchVerdict::Assign(a) = v[0] else {
            panic!("{v:?}")
        };
        assert_eq!(
            out.tag_set(a),
            [Tag::new("iommu_group", "42"), Tag::new("socket", "1")]
        );
        assert_eq!(v[1..3], [MatchVerdict::Abstain, MatchVerdict::Abstain]);
        let MatchVerdict::Assign(b) = v[3] else {
            panic!("{v:?}")
        };
        assert_eq!(out.tag_set(b), [Tag::new("iommu_group", "7")]);
        assert_eq!(v[4], MatchVerdict::Abstain);
    }

    #[test]
    fn a_bad_configuration_is_refused_naming_the_key() {
        let e = VfioGroupMatcher::init(r#"{"iommu_groups": ["x"]}"#)
            .err()
            .unwrap();
        assert!(e.contains("iommu_groups"), "{e}");
        let e = VfioGroupMatcher::init(r#"{"iommu_groups": [1], "driver": 3}"#)
            .err()
            .unwrap();
        assert!(e.contains("driver"), "{e}");
    }
}
