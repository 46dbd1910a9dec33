//! `pcitrack discover`: the host's PCI devices, as sysfs describes them, as JSON records or
//! as an `lspci -nn`-like table with names from pci.ids (`pci_names.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use pcitrack_discovery::ScanReport;
use pcitrack_model::DevType;

use super::output::{Format, out, write_json_rows};
use super::pci_names::PciNames;
use crate::config::Config;

/// `pcitrack discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Root of the sysfs tree (default: the configuration's, else /sys).
    #[arg(long, value_name = "DIR")]
    sysfs_root: Option<PathBuf>,
    /// Output format: `table` (like `lspci -nn`, with SR-IOV relations and a summary) or
    /// `json` (one record per device, Nova's field names, sorted by address).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Scans and prints. Devices that could not be read are skipped with a warning naming them
/// on stderr; the exit code stays 0 so that one bad device does not hide the others.
pub fn discover(args: DiscoverArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let root = args.sysfs_root.unwrap_or_else(|| config.sysfs_root());
    let report = pcitrack_discovery::scan(&root);
    super::source::warn_skipped(&report);
    match args.format {
        // The same bytes as one list, serialised on the cores the scan used.
        Format::Json => write_json_rows(report.devices.len(), |i| &report.devices[i])?,
        Format::Table => out!("{}", render_table(&report)),
    }
    // The process ends here: freeing a record per device one by one would only delay it.
    std::mem::forget(report);
    Ok(ExitCode::SUCCESS)
}

/// One line per device, like `lspci -nn`, with the SR-IOV relations, the driver and the
/// first network interface, then a summary and the skipped entries.
fn render_table(report: &ScanReport) -> String {
    let names = PciNames::get();
    let mut out = String::new();
    for d in &report.devices {
        let class = (d.class_code >> 16) as u8;
        let sub = (d.class_code >> 8) as u8;
        out.push_str(&format!(
            "{} {} [{class:02x}{sub:02x}]: {} {} [{:04x}:{:04x}]",
            d.address,
            names.class(class, sub),
            names.vendor(d.vendor_id),
            names.device(d.vendor_id, d.product_id),
            d.vendor_id,
            d.product_id
        ));
        if let Some(rev) = d.revision {
            out.push_str(&format!(" (rev {rev:02x})"));
        }
        match d.dev_type {
            DevType::Pf => out.push_str(&format!(
                "  PF {}/{} VFs",
                d.sriov_numvfs.unwrap_or(0),
                d.sriov_totalvfs.unwrap_or(0)
            )),
            DevType::Vf | DevType::Vdpa => {
                if let Some(pf) = d.parent_addr {
                    match d.vf_index {
                        Some(i) => out.push_str(&format!("  VF {i} of {pf}")),
                        None => out.push_str(&format!("  VF of {pf}")),
                    }
                }
            }
            DevType::Pci => {}
        }
        if let Some(driver) = &d.driver {
            out.push_str(&format!("  driver={driver}"));
        }
        if let Some(ifname) = &d.ifname {
            out.push_str(&format!("  if={ifname}"));
        }
        if let Some(sn) = &d.card_serial_number {
            out.push_str(&format!("  sn={sn}"));
        }
        out.push('\n');
    }
    let count = |t: DevType| report.devices.iter().filter(|d| d.dev_type == t).count();
    out.push_str(&format!(
        "{} devices: {} PF, {} VF, {} PCI; {} skipped\n",
        report.devices.len(),
        count(DevType::Pf),
        count(DevType::Vf),
        count(DevType::Pci),
        report.skipped.len()
    ));
    for s in &report.skipped {
        out.push_str(&format!("skipped {}: {}\n", s.entry, s.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use pcitrack_discovery::fixture::FakeSysfs;
    use pcitrack_discovery::scan;

    use super::*;

    #[test]
    fn the_table_names_devices_and_shows_sr_iov_relations() {
        let t = FakeSysfs::new();
        t.add_pf_with_vfs("0000:3b:00.0", 0x8086, 0x1572, 0x154c, 2);
        t.add_broken("0000:99:00.0", &[]);
        let table = render_table(&scan(t.root()));
        assert!(
            table.contains("0000:3b:00.0 Ethernet controller [0200]: Intel Corporation"),
            "{table}"
        );
        assert!(
            table.contains("[8086:1572]") && table.contains("PF 2/2 VFs"),
            "{table}"
        );
        assert!(
            table.contains("0000:3c:00.1") && table.contains("VF 1 of 0000:3b:00.0"),
            "{table}"
        );
        assert!(
            table.contains("3 devices: 1 PF, 2 VF, 0 PCI; 1 skipped"),
            "{table}"
        );
        assert!(
            table.contains("skipped 0000:99:00.0: vendor id missing or malformed"),
            "{table}"
        );
    }
}
