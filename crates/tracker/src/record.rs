//! The tracker's record of a device: what the host and the policies say about it (its
//! [`Profile`]) and what the tracker has done with it (status, owner, bookkeeping).

use std::collections::BTreeMap;

use pcitrack_model::{DevType, Device, DeviceStatus, PciAddress};
use serde::{Deserialize, Serialize};

use crate::pools::{PoolEntry, PoolKey, pool_key};

/// What discovery and the policy chains say about a device. A sync compares profiles to decide
/// whether a device changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The discovered record.
    pub device: Device,
    /// The tagger's tags (pool keys such as `physical_network`, `trusted`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Whether the device is remote-managed (a pool key for PFs, VFs and vDPA devices).
    #[serde(default)]
    pub remote_managed: bool,
    /// Which policy rule made the device assignable, for operators.
    #[serde(default)]
    pub decided_by: String,
    /// For a child with a network interface: its PF's interface (Nova's `parent_ifname`, a pool
    /// key).
    #[serde(default)]
    pub parent_ifname: Option<String>,
}

impl Profile {
    /// Nova's `label_<vendor>_<product>`.
    pub fn label(&self) -> String {
        format!(
            "label_{:04x}_{:04x}",
            self.device.vendor_id, self.device.product_id
        )
    }

    /// The pool this device belongs to when free.
    pub fn pool_key(&self) -> PoolKey {
        let d = &self.device;
        pool_key(
            &format!("{:04x}", d.vendor_id),
            &format!("{:04x}", d.product_id),
            d.numa_node,
            d.dev_type,
            &self.tags,
            self.remote_managed,
            self.parent_ifname.as_deref(),
        )
    }
}

/// A tracked device: one row of `pci_devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedDevice {
    /// The device as last applied.
    pub profile: Profile,
    /// Its status (never `removed` or `deleted`: such rows are deleted in the same transaction).
    pub status: DeviceStatus,
    /// The instance holding it, when claimed or allocated.
    pub instance_uuid: Option<String>,
    /// The request it was claimed for.
    pub request_id: Option<String>,
    /// How many consecutive syncs have not reported it (or found it not assignable).
    pub missing_syncs: u32,
    /// Not reported while in use: deleted when freed rather than made available (Nova's
    /// `to_be_removed_when_freed`).
    pub to_be_removed_when_freed: bool,
    /// A change reported while the device was in use, applied when it is freed (Nova's
    /// `stale`).
    pub pending: Option<Profile>,
}

impl TrackedDevice {
    /// A newly discovered device: available, owned by nobody.
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            status: DeviceStatus::Available,
            instance_uuid: None,
            request_id: None,
            missing_syncs: 0,
            to_be_removed_when_freed: false,
            pending: None,
        }
    }

    /// The device's address.
    pub fn address(&self) -> PciAddress {
        self.profile.device.address
    }

    /// Its type.
    pub fn dev_type(&self) -> DevType {
        self.profile.device.dev_type
    }

    /// Its PF, for a VF or vDPA device.
    pub fn parent_addr(&self) -> Option<PciAddress> {
        self.profile.device.parent_addr
    }

    /// How it sits in a pool.
    pub fn pool_entry(&self) -> PoolEntry {
        PoolEntry {
            address: self.address(),
            parent_addr: self.parent_addr(),
            dev_type: self.dev_type(),
        }
    }
}
