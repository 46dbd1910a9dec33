//! A partial rescan: the devices a uevent burst names, re-read with the relatives their
//! records and verdicts depend on, so that an agent following uevents reads a few devices
//! per burst rather than the whole host (a full scan of 4112 devices reads some 50 000
//! files).
//!
//! What is re-read, and why (everything else in a device's record is read from its own
//! directory, exactly as [`crate::scan`] reads it, through the same code):
//! * the devices named;
//! * the PF of every VF among them (known before or linked now): a VF's index comes from its
//!   PF's `virtfnN` links, its serial number from its PF's VPD, and its `parent_ifname` and
//!   `devname` matches from its PF's interface;
//! * the VFs of every PF named, known before or linked now: creating or removing VFs
//!   (`sriov_numvfs`) ends with a change event on the PF, and VFs that vanished are then
//!   reported missing; and the VFs of a PF pulled in as a parent whose record changed.
//!
//! Devices outside that scope are left as the caller knew them; the periodic full resync is
//! the safety net for anything a burst did not name (a netdev renamed, for instance).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use pcitrack_model::{DevType, Device, PciAddress};

use crate::scan::{Named, Skipped, finish, read_named};

/// What a partial rescan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rescan {
    /// Every address re-read: the devices named and their relatives. A device of the scope
    /// missing from `devices` is gone (or unreadable, see `skipped`).
    pub scope: BTreeSet<PciAddress>,
    /// The devices of the scope sysfs reports now, sorted by address, finished as a full
    /// scan finishes them (VF indices, inherited serial numbers, vDPA types).
    pub devices: Vec<Device>,
    /// Entries of the scope that exist but could not be read, each with its reason (as a
    /// full scan skips them; not logged here).
    pub skipped: Vec<Skipped>,
}

/// What the rounds of reading gathered.
#[derive(Default)]
struct Reads {
    /// Each address read: its record, or `None` when it is gone or unreadable.
    found: BTreeMap<PciAddress, Option<Device>>,
    vf_index: HashMap<PciAddress, u16>,
    skipped: Vec<Skipped>,
}

impl Reads {
    /// Reads `addresses` (again, when already read); returns the VF indices their PFs'
    /// `virtfnN` links gave.
    fn read(
        &mut self,
        root: &Path,
        addresses: impl IntoIterator<Item = PciAddress>,
    ) -> std::io::Result<HashMap<PciAddress, u16>> {
        let addresses: Vec<PciAddress> = addresses.into_iter().collect();
        if addresses.is_empty() {
            return Ok(HashMap::new());
        }
        let names: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        let Named {
            devices,
            skipped,
            vf_index,
        } = read_named(root, &names)?;
        for a in addresses {
            self.found.insert(a, None);
        }
        for d in devices {
            self.found.insert(d.address, Some(d));
        }
        let dir = root.join("bus/pci/devices");
        // An entry that is not there is a device gone, not one that failed to read.
        self.skipped.extend(
            skipped
                .into_iter()
                .filter(|s| dir.join(&s.entry).symlink_metadata().is_ok()),
        );
        self.vf_index
            .extend(vf_index.iter().map(|(&vf, &n)| (vf, n)));
        Ok(vf_index)
    }

    fn now(&self, a: PciAddress) -> Option<&Device> {
        self.found.get(&a).and_then(Option::as_ref)
    }
}

/// The inventory as the caller last knew it, sorted by address.
struct Known<'a>(&'a [Device]);

impl Known<'_> {
    fn at(&self, a: PciAddress) -> Option<&Device> {
        self.0
            .binary_search_by_key(&a, |d| d.address)
            .ok()
            .map(|i| &self.0[i])
    }

    fn vfs_of(&self, pf: PciAddress) -> impl Iterator<Item = PciAddress> + '_ {
        self.0
            .iter()
            .filter(move |d| d.dev_type.is_child() && d.parent_addr == Some(pf))
            .map(|d| d.address)
    }
}

/// Re-reads under `root` the devices `named` (a uevent burst's) with their relatives (see
/// the module's documentation), given `known`, the inventory of the last scan with earlier
/// rescans patched in (sorted by address).
///
/// # Errors
///
/// `<root>/bus/pci/devices` cannot be opened: nothing was re-read, and the caller should
/// fall back to a full scan (which reports the same error).
pub fn rescan(
    root: &Path,
    known: &[Device],
    named: &BTreeSet<PciAddress>,
) -> std::io::Result<Rescan> {
    let known = Known(known);
    let mut reads = Reads::default();
    reads.read(root, named.iter().copied())?;

    // The PFs of the VFs named; the PFs named bring their VFs.
    let mut parents = BTreeSet::new();
    let mut families = BTreeSet::new();
    for &a in named {
        for d in [known.at(a), reads.now(a)].into_iter().flatten() {
            if d.dev_type.is_child() {
                parents.extend(d.parent_addr);
            }
            if d.dev_type == DevType::Pf {
                families.insert(a);
            }
        }
    }
    let unread: Vec<PciAddress> = parents
        .iter()
        .copied()
        .filter(|p| !reads.found.contains_key(p))
        .collect();
    reads.read(root, unread.iter().copied())?;
    // A PF pulled in as a parent whose record changed brings its VFs too (their
    // `parent_ifname`, serial number and `devname` matches follow it). A PF is read whole
    // from its own directory, so its raw record compares with the finished one.
    for p in unread {
        if known.at(p) != reads.now(p) {
            families.insert(p);
        }
    }

    if !families.is_empty() {
        // The families' PFs once more, for the VFs their `virtfnN` links name now.
        let linked = reads.read(root, families.iter().copied())?;
        let mut vfs: BTreeSet<PciAddress> = linked.into_keys().collect();
        for &pf in &families {
            vfs.extend(known.vfs_of(pf));
        }
        vfs.retain(|a| !reads.found.contains_key(a));
        reads.read(root, vfs)?;
    }

    let scope: BTreeSet<PciAddress> = reads.found.keys().copied().collect();
    let mut devices: Vec<Device> = reads.found.into_values().flatten().collect();
    // vDPA bus entries of devices outside the scope are not this rescan's to place.
    let _ = finish(root, &mut devices, &reads.vf_index);
    Ok(Rescan {
        scope,
        devices,
        skipped: reads.skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::FakeSysfs;

    fn set(addresses: &[&str]) -> BTreeSet<PciAddress> {
        addresses.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn addresses(r: &Rescan) -> Vec<String> {
        r.devices.iter().map(|d| d.address.to_string()).collect()
    }

    #[test]
    fn a_vf_brings_its_pf_and_reads_as_the_full_scan_does() {
        let tree = FakeSysfs::new();
        let vfs = tree.add_pf_with_vfs("0000:10:00.0", 0x8086, 0x1572, 0x154c, 4);
        tree.add_device("0000:00:01.0", 0x8086, 0xa1d2, 0x060400);
        let full = crate::scan(tree.root()).devices;
        let r = rescan(tree.root(), &full, &set(&[&vfs[2]])).unwrap();
        assert_eq!(r.scope, set(&["0000:10:00.0", &vfs[2]]));
        let expected: Vec<Device> = full
            .iter()
            .filter(|d| r.scope.contains(&d.address))
            .cloned()
            .collect();
        assert_eq!(r.devices, expected);
        assert_eq!(r.devices[1].vf_index, Some(2));
    }

    #[test]
    fn a_pf_whose_vfs_were_disabled_reports_them_gone() {
        let tree = FakeSysfs::new();
        let vfs = tree.add_pf_with_vfs("0000:10:00.0", 0x8086, 0x1572, 0x154c, 3);
        let known = crate::scan(tree.root()).devices;
        for (k, vf) in vfs.iter().enumerate() {
            tree.remove(vf);
            let _ = std::fs::remove_file(
                tree.root()
                    .join("devices/pci0000:00/0000:10:00.0")
                    .join(format!("virtfn{k}")),
            );
        }
        let r = rescan(tree.root(), &known, &set(&["0000:10:00.0"])).unwrap();
        let mut scope = set(&["0000:10:00.0"]);
        scope.extend(set(&vfs.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(r.scope, scope);
        assert_eq!(addresses(&r), ["0000:10:00.0"]);
        assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    }

    #[test]
    fn an_unchanged_pf_pulled_in_as_a_parent_does_not_bring_its_vfs() {
        let tree = FakeSysfs::new();
        let vfs = tree.add_pf_with_vfs("0000:10:00.0", 0x8086, 0x1572, 0x154c, 8);
        let known = crate::scan(tree.root()).devices;
        tree.add_device(&vfs[0], 0x8086, 0x154c, 0x020000)
            .link("physfn", "../0000:10:00.0")
            .driver("vfio-pci");
        let r = rescan(tree.root(), &known, &set(&[&vfs[0]])).unwrap();
        assert_eq!(r.scope.len(), 2);
        assert_eq!(r.devices[1].driver.as_deref(), Some("vfio-pci"));
        // A changed PF (now with an interface) brings them all.
        tree.add_device("0000:10:00.0", 0x8086, 0x1572, 0x020000)
            .attr("sriov_totalvfs", "8")
            .attr("sriov_numvfs", "8")
            .net("ens1f0", "02:00:00:00:00:01", None);
        let r = rescan(tree.root(), &known, &set(&[&vfs[0]])).unwrap();
        assert_eq!(r.scope.len(), 9);
    }
}
