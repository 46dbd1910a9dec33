//! The default cleanup policy: what may be deleted once the host stops reporting a device.
//!
//! Nova's rule since its 2022 fix (commit 284ea72e96, "Remove unavailable but not reported PCI
//! devices at startup"): a device with no owner whose status is `available`, `unavailable`
//! or `unclaimable` may be deleted. Before the fix only `available` ones were, which left the
//! VFs of a failed-and-replaced PF stuck `unavailable` forever and its PF unclaimable. Every
//! other device is kept, with the reason. On top of any policy the host refuses to delete a
//! `claimed` or `allocated` device.
#![deny(missing_docs)]

use pcitrack_policy_sdk::{Cleanup, CleanupOutput, DeviceStatus, PolicyInfo, TrackedDevice};

/// Nova's cleanup rule since 2022.
pub struct NovaCleanup;

impl Cleanup for NovaCleanup {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "nova-cleanup",
            env!("CARGO_PKG_VERSION"),
            "delete unreported devices with no owner that are available, unavailable or unclaimable (Nova since 2022)",
        )
    }

    /// The rule takes no settings; any configuration text is accepted and ignored, so the
    /// agent can hand every policy the same config.
    fn init(_config: &str) -> Result<Self, String> {
        Ok(NovaCleanup)
    }

    fn evaluate(
        &self,
        tracked: &[TrackedDevice],
        candidates: &[u32],
        out: &mut CleanupOutput,
    ) -> Result<(), String> {
        for &i in candidates {
            let device = tracked.get(i as usize).ok_or_else(|| {
                format!(
                    "candidate index {i} is outside the {} tracked devices",
                    tracked.len()
                )
            })?;
            match verdict(device) {
                None => out.delete(),
                Some(reason) => out.keep(reason),
            }
        }
        Ok(())
    }
}

/// `None` when the device may be deleted, else why it is kept.
pub fn verdict(device: &TrackedDevice) -> Option<&'static str> {
    if device.owner.is_some() {
        return Some("the device has an owner");
    }
    match device.status {
        DeviceStatus::Available | DeviceStatus::Unavailable | DeviceStatus::Unclaimable => None,
        DeviceStatus::Claimed => Some("the device is claimed"),
        DeviceStatus::Allocated => Some("the device is allocated"),
        DeviceStatus::Removed | DeviceStatus::Deleted => {
            Some("the device is already being removed")
        }
    }
}

pcitrack_policy_sdk::export_cleanup!(NovaCleanup);

#[cfg(test)]
mod tests {
    use super::*;
    use pcitrack_policy_sdk::{CleanupVerdict, DeviceKind, PciAddress};

    fn device(status: DeviceStatus, owner: Option<&str>) -> TrackedDevice {
        TrackedDevice {
            address: PciAddress {
                domain: 0,
                bus: 0x81,
                slot: 0,
                function: 1,
            },
            vendor_id: 0x8086,
            product_id: 0x154c,
            kind: DeviceKind::VirtualFunction,
            status,
            owner: owner.map(str::to_string),
            parent: None,
            reported: false,
            missing_syncs: 1,
        }
    }

    #[test]
    fn deletes_unowned_available_unavailable_and_unclaimable_devices() {
        for status in [
            DeviceStatus::Available,
            DeviceStatus::Unavailable,
            DeviceStatus::Unclaimable,
        ] {
            assert_eq!(verdict(&device(status, None)), None, "{status:?}");
        }
    }

    #[test]
    fn keeps_owned_and_in_use_devices() {
        assert!(verdict(&device(DeviceStatus::Available, Some("uuid"))).is_some());
        assert!(verdict(&device(DeviceStatus::Claimed, Some("uuid"))).is_some());
        assert!(verdict(&device(DeviceStatus::Allocated, None)).is_some());
    }

    #[test]
    fn answers_one_verdict_per_candidate_in_order() {
        let tracked = vec![
            device(DeviceStatus::Allocated, Some("i-1")),
            device(DeviceStatus::Unavailable, None),
        ];
        let mut out = CleanupOutput::default();
        NovaCleanup.evaluate(&tracked, &[1, 0], &mut out).unwrap();
        assert_eq!(out.verdicts()[0], CleanupVerdict::Delete);
        assert!(matches!(out.verdicts()[1], CleanupVerdict::Keep(_)));
        assert!(NovaCleanup.evaluate(&tracked, &[7], &mut out).is_err());
    }
}
