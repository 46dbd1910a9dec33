//! Host-side bindings of `wit/policy.wit`, and the one place that converts between
//! pcitrack's vocabulary and the contract's types.
//!
//! The agent is built against the newest contract of the 0.1 track (0.1.1) and loads every
//! policy of that track: 0.1.1 only added `host.get-device-facts`, so a 0.1.0 policy imports
//! less and links against the same bindings (see the version note in `wit/policy.wit`).

use std::collections::BTreeMap;

use pcitrack_model::packed::PackedDevice;
use pcitrack_model::packed::facts::PackedFacts;
use pcitrack_model::{DevType, Device, DeviceStatus, PciAddress};

wasmtime::component::bindgen!({
    path: "../../wit",
    inline: "
        package pcitrack:agent;
        world agent {
            import pcitrack:policy/host@0.1.1;
            export pcitrack:policy/matcher@0.1.1;
            export pcitrack:policy/tagger@0.1.1;
            export pcitrack:policy/cleanup@0.1.1;
        }
    ",
    world: "pcitrack:agent/agent",
});

pub use exports::pcitrack::policy::{cleanup, matcher, tagger};
pub use pcitrack::policy::host::{self as host_api, LogLevel};
pub use pcitrack::policy::types as wit;

/// The contract version this agent speaks (and the SDK builds policies against).
pub const CONTRACT_VERSION: &str = "0.1.1";
/// Every contract version whose policies this agent loads, oldest first: the 0.1 track up
/// to [`CONTRACT_VERSION`]. A newer 0.1.x may import functions this agent does not have, so it
/// is refused by name like any other version.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["0.1.0", CONTRACT_VERSION];
/// The contract's package name.
pub const PACKAGE: &str = "pcitrack:policy";
/// The `host` function that reads the device facts (contract 0.1.1). A policy that does not
/// import it costs the agent nothing for them.
pub(crate) const DEVICE_FACTS_FUNC: &str = "get-device-facts";

/// The socket (physical package) of each host NUMA node, as discovery's NUMA topology reads
/// it (`pcitrack_discovery::numa_topology`): the part of `host.get-device-facts` a device
/// record does not carry. A node absent from the map, or listed with no socket, has an
/// unknown socket, and so do the devices on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSockets(BTreeMap<u32, u32>);

impl NodeSockets {
    /// The socket of `node`, when known.
    pub fn socket_of(&self, node: u32) -> Option<u32> {
        self.0.get(&node).copied()
    }
}

impl FromIterator<(u32, Option<u32>)> for NodeSockets {
    /// From `(node, socket)` pairs; nodes with an unknown socket are left out.
    fn from_iter<I: IntoIterator<Item = (u32, Option<u32>)>>(iter: I) -> Self {
        NodeSockets(
            iter.into_iter()
                .filter_map(|(node, socket)| socket.map(|s| (node, s)))
                .collect(),
        )
    }
}

impl From<PciAddress> for wit::PciAddress {
    fn from(a: PciAddress) -> Self {
        wit::PciAddress {
            domain: a.domain,
            bus: a.bus,
            slot: a.slot,
            function: a.function,
        }
    }
}

impl From<DevType> for wit::DeviceKind {
    fn from(t: DevType) -> Self {
        match t {
            DevType::Pci => wit::DeviceKind::Standard,
            DevType::Pf => wit::DeviceKind::PhysicalFunction,
            DevType::Vf => wit::DeviceKind::VirtualFunction,
            DevType::Vdpa => wit::DeviceKind::Vdpa,
        }
    }
}

impl From<DeviceStatus> for wit::DeviceStatus {
    fn from(s: DeviceStatus) -> Self {
        match s {
            DeviceStatus::Available => wit::DeviceStatus::Available,
            DeviceStatus::Claimed => wit::DeviceStatus::Claimed,
            DeviceStatus::Allocated => wit::DeviceStatus::Allocated,
            DeviceStatus::Unavailable => wit::DeviceStatus::Unavailable,
            DeviceStatus::Unclaimable => wit::DeviceStatus::Unclaimable,
            DeviceStatus::Removed => wit::DeviceStatus::Removed,
            DeviceStatus::Deleted => wit::DeviceStatus::Deleted,
        }
    }
}

/// Builds the inventory a matcher or tagger sees. `devices` must be sorted by address (the
/// contract promises policies they are).
pub fn inventory(devices: &[Device]) -> wit::Inventory {
    debug_assert!(devices.windows(2).all(|w| w[0].address < w[1].address));
    let mut netdevs = Vec::new();
    let mut serial_numbers = Vec::new();
    let records: Vec<u64> = devices
        .iter()
        .enumerate()
        .flat_map(|(i, d)| {
            for n in &d.net {
                netdevs.push(wit::Netdev {
                    device: i as u32,
                    name: n.name.clone(),
                    phys_port_name: n.phys_port_name.clone(),
                    mac_address: n.mac_address.clone(),
                });
            }
            if let Some(sn) = &d.card_serial_number {
                serial_numbers.push(wit::SerialNumber {
                    device: i as u32,
                    value: sn.clone(),
                });
            }
            PackedDevice {
                address: d.address,
                kind: match d.dev_type {
                    DevType::Pci => 0,
                    DevType::Pf => 1,
                    DevType::Vf => 2,
                    DevType::Vdpa => 3,
                },
                vendor_id: d.vendor_id,
                product_id: d.product_id,
                class_code: d.class_code,
                parent: d.parent_addr,
                numa_node: d.numa_node,
                vf_product_id: d.sriov_vf_device,
                total_vfs: d.sriov_totalvfs.unwrap_or(0),
                vf_index: d.vf_index,
            }
            .pack()
        })
        .collect();
    wit::Inventory {
        devices: records,
        netdevs,
        serial_numbers,
    }
}

/// Builds the device facts (`host.get-device-facts`) for `devices`, in the inventory's order:
/// each device's IOMMU group, its NUMA node's socket and its bound driver, the driver names
/// once each. Built once per evaluation, and only when a policy of the chain imports the
/// function.
pub(crate) fn device_facts(devices: &[Device], sockets: &NodeSockets) -> host_api::DeviceFacts {
    let mut drivers: Vec<String> = Vec::new();
    let words = devices
        .iter()
        .map(|d| {
            let driver = d.driver.as_deref().and_then(|name| {
                let at = match drivers.iter().position(|n| n == name) {
                    Some(at) => at,
                    None => {
                        drivers.push(name.to_string());
                        drivers.len() - 1
                    }
                };
                u16::try_from(at).ok()
            });
            PackedFacts {
                iommu_group: d.iommu_group,
                socket: d.numa_node.and_then(|n| sockets.socket_of(n)),
                driver,
            }
            .pack()
        })
        .collect();
    host_api::DeviceFacts {
        devices: words,
        drivers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(function: u8, numa: Option<u32>, group: Option<u32>, driver: Option<&str>) -> Device {
        let mut d = Device::new(
            PciAddress::new(0, 0x3b, 0, function).unwrap(),
            0x8086,
            0x154c,
            DevType::Vf,
        );
        d.numa_node = numa;
        d.iommu_group = group;
        d.driver = driver.map(str::to_string);
        d
    }

    #[test]
    fn device_facts_carry_group_socket_and_driver_with_each_driver_once() {
        let devices = [
            device(0, Some(1), Some(42), Some("vfio-pci")),
            device(1, Some(0), Some(43), Some("iavf")),
            device(2, Some(1), None, Some("vfio-pci")),
            device(3, None, Some(7), None),
            device(4, Some(2), Some(8), None),
        ];
        let sockets: NodeSockets = [(0, Some(0)), (1, Some(1)), (2, None)]
            .into_iter()
            .collect();
        let facts = device_facts(&devices, &sockets);
        assert_eq!(facts.drivers, ["vfio-pci", "iavf"]);
        let read: Vec<PackedFacts> = facts
            .devices
            .iter()
            .map(|&w| PackedFacts::unpack(w))
            .collect();
        let want = |iommu_group, socket, driver| PackedFacts {
            iommu_group,
            socket,
            driver,
        };
        assert_eq!(
            read,
            [
                want(Some(42), Some(1), Some(0)),
                want(Some(43), Some(0), Some(1)),
                want(None, Some(1), Some(0)),
                // No NUMA node: no socket. Node 2's socket is unknown.
                want(Some(7), None, None),
                want(Some(8), None, None),
            ]
        );
    }
}
