//! Discovery: the host's PCI devices from sysfs, as [`pcitrack_model::Device`] records.
//!
//! Everything is read relative to a root (`/sys` on a host, a fake tree in tests), so a test
//! tree works exactly like the real one. Discovery knows nothing of policies or state: it
//! reports what the host has, and one device it cannot read never hides the others.
#![deny(missing_docs)]

mod attrs;
pub mod changes;
pub mod fixture;
pub mod relay;
mod scan;
pub mod socket;
mod table;
pub mod uevent;
pub mod vpd;

pub use scan::{ScanReport, Skipped, scan};
pub use table::render_table;
