//! Nova's cleanup rule before its 2022 fix: only a device with no owner whose status is
//! `available` is deleted once the host stops reporting it; everything else is kept (with a
//! reason, not an abstention, so the default policy after it in the chain does not decide).
//!
//! This is the rule that left the VFs of a replaced PF `unavailable` for ever; it ships as an
//! example of swapping cleanup rules without rebuilding the agent.

use pcitrack_policy_sdk::{Cleanup, CleanupOutput, DeviceStatus, PolicyInfo, TrackedDevice};

/// Nova's rule before 2022.
pub struct PreFixCleanup;

/// `None` when the device may be deleted, else why it is kept.
pub fn verdict(device: &TrackedDevice) -> Option<String> {
    match (&device.owner, device.status) {
        (None, DeviceStatus::Available) => None,
        (Some(owner), _) => Some(format!("owned by {owner}")),
        (None, status) => Some(format!(
            "{} devices are kept (Nova's rule before 2022)",
            status.as_str()
        )),
    }
}

impl Cleanup for PreFixCleanup {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "nova-pre-2022-cleanup",
            env!("CARGO_PKG_VERSION"),
            "delete only unowned available devices (Nova before 2022)",
        )
    }

    fn init(_config: &str) -> Result<Self, String> {
        Ok(PreFixCleanup)
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
            match verdict(d) {
                None => out.delete(),
                Some(reason) => out.keep(&reason),
            }
        }
        Ok(())
    }
}

pcitrack_policy_sdk::export_cleanup!(PreFixCleanup);

#[cfg(test)]
mod tests {
    use super::*;
    use pcitrack_policy_sdk::{DeviceKind, PciAddress};

    fn d(status: DeviceStatus, owner: Option<&str>) -> TrackedDevice {
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
            status,
            owner: owner.map(String::from),
            parent: None,
            reported: false,
            missing_syncs: 1,
        }
    }

    #[test]
    fn only_unowned_available_devices_go() {
        assert_eq!(verdict(&d(DeviceStatus::Available, None)), None);
        assert_eq!(
            verdict(&d(DeviceStatus::Unavailable, None)).unwrap(),
            "unavailable devices are kept (Nova's rule before 2022)"
        );
        assert!(verdict(&d(DeviceStatus::Unclaimable, None)).is_some());
        assert!(verdict(&d(DeviceStatus::Available, Some("vm"))).is_some());
    }
}
