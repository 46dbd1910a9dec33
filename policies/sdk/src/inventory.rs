//! Look-ups over the inventory the host passes with every matcher and tagger call.

use pcitrack_model::DevType;
use pcitrack_model::packed::{DEVICE_WORDS, PackedDevice};

use crate::bindings::pcitrack::policy::types as wire;
use crate::{Device, DeviceKind, Netdev, PciAddress, SerialNumber};

/// Everything the host knows about the machine's PCI devices at the time of a call, decoded
/// from the contract's packed form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    /// The devices, sorted by address.
    pub devices: Vec<Device>,
    /// Their network interfaces.
    pub netdevs: Vec<Netdev>,
    /// Their card serial numbers.
    pub serial_numbers: Vec<SerialNumber>,
}

const KINDS: [DeviceKind; 4] = [
    DeviceKind::Standard,
    DeviceKind::PhysicalFunction,
    DeviceKind::VirtualFunction,
    DeviceKind::Vdpa,
];

impl Inventory {
    /// Decodes the inventory as it crossed the boundary (devices packed four words each).
    pub fn from_wire(wire: wire::Inventory) -> Self {
        let devices = wire
            .devices
            .chunks_exact(DEVICE_WORDS)
            .map(|w| {
                let p = PackedDevice::unpack(w.try_into().expect("chunks_exact"));
                Device {
                    address: p.address.into(),
                    vendor_id: p.vendor_id,
                    product_id: p.product_id,
                    class_code: p.class_code,
                    kind: KINDS[p.kind as usize & 3],
                    parent: p.parent.map(Into::into),
                    numa_node: p.numa_node,
                    vf_product_id: p.vf_product_id,
                    total_vfs: p.total_vfs,
                    vf_index: p.vf_index,
                }
            })
            .collect();
        Inventory {
            devices,
            netdevs: wire.netdevs,
            serial_numbers: wire.serial_numbers,
        }
    }
}

impl Inventory {
    /// The index of the device at `address`. The host sends devices sorted by address, so
    /// this is a binary search, not a scan.
    pub fn find(&self, address: PciAddress) -> Option<usize> {
        self.devices
            .binary_search_by(|d| d.address.cmp(&address))
            .ok()
    }

    /// The device at `address`.
    pub fn device_at(&self, address: PciAddress) -> Option<&Device> {
        self.find(address).map(|i| &self.devices[i])
    }

    /// The index of the device that owns the network interface `name`.
    pub fn find_netdev(&self, name: &str) -> Option<usize> {
        self.netdevs
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.device as usize)
    }

    /// The network interfaces of the device at `index`.
    pub fn netdevs_of(&self, index: usize) -> impl Iterator<Item = &Netdev> {
        self.netdevs
            .iter()
            .filter(move |n| n.device as usize == index)
    }

    /// The card serial number of the device at `index`: its own VPD's, or for a VF without
    /// VPD of its own, its PF's (the host resolves that inheritance).
    pub fn serial_number(&self, index: usize) -> Option<&str> {
        self.serial_numbers
            .iter()
            .find(|s| s.device as usize == index)
            .map(|s| s.value.as_str())
    }

    /// The PF of the device at `index`, when it is a VF whose PF the host reports.
    pub fn parent_of(&self, index: usize) -> Option<&Device> {
        self.devices[index]
            .parent
            .and_then(|parent| self.device_at(parent))
    }
}

impl Device {
    /// True for an SR-IOV physical function that can have VFs.
    pub fn is_physical_function(&self) -> bool {
        self.kind == DeviceKind::PhysicalFunction || self.total_vfs > 0
    }
}

impl From<DeviceKind> for DevType {
    fn from(kind: DeviceKind) -> Self {
        match kind {
            DeviceKind::Standard => DevType::Pci,
            DeviceKind::PhysicalFunction => DevType::Pf,
            DeviceKind::VirtualFunction => DevType::Vf,
            DeviceKind::Vdpa => DevType::Vdpa,
        }
    }
}

impl From<DevType> for DeviceKind {
    fn from(t: DevType) -> Self {
        match t {
            DevType::Pci => DeviceKind::Standard,
            DevType::Pf => DeviceKind::PhysicalFunction,
            DevType::Vf => DeviceKind::VirtualFunction,
            DevType::Vdpa => DeviceKind::Vdpa,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(bus: u8, function: u8) -> PciAddress {
        PciAddress {
            domain: 0,
            bus,
            slot: 0,
            function,
        }
    }

    fn dev(address: PciAddress, kind: DeviceKind, parent: Option<PciAddress>) -> Device {
        Device {
            address,
            vendor_id: 0x8086,
            product_id: 0x1572,
            class_code: 0x020000,
            kind,
            parent,
            numa_node: None,
            vf_product_id: None,
            total_vfs: 0,
            vf_index: None,
        }
    }

    #[test]
    fn finds_devices_netdevs_serials_and_parents() {
        let pf = addr(0x0a, 0);
        let inv = Inventory {
            devices: vec![
                dev(pf, DeviceKind::PhysicalFunction, None),
                dev(addr(0x0a, 1), DeviceKind::VirtualFunction, Some(pf)),
                dev(addr(0x0b, 0), DeviceKind::Standard, None),
            ],
            netdevs: vec![Netdev {
                device: 0,
                name: "ens1f0".into(),
                phys_port_name: None,
                mac_address: None,
            }],
            serial_numbers: vec![SerialNumber {
                device: 1,
                value: "MT2113X00000".into(),
            }],
        };
        assert_eq!(inv.find(addr(0x0a, 1)), Some(1));
        assert_eq!(inv.find(addr(0x0c, 0)), None);
        assert_eq!(inv.find_netdev("ens1f0"), Some(0));
        assert_eq!(inv.find_netdev("eth9"), None);
        assert_eq!(inv.serial_number(1), Some("MT2113X00000"));
        assert_eq!(inv.serial_number(0), None);
        assert_eq!(inv.parent_of(1).map(|d| d.address), Some(pf));
        assert!(inv.parent_of(2).is_none());
    }

    #[test]
    fn decodes_the_packed_devices() {
        let pf = pcitrack_model::PciAddress::new(0x10000, 0x81, 0, 0).unwrap();
        let packed = PackedDevice {
            address: pcitrack_model::PciAddress::new(0x10000, 0x81, 0, 3).unwrap(),
            kind: 2,
            vendor_id: 0x15b3,
            product_id: 0x101e,
            class_code: 0x020000,
            parent: Some(pf),
            numa_node: Some(1),
            vf_product_id: None,
            total_vfs: 0,
            vf_index: Some(2),
        };
        let inv = Inventory::from_wire(wire::Inventory {
            devices: packed.pack().to_vec(),
            netdevs: vec![],
            serial_numbers: vec![],
        });
        let d = &inv.devices[0];
        assert_eq!(d.address.to_string(), "10000:81:00.3");
        assert_eq!(d.kind, DeviceKind::VirtualFunction);
        assert_eq!(d.parent, Some(pf.into()));
        assert_eq!(
            (d.vendor_id, d.product_id, d.numa_node, d.vf_index),
            (0x15b3, 0x101e, Some(1), Some(2))
        );
    }
}
