//! The device facts of contract 0.1.1 (`host.get-device-facts`): each inventory device's
//! IOMMU group, bound driver and socket, which the inventory's packed records do not carry.
//!
//! They are asked for, not pushed: a policy that never calls [`DeviceFacts::read`] does not
//! import the function, loads in any agent of the 0.1 track, and costs the agent nothing for
//! them. One that calls it needs an agent of 0.1.1 or later.

use pcitrack_model::packed::facts::PackedFacts;

use crate::bindings::pcitrack::policy::host as wire;

/// The facts about the devices of the inventory of the call in flight, by device index (the
/// index into [`crate::Inventory::devices`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceFacts {
    words: Vec<u64>,
    drivers: Vec<String>,
}

impl DeviceFacts {
    /// Asks the host for the facts of the current call's inventory (one copy of the table
    /// per call: call it once per `evaluate`). Natively (unit tests) there is no host and the
    /// answer is empty: every fact reads as unknown; build facts with
    /// [`DeviceFacts::from_rows`] instead.
    pub fn read() -> Self {
        #[cfg(target_family = "wasm")]
        return Self::from_wire(wire::get_device_facts());
        #[cfg(not(target_family = "wasm"))]
        Self::default()
    }

    /// Decodes the facts as they crossed the boundary.
    pub fn from_wire(facts: wire::DeviceFacts) -> Self {
        DeviceFacts {
            words: facts.devices,
            drivers: facts.drivers,
        }
    }

    /// Facts from `(iommu group, driver, socket)` rows, one per device in inventory order:
    /// what the host would send, for unit tests.
    pub fn from_rows(rows: &[(Option<u32>, Option<&str>, Option<u32>)]) -> Self {
        let mut drivers: Vec<String> = Vec::new();
        let words = rows
            .iter()
            .map(|&(iommu_group, driver, socket)| {
                let driver = driver.map(|name| {
                    match drivers.iter().position(|d| d == name) {
                        Some(at) => at,
                        None => {
                            drivers.push(name.to_string());
                            drivers.len() - 1
                        }
                    }
                    .try_into()
                    .expect("fewer than 65535 drivers")
                });
                PackedFacts {
                    iommu_group,
                    socket,
                    driver,
                }
                .pack()
            })
            .collect();
        DeviceFacts { words, drivers }
    }

    fn packed(&self, device: usize) -> PackedFacts {
        self.words
            .get(device)
            .map(|&w| PackedFacts::unpack(w))
            .unwrap_or_default()
    }

    /// The IOMMU group of the device at `device` (sysfs `iommu_group`), when it has one.
    pub fn iommu_group(&self, device: usize) -> Option<u32> {
        self.packed(device).iommu_group
    }

    /// The driver bound to the device at `device` (sysfs `driver`), when one is.
    pub fn driver(&self, device: usize) -> Option<&str> {
        let at = self.packed(device).driver?;
        self.drivers.get(at as usize).map(String::as_str)
    }

    /// The socket (physical package) of the NUMA node of the device at `device`, when the
    /// host knows it.
    pub fn socket(&self, device: usize) -> Option<u32> {
        self.packed(device).socket
    }

    /// How many devices the facts cover (the inventory's, or zero outside a matcher or
    /// tagger call).
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when they cover no device.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_group_driver_and_socket_by_device_index() {
        let facts = DeviceFacts::from_rows(&[
            (Some(42), Some("vfio-pci"), Some(1)),
            (None, None, None),
            (Some(7), Some("vfio-pci"), None),
        ]);
        assert_eq!(facts.len(), 3);
        assert_eq!(
            (facts.iommu_group(0), facts.driver(0), facts.socket(0)),
            (Some(42), Some("vfio-pci"), Some(1))
        );
        assert_eq!(
            (facts.iommu_group(1), facts.driver(1), facts.socket(1)),
            (None, None, None)
        );
        assert_eq!(facts.driver(2), Some("vfio-pci"));
        // Past the end (or outside an evaluation), every fact is unknown.
        assert_eq!(facts.iommu_group(9), None);
        assert!(DeviceFacts::read().is_empty());
    }
}
