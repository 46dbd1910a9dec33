//! The Placement view of a host's tracked devices: the providers Nova 34's
//! `nova/compute/pci_placement_translator.py` (`update_provider_tree_for_pci`,
//! `PlacementView`, `PciResourceProvider`) would report, with Nova's configuration guards.
//!
//! Nova's rules, as this module applies them:
//! * one child provider of the root per `type-PCI` or `type-PF` device, named
//!   `<host>_<ADDRESS upper case>`; VFs and vDPA devices are counted on their PF's provider
//!   (`PlacementView._ensure_rp_for_dev`); a PF and its VFs are never both reported, and the
//!   VFs of one PF agree on resource class and traits (`PciResourceProvider.add_child`,
//!   `add_parent`);
//! * the resource class and traits are the tracker's ([`pcitrack_tracker::Profile::resource_class`],
//!   [`pcitrack_tracker::Profile::traits`], normalised as Nova does); inventory
//!   `total = max_unit = device count` (`_get_inventories`);
//! * a device with a `physical_network` tag is left out: Neutron schedules it (`_add_dev`);
//! * a one-time-use provider is `reserved = total` once its device has been allocated
//!   (`_handle_one_time_use`);
//! * usage in Placement above the device count raises the total to the usage, so that a
//!   device removed while allocated never leaves Placement with usage above inventory
//!   (`_adjust_for_removals_and_held_devices`);
//! * `devname` specs are refused (`ensure_no_dev_spec_with_devname`).
//!
//! Where pcitrack differs, on purpose:
//! * providers carry [`OWNER_TRAIT`], never `OWNER_NOVA`, and the view refuses a tree that
//!   holds PCI providers pcitrack did not write (nova-compute reports this host's PCI devices);
//! * a tracked device counts while the host reports it or while it is held (in use, or
//!   reserved one-time-use): the tracker keeps exactly those, with the profile it hands out
//!   (a change reported while in use applies when freed, as the tracker applies it);
//! * `reserved` is `total` while the tracker holds the device reserved (from its allocation
//!   until an operator's `pcitrack release`) and 0 after the release: pcitrack's release is
//!   the "external entity" Nova leaves the unreserving to. Nova reserves from the claim on;
//!   pcitrack from the allocation (a claim freed unallocated handed the device to nobody);
//! * a pcitrack provider that Placement still has allocations against keeps those inventories
//!   even when no device is left behind it or its class changed (Nova would delete it or drop
//!   the class, and Placement would refuse the change while the allocation lasts).

use std::collections::{BTreeMap, BTreeSet};

use pcitrack_devspec::{Entry, Value, from_json};
use pcitrack_model::tag_value::TagValue;
use pcitrack_model::{DevType, PciAddress};
use pcitrack_tracker::TrackedDevice;
use uuid::Uuid;

use crate::tree::{OWNER_NOVA, OWNER_TRAIT, ProviderTree};

/// The device_spec tag of Neutron's SR-IOV devices.
const PHYSICAL_NETWORK: &str = "physical_network";

/// Why a configuration cannot be reported to Placement. The messages are Nova's, with the
/// devices named as Nova names them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// A device_spec selects by network interface name (`ensure_no_dev_spec_with_devname`).
    #[error(
        "Failed to gather or report PCI resources to Placement: Invalid [pci]device_spec \
         configuration. PCI Placement reporting does not support 'devname' based device \
         specification but we got {spec}. Please use PCI address in the configuration instead."
    )]
    DevnameSpec {
        /// The spec as Nova prints it (Python's `repr` of the JSON object).
        spec: String,
    },
    /// A PF and its VFs are both configured (`PlacementPciDependentDeviceException`). As in
    /// Nova, `parent_dev` is the device being added and `children_devs` those already on
    /// the provider.
    #[error(
        "Configuring both {parent_dev} and {children_devs} in [pci]device_spec is not \
         supported. Either the parent PF or its children VFs can be configured."
    )]
    DependentDevice {
        /// The device being added.
        parent_dev: PciAddress,
        /// The devices already on the provider, comma-separated.
        children_devs: String,
    },
    /// VFs of one PF with different resource classes
    /// (`PlacementPciMixedResourceClassException`).
    #[error(
        "VFs from the same PF cannot be configured with different 'resource_class' values in \
         [pci]device_spec. We got {new_rc} for {new_dev} and {current_rc} for {current_devs}."
    )]
    MixedResourceClass {
        /// The class of the VF being added.
        new_rc: String,
        /// That VF.
        new_dev: PciAddress,
        /// The class of the VFs already on the provider.
        current_rc: String,
        /// Those VFs, comma-separated.
        current_devs: String,
    },
    /// VFs of one PF with different traits (`PlacementPciMixedTraitsException`).
    #[error(
        "VFs from the same PF cannot be configured with different set of 'traits' in \
         [pci]device_spec. We got {new_traits} for {new_dev} and {current_traits} for \
         {current_devs}."
    )]
    MixedTraits {
        /// The traits of the VF being added, sorted, comma-separated.
        new_traits: String,
        /// That VF.
        new_dev: PciAddress,
        /// The traits of the VFs already on the provider.
        current_traits: String,
        /// Those VFs, comma-separated.
        current_devs: String,
    },
    /// A VF or vDPA device whose spec sets `one_time_use` at all (`add_child`; the devspec
    /// policy refuses such a device first, `Whitelist::check_one_time_use`, so this is the
    /// backstop). Nova names the provider.
    #[error(
        "Failed to gather or report PCI resources to Placement: Only type-PCI and type-PF \
         devices may set one_time_use and {provider} does not qualify"
    )]
    OneTimeUseOnChild {
        /// The PF's provider name.
        provider: String,
        /// The device whose spec sets it.
        device: PciAddress,
    },
    /// A VF or vDPA device without a PF address (Nova means to say so in
    /// `_get_rp_name_for_child`).
    #[error(
        "Failed to gather or report PCI resources to Placement: Missing parent address for \
         PCI device {device} with type {dev_type}"
    )]
    MissingParent {
        /// The device.
        device: PciAddress,
        /// Its type.
        dev_type: DevType,
    },
    /// The host's tree holds PCI providers that pcitrack did not write.
    #[error(
        "the Placement tree of {root} holds PCI providers that pcitrack did not create \
         ({providers}): nova-compute reports this host's PCI devices ([pci] \
         report_in_placement in nova.conf). pcitrack refuses to report beside it; switch one \
         of them off (nova-compute refuses to start, or deletes them, when it finds PCI \
         providers it did not write)"
    )]
    ForeignPciProviders {
        /// The root provider's name.
        root: String,
        /// The foreign providers' names, comma-separated.
        providers: String,
    },
}

/// An inventory as the view wants it. Fields Nova leaves to Placement are not here; the
/// diff keeps what Placement has for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantedInventory {
    /// Units: the devices behind the provider, or the usage when that is higher.
    pub total: u32,
    /// Nova sets it to the total: a consumer may take every device of one provider.
    pub max_unit: u32,
    /// `Some` on a one-time-use provider (the total once allocated, else 0); `None` leaves
    /// Placement's value, which operators control (Nova's `_get_inventories` note).
    pub reserved: Option<u32>,
}

/// One PCI provider the view reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciProvider {
    /// `<host>_<ADDRESS upper case>`.
    pub name: String,
    /// Kept once generated ([`PciView::new_uuids`]).
    pub uuid: Uuid,
    /// The PF's or the device's address.
    pub address: PciAddress,
    /// The resource class of the devices behind it (none left: the class Placement still
    /// has allocations of).
    pub resource_class: String,
    /// Inventories by resource class: the devices' class, plus any class Placement still
    /// has allocations of.
    pub inventories: BTreeMap<String, WantedInventory>,
    /// Traits, [`OWNER_TRAIT`] included.
    pub traits: BTreeSet<String>,
    /// The devices counted, in address order (empty for a provider kept only by
    /// Placement's allocations).
    pub devices: Vec<PciAddress>,
    /// Whether it is a one-time-use device's provider.
    pub one_time_use: bool,
}

/// What the host should have in Placement under its root provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciView {
    /// The root provider's name (the host).
    pub root_name: String,
    /// The PCI providers, by name.
    pub providers: Vec<PciProvider>,
    /// Provider uuids the caller did not know (generated, or found in Placement under the
    /// provider's name), by device address: store them and pass them in next time.
    pub new_uuids: BTreeMap<PciAddress, Uuid>,
}

impl PciView {
    /// The provider with this name.
    pub fn provider(&self, name: &str) -> Option<&PciProvider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// A consumer's allocations (`GET /allocations/{consumer}`) on this view's providers, in
    /// provider order, with the devices that may serve each: the devices behind the provider
    /// (a PF provider's VFs, or the PF or type-PCI device itself) for its devices' class, none
    /// for a class only Placement's usage keeps. Allocations on other providers (the root's
    /// VCPU or memory, other hosts') are not this host's and are left out. The one mapping
    /// from allocation to devices, as Nova's compute maps request groups to the devices of the
    /// allocated providers (`nova/pci/stats.py` `_filter_pools_for_allocation`): the agent's
    /// claim by consumer and the fleet benchmark both call it.
    pub fn allocated_here(
        &self,
        allocations: &crate::client::Allocations,
    ) -> Vec<ProviderAllocation> {
        let mut out = Vec::new();
        for p in &self.providers {
            let Some(classes) = allocations.get(&p.uuid) else {
                continue;
            };
            for (class, &count) in classes.iter().filter(|&(_, &n)| n > 0) {
                out.push(ProviderAllocation {
                    provider: p.name.clone(),
                    uuid: p.uuid,
                    resource_class: class.clone(),
                    count,
                    devices: if *class == p.resource_class {
                        p.devices.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
        out
    }

    /// Whether some inventory is held above the devices by Placement's allocations: a
    /// device gone while allocated, a class Placement still has usage of, or usage above
    /// the device count (Placement's double allocation). Such an inventory must come down
    /// when the allocations go, which only a fresh read of Placement's usages shows.
    pub fn held_by_allocations(&self) -> bool {
        self.providers.iter().any(|p| {
            let devices = u32::try_from(p.devices.len()).unwrap_or(u32::MAX);
            p.inventories
                .iter()
                .any(|(class, inv)| *class != p.resource_class || inv.total > devices)
        })
    }
}

/// One of this host's providers in a consumer's allocation, and what it takes
/// ([`PciView::allocated_here`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAllocation {
    /// The provider's name (`<host>_<ADDRESS>`).
    pub provider: String,
    /// Its uuid.
    pub uuid: Uuid,
    /// The allocated resource class.
    pub resource_class: String,
    /// How many units Placement allocated: devices to claim.
    pub count: u32,
    /// The devices behind the provider that may serve it (a PF provider's VFs, or the PF or
    /// type-PCI device itself); none when the class is not the one its devices have.
    pub devices: Vec<PciAddress>,
}

/// What the view is computed from.
#[derive(Debug, Clone, Copy)]
pub struct ViewInput<'a> {
    /// The root provider's name: `[placement] host`, by default the host name.
    pub host: &'a str,
    /// The configured `[pci] device_spec` entries (for the `devname` guard).
    pub device_spec: &'a [Entry],
    /// The tracked devices, in any order.
    pub devices: &'a [TrackedDevice],
    /// The provider uuids generated before, by device address (the PF's for VFs).
    pub known_uuids: &'a BTreeMap<PciAddress, Uuid>,
    /// What Placement holds for the host's tree (empty if unknown or nothing yet).
    pub placement: &'a ProviderTree,
}

/// The provider name Nova gives a device's provider (`_get_rp_name_for_address`).
pub fn provider_name(host: &str, address: PciAddress) -> String {
    format!("{host}_{}", address.to_string().to_uppercase())
}

/// Nova's `ensure_no_dev_spec_with_devname`: refuses any spec with a non-empty `devname`.
/// Entries that are not JSON objects (or lists of them) are left to the whitelist's parser,
/// which refuses them with its own message.
///
/// # Errors
///
/// [`ViewError::DevnameSpec`] for the first such spec, printed as Nova prints it.
pub fn ensure_no_devname_specs(entries: &[Entry]) -> Result<(), ViewError> {
    for entry in entries {
        let value = match entry {
            Entry::Json(text) => match from_json(text) {
                Ok(v) => v,
                Err(_) => continue,
            },
            Entry::Native(v) => v.clone(),
        };
        let specs = match value {
            Value::List(items) => items,
            other => vec![other],
        };
        for spec in specs {
            if spec.get("devname").is_some_and(Value::is_truthy) {
                return Err(ViewError::DevnameSpec {
                    spec: spec.py_repr(),
                });
            }
        }
    }
    Ok(())
}

/// Computes the view (Nova's `update_provider_tree_for_pci`, without the allocation
/// healing, which is for `[filter_scheduler] pci_in_placement = false`, a mode pcitrack
/// has no use for).
///
/// # Errors
///
/// The first of Nova's guards that refuses, in Nova's order: [`ViewError::DevnameSpec`],
/// then, devices in address order, [`ViewError::DependentDevice`],
/// [`ViewError::MixedResourceClass`], [`ViewError::MixedTraits`],
/// [`ViewError::OneTimeUseOnChild`], [`ViewError::MissingParent`]; and
/// [`ViewError::ForeignPciProviders`] when `placement` holds PCI providers pcitrack did not
/// write.
pub fn view(input: &ViewInput<'_>) -> Result<PciView, ViewError> {
    ensure_no_devname_specs(input.device_spec)?;
    check_foreign(input)?;

    let mut devices: Vec<&TrackedDevice> = input.devices.iter().filter(|d| counts(d)).collect();
    devices.sort_by_key(|d| d.address());
    let mut building: BTreeMap<String, Building<'_>> = BTreeMap::new();
    for d in devices {
        if has_physical_network(d) {
            continue;
        }
        match d.dev_type() {
            DevType::Pci | DevType::Pf => {
                let name = provider_name(input.host, d.address());
                building
                    .entry(name)
                    .or_insert_with(|| Building::new(d.address()))
                    .add_parent(d)?;
            }
            DevType::Vf | DevType::Vdpa => {
                let parent = d.parent_addr().ok_or(ViewError::MissingParent {
                    device: d.address(),
                    dev_type: d.dev_type(),
                })?;
                let name = provider_name(input.host, parent);
                building
                    .entry(name.clone())
                    .or_insert_with(|| Building::new(parent))
                    .add_child(d, &name)?;
            }
        }
    }

    let mut new_uuids = BTreeMap::new();
    let mut providers = Vec::new();
    for (name, b) in building {
        let uuid = input
            .placement
            .by_name(&name)
            .map(|p| p.uuid)
            .or_else(|| input.known_uuids.get(&b.address).copied())
            .unwrap_or_else(Uuid::new_v4);
        if input.known_uuids.get(&b.address) != Some(&uuid) {
            new_uuids.insert(b.address, uuid);
        }
        providers.push(b.finish(name, uuid, input.placement));
    }
    providers.extend(held_by_allocations(input, &providers));
    providers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(PciView {
        root_name: input.host.to_string(),
        providers,
        new_uuids,
    })
}

/// A tracked device counts while the host reports it or while it is held: in use, or a
/// reserved one-time-use device waiting for its release.
fn counts(d: &TrackedDevice) -> bool {
    d.missing_syncs == 0 || d.status.is_in_use() || d.reserved
}

/// Nova's `if dev_spec_tags.get("physical_network")`: Python truthiness of the tag's value.
fn has_physical_network(d: &TrackedDevice) -> bool {
    match d
        .profile
        .tags
        .get(PHYSICAL_NETWORK)
        .map(|t| TagValue::parse(t))
    {
        None => false,
        Some(TagValue::Str(s)) => !s.is_empty(),
        Some(TagValue::Json(json)) => from_json(json).is_ok_and(|v| v.is_truthy()),
    }
}

fn check_foreign(input: &ViewInput<'_>) -> Result<(), ViewError> {
    let foreign: Vec<&str> = input
        .placement
        .providers
        .iter()
        .filter(|p| p.name != input.host)
        .filter(|p| (p.is_pci() || p.traits.contains(OWNER_NOVA)) && !p.is_pcitrack_owned())
        .map(|p| p.name.as_str())
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(ViewError::ForeignPciProviders {
        root: input.host.to_string(),
        providers: foreign.join(","),
    })
}

/// pcitrack providers that no device stands behind any more but that Placement still has
/// allocations against: kept, at their usage, with their traits, until the allocations go.
fn held_by_allocations(input: &ViewInput<'_>, in_view: &[PciProvider]) -> Vec<PciProvider> {
    let prefix = format!("{}_", input.host);
    input
        .placement
        .providers
        .iter()
        .filter(|p| p.is_pcitrack_owned() && p.in_use())
        .filter(|p| in_view.iter().all(|v| v.uuid != p.uuid && v.name != p.name))
        .filter_map(|p| {
            let address = p
                .name
                .strip_prefix(&prefix)?
                .to_lowercase()
                .parse::<PciAddress>()
                .ok()?;
            let inventories = usage_inventories(&p.usages, None);
            let resource_class = inventories.keys().next()?.clone();
            Some(PciProvider {
                name: p.name.clone(),
                uuid: p.uuid,
                address,
                resource_class,
                inventories,
                traits: p.traits.clone(),
                devices: Vec::new(),
                one_time_use: false,
            })
        })
        .collect()
}

/// Inventories at the usage for every class with usage, but `except`.
fn usage_inventories(
    usages: &BTreeMap<String, u32>,
    except: Option<&str>,
) -> BTreeMap<String, WantedInventory> {
    usages
        .iter()
        .filter(|&(rc, &used)| used > 0 && Some(rc.as_str()) != except)
        .map(|(rc, &used)| {
            (
                rc.clone(),
                WantedInventory {
                    total: used,
                    max_unit: used,
                    reserved: None,
                },
            )
        })
        .collect()
}

/// A provider being assembled (Nova's `PciResourceProvider`).
struct Building<'a> {
    address: PciAddress,
    parent: Option<&'a TrackedDevice>,
    children: Vec<&'a TrackedDevice>,
    resource_class: String,
    traits: BTreeSet<String>,
}

impl<'a> Building<'a> {
    fn new(address: PciAddress) -> Self {
        Self {
            address,
            parent: None,
            children: Vec::new(),
            resource_class: String::new(),
            traits: BTreeSet::new(),
        }
    }

    fn devs(&self) -> String {
        match self.parent {
            Some(p) => p.address().to_string(),
            None => join(self.children.iter().map(|c| c.address())),
        }
    }

    /// `PciResourceProvider.add_child`, its checks in its order.
    fn add_child(&mut self, d: &'a TrackedDevice, provider: &str) -> Result<(), ViewError> {
        if self.parent.is_some() {
            return Err(ViewError::DependentDevice {
                parent_dev: d.address(),
                children_devs: self.devs(),
            });
        }
        let rc = d.profile.resource_class();
        if !self.children.is_empty() && rc != self.resource_class {
            return Err(ViewError::MixedResourceClass {
                new_rc: rc,
                new_dev: d.address(),
                current_rc: self.resource_class.clone(),
                current_devs: self.devs(),
            });
        }
        let traits = d.profile.traits();
        if !self.children.is_empty() && traits != self.traits {
            return Err(ViewError::MixedTraits {
                new_traits: join(traits.iter()),
                new_dev: d.address(),
                current_traits: join(self.traits.iter()),
                current_devs: self.devs(),
            });
        }
        if d.profile
            .tags
            .contains_key(pcitrack_tracker::record::ONE_TIME_USE)
        {
            return Err(ViewError::OneTimeUseOnChild {
                provider: provider.to_string(),
                device: d.address(),
            });
        }
        self.children.push(d);
        self.resource_class = rc;
        self.traits = traits;
        Ok(())
    }

    /// `PciResourceProvider.add_parent` (its traits, `HW_PCI_ONE_TIME_USE` included, are
    /// the profile's).
    fn add_parent(&mut self, d: &'a TrackedDevice) -> Result<(), ViewError> {
        if self.parent.is_some() || !self.children.is_empty() {
            return Err(ViewError::DependentDevice {
                parent_dev: d.address(),
                children_devs: self.devs(),
            });
        }
        self.parent = Some(d);
        self.resource_class = d.profile.resource_class();
        self.traits = d.profile.traits();
        Ok(())
    }

    /// The inventories: the device count, raised to Placement's usage of the class
    /// (`_adjust_for_removals_and_held_devices`), reserved for an allocated one-time-use
    /// device (`_handle_one_time_use`), plus the other classes Placement has usage of.
    fn finish(self, name: String, uuid: Uuid, placement: &ProviderTree) -> PciProvider {
        let usages = placement.by_uuid(uuid).map(|p| &p.usages);
        let devices: Vec<PciAddress> = match self.parent {
            Some(p) => vec![p.address()],
            None => self.children.iter().map(|c| c.address()).collect(),
        };
        let count = u32::try_from(devices.len()).unwrap_or(u32::MAX);
        let used = usages
            .and_then(|u| u.get(&self.resource_class))
            .copied()
            .unwrap_or(0);
        let total = count.max(used);
        let one_time_use = self.parent.is_some_and(|p| p.profile.one_time_use());
        let reserved = one_time_use.then(|| {
            if self.parent.is_some_and(|p| p.reserved) {
                total
            } else {
                0
            }
        });
        let mut inventories = usages
            .map(|u| usage_inventories(u, Some(self.resource_class.as_str())))
            .unwrap_or_default();
        inventories.insert(
            self.resource_class.clone(),
            WantedInventory {
                total,
                max_unit: total,
                reserved,
            },
        );
        let mut traits = self.traits;
        traits.insert(OWNER_TRAIT.to_string());
        PciProvider {
            name,
            uuid,
            address: self.address,
            resource_class: self.resource_class,
            inventories,
            traits,
            devices,
            one_time_use,
        }
    }
}

fn join<T: ToString>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}
