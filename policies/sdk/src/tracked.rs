//! Look-ups over the tracked devices a cleanup policy receives, and Nova's cleanup rule over
//! them (the vocabulary's, the one the agent applies when every policy abstains).

use pcitrack_model::cleanup::{CleanupVerdict, nova_rule};

use crate::TrackedDevice;

impl TrackedDevice {
    /// Nova's cleanup rule for this device ([`pcitrack_model::cleanup::nova_rule`]): delete
    /// an unowned `available`, `unavailable` or `unclaimable` device, and a `claimed` or
    /// `allocated` one (the agent deletes it when it is freed); keep the rest, with the reason.
    /// Pass the answer to [`crate::CleanupOutput::push`].
    pub fn nova_rule(&self) -> CleanupVerdict {
        nova_rule(self.status.into(), self.owner.is_some())
    }
}

impl From<crate::DeviceStatus> for pcitrack_model::DeviceStatus {
    fn from(s: crate::DeviceStatus) -> Self {
        use crate::DeviceStatus as S;
        use pcitrack_model::DeviceStatus as M;
        match s {
            S::Available => M::Available,
            S::Claimed => M::Claimed,
            S::Allocated => M::Allocated,
            S::Unavailable => M::Unavailable,
            S::Unclaimable => M::Unclaimable,
            S::Removed => M::Removed,
            S::Deleted => M::Deleted,
        }
    }
}

/// The PF of `tracked[index]` and its VFs, or the VFs of a PF: the devices whose state a
/// cleanup decision about `tracked[index]` may depend on.
pub fn relatives(tracked: &[TrackedDevice], index: usize) -> impl Iterator<Item = &TrackedDevice> {
    let me = &tracked[index];
    let family = me.parent.unwrap_or(me.address);
    tracked.iter().enumerate().filter_map(move |(i, d)| {
        let related = i != index && (d.address == family || d.parent == Some(family));
        related.then_some(d)
    })
}

impl crate::DeviceStatus {
    /// Nova's spelling of the status (`available`, `unavailable`, ...).
    pub fn as_str(&self) -> &'static str {
        pcitrack_model::DeviceStatus::from(*self).as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceKind, DeviceStatus, PciAddress};

    fn t(function: u8, kind: DeviceKind, parent: Option<PciAddress>) -> TrackedDevice {
        TrackedDevice {
            address: PciAddress {
                domain: 0,
                bus: 0x81,
                slot: 0,
                function,
            },
            vendor_id: 0x15b3,
            product_id: 0x1018,
            kind,
            status: DeviceStatus::Available,
            owner: None,
            parent,
            reported: false,
            missing_syncs: 1,
        }
    }

    #[test]
    fn statuses_convert_to_the_vocabulary_s_with_the_same_spelling() {
        use pcitrack_model::DeviceStatus as M;
        let all = [
            DeviceStatus::Available,
            DeviceStatus::Claimed,
            DeviceStatus::Allocated,
            DeviceStatus::Unavailable,
            DeviceStatus::Unclaimable,
            DeviceStatus::Removed,
            DeviceStatus::Deleted,
        ];
        let converted: Vec<M> = all.iter().map(|&s| s.into()).collect();
        assert_eq!(converted, M::ALL);
        for s in all {
            assert_eq!(s.as_str(), M::from(s).as_str());
        }
    }

    #[test]
    fn the_rule_deletes_a_device_in_use_and_keeps_an_owned_free_one() {
        let mut d = t(1, DeviceKind::VirtualFunction, None);
        assert_eq!(d.nova_rule(), CleanupVerdict::Delete);
        d.owner = Some("vm-1".into());
        assert!(matches!(d.nova_rule(), CleanupVerdict::Keep(_)));
        d.status = DeviceStatus::Allocated;
        assert_eq!(d.nova_rule(), CleanupVerdict::Delete);
    }

    #[test]
    fn a_vf_sees_its_pf_and_siblings_and_a_pf_sees_its_vfs() {
        let pf = PciAddress {
            domain: 0,
            bus: 0x81,
            slot: 0,
            function: 0,
        };
        let tracked = vec![
            t(0, DeviceKind::PhysicalFunction, None),
            t(1, DeviceKind::VirtualFunction, Some(pf)),
            t(2, DeviceKind::VirtualFunction, Some(pf)),
        ];
        let of_vf: Vec<u8> = relatives(&tracked, 1).map(|d| d.address.function).collect();
        assert_eq!(of_vf, vec![0, 2]);
        let of_pf: Vec<u8> = relatives(&tracked, 0).map(|d| d.address.function).collect();
        assert_eq!(of_pf, vec![1, 2]);
    }
}
