//! What Placement holds for one host: the resource providers of the root's tree with their
//! inventories, traits and usages, as a client reads them (`GET /resource_providers?in_tree=`,
//! `.../inventories`, `.../traits`, `.../usages`). Nova keeps the same in its
//! `nova/compute/provider_tree.py` `ProviderTree`; this is the read-only input of
//! [`crate::view`] and [`crate::diff`], never changed by them.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// The trait pcitrack puts on every provider it creates, so that it deletes only its own and
/// never takes over one that nova-compute wrote (Nova 34 marks its own with `OWNER_NOVA`).
pub const OWNER_TRAIT: &str = "CUSTOM_OWNER_PCITRACK";

/// The trait Nova 34 puts on the providers it writes (`os_traits.OWNER_NOVA`); pcitrack
/// never sets it.
pub const OWNER_NOVA: &str = "OWNER_NOVA";

/// One inventory record, with every field Placement keeps. Nova sets only `total` and
/// `max_unit` (and `reserved` for one-time-use devices) and leaves the rest to Placement's
/// defaults, which [`Inventory::new`] gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// How many units exist.
    pub total: u32,
    /// How many of them may not be allocated.
    pub reserved: u32,
    /// The smallest allocation (Placement's default 1).
    pub min_unit: u32,
    /// The largest allocation.
    pub max_unit: u32,
    /// Allocations are multiples of it (Placement's default 1).
    pub step_size: u32,
    /// Overcommit factor (Placement's default 1.0).
    pub allocation_ratio: f64,
}

impl Inventory {
    /// `total` units, all allocatable, any number at once up to `max_unit`; Placement's
    /// defaults for the rest.
    pub fn new(total: u32, max_unit: u32) -> Self {
        Self {
            total,
            reserved: 0,
            min_unit: 1,
            max_unit,
            step_size: 1,
            allocation_ratio: 1.0,
        }
    }
}

/// A resource provider as Placement holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceProvider {
    /// Its uuid.
    pub uuid: Uuid,
    /// Its name (unique in Placement).
    pub name: String,
    /// Its parent; `None` for a root.
    pub parent_uuid: Option<Uuid>,
    /// Inventories by resource class.
    pub inventories: BTreeMap<String, Inventory>,
    /// Its traits.
    pub traits: BTreeSet<String>,
    /// Units allocated, by resource class, over every consumer.
    pub usages: BTreeMap<String, u32>,
    /// Placement's `resource_provider_generation` as last read or written (0 for a provider
    /// not read from Placement). Every write of inventories or traits names it and Placement
    /// answers 409 `placement.concurrent_update` when it moved (allocations move it too).
    pub generation: u32,
}

impl ResourceProvider {
    /// A provider with nothing on it.
    pub fn new(uuid: Uuid, name: impl Into<String>, parent_uuid: Option<Uuid>) -> Self {
        Self {
            uuid,
            name: name.into(),
            parent_uuid,
            inventories: BTreeMap::new(),
            traits: BTreeSet::new(),
            usages: BTreeMap::new(),
            generation: 0,
        }
    }

    /// Whether pcitrack wrote it (it carries [`OWNER_TRAIT`]).
    pub fn is_pcitrack_owned(&self) -> bool {
        self.traits.contains(OWNER_TRAIT)
    }

    /// Whether it is a PCI provider (`COMPUTE_MANAGED_PCI_DEVICE`, as Nova's
    /// `_remove_managed_rps_from_tree_not_in_view` tells them).
    pub fn is_pci(&self) -> bool {
        self.traits
            .contains(pcitrack_tracker::placement::COMPUTE_MANAGED_PCI_DEVICE)
    }

    /// Whether anything is allocated from it.
    pub fn in_use(&self) -> bool {
        self.usages.values().any(|&u| u > 0)
    }
}

/// The providers of one host's tree as Placement holds them (empty when nothing was ever
/// reported).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderTree {
    /// The providers, root included, in any order.
    pub providers: Vec<ResourceProvider>,
}

impl ProviderTree {
    /// The provider with this name.
    pub fn by_name(&self, name: &str) -> Option<&ResourceProvider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The provider with this uuid.
    pub fn by_uuid(&self, uuid: Uuid) -> Option<&ResourceProvider> {
        self.providers.iter().find(|p| p.uuid == uuid)
    }

    /// The provider with this uuid, to change.
    pub fn by_uuid_mut(&mut self, uuid: Uuid) -> Option<&mut ResourceProvider> {
        self.providers.iter_mut().find(|p| p.uuid == uuid)
    }
}
