//! The changes that bring Placement from what it holds to what the view wants: pure data,
//! in the order a client sends them, and nothing when nothing changed.
//!
//! Order: custom resource classes and traits first (Placement refuses a name it does not
//! know: `PUT /resource_classes/CUSTOM_X`, `PUT /traits/CUSTOM_Y`), then the deletes (Nova's
//! `update_provider_tree` removes first), then the root if missing, then per provider in name
//! order its creation, inventories and traits. Inventories are compared on what Nova sets
//! (`total`, `max_unit`, `reserved` when the view sets it, the set of classes), as Nova's
//! `ProviderTree.update_inventory` compares only the fields it is given; an inventory that
//! changes keeps Placement's other fields (an operator's `reserved`, `allocation_ratio`).

use std::collections::{BTreeMap, BTreeSet};

use pcitrack_tracker::placement::CUSTOM_PREFIX;
use uuid::Uuid;

use crate::tree::{Inventory, ProviderTree, ResourceProvider};
use crate::view::{PciProvider, PciView, WantedInventory};

/// One change to Placement.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `PUT /resource_classes/{name}` (a custom class the tree does not use yet).
    CreateResourceClass {
        /// `CUSTOM_...`.
        name: String,
    },
    /// `PUT /traits/{name}` (a custom trait the tree does not use yet).
    CreateTrait {
        /// `CUSTOM_...`.
        name: String,
    },
    /// `POST /resource_providers`.
    CreateProvider {
        /// The uuid pcitrack generated and keeps.
        uuid: Uuid,
        /// Its name.
        name: String,
        /// The root's uuid; `None` for the root itself.
        parent_uuid: Option<Uuid>,
    },
    /// `PUT /resource_providers/{uuid}/inventories`: the whole set.
    SetInventories {
        /// The provider.
        uuid: Uuid,
        /// Its name, for logs.
        name: String,
        /// Every inventory it should have.
        inventories: BTreeMap<String, Inventory>,
    },
    /// `PUT /resource_providers/{uuid}/traits`: the whole set.
    SetTraits {
        /// The provider.
        uuid: Uuid,
        /// Its name, for logs.
        name: String,
        /// Every trait it should have.
        traits: BTreeSet<String>,
    },
    /// `DELETE /resource_providers/{uuid}`: a pcitrack provider with nothing left behind it
    /// and nothing allocated from it.
    DeleteProvider {
        /// The provider.
        uuid: Uuid,
        /// Its name, for logs.
        name: String,
    },
}

/// The changes that make `placement` hold `view`, with `root_uuid` as the root provider
/// (created when `placement` does not have it). Only pcitrack's providers (those carrying
/// [`crate::OWNER_TRAIT`]) are ever deleted; `view` is expected to come from
/// [`crate::view()`] over the same `placement`, which refuses a tree with foreign PCI
/// providers.
pub fn diff(view: &PciView, root_uuid: Uuid, placement: &ProviderTree) -> Vec<Change> {
    let wanted: BTreeSet<Uuid> = view.providers.iter().map(|p| p.uuid).collect();
    let mut deletes = Vec::new();
    for held in &placement.providers {
        if held.uuid != root_uuid
            && held.is_pcitrack_owned()
            && !wanted.contains(&held.uuid)
            && !held.in_use()
        {
            deletes.push(Change::DeleteProvider {
                uuid: held.uuid,
                name: held.name.clone(),
            });
        }
    }

    let mut updates = Vec::new();
    if placement.by_uuid(root_uuid).is_none() {
        updates.push(Change::CreateProvider {
            uuid: root_uuid,
            name: view.root_name.clone(),
            parent_uuid: None,
        });
    }
    for p in &view.providers {
        let held = placement.by_uuid(p.uuid);
        if held.is_none() {
            updates.push(Change::CreateProvider {
                uuid: p.uuid,
                name: p.name.clone(),
                parent_uuid: Some(root_uuid),
            });
        }
        if !inventories_match(&p.inventories, held) {
            updates.push(Change::SetInventories {
                uuid: p.uuid,
                name: p.name.clone(),
                inventories: merged_inventories(p, held),
            });
        }
        if held.is_none_or(|h| h.traits != p.traits) {
            updates.push(Change::SetTraits {
                uuid: p.uuid,
                name: p.name.clone(),
                traits: p.traits.clone(),
            });
        }
    }

    let mut changes = custom_names(&updates, placement);
    changes.extend(deletes);
    changes.extend(updates);
    changes
}

/// Whether Placement's inventories are what the view wants, on the fields Nova sets.
fn inventories_match(
    wanted: &BTreeMap<String, WantedInventory>,
    held: Option<&ResourceProvider>,
) -> bool {
    let Some(held) = held else {
        return false;
    };
    held.inventories.len() == wanted.len()
        && wanted.iter().all(|(rc, w)| {
            held.inventories.get(rc).is_some_and(|h| {
                h.total == w.total
                    && h.max_unit == w.max_unit
                    && w.reserved.is_none_or(|r| r == h.reserved)
            })
        })
}

/// The full records to PUT: the view's fields over Placement's (or its defaults), with
/// `reserved` and `min_unit` kept within what Placement accepts.
fn merged_inventories(
    p: &PciProvider,
    held: Option<&ResourceProvider>,
) -> BTreeMap<String, Inventory> {
    p.inventories
        .iter()
        .map(|(rc, w)| {
            let mut inv = held
                .and_then(|h| h.inventories.get(rc))
                .cloned()
                .unwrap_or_else(|| Inventory::new(w.total, w.max_unit));
            inv.total = w.total;
            inv.max_unit = w.max_unit;
            if let Some(r) = w.reserved {
                inv.reserved = r;
            }
            inv.reserved = inv.reserved.min(inv.total);
            inv.min_unit = inv.min_unit.clamp(1, inv.max_unit.max(1));
            (rc.clone(), inv)
        })
        .collect()
}

/// The custom classes and traits the updates use that no provider of the tree has yet.
fn custom_names(updates: &[Change], placement: &ProviderTree) -> Vec<Change> {
    let known_classes: BTreeSet<&str> = placement
        .providers
        .iter()
        .flat_map(|p| p.inventories.keys().chain(p.usages.keys()))
        .map(String::as_str)
        .collect();
    let known_traits: BTreeSet<&str> = placement
        .providers
        .iter()
        .flat_map(|p| p.traits.iter())
        .map(String::as_str)
        .collect();
    let mut classes = BTreeSet::new();
    let mut traits = BTreeSet::new();
    for change in updates {
        match change {
            Change::SetInventories { inventories, .. } => {
                classes.extend(inventories.keys().filter(|rc| {
                    rc.starts_with(CUSTOM_PREFIX) && !known_classes.contains(rc.as_str())
                }))
            }
            Change::SetTraits { traits: t, .. } => traits
                .extend(t.iter().filter(|n| {
                    n.starts_with(CUSTOM_PREFIX) && !known_traits.contains(n.as_str())
                })),
            _ => {}
        }
    }
    classes
        .into_iter()
        .map(|name| Change::CreateResourceClass { name: name.clone() })
        .chain(
            traits
                .into_iter()
                .map(|name| Change::CreateTrait { name: name.clone() }),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::OWNER_TRAIT;
    use pcitrack_model::PciAddress;

    const HOST: &str = "cn1";

    fn uuid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn traits(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn wanted(rc: &str, total: u32, reserved: Option<u32>) -> BTreeMap<String, WantedInventory> {
        BTreeMap::from([(
            rc.to_string(),
            WantedInventory {
                total,
                max_unit: total,
                reserved,
            },
        )])
    }

    fn provider(n: u128, rc: &str, total: u32, reserved: Option<u32>) -> PciProvider {
        let address: PciAddress = format!("0000:8{n}:00.0").parse().unwrap();
        PciProvider {
            name: crate::provider_name(HOST, address),
            uuid: uuid(n),
            address,
            resource_class: rc.to_string(),
            inventories: wanted(rc, total, reserved),
            traits: traits(&["COMPUTE_MANAGED_PCI_DEVICE", "CUSTOM_FAST", OWNER_TRAIT]),
            devices: vec![address],
            one_time_use: reserved.is_some(),
        }
    }

    fn view(providers: Vec<PciProvider>) -> PciView {
        PciView {
            root_name: HOST.into(),
            providers,
            new_uuids: BTreeMap::new(),
        }
    }

    /// What Placement holds once `view` has been applied.
    fn applied(view: &PciView) -> ProviderTree {
        let mut providers = vec![ResourceProvider::new(uuid(0), HOST, None)];
        for p in &view.providers {
            let mut held = ResourceProvider::new(p.uuid, p.name.clone(), Some(uuid(0)));
            held.inventories = merged_inventories(p, None);
            held.traits = p.traits.clone();
            providers.push(held);
        }
        ProviderTree { providers }
    }

    #[test]
    fn an_empty_placement_gets_the_custom_names_the_root_and_every_provider() {
        let v = view(vec![provider(1, "CUSTOM_PCI_8086_154C", 4, None)]);
        let p = &v.providers[0];
        assert_eq!(
            diff(&v, uuid(0), &ProviderTree::default()),
            vec![
                Change::CreateResourceClass {
                    name: "CUSTOM_PCI_8086_154C".into()
                },
                Change::CreateTrait {
                    name: "CUSTOM_FAST".into()
                },
                Change::CreateTrait {
                    name: OWNER_TRAIT.into()
                },
                Change::CreateProvider {
                    uuid: uuid(0),
                    name: HOST.into(),
                    parent_uuid: None
                },
                Change::CreateProvider {
                    uuid: p.uuid,
                    name: p.name.clone(),
                    parent_uuid: Some(uuid(0))
                },
                Change::SetInventories {
                    uuid: p.uuid,
                    name: p.name.clone(),
                    inventories: BTreeMap::from([(
                        "CUSTOM_PCI_8086_154C".to_string(),
                        Inventory::new(4, 4)
                    )])
                },
                Change::SetTraits {
                    uuid: p.uuid,
                    name: p.name.clone(),
                    traits: p.traits.clone()
                },
            ]
        );
    }

    #[test]
    fn nothing_is_sent_when_nothing_changed() {
        let v = view(vec![
            provider(1, "CUSTOM_PCI_8086_154C", 4, None),
            provider(2, "PGPU", 1, Some(1)),
        ]);
        assert_eq!(diff(&v, uuid(0), &applied(&v)), vec![]);
    }

    #[test]
    fn a_changed_total_sets_the_inventory_and_keeps_placements_other_fields() {
        let before = view(vec![provider(1, "CUSTOM_PCI_8086_154C", 4, None)]);
        let mut tree = applied(&before);
        let inv = tree.providers[1]
            .inventories
            .get_mut("CUSTOM_PCI_8086_154C")
            .unwrap();
        inv.reserved = 1; // an operator's
        inv.allocation_ratio = 2.0;
        let after = view(vec![provider(1, "CUSTOM_PCI_8086_154C", 3, None)]);
        let changes = diff(&after, uuid(0), &tree);
        let [Change::SetInventories { inventories, .. }] = changes.as_slice() else {
            panic!("one inventory change: {changes:?}");
        };
        let inv = &inventories["CUSTOM_PCI_8086_154C"];
        assert_eq!((inv.total, inv.max_unit), (3, 3));
        assert_eq!((inv.reserved, inv.allocation_ratio), (1, 2.0));
        // The operator's reserved alone is no change to send.
        let mut tree = applied(&after);
        tree.providers[1]
            .inventories
            .get_mut("CUSTOM_PCI_8086_154C")
            .unwrap()
            .reserved = 1;
        assert_eq!(diff(&after, uuid(0), &tree), vec![]);
    }

    #[test]
    fn a_one_time_use_provider_is_reserved_when_allocated_and_unreserved_when_released() {
        let free = view(vec![provider(2, "PGPU", 1, Some(0))]);
        let used = view(vec![provider(2, "PGPU", 1, Some(1))]);
        let reserved_in = |changes: Vec<Change>| match changes.as_slice() {
            [Change::SetInventories { inventories, .. }] => inventories["PGPU"].reserved,
            other => panic!("one inventory change: {other:?}"),
        };
        assert_eq!(reserved_in(diff(&used, uuid(0), &applied(&free))), 1);
        assert_eq!(reserved_in(diff(&free, uuid(0), &applied(&used))), 0);
    }

    #[test]
    fn changed_traits_are_set_whole_and_new_custom_ones_created_first() {
        let before = view(vec![provider(1, "CUSTOM_PCI_8086_154C", 4, None)]);
        let mut after = before.clone();
        after.providers[0].traits =
            traits(&["COMPUTE_MANAGED_PCI_DEVICE", "CUSTOM_RED", OWNER_TRAIT]);
        let p = &after.providers[0];
        assert_eq!(
            diff(&after, uuid(0), &applied(&before)),
            vec![
                Change::CreateTrait {
                    name: "CUSTOM_RED".into()
                },
                Change::SetTraits {
                    uuid: p.uuid,
                    name: p.name.clone(),
                    traits: p.traits.clone()
                },
            ]
        );
    }

    #[test]
    fn only_pcitrack_providers_with_nothing_allocated_are_deleted() {
        let before = view(vec![
            provider(1, "CUSTOM_PCI_8086_154C", 4, None),
            provider(2, "PGPU", 1, None),
            provider(3, "PGPU", 1, None),
        ]);
        let mut tree = applied(&before);
        // Provider 3 is someone else's (no owner trait): never deleted.
        tree.providers[3].traits = traits(&["CUSTOM_FAST"]);
        // Provider 2 still has an allocation: kept (the view keeps it too).
        tree.providers[2].usages.insert("PGPU".into(), 1);
        let after = view(vec![]);
        assert_eq!(
            diff(&after, uuid(0), &tree),
            vec![Change::DeleteProvider {
                uuid: uuid(1),
                name: before.providers[0].name.clone()
            }]
        );
    }

    #[test]
    fn reserved_never_exceeds_the_total() {
        let before = view(vec![provider(2, "PGPU", 2, Some(2))]);
        let after = view(vec![provider(2, "PGPU", 1, None)]);
        let changes = diff(&after, uuid(0), &applied(&before));
        let [Change::SetInventories { inventories, .. }] = changes.as_slice() else {
            panic!("one inventory change: {changes:?}");
        };
        assert_eq!(inventories["PGPU"].reserved, 1);
    }
}
