//! A grace period before deletion: a device that disappears (a flapping link, a driver
//! reload, a firmware update) is deleted only once it has been missing for N consecutive
//! syncs, and then only under Nova's 2022 rule (no owner; available, unavailable or
//! unclaimable). The host counts the syncs (`missing-syncs`); N comes from the
//! configuration: `[policies.grace-cleanup] missing_syncs = 3` (default 3).

use pcitrack_policy_sdk::{Cleanup, CleanupOutput, DeviceStatus, PolicyInfo, TrackedDevice};

/// The grace-period rule.
pub struct GraceCleanup {
    syncs: u32,
}

impl GraceCleanup {
    /// `None` when the device may be deleted, else why it is kept.
    pub fn verdict(&self, d: &TrackedDevice) -> Option<String> {
        if let Some(owner) = &d.owner {
            return Some(format!("owned by {owner}"));
        }
        if !matches!(
            d.status,
            DeviceStatus::Available | DeviceStatus::Unavailable | DeviceStatus::Unclaimable
        ) {
            return Some(format!("status {}", d.status.as_str()));
        }
        (d.missing_syncs < self.syncs)
            .then(|| format!("missing for {} of {} syncs", d.missing_syncs, self.syncs))
    }
}

impl Cleanup for GraceCleanup {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "grace-cleanup",
            env!("CARGO_PKG_VERSION"),
            "delete unowned devices only after N consecutive syncs without them",
        )
    }

    fn init(config: &str) -> Result<Self, String> {
        let value: serde_json::Value = if config.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(config)
                .map_err(|e| format!("the configuration is not JSON: {e}"))?
        };
        let syncs = match value.get("missing_syncs") {
            None => 3,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=u32::MAX as u64).contains(n))
                .ok_or_else(|| format!("[policies.grace-cleanup] missing_syncs must be a whole number of syncs, at least 1 (got {v})"))?
                as u32,
        };
        Ok(GraceCleanup { syncs })
    }

    fn evaluate(
        &self,
        tracked: &[TrackedDevice],
        candidates: &[u32],
        out: &mut CleanupOutput,
    ) -> Result<(), String> {
        for &i in candidates {
            let d = tracked
                .get(i as usize)
                .ok_or_else(|| format!("candidate {i} out of range"))?;
            match self.verdict(d) {
                None => out.delete(),
                Some(reason) => out.keep(&reason),
            }
        }
        Ok(())
    }
}

pcitrack_policy_sdk::export_cleanup!(GraceCleanup);

#[cfg(test)]
mod tests {
    use super::*;
    use pcitrack_policy_sdk::{DeviceKind, PciAddress};

    fn d(missing_syncs: u32) -> TrackedDevice {
        TrackedDevice {
            address: PciAddress {
                domain: 0,
                bus: 0x81,
                slot: 0,
                function: 1,
            },
            vendor_id: 0x15b3,
            product_id: 0x101e,
            kind: DeviceKind::VirtualFunction,
            status: DeviceStatus::Unavailable,
            owner: None,
            parent: None,
            reported: false,
            missing_syncs,
        }
    }

    #[test]
    fn waits_for_the_configured_number_of_syncs() {
        let p = GraceCleanup::init(r#"{"device_spec": [], "missing_syncs": 2}"#).unwrap();
        assert_eq!(p.verdict(&d(1)).unwrap(), "missing for 1 of 2 syncs");
        assert_eq!(p.verdict(&d(2)), None);
        assert_eq!(GraceCleanup::init("").unwrap().syncs, 3);
    }

    #[test]
    fn refuses_a_bad_count_naming_it() {
        for bad in [
            r#"{"missing_syncs": 0}"#,
            r#"{"missing_syncs": "3"}"#,
            r#"{"missing_syncs": -1}"#,
        ] {
            let e = GraceCleanup::init(bad).err().unwrap();
            assert!(e.contains("missing_syncs must be a whole number"), "{e}");
        }
    }
}
