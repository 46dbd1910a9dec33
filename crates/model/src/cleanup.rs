//! What the cleanup chain sees and says, and Nova's rule for devices the host no longer
//! reports, written once.
//!
//! The agent (runtime and tracker) and the guests (the SDK and the default cleanup policy)
//! all depend on this crate, so the rule lives here and every side calls it: a rule written
//! in three places drifted once (the runtime's copy turned every delete of a device in use
//! into an explicit keep, which silently disabled "removed when freed").
//!
//! Who decides what:
//! * a cleanup policy answers [`CleanupVerdict`] per candidate (abstaining passes the
//!   candidate on down the chain);
//! * when every policy abstains, [`nova_rule`] decides;
//! * the tracker alone applies the guard that a claimed or allocated device is never deleted
//!   while held: a `Delete` of a device in use is deferred until it is freed, an explicit
//!   `Keep` is respected.

use serde::{Deserialize, Serialize};

use crate::hex::serde_hex;
use crate::{DevType, DeviceStatus, PciAddress};

/// What a cleanup policy sees of one tracked device (the contract's `tracked-device`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupCandidate {
    /// The device.
    pub address: PciAddress,
    /// PCI vendor id.
    #[serde(
        serialize_with = "serde_hex::ser_u16",
        deserialize_with = "serde_hex::de_u16"
    )]
    pub vendor_id: u16,
    /// PCI device id.
    #[serde(
        serialize_with = "serde_hex::ser_u16",
        deserialize_with = "serde_hex::de_u16"
    )]
    pub product_id: u16,
    /// Its type.
    pub dev_type: DevType,
    /// Its status before this sync.
    pub status: DeviceStatus,
    /// The instance holding it.
    pub owner: Option<String>,
    /// Its PF, for a VF or vDPA device.
    pub parent: Option<PciAddress>,
    /// Whether this sync reported it as assignable.
    pub reported: bool,
    /// Consecutive syncs, this one included, that did not report it (0 when reported).
    pub missing_syncs: u32,
}

impl CleanupCandidate {
    /// [`nova_rule`] applied to this device.
    pub fn nova_rule(&self) -> CleanupVerdict {
        nova_rule(self.status, self.owner.is_some())
    }
}

/// What to do with a device the host no longer reports (or that no matcher assigns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanupVerdict {
    /// Delete it. A claimed or allocated device is not deleted while held: the tracker
    /// deletes it when it is freed.
    Delete,
    /// Keep it, for this reason (logged and reported). A policy that keeps a device in use
    /// keeps it for good: it becomes free again when released.
    Keep(String),
    /// No opinion: the next policy in the chain decides, and [`nova_rule`] after the last.
    Abstain,
}

/// Nova's cleanup rule for a device the host no longer reports.
///
/// Since Nova 284ea72e96 (2022, "Remove unavailable but not reported PCI devices at
/// startup"; `nova/pci/manager.py` `_set_hvdevs`, `nova/objects/pci_device.py` `remove()`):
/// a device with no owner is removed when it is `available`, `unavailable` or `unclaimable`;
/// an owned one is kept (`PciDeviceInvalidOwner`). Before it only `available` devices went,
/// which left the VFs of a failed-and-replaced PF `unavailable` for ever.
///
/// A `claimed` or `allocated` device also goes, when it is freed: since Nova f37cdf0c41
/// (2025, bug 2115905; `manager.py` `to_be_removed_when_freed`) an allocated device the host
/// stopped reporting is remembered and removed on free instead of becoming available. So the
/// rule answers [`CleanupVerdict::Delete`] for it; holding the deletion until the device is
/// free is the tracker's guard, not the rule's business.
///
/// A device already `removed` or `deleted` is kept: Nova's `remove()` refuses it
/// (`PciDeviceInvalidStatus`).
pub fn nova_rule(status: DeviceStatus, owned: bool) -> CleanupVerdict {
    use DeviceStatus::*;
    match status {
        Claimed | Allocated => CleanupVerdict::Delete,
        Available | Unavailable | Unclaimable if !owned => CleanupVerdict::Delete,
        Available | Unavailable | Unclaimable => CleanupVerdict::Keep(format!(
            "{status} with an owner: Nova does not remove an owned device (PciDeviceInvalidOwner)"
        )),
        Removed | Deleted => CleanupVerdict::Keep(format!("{status}: already being removed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unowned_available_unavailable_and_unclaimable_devices_are_deleted() {
        for status in [
            DeviceStatus::Available,
            DeviceStatus::Unavailable,
            DeviceStatus::Unclaimable,
        ] {
            assert_eq!(nova_rule(status, false), CleanupVerdict::Delete, "{status}");
        }
    }

    #[test]
    fn owned_devices_that_are_not_in_use_are_kept_naming_nova_s_refusal() {
        for status in [
            DeviceStatus::Available,
            DeviceStatus::Unavailable,
            DeviceStatus::Unclaimable,
        ] {
            match nova_rule(status, true) {
                CleanupVerdict::Keep(why) => {
                    assert!(why.contains(status.as_str()), "{why}");
                    assert!(why.contains("PciDeviceInvalidOwner"), "{why}");
                }
                other => panic!("{status} owned: {other:?}"),
            }
        }
    }

    /// Nova f37cdf0c41: a device in use that left the host goes when freed, so the rule says
    /// delete; the in-use guard (defer until freed) is the tracker's.
    #[test]
    fn claimed_and_allocated_devices_are_deleted_owned_or_not() {
        for status in [DeviceStatus::Claimed, DeviceStatus::Allocated] {
            for owned in [true, false] {
                assert_eq!(nova_rule(status, owned), CleanupVerdict::Delete, "{status}");
            }
        }
    }

    #[test]
    fn removed_and_deleted_devices_are_kept() {
        for status in [DeviceStatus::Removed, DeviceStatus::Deleted] {
            assert!(matches!(
                nova_rule(status, false),
                CleanupVerdict::Keep(why) if why.contains(status.as_str())
            ));
        }
    }

    #[test]
    fn the_candidate_applies_the_rule_to_its_status_and_owner() {
        let mut c = CleanupCandidate {
            address: "0000:3b:02.0".parse().unwrap(),
            vendor_id: 0x8086,
            product_id: 0x154c,
            dev_type: DevType::Vf,
            status: DeviceStatus::Available,
            owner: Some("vm-1".into()),
            parent: Some("0000:3b:00.0".parse().unwrap()),
            reported: false,
            missing_syncs: 1,
        };
        assert!(matches!(c.nova_rule(), CleanupVerdict::Keep(_)));
        c.status = DeviceStatus::Allocated;
        assert_eq!(c.nova_rule(), CleanupVerdict::Delete);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["vendor_id"], "8086");
        assert_eq!(serde_json::from_value::<CleanupCandidate>(json).unwrap(), c);
    }
}
