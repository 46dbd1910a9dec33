//! What a spec needs to know about the host, kept abstract so the crate stays pure.
//!
//! In Nova these facts come from sysfs at parse time (PF-ness of a single address, the
//! remote-managed checks) and at every match (`devname`). In pcitrack the configuration
//! reaches a policy's `init` before any inventory exists and the inventory arrives with each
//! evaluation, so specs are parsed once and then [bound](crate::Whitelist::bind) to a
//! [`HostView`] per evaluation.

use pcitrack_model::PciAddress;

/// The facts about one device that binding a spec may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFacts {
    /// PCI vendor id.
    pub vendor_id: u16,
    /// PCI device id (sysfs `device`; Nova reads a `product` file that Linux never
    /// creates, so on a real host its PF check fails; pcitrack uses the real id).
    pub product_id: u16,
    /// An SR-IOV PF: `sriov_totalvfs > 0`.
    pub is_pf: bool,
    /// For a PF, its VFs' device id (sysfs `sriov_vf_device`).
    pub vf_product_id: Option<u16>,
}

/// The host inventory, as binding sees it.
pub trait HostView {
    /// The device at `address`, if the host has it.
    fn device(&self, address: PciAddress) -> Option<DeviceFacts>;
    /// The PCI address of the device that owns network interface `name`.
    fn netdev(&self, name: &str) -> Option<PciAddress>;
}

/// A host with no devices and no interfaces: what a spec list can be checked against
/// before any inventory is known (everything inventory-dependent then resolves to
/// "not present").
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyHost;

impl HostView for EmptyHost {
    fn device(&self, _: PciAddress) -> Option<DeviceFacts> {
        None
    }
    fn netdev(&self, _: &str) -> Option<PciAddress> {
        None
    }
}

/// One device to match: what Nova's `match()` reads from a device dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInput<'a> {
    /// The device's address.
    pub address: PciAddress,
    /// Vendor id.
    pub vendor_id: u16,
    /// Device (product) id.
    pub product_id: u16,
    /// The PF's address, for a VF.
    pub parent_addr: Option<PciAddress>,
    /// The VPD card serial number (the device's own or, for a VF, its PF's).
    pub card_serial_number: Option<&'a str>,
}
