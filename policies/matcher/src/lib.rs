//! The default matcher policy: Nova's `[pci] device_spec`, with Nova's semantics in full.
//!
//! A device is assignable when a spec matches it; the first matching spec, in configured
//! order, wins and its tags become the device's tags exactly as Nova's `get_tags()` gives
//! them. A device no spec matches is rejected (Nova has no "abstain": an empty list means
//! nothing is assignable), so this policy never abstains. The configuration is
//! `{"device_spec": [...]}` (see [`pcitrack_devspec::whitelist_from_config`]); an invalid
//! spec fails `init` with Nova's message, and a spec the inventory contradicts (a
//! remote-managed `devname` that does not exist, a remote-managed PF) fails `evaluate`
//! with Nova's message, since only then is the inventory known.
#![deny(missing_docs)]

use pcitrack_devspec::{DeviceInput, Whitelist, whitelist_from_config};
use pcitrack_policy_sdk::{DeviceKind, Inventory, MatchOutput, Matcher, PolicyInfo, Tag};

use pcitrack_policy_nova_view::InventoryView;

/// Why a device is not assignable.
pub const NO_MATCH: &str = "matches no [pci] device_spec";
/// Why nothing is assignable when no spec is configured.
pub const NONE_CONFIGURED: &str = "no [pci] device_spec is configured";

/// Nova's device_spec matcher.
pub struct NovaMatcher {
    whitelist: Whitelist,
}

impl Matcher for NovaMatcher {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "nova-device-spec",
            env!("CARGO_PKG_VERSION"),
            "Nova's [pci] device_spec: the first matching spec makes a device assignable, with its tags",
        )
    }

    fn init(config: &str) -> Result<Self, String> {
        let whitelist = whitelist_from_config(config).map_err(|e| e.message)?;
        Ok(NovaMatcher { whitelist })
    }

    fn evaluate(
        &self,
        inventory: &Inventory,
        targets: &[u32],
        out: &mut MatchOutput,
    ) -> Result<(), String> {
        if self.whitelist.is_empty() {
            for _ in targets {
                out.reject(NONE_CONFIGURED);
            }
            return Ok(());
        }
        let bound = self
            .whitelist
            .bind(&InventoryView(inventory))
            .map_err(|e| e.message)?;
        let serials = serial_table(inventory, &self.whitelist);
        // One tag set per spec, registered the first time the spec wins.
        let mut tag_set: Vec<Option<u32>> = vec![None; self.whitelist.len()];
        for &t in targets {
            let index = t as usize;
            let d = inventory
                .devices
                .get(index)
                .ok_or_else(|| format!("target {t} is not in the inventory (host bug)"))?;
            let input = DeviceInput {
                address: d.address.into(),
                vendor_id: d.vendor_id,
                product_id: d.product_id,
                parent_addr: d.parent.map(Into::into),
                card_serial_number: serials.get(index).copied().flatten(),
            };
            let found = bound.find(&input);
            let refused = found.and_then(|spec| {
                let child = matches!(d.kind, DeviceKind::VirtualFunction | DeviceKind::Vdpa);
                self.whitelist
                    .check_one_time_use(spec, child, input.address)
                    .err()
            });
            if let Some(reason) = refused {
                out.reject(&reason);
                continue;
            }
            match found {
                Some(spec) => {
                    let set = *tag_set[spec].get_or_insert_with(|| {
                        out.add_tag_set(
                            self.whitelist.specs()[spec]
                                .tags()
                                .iter()
                                .map(|t| Tag::new(t.key(), t.value()))
                                .collect(),
                        )
                    });
                    out.assign(set);
                }
                None => out.reject(NO_MATCH),
            }
        }
        Ok(())
    }
}

/// Card serial numbers by device index, built once per batch, and only when a spec is
/// remote-managed (the only rule that reads them).
fn serial_table<'a>(inventory: &'a Inventory, whitelist: &Whitelist) -> Vec<Option<&'a str>> {
    if !whitelist.specs().iter().any(|s| s.remote_managed()) {
        return Vec::new();
    }
    let mut table = vec![None; inventory.devices.len()];
    for s in &inventory.serial_numbers {
        if let Some(slot) = table.get_mut(s.device as usize) {
            *slot = Some(s.value.as_str());
        }
    }
    table
}

pcitrack_policy_sdk::export_matcher!(NovaMatcher);

#[cfg(test)]
mod tests;
