//! The packed forms that cross the policy boundary in bulk.
//!
//! A list of records crosses into a WebAssembly component field by field, which for a
//! device record costs more than matching it; a list of integers crosses as one block copy.
//! So the contract sends each device as four 64-bit words and verdicts as one 32-bit word,
//! and both sides (the agent and the policy SDK) use the functions here, so they cannot
//! disagree about the layout.
//!
//! Device words:
//! * 0: address key (`domain << 24 | bus << 16 | slot << 8 | function`, bits 0-55), and the
//!   kind in bits 56-57 (0 standard, 1 physical function, 2 virtual function, 3 vdpa);
//! * 1: vendor id (bits 0-15), product id (16-31), class code (32-55);
//! * 2: parent address key (bits 0-55); bit 63 set when there is a parent;
//! * 3: NUMA node (0-15), VF product id (16-31), total VFs (32-47), VF index (48-63), with
//!   `0xffff` meaning "none" for the three optional fields (0xffff is no valid PCI id).

use crate::PciAddress;

/// Words per device.
pub const DEVICE_WORDS: usize = 4;
const NONE16: u64 = 0xffff;
const KEY_MASK: u64 = (1 << 56) - 1;

/// The fields of a device record, as the contract knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedDevice {
    /// Address.
    pub address: PciAddress,
    /// 0 standard, 1 PF, 2 VF, 3 vdpa.
    pub kind: u8,
    /// Vendor id.
    pub vendor_id: u16,
    /// Product id.
    pub product_id: u16,
    /// 24-bit class code.
    pub class_code: u32,
    /// The PF of a VF.
    pub parent: Option<PciAddress>,
    /// NUMA node (nodes above 0xfffe are not representable and read as none).
    pub numa_node: Option<u32>,
    /// The device id of a PF's VFs.
    pub vf_product_id: Option<u16>,
    /// `sriov_totalvfs`.
    pub total_vfs: u16,
    /// N of the PF's `virtfnN`.
    pub vf_index: Option<u16>,
}

/// The sort key of an address (also its packed form).
pub fn address_key(a: PciAddress) -> u64 {
    ((a.domain as u64) << 24) | ((a.bus as u64) << 16) | ((a.slot as u64) << 8) | a.function as u64
}

fn address_of(key: u64) -> PciAddress {
    PciAddress {
        domain: ((key >> 24) & 0xffff_ffff) as u32,
        bus: (key >> 16) as u8,
        slot: (key >> 8) as u8,
        function: key as u8,
    }
}

fn opt16(v: Option<u16>) -> u64 {
    v.filter(|&v| v != 0xffff).map_or(NONE16, u64::from)
}

fn from16(v: u64) -> Option<u16> {
    let v = v & 0xffff;
    (v != NONE16).then_some(v as u16)
}

impl PackedDevice {
    /// The four words.
    pub fn pack(&self) -> [u64; DEVICE_WORDS] {
        let numa = self
            .numa_node
            .filter(|&n| n < 0xffff)
            .map_or(NONE16, u64::from);
        [
            address_key(self.address) | ((self.kind as u64 & 3) << 56),
            self.vendor_id as u64
                | (self.product_id as u64) << 16
                | ((self.class_code as u64) & 0xff_ffff) << 32,
            self.parent.map_or(0, |p| address_key(p) | 1 << 63),
            numa | opt16(self.vf_product_id) << 16
                | (self.total_vfs as u64) << 32
                | opt16(self.vf_index) << 48,
        ]
    }

    /// Reads the four words back.
    pub fn unpack(w: &[u64; DEVICE_WORDS]) -> Self {
        Self {
            address: address_of(w[0] & KEY_MASK),
            kind: ((w[0] >> 56) & 3) as u8,
            vendor_id: w[1] as u16,
            product_id: (w[1] >> 16) as u16,
            class_code: ((w[1] >> 32) & 0xff_ffff) as u32,
            parent: (w[2] >> 63 == 1).then(|| address_of(w[2] & KEY_MASK)),
            numa_node: from16(w[3]).map(u32::from),
            vf_product_id: from16(w[3] >> 16),
            total_vfs: (w[3] >> 32) as u16,
            vf_index: from16(w[3] >> 48),
        }
    }
}

/// Device-facts words (contract 0.1.1, `host.get-device-facts`): one per device, in the
/// inventory's order. The IOMMU group in bits 0-31 (`0xffff_ffff` none), the socket of the
/// device's NUMA node in bits 32-47 (`0xffff` none), and the index of the bound driver in the
/// call's driver table in bits 48-63 (`0xffff` none).
pub mod facts {
    const NONE32: u64 = 0xffff_ffff;
    const NONE16: u64 = 0xffff;

    /// One device's facts, as the contract knows them.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct PackedFacts {
        /// IOMMU group number (`0xffff_ffff` is not representable and reads as none).
        pub iommu_group: Option<u32>,
        /// Socket (physical package) of the device's NUMA node (`0xffff` and above read as
        /// none).
        pub socket: Option<u32>,
        /// Index of the bound driver's name in the driver table.
        pub driver: Option<u16>,
    }

    impl PackedFacts {
        /// The word.
        pub fn pack(&self) -> u64 {
            let group = self
                .iommu_group
                .filter(|&g| u64::from(g) != NONE32)
                .map_or(NONE32, u64::from);
            let socket = self
                .socket
                .filter(|&s| u64::from(s) < NONE16)
                .map_or(NONE16, u64::from);
            let driver = self
                .driver
                .filter(|&d| u64::from(d) != NONE16)
                .map_or(NONE16, u64::from);
            group | socket << 32 | driver << 48
        }

        /// Reads the word back.
        pub fn unpack(word: u64) -> Self {
            let group = word & NONE32;
            let socket = (word >> 32) & NONE16;
            let driver = word >> 48;
            Self {
                iommu_group: (group != NONE32).then_some(group as u32),
                socket: (socket != NONE16).then_some(socket as u32),
                driver: (driver != NONE16).then_some(driver as u16),
            }
        }
    }
}

/// Verdict words: the top two bits say what, the rest is an index into the call's tag sets
/// or reasons.
pub mod verdict {
    /// No opinion.
    pub const ABSTAIN: u32 = 0;
    const ASSIGN: u32 = 1 << 30;
    const REJECT: u32 = 2 << 30;
    const INDEX: u32 = (1 << 30) - 1;
    /// Largest index a verdict can carry.
    pub const MAX_INDEX: u32 = INDEX;

    /// Assign (or, for a tagger, retag) with tag set `index`.
    pub fn assign(index: u32) -> u32 {
        ASSIGN | (index & INDEX)
    }

    /// Reject for reason `index`.
    pub fn reject(index: u32) -> u32 {
        REJECT | (index & INDEX)
    }

    /// What a word says.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Decoded {
        /// No opinion.
        Abstain,
        /// Tag set index.
        Assign(u32),
        /// Reason index.
        Reject(u32),
        /// Not a verdict.
        Invalid(u32),
    }

    /// Decodes a word.
    pub fn decode(word: u32) -> Decoded {
        match word & !INDEX {
            0 if word == ABSTAIN => Decoded::Abstain,
            ASSIGN => Decoded::Assign(word & INDEX),
            REJECT => Decoded::Reject(word & INDEX),
            _ => Decoded::Invalid(word),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_device_survives_packing(
            domain: u32, bus: u8, slot in 0u8..32, function in 0u8..8, kind in 0u8..4,
            vendor_id: u16, product_id: u16, class_code in 0u32..0x100_0000,
            parent in proptest::option::of((any::<u32>(), any::<u8>(), 0u8..32, 0u8..8)),
            numa_node in proptest::option::of(0u32..0xffff),
            vf_product_id in proptest::option::of(0u16..0xffff),
            total_vfs: u16,
            vf_index in proptest::option::of(0u16..0xffff),
        ) {
            let d = PackedDevice {
                address: PciAddress::new(domain, bus, slot, function).unwrap(),
                kind, vendor_id, product_id, class_code,
                parent: parent.map(|(d, b, s, f)| PciAddress::new(d, b, s, f).unwrap()),
                numa_node, vf_product_id, total_vfs, vf_index,
            };
            prop_assert_eq!(PackedDevice::unpack(&d.pack()), d);
        }

        #[test]
        fn device_facts_survive_packing(
            iommu_group in proptest::option::of(0u32..0xffff_ffff),
            socket in proptest::option::of(0u32..0xffff),
            driver in proptest::option::of(0u16..0xffff),
        ) {
            let f = facts::PackedFacts { iommu_group, socket, driver };
            prop_assert_eq!(facts::PackedFacts::unpack(f.pack()), f);
        }

        #[test]
        fn address_keys_sort_like_addresses(a: (u32, u8, u8, u8), b: (u32, u8, u8, u8)) {
            let a = PciAddress::new(a.0, a.1, a.2 % 32, a.3 % 8).unwrap();
            let b = PciAddress::new(b.0, b.1, b.2 % 32, b.3 % 8).unwrap();
            prop_assert_eq!(address_key(a).cmp(&address_key(b)), a.cmp(&b));
        }
    }

    #[test]
    fn verdict_words_round_trip_and_garbage_is_named() {
        use verdict::*;
        assert_eq!(decode(ABSTAIN), Decoded::Abstain);
        assert_eq!(decode(assign(7)), Decoded::Assign(7));
        assert_eq!(decode(reject(0)), Decoded::Reject(0));
        assert_eq!(decode(3 << 30), Decoded::Invalid(3 << 30));
        assert_eq!(decode(5), Decoded::Invalid(5));
    }
}
