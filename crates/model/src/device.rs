//! The record discovery produces for each PCI device.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hex::serde_hex;
use crate::{DevType, PciAddress};

/// One PCI device as the host reports it: what lspci shows, plus the SR-IOV relations,
/// network interfaces and VPD that Nova takes from libvirt.
///
/// Field names follow Nova's device dict where Nova has one (`address`, `vendor_id`,
/// `product_id`, `dev_type`, `parent_addr`, `numa_node`, `card_serial_number`), so JSON from
/// `pcitrack discover` can be read by anyone who knows Nova.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The device's address; devices sort by it.
    pub address: PciAddress,
    /// PCI vendor id (sysfs `vendor`).
    #[serde(
        serialize_with = "serde_hex::ser_u16",
        deserialize_with = "serde_hex::de_u16"
    )]
    pub vendor_id: u16,
    /// PCI device id (sysfs `device`; Nova calls it product).
    #[serde(
        serialize_with = "serde_hex::ser_u16",
        deserialize_with = "serde_hex::de_u16"
    )]
    pub product_id: u16,
    /// Subsystem vendor id.
    #[serde(
        default,
        serialize_with = "serde_hex::ser_opt_u16",
        deserialize_with = "serde_hex::de_opt_u16"
    )]
    pub subsystem_vendor_id: Option<u16>,
    /// Subsystem device id.
    #[serde(
        default,
        serialize_with = "serde_hex::ser_opt_u16",
        deserialize_with = "serde_hex::de_opt_u16"
    )]
    pub subsystem_device_id: Option<u16>,
    /// 24-bit class code, printed as 6 hex digits.
    #[serde(
        serialize_with = "serde_hex::ser_class",
        deserialize_with = "serde_hex::de_class"
    )]
    pub class_code: u32,
    /// Revision.
    #[serde(
        default,
        serialize_with = "serde_hex::ser_opt_u8",
        deserialize_with = "serde_hex::de_opt_u8"
    )]
    pub revision: Option<u8>,
    /// NUMA node; `None` where sysfs says -1 or nothing.
    #[serde(default)]
    pub numa_node: Option<u32>,
    /// The bound driver's name; `None` when unbound.
    #[serde(default)]
    pub driver: Option<String>,
    /// IOMMU group number.
    #[serde(default)]
    pub iommu_group: Option<u32>,
    /// `type-PF`, `type-VF`, `type-PCI` or `vdpa`.
    pub dev_type: DevType,
    /// The PF of a VF.
    #[serde(default)]
    pub parent_addr: Option<PciAddress>,
    /// For a VF: N of its PF's `virtfnN` link.
    #[serde(default)]
    pub vf_index: Option<u16>,
    /// For a PF: how many VFs it can have.
    #[serde(default)]
    pub sriov_totalvfs: Option<u16>,
    /// For a PF: how many VFs it has now.
    #[serde(default)]
    pub sriov_numvfs: Option<u16>,
    /// For a PF: the device id of its VFs.
    #[serde(
        default,
        serialize_with = "serde_hex::ser_opt_u16",
        deserialize_with = "serde_hex::de_opt_u16"
    )]
    pub sriov_vf_device: Option<u16>,
    /// Name of the device's own network interface (Nova's `ifname`): in switchdev mode a
    /// PF's uplink (`phys_port_name` `p<N>`), never a representor; else the first by name.
    #[serde(default)]
    pub ifname: Option<String>,
    /// MAC address of that interface.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// Every network interface of the device.
    #[serde(default)]
    pub net: Vec<NetInterface>,
    /// The card serial number: from the device's own VPD or, for a VF without one, its PF's.
    #[serde(default)]
    pub card_serial_number: Option<String>,
    /// The device's own parsed VPD, when it has readable, valid VPD. Boxed: few devices
    /// have one, and a record is moved whole when lists of them are sorted and merged (it
    /// is 200 bytes boxed, 312 inline; issue 14).
    #[serde(default)]
    pub vpd: Option<Box<Vpd>>,
}

/// A network interface under `net/` of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInterface {
    /// Interface name (`ens1f0`).
    pub name: String,
    /// MAC address (sysfs `address`).
    #[serde(default)]
    pub mac_address: Option<String>,
    /// `phys_port_name` (`p0`, `pf0vf3`, ...), when the driver provides it.
    #[serde(default)]
    pub phys_port_name: Option<String>,
    /// `phys_switch_id`, when the driver provides it.
    #[serde(default)]
    pub phys_switch_id: Option<String>,
}

/// Vital Product Data read from a device's `vpd` file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Vpd {
    /// The identifier string (product name).
    #[serde(default)]
    pub identifier: Option<String>,
    /// Part number (`PN`).
    #[serde(default)]
    pub part_number: Option<String>,
    /// Serial number (`SN`).
    #[serde(default)]
    pub card_serial_number: Option<String>,
    /// Every read-only keyword (VPD-R), by its two-letter name, except `RV`.
    #[serde(default)]
    pub read_only: BTreeMap<String, String>,
    /// Every read-write keyword (VPD-W), by its two-letter name, except `RW`.
    #[serde(default)]
    pub read_write: BTreeMap<String, String>,
}

// A record's size is what sorting and merging a file's hundreds of thousands of them moves
// (issue 14): a field added inline should be a choice, not an accident.
const _: () = assert!(std::mem::size_of::<Device>() <= 200);

impl Device {
    /// A minimal record, for tests and for building devices by hand.
    pub fn new(address: PciAddress, vendor_id: u16, product_id: u16, dev_type: DevType) -> Self {
        Self {
            address,
            vendor_id,
            product_id,
            subsystem_vendor_id: None,
            subsystem_device_id: None,
            class_code: 0,
            revision: None,
            numa_node: None,
            driver: None,
            iommu_group: None,
            dev_type,
            parent_addr: None,
            vf_index: None,
            sriov_totalvfs: None,
            sriov_numvfs: None,
            sriov_vf_device: None,
            ifname: None,
            mac_address: None,
            net: Vec::new(),
            card_serial_number: None,
            vpd: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_nova_names_and_hex_ids() {
        let mut d = Device::new("0000:0a:00.1".parse().unwrap(), 0x8086, 0x154c, DevType::Vf);
        d.parent_addr = Some("0000:0a:00.0".parse().unwrap());
        d.class_code = 0x020000;
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["address"], "0000:0a:00.1");
        assert_eq!(v["vendor_id"], "8086");
        assert_eq!(v["product_id"], "154c");
        assert_eq!(v["class_code"], "020000");
        assert_eq!(v["dev_type"], "type-VF");
        assert_eq!(v["parent_addr"], "0000:0a:00.0");
        assert_eq!(v["numa_node"], serde_json::Value::Null);
        let back: Device = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn a_minimal_json_record_is_enough() {
        let d: Device = serde_json::from_str(
            r#"{"address":"0000:81:00.0","vendor_id":"15b3","product_id":"1017","class_code":"020000","dev_type":"type-PF"}"#,
        )
        .unwrap();
        assert_eq!(d.vendor_id, 0x15b3);
        assert!(d.net.is_empty());
    }
}
