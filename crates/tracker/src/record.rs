//! The tracker's record of a device: what the host and the policies say about it (its
//! [`Profile`]) and what the tracker has done with it (status, owner, bookkeeping).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use pcitrack_model::tag_value::{TagValue, bool_from_tag};
use pcitrack_model::{DevType, Device, DeviceStatus, PciAddress};
use serde::{Deserialize, Serialize};

use crate::placement;
use crate::pools::{PoolEntry, PoolKey, pool_key};

/// The device_spec tag that makes a PCI or PF device one-time-use (Nova 2025.1).
pub const ONE_TIME_USE: &str = "one_time_use";

/// What discovery and the policy chains say about a device. A sync compares profiles to decide
/// whether a device changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The discovered record.
    pub device: Device,
    /// The tagger's tags (pool keys such as `physical_network`, `trusted`), shared by the
    /// records that have the same ones ([`TagSets`]).
    #[serde(default, with = "shared_tags")]
    pub tags: Arc<BTreeMap<String, String>>,
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

    /// A tag's value as Nova's translator reads it with `dev_spec_tags.get(key, "")`: a
    /// string as it is, a JSON null as absent, any other JSON value as its JSON text (Nova
    /// would fail on it with a Python error).
    fn tag_text(&self, key: &str) -> Option<&str> {
        let carried = self.tags.get(key)?;
        match TagValue::parse(carried) {
            TagValue::Str(s) => Some(s),
            typed if typed.is_none() => None,
            TagValue::Json(json) => Some(json),
        }
    }

    /// The Placement resource class of the device: the device_spec's `resource_class` tag
    /// normalised, or `CUSTOM_PCI_<VENDOR>_<PRODUCT>` (Nova's `_get_rc_for_dev`).
    pub fn resource_class(&self) -> String {
        placement::resource_class(
            self.tag_text("resource_class"),
            &format!("{:04x}", self.device.vendor_id),
            &format!("{:04x}", self.device.product_id),
        )
    }

    /// The Placement traits of the device (Nova's `_get_traits_for_dev`, plus
    /// `HW_PCI_ONE_TIME_USE` for a one-time-use PCI or PF device as `add_parent` adds it): the
    /// `traits` tag normalised, `COMPUTE_MANAGED_PCI_DEVICE`, and `HW_PCI_LIVE_MIGRATABLE`
    /// when the `live_migratable` tag reads true (oslo's lenient reading).
    pub fn traits(&self) -> BTreeSet<String> {
        let mut traits = placement::normalize_traits(self.tag_text("traits").unwrap_or(""));
        traits.insert(placement::COMPUTE_MANAGED_PCI_DEVICE.into());
        if self
            .tags
            .get(crate::pools::LIVE_MIGRATABLE)
            .is_some_and(|v| bool_from_tag(v))
        {
            traits.insert(placement::HW_PCI_LIVE_MIGRATABLE.into());
        }
        if self.one_time_use() {
            traits.insert(placement::HW_PCI_ONE_TIME_USE.into());
        }
        traits
    }

    /// Whether the device is one-time-use: a type-PCI or type-PF device whose device_spec
    /// says `one_time_use` (Nova's `PciResourceProvider.add_parent`, oslo's lenient
    /// reading). Such a device, once allocated, is reserved until an operator releases it
    /// ([`TrackedDevice::reserved`]). The devspec policy refuses the tag on other types.
    pub fn one_time_use(&self) -> bool {
        matches!(self.device.dev_type, DevType::Pci | DevType::Pf)
            && self
                .tags
                .get(ONE_TIME_USE)
                .is_some_and(|v| bool_from_tag(v))
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

/// One copy of each distinct tag set among the records read or written together (a load, a
/// sync): on an SR-IOV host thousands of VFs carry the same few tags, and a map of its own per
/// record cost ~0.5 KB each (a `BTreeMap` node), 2.2 MB of a 4112-device agent (issue 14).
#[derive(Debug, Default)]
pub struct TagSets(HashSet<Arc<BTreeMap<String, String>>>);

impl TagSets {
    /// The shared copy of `tags`, made on first sight.
    pub fn share(&mut self, tags: &BTreeMap<String, String>) -> Arc<BTreeMap<String, String>> {
        match self.0.get(tags) {
            Some(shared) => shared.clone(),
            None => self.share_owned(tags.clone()),
        }
    }

    /// [`TagSets::share`] for a map the caller owns (no copy made when it is new).
    pub fn share_owned(&mut self, tags: BTreeMap<String, String>) -> Arc<BTreeMap<String, String>> {
        if let Some(shared) = self.0.get(&tags) {
            return shared.clone();
        }
        let shared = Arc::new(tags);
        self.0.insert(shared.clone());
        shared
    }
}

/// serde for a [`Profile`]'s shared tags: the plain map, as before they were shared.
mod shared_tags {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        tags: &Arc<BTreeMap<String, String>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        tags.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<BTreeMap<String, String>>, D::Error> {
        BTreeMap::deserialize(d).map(Arc::new)
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
    /// A one-time-use device that has been allocated: it stays out of the pools, whatever
    /// its status, until an operator releases it ([`crate::Tracker::release`]) after wiping
    /// it. Nova's statuses stay Nova's seven; Nova keeps this as Placement's `reserved`
    /// inventory of the device's provider (`_handle_one_time_use`).
    #[serde(default)]
    pub reserved: bool,
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
            reserved: false,
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
