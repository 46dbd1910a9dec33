//! Where a command's devices come from: the sysfs tree, or a JSON file of device records.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pcitrack_model::{Device, PciAddress};

use crate::config::Config;

/// Read devices from sysfs (default) or from a JSON file.
#[derive(Debug, Args)]
pub struct DeviceSource {
    /// Root of the sysfs tree (default: the configuration's, else /sys).
    #[arg(long, value_name = "DIR", conflicts_with = "devices")]
    pub sysfs_root: Option<PathBuf>,
    /// Devices as JSON (the output of `pcitrack discover --format json`) instead of sysfs.
    #[arg(long, value_name = "FILE")]
    pub devices: Option<PathBuf>,
}

/// The devices named by `source`, sorted by address. Devices sysfs could not read are
/// skipped with a warning naming them; the others are returned.
pub fn read_devices(source: &DeviceSource, config: &Config) -> anyhow::Result<Vec<Device>> {
    let mut devices = match &source.devices {
        Some(file) => {
            // Read whole and parsed in place into typed records: ids and addresses are read
            // from the buffer, not copied out first. The UTF-8 is checked once over the
            // whole text (an ASCII fast path), not string by string as serde_json does on
            // bytes.
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let not_devices = || format!("{} is not a JSON list of devices", file.display());
            // serde_json skips an unknown field's string unread, whatever its encoding: a
            // file that is not UTF-8 throughout is parsed as bytes, as it always was.
            match std::str::from_utf8(&bytes) {
                Ok(text) => serde_json::from_str::<Vec<Device>>(text),
                Err(_) => serde_json::from_slice::<Vec<Device>>(&bytes),
            }
            .with_context(not_devices)?
        }
        None => {
            let root = source
                .sysfs_root
                .clone()
                .unwrap_or_else(|| config.sysfs_root());
            scan(&root)?
        }
    };
    sort_by_address(&mut devices);
    Ok(devices)
}

/// Sorts `devices` by address, stably, moving each record at most once: the order is found
/// on (address, position) keys, then applied by following its cycles. A merge sort of the
/// records themselves moved each of them (a few hundred bytes) once per merge pass, and a
/// file is often out of order (several hosts' inventories, or one edited by hand).
fn sort_by_address(devices: &mut [Device]) {
    if devices.is_sorted_by_key(|d| d.address) {
        return;
    }
    let mut keys: Vec<(PciAddress, u32)> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.address, i as u32))
        .collect();
    // The positions make the keys distinct: unstable is stable here.
    keys.sort_unstable();
    // `from[k]`: where the record that goes to `k` is now.
    let mut from: Vec<u32> = keys.into_iter().map(|(_, i)| i).collect();
    for start in 0..from.len() {
        let mut at = start;
        // Each swap puts one record in its place; a cycle's last is in place by then.
        while from[at] as usize != start && from[at] as usize != at {
            let next = from[at] as usize;
            devices.swap(at, next);
            from[at] = at as u32;
            at = next;
        }
        from[at] = at as u32;
    }
}

fn scan(root: &std::path::Path) -> anyhow::Result<Vec<Device>> {
    let report = pcitrack_discovery::scan(root);
    warn_skipped(&report);
    Ok(report.devices)
}

/// The NUMA node sockets of the tree `source` reads (none for a devices file, whose records
/// carry no topology): what the policies' device facts (`host.get-device-facts`) give as a
/// device's socket.
pub fn read_node_sockets(source: &DeviceSource, config: &Config) -> pcitrack_runtime::NodeSockets {
    if source.devices.is_some() {
        return pcitrack_runtime::NodeSockets::default();
    }
    let root = source
        .sysfs_root
        .clone()
        .unwrap_or_else(|| config.sysfs_root());
    let topology = pcitrack_discovery::numa_topology(&root);
    crate::pipeline::node_sockets(&crate::ops::host_cells(&topology))
}

/// Names every device sysfs could not read, on stderr; the others are used as usual.
pub fn warn_skipped(report: &pcitrack_discovery::ScanReport) {
    for s in &report.skipped {
        eprintln!("pcitrack: skipped {}: {}", s.entry, s.reason);
    }
}

#[cfg(test)]
mod tests {
    use pcitrack_model::{DevType, Device, PciAddress};

    /// Devices in a scrambled order, with repeated addresses told apart by their vendor id
    /// (the file's order among them must stay).
    fn scrambled(n: u32, seed: u64) -> Vec<Device> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        (0..n)
            .map(|i| {
                let r = next() % (n / 2 + 1);
                let address = PciAddress {
                    domain: r / 256,
                    bus: (r % 256) as u8,
                    slot: 0,
                    function: 0,
                };
                Device::new(address, i as u16, 0x154c, DevType::Pci)
            })
            .collect()
    }

    #[test]
    fn sorting_by_address_gives_the_order_of_a_stable_sort() {
        for (n, seed) in [(0, 1), (1, 2), (2, 3), (7, 4), (100, 5), (5000, 6)] {
            let mut ours = scrambled(n, seed);
            let mut stable = ours.clone();
            stable.sort_by_key(|d| d.address);
            super::sort_by_address(&mut ours);
            assert_eq!(ours, stable, "{n} devices");
            // Already in order: left as it is.
            super::sort_by_address(&mut ours);
            assert_eq!(ours, stable, "{n} devices, sorted again");
        }
    }
}
