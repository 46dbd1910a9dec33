//! Scanning `<root>/bus/pci/devices`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pcitrack_model::{DevType, Device, NetInterface, PciAddress};

use crate::attrs::{DeviceDir, VPD_CAP, read_text};

/// A directory entry that could not be read as a device, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The entry's name (normally a PCI address).
    pub entry: String,
    /// What was wrong.
    pub reason: String,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// The devices, sorted by address.
    pub devices: Vec<Device>,
    /// Entries skipped, each with its reason (also logged as warnings).
    pub skipped: Vec<Skipped>,
}

fn skip(skipped: &mut Vec<Skipped>, entry: &str, reason: String) {
    tracing::warn!(device = entry, "skipping PCI device: {reason}");
    skipped.push(Skipped {
        entry: entry.to_string(),
        reason,
    });
}

/// Reads every PCI device under `<root>/bus/pci/devices`. A missing directory is an empty
/// host (and a warning).
pub fn scan(root: &Path) -> ScanReport {
    let dir = root.join("bus/pci/devices");
    let mut report = ScanReport::default();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            skip(
                &mut report.skipped,
                &dir.display().to_string(),
                format!("cannot list the directory: {e}"),
            );
            return report;
        }
    };
    let entries: Vec<(String, PathBuf)> = entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    // Reading a device is a dozen small files, all system-call bound: spread the devices over
    // the cores. Each thread keeps its own results; they are merged and sorted afterwards.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = entries.len().div_ceil(threads).max(64);
    let parts: Vec<Part> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| s.spawn(move || read_part(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a scan thread panicked"))
            .collect()
    });
    let mut vf_index: HashMap<PciAddress, u16> = HashMap::new();
    for (devices, skipped, indices) in parts {
        report.devices.extend(devices);
        for s in skipped {
            skip(&mut report.skipped, &s.entry, s.reason);
        }
        vf_index.extend(indices);
    }
    report.devices.sort_by_key(|d| d.address);
    // VF indices and inherited serial numbers need the PFs, which may come later in the
    // directory order.
    let serials: HashMap<PciAddress, String> = report
        .devices
        .iter()
        .filter_map(|d| Some((d.address, d.vpd.as_ref()?.card_serial_number.clone()?)))
        .collect();
    for d in &mut report.devices {
        d.vf_index = vf_index.get(&d.address).copied();
        if d.card_serial_number.is_none()
            && d.dev_type == DevType::Vf
            && let Some(pf) = d.parent_addr
        {
            d.card_serial_number = serials.get(&pf).cloned();
        }
    }
    report
}

type Part = (Vec<Device>, Vec<Skipped>, HashMap<PciAddress, u16>);

/// Reads one share of the directory entries.
fn read_part(entries: &[(String, PathBuf)]) -> Part {
    let (mut devices, mut skipped, mut vf_index) = (Vec::new(), Vec::new(), HashMap::new());
    for (name, path) in entries {
        let Ok(address) = name.parse::<PciAddress>() else {
            skipped.push(Skipped {
                entry: name.clone(),
                reason: "not a PCI address".into(),
            });
            continue;
        };
        match read_device(path, address, &mut vf_index) {
            Ok(d) => devices.push(d),
            Err(reason) => skipped.push(Skipped {
                entry: name.clone(),
                reason,
            }),
        }
    }
    (devices, skipped, vf_index)
}

fn read_device(
    path: &Path,
    address: PciAddress,
    vf_index: &mut HashMap<PciAddress, u16>,
) -> Result<Device, String> {
    let dir = DeviceDir::open(path).ok_or("cannot open its directory")?;
    let vendor = dir
        .hex("vendor", 4)
        .ok_or("vendor id missing or malformed")?;
    let device = dir
        .hex("device", 4)
        .ok_or("device id missing or malformed")?;
    let total_vfs: Option<u16> = dir.dec("sriov_totalvfs");
    let parent = dir
        .link_name("physfn")
        .and_then(|n| n.parse::<PciAddress>().ok());
    let dev_type = if total_vfs.is_some_and(|n| n > 0) {
        DevType::Pf
    } else if parent.is_some() {
        DevType::Vf
    } else {
        DevType::Pci
    };
    let mut d = Device::new(address, vendor as u16, device as u16, dev_type);
    d.subsystem_vendor_id = dir.hex("subsystem_vendor", 4).map(|v| v as u16);
    d.subsystem_device_id = dir.hex("subsystem_device", 4).map(|v| v as u16);
    d.class_code = dir.hex("class", 6).unwrap_or(0);
    d.revision = dir.hex("revision", 2).map(|v| v as u8);
    d.numa_node = dir
        .dec::<i64>("numa_node")
        .and_then(|n| u32::try_from(n).ok());
    d.driver = dir.link_name("driver");
    d.iommu_group = dir.link_name("iommu_group").and_then(|n| n.parse().ok());
    d.parent_addr = parent;
    if dev_type == DevType::Pf {
        d.sriov_totalvfs = total_vfs;
        d.sriov_numvfs = dir.dec("sriov_numvfs");
        d.sriov_vf_device = dir.hex("sriov_vf_device", 4).map(|v| v as u16);
        for n in 0..total_vfs.unwrap_or(0) {
            match dir
                .link_name(&format!("virtfn{n}"))
                .and_then(|s| s.parse().ok())
            {
                Some(vf) => {
                    vf_index.insert(vf, n);
                }
                // VFs are numbered from 0 without gaps: the first missing link ends them.
                None => break,
            }
        }
    }
    d.net = net_interfaces(&path.join("net"));
    if let Some(first) = d.net.first() {
        d.ifname = Some(first.name.clone());
        d.mac_address = first.mac_address.clone();
    }
    if let Some(bytes) = dir.bytes("vpd", VPD_CAP).filter(|b| !b.is_empty()) {
        match crate::vpd::parse(&bytes) {
            Ok(vpd) => d.vpd = Some(vpd),
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

fn net_interfaces(dir: &Path) -> Vec<NetInterface> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut net: Vec<NetInterface> = entries
        .flatten()
        .map(|e| {
            let p: PathBuf = e.path();
            NetInterface {
                name: e.file_name().to_string_lossy().into_owned(),
                mac_address: read_text(&p.join("address")),
                phys_port_name: read_text(&p.join("phys_port_name")).filter(|s| !s.is_empty()),
                phys_switch_id: read_text(&p.join("phys_switch_id")).filter(|s| !s.is_empty()),
            }
        })
        .collect();
    net.sort_by(|a, b| a.name.cmp(&b.name));
    net
}
