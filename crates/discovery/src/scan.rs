//! Scanning `<root>/bus/pci/devices`: each entry read into a [`Device`] (ids, class, SR-IOV
//! relations, driver, NUMA node, IOMMU group, netdevs, VPD), spread over threads, with the
//! entries that cannot be read skipped by name rather than failing the scan; then the VFs
//! with a vDPA device (`<root>/bus/vdpa/devices`) become `vdpa` devices.

mod netdev;
mod vdpa;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use pcitrack_model::{DevType, Device, PciAddress};

use crate::attrs::{DevicesDir, Listing, VPD_CAP};

/// A directory entry that could not be read as a device, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The entry's name: normally a PCI address, or a vDPA device's (`vdpa0`).
    pub entry: String,
    /// What was wrong.
    pub reason: String,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// The devices, sorted by address.
    pub devices: Vec<Device>,
    /// Entries skipped (PCI devices, then vDPA devices), each with its reason (also logged as
    /// warnings).
    pub skipped: Vec<Skipped>,
}

fn skip(skipped: &mut Vec<Skipped>, entry: &str, reason: String) {
    tracing::warn!(device = entry, "skipping PCI device: {reason}");
    skipped.push(Skipped {
        entry: entry.to_string(),
        reason,
    });
}

/// Reads every PCI device under `<root>/bus/pci/devices`, and the vDPA devices under
/// `<root>/bus/vdpa/devices` that make VFs Nova's `vdpa` devices. A missing PCI directory
/// is an empty host (and a warning); a missing vDPA one, a host without vDPA.
pub fn scan(root: &Path) -> ScanReport {
    let dir = root.join("bus/pci/devices");
    let mut report = ScanReport::default();
    let (devices, names) = match list(&dir) {
        Ok(listed) => listed,
        Err(e) => {
            skip(
                &mut report.skipped,
                &dir.display().to_string(),
                format!("cannot list the directory: {e}"),
            );
            return report;
        }
    };
    let devices = Devices {
        dir: &devices,
        path: &dir,
    };
    let mut found = read_resolved(devices, &names);
    // Warn in directory order, whichever thread read what.
    found.skipped.sort_by_key(|(i, _)| *i);
    for (_, s) in found.skipped {
        skip(&mut report.skipped, &s.entry, s.reason);
    }
    report.devices = found.devices;
    for s in finish(root, &mut report.devices, &found.vf_index) {
        tracing::warn!(vdpa = %s.entry, "skipping vDPA device {}: {}", s.entry, s.reason);
        report.skipped.push(s);
    }
    report
}

/// What follows reading the entries, for a whole scan and for a partial rescan
/// (`crate::rescan`, whose devices include the PF of every VF): sorts `devices`, types the
/// VFs with a vDPA device, and gives VFs their index (`vf_index`, from the PFs' `virtfnN`
/// links) and their PF's serial number. Returns the vDPA bus entries it could not place.
pub(crate) fn finish(
    root: &Path,
    devices: &mut [Device],
    vf_index: &HashMap<PciAddress, u16>,
) -> Vec<Skipped> {
    devices.sort_by_key(|d| d.address);
    let skipped = vdpa::mark_vdpa(root, devices);
    // A vDPA device keeps its VF index but, as in Nova (whose `_get_vpd_details` falls back
    // to the PF's VPD only for a `type-VF`), not its PF's serial number: it is typed first.
    // VF indices and inherited serial numbers need the PFs, which may come later in the
    // directory order.
    let serials: HashMap<PciAddress, String> = devices
        .iter()
        .filter_map(|d| Some((d.address, d.vpd.as_ref()?.card_serial_number.clone()?)))
        .collect();
    for d in devices.iter_mut() {
        d.vf_index = vf_index.get(&d.address).copied();
        if d.card_serial_number.is_none()
            && d.dev_type == DevType::Vf
            && let Some(pf) = d.parent_addr
        {
            d.card_serial_number = serials.get(&pf).cloned();
        }
    }
    skipped
}

/// What [`read_named`] read.
pub(crate) struct Named {
    /// The devices, unsorted and not finished.
    pub(crate) devices: Vec<Device>,
    /// The entries skipped, in the order of the names, not logged.
    pub(crate) skipped: Vec<Skipped>,
    /// The VF indices read from the PFs' `virtfnN` links.
    pub(crate) vf_index: HashMap<PciAddress, u16>,
}

/// Reads the entries `names` of `<root>/bus/pci/devices` exactly as [`scan`] reads each
/// (a partial rescan, `crate::rescan`). Call [`finish`] on the devices afterwards.
pub(crate) fn read_named(root: &Path, names: &[String]) -> std::io::Result<Named> {
    let path = root.join("bus/pci/devices");
    let dir = DevicesDir::open(&path)?;
    let devices = Devices {
        dir: &dir,
        path: &path,
    };
    let mut found = read_resolved(devices, names);
    found.skipped.sort_by_key(|(i, _)| *i);
    Ok(Named {
        devices: found.devices,
        skipped: found.skipped.into_iter().map(|(_, s)| s).collect(),
        vf_index: found.vf_index,
    })
}

/// The device directory, opened once for listing it and for reading each device relative
/// to it, and its entries' names.
fn list(dir: &Path) -> std::io::Result<(DevicesDir, Vec<String>)> {
    let devices = DevicesDir::open(dir)?;
    let names = devices.names()?;
    Ok((devices, names))
}

/// Where the devices are: the open directory, and its path for what is read by path (netdevs).
#[derive(Clone, Copy)]
struct Devices<'a> {
    dir: &'a DevicesDir,
    path: &'a Path,
}

/// What some of the entries gave: devices, skipped entries (by their index in the
/// directory), what the PFs' `virtfnN` links said (each VF's index and PF), and the VFs
/// whose PF is still to be found (their address and the index of their entry).
#[derive(Default)]
struct Found {
    devices: Vec<Device>,
    skipped: Vec<(usize, Skipped)>,
    vf_index: HashMap<PciAddress, u16>,
    vf_parent: HashMap<PciAddress, PciAddress>,
    orphans: Vec<(PciAddress, usize)>,
}

impl Found {
    /// The threads' parts as one: the others appended to the largest, whose records are then
    /// not copied again (a record is a few hundred bytes, a host has thousands).
    fn merge(mut parts: Vec<Found>) -> Found {
        let Some(largest) = (0..parts.len()).max_by_key(|&i| parts[i].devices.len()) else {
            return Found::default();
        };
        let mut all = parts.swap_remove(largest);
        for part in parts {
            all.devices.extend(part.devices);
            all.skipped.extend(part.skipped);
            all.vf_index.extend(part.vf_index);
            all.vf_parent.extend(part.vf_parent);
            all.orphans.extend(part.orphans);
        }
        all
    }

    /// Gives each VF its PF. A VF and its PF link to each other (`physfn`, `virtfnN`; the
    /// kernel makes both links together, `pci_iov_sysfs_link` in `drivers/pci/iov.c`), and a
    /// PF's links are read anyway, for the VFs' indices: so a VF's PF is the one whose link
    /// names it, and only a VF that no PF read here names (its PF unreadable or not among
    /// the entries read, a partial rescan of the VF alone, VFs being created) costs a read
    /// of its own `physfn`. A VF whose PF cannot be found either way is a plain device, as
    /// when its `physfn` link is missing.
    fn resolve_parents(&mut self, dir: &DevicesDir, names: &[String]) {
        let mut read: HashMap<PciAddress, Option<PciAddress>> = HashMap::new();
        for &(vf, i) in &self.orphans {
            if !self.vf_parent.contains_key(&vf) {
                let link = format!("{}/physfn", names[i]);
                read.insert(vf, dir.link_parsed(&link));
            }
        }
        for d in &mut self.devices {
            if d.dev_type == DevType::Vf && d.parent_addr.is_none() {
                d.parent_addr = match self.vf_parent.get(&d.address) {
                    Some(&pf) => Some(pf),
                    None => read.get(&d.address).copied().flatten(),
                };
                if d.parent_addr.is_none() {
                    d.dev_type = DevType::Pci;
                }
            }
        }
    }
}

/// Reads the entries, then gives the VFs their PFs (see [`Found::resolve_parents`]).
fn read_resolved(devices: Devices, names: &[String]) -> Found {
    let mut found = Found::merge(read_all(devices, names));
    found.resolve_parents(devices.dir, names);
    found
}

/// Entries a scan thread claims at a time. The threads share the host's cores with whatever
/// else runs there: fixed shares would leave the scan waiting for the thread that was slowed
/// down most, while small claims let the others take over its remaining work.
const BATCH: usize = 16;
/// Fewest entries worth a thread of their own (a thread costs tens of microseconds, a device
/// a few).
const PER_THREAD: usize = 64;

/// Reads all the entries. Reading a device is a dozen small files, all system-call bound, so
/// the devices are spread over the cores, the calling thread included.
fn read_all(devices: Devices, names: &[String]) -> Vec<Found> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(names.len().div_ceil(PER_THREAD))
        .max(1);
    let next = AtomicUsize::new(0);
    let work = || read_claimed(devices, names, &next);
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut parts = vec![work()];
        parts.extend(
            helpers
                .into_iter()
                .map(|h| h.join().expect("a scan thread panicked")),
        );
        parts
    })
}

/// Claims batches of entries until none are left, and reads them, listing each device
/// directory into the one [`Listing`] this thread keeps.
fn read_claimed(devices: Devices, names: &[String], next: &AtomicUsize) -> Found {
    // Room for every entry: only the pages this thread fills are ever touched, and the
    // records are never copied to a larger vector as it grows, nor when the parts are merged
    // into the largest.
    let mut found = Found {
        devices: Vec::with_capacity(names.len()),
        ..Found::default()
    };
    let mut listing = Listing::default();
    loop {
        let start = next.fetch_add(BATCH, Ordering::Relaxed);
        if start >= names.len() {
            return found;
        }
        let end = (start + BATCH).min(names.len());
        for (i, name) in (start..end).zip(&names[start..end]) {
            if let Err(skipped) = read_entry(devices, (i, name), &mut listing, &mut found) {
                found.skipped.push((i, skipped));
            }
        }
    }
}

/// Reads one entry into `found`, or says why it was skipped.
fn read_entry(
    devices: Devices,
    (i, name): (usize, &str),
    listing: &mut Listing,
    found: &mut Found,
) -> Result<(), Skipped> {
    let skipped = |reason: String| Skipped {
        entry: name.to_string(),
        reason,
    };
    let address = name
        .parse::<PciAddress>()
        .map_err(|_| skipped("not a PCI address".into()))?;
    let device = read_device(devices, name, address, listing, found).map_err(skipped)?;
    if device.dev_type == DevType::Vf && device.parent_addr.is_none() {
        found.orphans.push((address, i));
    }
    found.devices.push(device);
    Ok(())
}

fn read_device(
    devices: Devices,
    name: &str,
    address: PciAddress,
    listing: &mut Listing,
    found: &mut Found,
) -> Result<Device, String> {
    let dir = devices
        .dir
        .device(name, listing)
        .ok_or("cannot open its directory")?;
    // The ids, class and driver in one read where the kernel offers them (see `Uevent`).
    let uevent = dir.uevent();
    let vendor = dir
        .hex_or(uevent.vendor, "vendor", 4)
        .ok_or("vendor id missing or malformed")?;
    let device = dir
        .hex_or(uevent.device, "device", 4)
        .ok_or("device id missing or malformed")?;
    let total_vfs: Option<u16> = dir.dec("sriov_totalvfs");
    let is_pf = total_vfs.is_some_and(|n| n > 0);
    // A device with a `physfn` link is a VF; its PF is found once every entry is read
    // (`Found::resolve_parents`), from the PFs' side of the links.
    let (dev_type, parent) = if is_pf {
        (DevType::Pf, dir.link_parsed::<PciAddress>("physfn"))
    } else if dir.may_have("physfn", true) {
        (DevType::Vf, None)
    } else {
        (DevType::Pci, None)
    };
    let mut d = Device::new(address, vendor as u16, device as u16, dev_type);
    d.subsystem_vendor_id = dir
        .hex_or(uevent.subsystem_vendor, "subsystem_vendor", 4)
        .map(|v| v as u16);
    d.subsystem_device_id = dir
        .hex_or(uevent.subsystem_device, "subsystem_device", 4)
        .map(|v| v as u16);
    d.class_code = dir.hex_or(uevent.class, "class", 6).unwrap_or(0);
    d.revision = dir.hex("revision", 2).map(|v| v as u8);
    d.numa_node = dir
        .dec::<i64>("numa_node")
        .and_then(|n| u32::try_from(n).ok());
    d.driver = dir.link_name_or(uevent.driver.as_deref(), "driver");
    d.iommu_group = dir.link_parsed("iommu_group");
    d.parent_addr = parent;
    if dev_type == DevType::Pf {
        d.sriov_totalvfs = total_vfs;
        d.sriov_numvfs = dir.dec("sriov_numvfs");
        d.sriov_vf_device = dir.hex("sriov_vf_device", 4).map(|v| v as u16);
        // One name buffer for the PF's links, rewritten in place (`virtfn0`, `virtfn1`...).
        let mut link = String::from("virtfn");
        for n in 0..total_vfs.unwrap_or(0) {
            link.truncate("virtfn".len());
            let _ = write!(link, "{n}");
            match dir.link_parsed(&link) {
                Some(vf) => {
                    found.vf_index.insert(vf, n);
                    found.vf_parent.insert(vf, address);
                }
                // VFs are numbered from 0 without gaps: the first missing link ends them.
                None => break,
            }
        }
    }
    if dir.may_have("net", false) {
        d.net = netdev::net_interfaces(&devices.path.join(name).join("net"));
    }
    if let Some(own) = netdev::own_interface(&d.net, dev_type) {
        d.ifname = Some(own.name.clone());
        d.mac_address = own.mac_address.clone();
    }
    if let Some(bytes) = dir.bytes("vpd", VPD_CAP).filter(|b| !b.is_empty()) {
        match crate::vpd::parse(&bytes) {
            Ok(vpd) => d.vpd = Some(Box::new(vpd)),
            Err(e) => tracing::debug!(device = %address, "ignoring its VPD: {e}"),
        }
    }
    d.card_serial_number = d
        .vpd
        .as_ref()
        .and_then(|v| v.card_serial_number.clone())
        .filter(|s| !s.is_empty());
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::Uevent;
    use crate::fixture::FakeSysfs;

    /// A tree with a bit of everything `uevent` stands for: drivers bound and not, subsystem
    /// ids, a malformed class, devices skipped for a missing or malformed vendor id.
    fn varied_tree() -> FakeSysfs {
        let t = FakeSysfs::new();
        let vfs = t.add_pf_with_vfs("0000:3b:00.0", 0x8086, 0x1572, 0x154c, 3);
        t.device("0000:3b:00.0")
            .driver("i40e")
            .attr("subsystem_vendor", "0x8086")
            .attr("subsystem_device", "0x0001");
        t.device(&vfs[1]).driver("vfio-pci");
        t.device(&vfs[2]).attr("subsystem_vendor", "0x8086");
        t.add_device("0000:00:01.0", 0x8086, 0xa1d2, 0x060400)
            .driver("pcieport")
            .attr("class", "not hex");
        t.add_device("0000:00:02.0", 0x15b3, 0x101e, 0x020000)
            .link("driver", "../drivers/mlx5_core/");
        t.add_broken("0000:99:00.0", &[]);
        t.add_broken("0000:98:00.0", &[("vendor", "0xzz86")]);
        t
    }

    #[test]
    fn uevent_gives_what_the_attributes_give() {
        let t = varied_tree();
        let with = scan(t.root());
        assert_eq!(with.devices.len(), 6, "{:?}", with.skipped);
        assert_eq!(with.skipped.len(), 2);
        for name in std::fs::read_dir(t.root().join("bus/pci/devices")).unwrap() {
            std::fs::remove_file(name.unwrap().path().join("uevent")).unwrap();
        }
        assert_eq!(scan(t.root()), with);
    }

    #[test]
    fn uevent_values_are_used_but_the_listing_decides_what_exists() {
        let t = FakeSysfs::new();
        let d = t.add_device("0000:01:00.0", 0x8086, 0x1572, 0x020000);
        d.driver("i40e");
        // A uevent the attributes do not match (the kernel never writes one): its values
        // are what is read, so it is read; a driver it names without a `driver` link, or
        // subsystem ids without their files, are not taken.
        std::fs::write(
            d.path().join("uevent"),
            "DRIVER=ice\nPCI_CLASS=10802\nPCI_ID=8086:159B\nPCI_SUBSYS_ID=8086:0003\n",
        )
        .unwrap();
        let r = scan(t.root());
        let got = &r.devices[0];
        assert_eq!((got.vendor_id, got.product_id), (0x8086, 0x159b));
        assert_eq!(got.class_code, 0x010802);
        assert_eq!(got.driver.as_deref(), Some("ice"));
        assert_eq!(
            (got.subsystem_vendor_id, got.subsystem_device_id),
            (None, None)
        );
        std::fs::remove_file(d.path().join("driver")).unwrap();
        std::fs::write(d.path().join("uevent"), "PCI_ID=8086:zz\n").unwrap();
        let got = &scan(t.root()).devices[0];
        assert_eq!(got.driver, None, "no link, no driver");
        assert_eq!(
            got.product_id, 0x1572,
            "a malformed key falls back to the file"
        );
    }

    #[test]
    fn a_vf_whose_pf_is_not_read_finds_it_by_its_own_link() {
        let t = FakeSysfs::new();
        let vfs = t.add_pf_with_vfs("0000:3b:00.0", 0x8086, 0x1572, 0x154c, 2);
        let full = scan(t.root());
        assert_eq!(full.devices[1].parent_addr, "0000:3b:00.0".parse().ok());
        assert_eq!(full.devices[1].dev_type, DevType::Vf);
        // Read alone (a partial rescan), and with its PF unreadable (skipped).
        let alone = read_named(t.root(), std::slice::from_ref(&vfs[1])).unwrap();
        assert_eq!(
            alone.devices,
            [full.devices[2].clone()].map(|mut d| {
                d.vf_index = None;
                d
            })
        );
        std::fs::remove_file(t.root().join("devices/pci0000:00/0000:3b:00.0/vendor")).unwrap();
        t.device("0000:3b:00.0").sync_uevent();
        let r = scan(t.root());
        assert_eq!(r.skipped.len(), 1);
        assert!(r.devices.iter().all(|d| d.dev_type == DevType::Vf
            && d.parent_addr == "0000:3b:00.0".parse().ok()
            && d.vf_index.is_none()));
        // A `physfn` link that names no PCI address: a plain device, as before.
        t.device(&vfs[0]).link("physfn", "../nowhere/");
        let r = scan(t.root());
        assert_eq!(r.devices[0].dev_type, DevType::Pci);
        assert_eq!(r.devices[0].parent_addr, None);
    }

    #[test]
    fn uevent_parses_as_the_kernel_prints_it() {
        // The E810 capture's (prometheus/procfs testdata).
        let u = Uevent::parse(
            "DRIVER=ice\nPCI_CLASS=20000\nPCI_ID=8086:159B\nPCI_SUBSYS_ID=8086:0003\n\
             PCI_SLOT_NAME=0000:a2:00.0\n\
             MODALIAS=pci:v00008086d0000159Bsv00008086sd00000003bc02sc00i00",
        );
        assert_eq!(
            u,
            Uevent {
                vendor: Some(0x8086),
                device: Some(0x159b),
                subsystem_vendor: Some(0x8086),
                subsystem_device: Some(0x0003),
                class: Some(0x020000),
                driver: Some("ice".into()),
            }
        );
        assert_eq!(
            Uevent::parse("PCI_ID=8086\nDRIVER=\nPCI_CLASS=1234567"),
            Uevent::default()
        );
    }
}
