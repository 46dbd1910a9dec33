//! The contract's integer PCI address, bridged to pcitrack's vocabulary.

use std::cmp::Ordering;
use std::fmt;

use crate::PciAddress;

impl PciAddress {
    /// The address as a single integer in sort order (domain, bus, slot, function).
    pub fn key(&self) -> u64 {
        ((self.domain as u64) << 24)
            | ((self.bus as u64) << 16)
            | ((self.slot as u64) << 8)
            | self.function as u64
    }
}

impl PartialOrd for PciAddress {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PciAddress {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&pcitrack_model::PciAddress::from(*self), f)
    }
}

impl From<PciAddress> for pcitrack_model::PciAddress {
    fn from(a: PciAddress) -> Self {
        pcitrack_model::PciAddress {
            domain: a.domain,
            bus: a.bus,
            slot: a.slot,
            function: a.function,
        }
    }
}

impl From<pcitrack_model::PciAddress> for PciAddress {
    fn from(a: pcitrack_model::PciAddress) -> Self {
        PciAddress {
            domain: a.domain,
            bus: a.bus,
            slot: a.slot,
            function: a.function,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_prints_like_the_model() {
        let a = PciAddress {
            domain: 0,
            bus: 0x0a,
            slot: 0,
            function: 1,
        };
        let b = PciAddress {
            domain: 0x10000,
            bus: 0,
            slot: 0,
            function: 0,
        };
        assert!(a < b);
        assert_eq!(a.to_string(), "0000:0a:00.1");
        assert_eq!(b.to_string(), "10000:00:00.0");
    }
}
