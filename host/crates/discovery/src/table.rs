//! The `lspci -nn`-like table, with names from an offline copy of the pci.ids database
//! (embedded at build time: no network, and the same names on every host).

use std::collections::HashMap;
use std::sync::OnceLock;

use pcitrack_model::DevType;

use crate::ScanReport;

static PCI_IDS: &str = include_str!("../data/pci.ids");

struct Names {
    vendors: HashMap<u16, &'static str>,
    devices: HashMap<(u16, u16), &'static str>,
    classes: HashMap<(u8, u8), &'static str>,
}

fn hex(s: &str) -> Option<u16> {
    u16::from_str_radix(s, 16).ok()
}

/// Parsed once, on first use (the file is 1.3 MB; most commands never print names).
fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut n = Names {
            vendors: HashMap::new(),
            devices: HashMap::new(),
            classes: HashMap::new(),
        };
        let mut vendor = None;
        let mut class: Option<u8> = None;
        for line in PCI_IDS.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("C ") {
                vendor = None;
                class = rest.get(..2).and_then(|c| u8::from_str_radix(c, 16).ok());
            } else if let Some(rest) = line.strip_prefix('\t') {
                if rest.starts_with('\t') {
                    continue;
                }
                let (id, name) = (rest.get(..4), rest.get(4..).map(str::trim));
                if let (Some(v), Some(id), Some(name)) = (vendor, id.and_then(hex), name) {
                    n.devices.insert((v, id), name);
                } else if let (Some(c), Some(sub), Some(name)) =
                    (class, rest.get(..2), rest.get(2..))
                    && let Ok(sub) = u8::from_str_radix(sub, 16)
                {
                    n.classes.insert((c, sub), name.trim());
                }
            } else if let (Some(id), Some(name)) = (line.get(..4).and_then(hex), line.get(4..)) {
                class = None;
                vendor = Some(id);
                n.vendors.insert(id, name.trim());
            }
        }
        n
    })
}

/// One line per device, like `lspci -nn`, with the SR-IOV relations, the driver and the
/// first network interface, then a summary and the skipped entries.
pub fn render_table(report: &ScanReport) -> String {
    let names = names();
    let mut out = String::new();
    for d in &report.devices {
        let class = (d.class_code >> 16) as u8;
        let sub = (d.class_code >> 8) as u8;
        let class_name = names.classes.get(&(class, sub)).copied().unwrap_or("Class");
        let vendor = names
            .vendors
            .get(&d.vendor_id)
            .copied()
            .unwrap_or("Unknown vendor");
        let device = names
            .devices
            .get(&(d.vendor_id, d.product_id))
            .copied()
            .unwrap_or("Device");
        out.push_str(&format!(
            "{} {class_name} [{class:02x}{sub:02x}]: {vendor} {device} [{:04x}:{:04x}]",
            d.address, d.vendor_id, d.product_id
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
