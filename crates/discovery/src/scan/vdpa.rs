//! vDPA devices: a VF with a device on the vDPA bus is Nova's `vdpa` device.
//!
//! A vDPA device is a child of the function that provides it, and the bus lists it by a link
//! to its directory: `<root>/bus/vdpa/devices/vdpa0 ->
//! ../../../devices/pci0000:00/0000:00:02.2/0000:06:00.2/vdpa0`, so its parent is the
//! component before its own name (libvirt's node device takes the same parent). Nova's
//! libvirt driver (`nova/virt/libvirt/host.py` `_get_pcidev_info`, `_get_device_type`) gives
//! the type `vdpa` to a VF that is the parent of a vDPA device, keeping its `parent_addr`
//! (the PF); a PF or a plain PCI device with one keeps its type, and vDPA devices of
//! subfunctions or simulators (whose parent is no PCI function) are not PCI devices.

use std::collections::HashMap;
use std::path::{Component, Path};

use pcitrack_model::{DevType, Device, PciAddress};

use super::Skipped;

/// Gives the type `vdpa` to every VF in `devices` that has a vDPA device under
/// `<root>/bus/vdpa/devices`. An entry that cannot be read as a link to a device directory,
/// or whose parent looks like a PCI address the scan did not find, is returned as skipped.
/// No vDPA bus (the module is not loaded) means no vDPA devices.
pub(super) fn mark_vdpa(root: &Path, devices: &mut [Device]) -> Vec<Skipped> {
    let dir = root.join("bus/vdpa/devices");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let index: HashMap<PciAddress, usize> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.address, i))
        .collect();
    let mut skipped = Vec::new();
    for name in names {
        let parent = match parent_of(&dir, &name) {
            Ok(parent) => parent,
            Err(reason) => {
                skipped.push(Skipped {
                    entry: name,
                    reason,
                });
                continue;
            }
        };
        let Ok(address) = parent.parse::<PciAddress>() else {
            tracing::debug!(vdpa = %name, parent = %parent, "vDPA device of no PCI function");
            continue;
        };
        let Some(&i) = index.get(&address) else {
            skipped.push(Skipped {
                reason: format!("vDPA device of {address}, which is not among the PCI devices"),
                entry: name,
            });
            continue;
        };
        let device = &mut devices[i];
        match device.dev_type {
            DevType::Vf | DevType::Vdpa => device.dev_type = DevType::Vdpa,
            other => tracing::debug!(
                vdpa = %name,
                device = %address,
                "vDPA device of a {other} device: only a VF is Nova's vdpa device"
            ),
        }
    }
    skipped
}

/// The name of the device directory holding the vDPA device `name`, read from its bus link
/// (never followed).
fn parent_of(dir: &Path, name: &str) -> Result<String, String> {
    let target = std::fs::read_link(dir.join(name))
        .map_err(|e| format!("vDPA bus entry is not a readable link: {e}"))?;
    let mut parts = target.components().rev();
    let (Some(Component::Normal(own)), Some(Component::Normal(parent))) =
        (parts.next(), parts.next())
    else {
        return Err(format!(
            "vDPA bus entry's link {} names no parent device",
            target.display()
        ));
    };
    if own != name {
        return Err(format!(
            "vDPA bus entry's link {} names another device",
            target.display()
        ));
    }
    parent
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("vDPA bus entry's link {} is not UTF-8", target.display()))
}
