//! Where a command's devices come from: the sysfs tree, or a JSON file of device records.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pcitrack_model::Device;

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
            // Read whole, parsed in place into typed records (serde_json checks the UTF-8 as
            // it goes; ids and addresses are read from the buffer, not copied out first).
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            serde_json::from_slice::<Vec<Device>>(&bytes)
                .with_context(|| format!("{} is not a JSON list of devices", file.display()))?
        }
        None => {
            let root = source
                .sysfs_root
                .clone()
                .unwrap_or_else(|| config.sysfs_root());
            scan(&root)?
        }
    };
    devices.sort_by_key(|d| d.address);
    Ok(devices)
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
