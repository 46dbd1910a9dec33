//! The SDK's inventory as the [`HostView`] that binds device specs: what Nova would read
//! from sysfs, answered from what the host passed in. A library of its own (not part of the
//! matcher) because a policy crate linked into another would bring its exports along.
#![deny(missing_docs)]

use pcitrack_devspec::{DeviceFacts, HostView};
use pcitrack_model::PciAddress;
use pcitrack_policy_sdk::Inventory;

/// Borrowed inventory, answering what Nova would read from sysfs.
pub struct InventoryView<'a>(pub &'a Inventory);

impl HostView for InventoryView<'_> {
    fn device(&self, address: PciAddress) -> Option<DeviceFacts> {
        let d = self.0.device_at(address.into())?;
        Some(DeviceFacts {
            vendor_id: d.vendor_id,
            product_id: d.product_id,
            // Nova: sysfs sriov_totalvfs > 0.
            is_pf: d.total_vfs > 0,
            vf_product_id: d.vf_product_id,
        })
    }

    fn netdev(&self, name: &str) -> Option<PciAddress> {
        self.0
            .find_netdev(name)
            .map(|i| self.0.devices[i].address.into())
    }
}
