//! The default cleanup policy: what may be deleted once the host stops reporting a device.
//!
//! Nova's rule since its 2022 fix (commit 284ea72e96, "Remove unavailable but not reported PCI
//! devices at startup"): a device with no owner whose status is `available`, `unavailable`
//! or `unclaimable` may be deleted. Before the fix only `available` ones were, which left the
//! VFs of a failed-and-replaced PF stuck `unavailable` forever and its PF unclaimable. A
//! `claimed` or `allocated` device is deleted too, when it is freed (Nova f37cdf0c41, 2025):
//! this policy says delete and the agent holds the deletion until the device is free. Every
//! other device is kept, with the reason.
//!
//! The rule itself is the vocabulary's (`pcitrack_model::cleanup::nova_rule`), the same
//! function the agent applies when every cleanup policy abstains; this policy only carries it
//! across the contract.
#![deny(missing_docs)]

use pcitrack_policy_sdk::{Cleanup, CleanupOutput, PolicyInfo, TrackedDevice};

/// Nova's cleanup rule since 2022.
pub struct NovaCleanup;

impl Cleanup for NovaCleanup {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "nova-cleanup",
            env!("CARGO_PKG_VERSION"),
            "delete unreported devices with no owner that are available, unavailable or unclaimable, and devices in use when freed (Nova since 2022)",
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
            out.push(device.nova_rule());
        }
        Ok(())
    }
}

pcitrack_policy_sdk::export_cleanup!(NovaCleanup);

#[cfg(test)]
mod tests {
    use super::*;
    use pcitrack_policy_sdk::{CleanupVerdict, DeviceKind, DeviceStatus, PciAddress};

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

    fn verdicts(tracked: &[TrackedDevice]) -> Vec<CleanupVerdict> {
        let mut out = CleanupOutput::default();
        let all: Vec<u32> = (0..tracked.len() as u32).collect();
        NovaCleanup.evaluate(tracked, &all, &mut out).unwrap();
        out.verdicts().to_vec()
    }

    #[test]
    fn deletes_unowned_available_unavailable_and_unclaimable_devices() {
        let tracked: Vec<_> = [
            DeviceStatus::Available,
            DeviceStatus::Unavailable,
            DeviceStatus::Unclaimable,
        ]
        .into_iter()
        .map(|s| device(s, None))
        .collect();
        assert_eq!(verdicts(&tracked), vec![CleanupVerdict::Delete; 3]);
    }

    /// Issue 15: the default used to answer an explicit keep for a device in use, which the
    /// agent obeyed, so a freed device that had left the host became available again.
    #[test]
    fn deletes_claimed_and_allocated_devices_the_agent_holds_until_freed() {
        let tracked = vec![
            device(DeviceStatus::Claimed, Some("vm-1")),
            device(DeviceStatus::Allocated, Some("vm-2")),
        ];
        assert_eq!(verdicts(&tracked), vec![CleanupVerdict::Delete; 2]);
    }

    #[test]
    fn keeps_owned_free_devices_and_devices_already_removed_with_reasons() {
        let tracked = vec![
            device(DeviceStatus::Available, Some("uuid")),
            device(DeviceStatus::Removed, None),
        ];
        let mut out = CleanupOutput::default();
        NovaCleanup.evaluate(&tracked, &[0, 1], &mut out).unwrap();
        let reasons: Vec<&str> = out
            .verdicts()
            .iter()
            .map(|v| match v {
                CleanupVerdict::Keep(i) => out.reason(*i),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(reasons[0].contains("owner"), "{reasons:?}");
        assert!(reasons[1].contains("removed"), "{reasons:?}");
    }

    #[test]
    fn answers_one_verdict_per_candidate_in_order() {
        let tracked = vec![
            device(DeviceStatus::Available, Some("i-1")),
            device(DeviceStatus::Unavailable, None),
        ];
        let mut out = CleanupOutput::default();
        NovaCleanup.evaluate(&tracked, &[1, 0], &mut out).unwrap();
        assert_eq!(out.verdicts()[0], CleanupVerdict::Delete);
        assert!(matches!(out.verdicts()[1], CleanupVerdict::Keep(_)));
        assert!(NovaCleanup.evaluate(&tracked, &[7], &mut out).is_err());
    }
}
