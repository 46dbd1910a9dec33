//! Nova's cleanup rule before its 2022 fix: of the devices nobody uses, only one with no
//! owner whose status is `available` is deleted once the host stops reporting it; an
//! unowned `unavailable` or `unclaimable` one is kept (with a reason, not an abstention, so
//! the default policy after it in the chain does not decide). Everything else follows the
//! current rule (`TrackedDevice::nova_rule`): an owned free device is kept, and a device in use
//! is deleted when it is freed (Nova f37cdf0c41, a separate fix).
//!
//! This is the rule that left the VFs of a replaced PF `unavailable` for ever; it ships as an
//! example of swapping cleanup rules without rebuilding the agent.

use pcitrack_policy_sdk::pcitrack_model::cleanup::CleanupVerdict;
use pcitrack_policy_sdk::{Cleanup, CleanupOutput, DeviceStatus, PolicyInfo, TrackedDevice};

/// Nova's rule before 2022.
pub struct PreFixCleanup;

/// What the pre-2022 rule says about `device`.
pub fn verdict(device: &TrackedDevice) -> CleanupVerdict {
    match (&device.owner, device.status) {
        (None, status @ (DeviceStatus::Unavailable | DeviceStatus::Unclaimable)) => {
            CleanupVerdict::Keep(format!(
                "{} devices are kept (Nova's rule before 2022)",
                status.as_str()
            ))
        }
        _ => device.nova_rule(),
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
            out.push(verdict(d));
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
    fn only_unowned_available_devices_go_of_those_nobody_uses() {
        assert_eq!(
            verdict(&d(DeviceStatus::Available, None)),
            CleanupVerdict::Delete
        );
        assert_eq!(
            verdict(&d(DeviceStatus::Unavailable, None)),
            CleanupVerdict::Keep("unavailable devices are kept (Nova's rule before 2022)".into())
        );
        assert!(matches!(
            verdict(&d(DeviceStatus::Unclaimable, None)),
            CleanupVerdict::Keep(_)
        ));
        assert!(matches!(
            verdict(&d(DeviceStatus::Available, Some("vm"))),
            CleanupVerdict::Keep(_)
        ));
    }

    /// A device in use that left the host is deleted when freed, as under the current rule.
    #[test]
    fn a_device_in_use_goes_when_freed() {
        for status in [DeviceStatus::Claimed, DeviceStatus::Allocated] {
            assert_eq!(verdict(&d(status, Some("vm"))), CleanupVerdict::Delete);
        }
    }
}
