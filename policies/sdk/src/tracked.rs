//! Look-ups over the tracked devices a cleanup policy receives.

use crate::TrackedDevice;

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
        use crate::DeviceStatus as S;
        match self {
            S::Available => "available",
            S::Claimed => "claimed",
            S::Allocated => "allocated",
            S::Unavailable => "unavailable",
            S::Unclaimable => "unclaimable",
            S::Removed => "removed",
            S::Deleted => "deleted",
        }
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
