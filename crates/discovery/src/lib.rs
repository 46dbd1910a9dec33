//! Discovery: the host's PCI devices from sysfs, as [`pcitrack_model::Device`] records.
//!
//! Everything is read relative to a root (`/sys` on a host, a fake tree in tests), so a test
//! tree works exactly like the real one. Discovery knows nothing of policies or state: it
//! reports what the host has, and one device it cannot read never hides the others. It reads
//! sysfs and the uevent sockets and nothing else: names (pci.ids) and tables are the CLI's
//! business, and its system calls go through rustix's safe wrappers.
//!
//! Fake sysfs trees for other crates' tests (`fixture`) need the `test-support` feature.
#![deny(missing_docs)]

mod attrs;
pub mod changes;
#[cfg(any(test, feature = "test-support"))]
pub mod fixture;
pub mod relay;
pub mod rescan;
mod scan;
pub mod socket;
pub mod topology;
pub mod uevent;
pub mod vpd;

pub use rescan::{Rescan, rescan};
pub use scan::{ScanReport, Skipped, scan};
pub use topology::{NumaNode, Topology, numa_topology};
