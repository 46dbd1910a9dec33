//! Vendor, device and class names for `pcitrack discover`'s table, from an offline copy of
//! the pci.ids database (`host/data/pci.ids`, embedded at build time: no network, and the
//! same names on every host).
//!
//! Names are presentation, so they live with the command line rather than in discovery,
//! which reports only the numeric ids sysfs gives.

use std::collections::HashMap;
use std::sync::OnceLock;

static PCI_IDS: &str = include_str!("../../data/pci.ids");

/// The names pci.ids gives, by id.
pub struct PciNames {
    vendors: HashMap<u16, &'static str>,
    devices: HashMap<(u16, u16), &'static str>,
    classes: HashMap<(u8, u8), &'static str>,
}

fn hex(s: &str) -> Option<u16> {
    u16::from_str_radix(s, 16).ok()
}

impl PciNames {
    /// The database, parsed once on first use (the file is 1.3 MB; most commands never print
    /// names).
    pub fn get() -> &'static PciNames {
        static NAMES: OnceLock<PciNames> = OnceLock::new();
        NAMES.get_or_init(|| PciNames::parse(PCI_IDS))
    }

    /// Parses pci.ids text: vendors at the line start, their devices one tab in (subsystems,
    /// two tabs in, are skipped), and `C xx` classes with their subclasses one tab in.
    fn parse(text: &'static str) -> PciNames {
        let mut n = PciNames {
            vendors: HashMap::new(),
            devices: HashMap::new(),
            classes: HashMap::new(),
        };
        let mut vendor = None;
        let mut class: Option<u8> = None;
        for line in text.lines() {
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
    }

    /// The vendor's name, or `Unknown vendor` (as lspci says).
    pub fn vendor(&self, vendor: u16) -> &'static str {
        self.vendors
            .get(&vendor)
            .copied()
            .unwrap_or("Unknown vendor")
    }

    /// The device's name, or `Device` (as lspci says).
    pub fn device(&self, vendor: u16, device: u16) -> &'static str {
        self.devices
            .get(&(vendor, device))
            .copied()
            .unwrap_or("Device")
    }

    /// The name of a class and subclass, or `Class` (as lspci says).
    pub fn class(&self, class: u8, subclass: u8) -> &'static str {
        self.classes
            .get(&(class, subclass))
            .copied()
            .unwrap_or("Class")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_embedded_pci_ids() {
        let n = PciNames::get();
        assert_eq!(n.vendor(0x8086), "Intel Corporation");
        assert_eq!(n.class(0x02, 0x00), "Ethernet controller");
        assert!(
            n.device(0x8086, 0x1572).contains("X710"),
            "{}",
            n.device(0x8086, 0x1572)
        );
        assert_eq!(n.vendor(0x0002), "Unknown vendor");
        assert_eq!(n.device(0x8086, 0xfffe), "Device");
        assert_eq!(n.class(0xfe, 0xfe), "Class");
    }

    #[test]
    fn subsystems_and_class_interfaces_do_not_shadow_devices_or_classes() {
        let text = "# comment\n1234  Vendor A\n\t5678  Device B\n\t\t1234 0001  Subsystem C\n\
                    C 02  Network controller\n\t00  Ethernet controller\n\t\t01  Interface\n";
        let n = PciNames::parse(text);
        assert_eq!(n.vendor(0x1234), "Vendor A");
        assert_eq!(n.device(0x1234, 0x5678), "Device B");
        assert_eq!(n.class(0x02, 0x00), "Ethernet controller");
        assert_eq!(
            n.vendor(0x0002),
            "Unknown vendor",
            "a class is not a vendor"
        );
    }
}
