//! Host-side bindings of `wit/policy.wit`, and the one place that converts between
//! pcitrack's vocabulary and the contract's types.

use pcitrack_model::packed::PackedDevice;
use pcitrack_model::{DevType, Device, DeviceStatus, PciAddress};

wasmtime::component::bindgen!({
    path: "../../wit",
    inline: "
        package pcitrack:agent;
        world agent {
            import pcitrack:policy/host@0.1.0;
            export pcitrack:policy/matcher@0.1.0;
            export pcitrack:policy/tagger@0.1.0;
            export pcitrack:policy/cleanup@0.1.0;
        }
    ",
    world: "pcitrack:agent/agent",
});

pub use exports::pcitrack::policy::{cleanup, matcher, tagger};
pub use pcitrack::policy::host::{self as host_api, LogLevel};
pub use pcitrack::policy::types as wit;

/// The contract version this agent speaks.
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The contract's package name.
pub const PACKAGE: &str = "pcitrack:policy";

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
