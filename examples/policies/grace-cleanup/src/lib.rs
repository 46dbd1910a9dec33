//! A grace period before deletion: a device that disappears (a flapping link, a driver
//! reload, a firmware update) is kept until it has been missing for N consecutive syncs, and
//! then Nova's rule decides (`TrackedDevice::nova_rule`: deleted with no owner when available,
//! unavailable or unclaimable; a device in use is deleted when freed). The host counts the
//! syncs (`missing-syncs`); N comes from the configuration: `[policies.grace-cleanup]
//! missing_syncs = 3` (default 3).

use pcitrack_policy_sdk::pcitrack_model::cleanup::CleanupVerdict;
use pcitrack_policy_sdk::{Cleanup, CleanupOutput, PolicyInfo, TrackedDevice};

/// The grace-period rule.
pub struct GraceCleanup {
    syncs: u32,
}

impl GraceCleanup {
    /// Kept while missing for fewer than N syncs; then Nova's rule.
    pub fn verdict(&self, d: &TrackedDevice) -> CleanupVerdict {
        if d.missing_syncs < self.syncs {
            return CleanupVerdict::Keep(format!(
                "missing for {} of {} syncs",
                d.missing_syncs, self.syncs
            ));
        }
        d.nova_rule()
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
            out.push(self.verdict(d));
        }
        Ok(())
    }
}

pcitrack_policy_sdk::export_cleanup!(GraceCleanup);

#[cfg(test)]
mod tests {
    use super::*;
    use pcitrack_policy_sdk::{DeviceKind, DeviceStatus, PciAddress};

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
        assert_eq!(
            p.verdict(&d(1)),
            CleanupVerdict::Keep("missing for 1 of 2 syncs".into())
        );
        assert_eq!(p.verdict(&d(2)), CleanupVerdict::Delete);
        assert_eq!(GraceCleanup::init("").unwrap().syncs, 3);
    }

    /// After the grace period Nova's rule decides: an owned free device is kept, a device in
    /// use is deleted (the agent holds that until it is freed).
    #[test]
    fn after_the_grace_period_nova_s_rule_decides() {
        let p = GraceCleanup::init(r#"{"missing_syncs": 2}"#).unwrap();
        let mut owned = d(2);
        owned.owner = Some("vm-1".into());
        assert!(matches!(p.verdict(&owned), CleanupVerdict::Keep(_)));
        owned.status = DeviceStatus::Allocated;
        assert_eq!(p.verdict(&owned), CleanupVerdict::Delete);
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
