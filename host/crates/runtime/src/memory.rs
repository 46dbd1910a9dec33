//! Each policy's last verdict per device, for when a call fails: the contract says a device
//! then keeps its last verdict.
//!
//! Kept as a vector sorted by address rather than a hash map: every successful call records
//! thousands of verdicts, and a sorted merge costs a copy per device where hashing costs a
//! hash and a probe; a failure (rare) looks devices up by binary search.

use std::sync::{Arc, Mutex};

use pcitrack_model::PciAddress;

/// Tags shared by every device a policy gave the same set to.
pub type Tags = Arc<[(String, String)]>;

/// A verdict remembered across calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Remembered {
    Abstain,
    Assign(Tags),
    Reject(Arc<str>),
}

/// Last verdicts by address.
#[derive(Debug, Default)]
pub(crate) struct VerdictMemory {
    entries: Mutex<Vec<(PciAddress, Remembered)>>,
}

impl VerdictMemory {
    /// Records the verdicts of one call, given in address order, replacing earlier ones for
    /// those devices. The common case (the same devices as last time) updates in place with
    /// no allocation: it runs after every successful call, on thousands of devices.
    pub(crate) fn record(
        &self,
        addresses: impl ExactSizeIterator<Item = PciAddress> + Clone,
        verdicts: &[Remembered],
    ) {
        debug_assert_eq!(addresses.len(), verdicts.len());
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let same_devices = entries.len() == addresses.len()
            && entries
                .iter()
                .zip(addresses.clone())
                .all(|((a, _), b)| *a == b);
        if same_devices {
            for ((_, slot), v) in entries.iter_mut().zip(verdicts) {
                slot.clone_from(v);
            }
            return;
        }
        let fresh = addresses.zip(verdicts.iter().cloned());
        if entries.is_empty() {
            entries.extend(fresh);
            return;
        }
        let old = std::mem::take(&mut *entries);
        let mut merged = Vec::with_capacity(old.len().max(verdicts.len()));
        let mut old = old.into_iter().peekable();
        for (address, verdict) in fresh {
            debug_assert!(
                merged
                    .last()
                    .is_none_or(|(a, _): &(PciAddress, _)| *a < address)
            );
            while let Some(entry) = old.next_if(|(a, _)| *a < address) {
                merged.push(entry);
            }
            old.next_if(|(a, _)| *a == address);
            merged.push((address, verdict));
        }
        merged.extend(old);
        *entries = merged;
    }

    /// The last verdict recorded for `address`.
    pub(crate) fn recall(&self, address: PciAddress) -> Option<Remembered> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .binary_search_by_key(&address, |(a, _)| *a)
            .ok()
            .map(|i| entries[i].1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(f: u8) -> PciAddress {
        PciAddress::new(0, 1, 0, f).unwrap()
    }

    #[test]
    fn later_verdicts_replace_earlier_ones_and_others_stay() {
        let m = VerdictMemory::default();
        m.record(
            [a(1), a(3)].into_iter(),
            &[Remembered::Abstain, Remembered::Abstain],
        );
        m.record(
            [a(2), a(3)].into_iter(),
            &[
                Remembered::Reject("x".into()),
                Remembered::Reject("y".into()),
            ],
        );
        assert_eq!(m.recall(a(1)), Some(Remembered::Abstain));
        assert_eq!(m.recall(a(2)), Some(Remembered::Reject("x".into())));
        assert_eq!(m.recall(a(3)), Some(Remembered::Reject("y".into())));
        assert_eq!(m.recall(a(4)), None);
        // The same devices again: replaced in place.
        m.record(
            [a(1), a(2), a(3)].into_iter(),
            &[
                Remembered::Reject("p".into()),
                Remembered::Abstain,
                Remembered::Abstain,
            ],
        );
        m.record(
            [a(1), a(2), a(3)].into_iter(),
            &[
                Remembered::Abstain,
                Remembered::Reject("q".into()),
                Remembered::Abstain,
            ],
        );
        assert_eq!(m.recall(a(1)), Some(Remembered::Abstain));
        assert_eq!(m.recall(a(2)), Some(Remembered::Reject("q".into())));
    }
}
