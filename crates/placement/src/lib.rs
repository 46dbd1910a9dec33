//! pcitrack's PCI-in-Placement view, as a library: from the tracked devices and the host
//! name, the resource providers Nova 34 would report to OpenStack Placement
//! (`nova/compute/pci_placement_translator.py`), Nova's configuration guards with Nova's
//! messages, and the minimal changes that bring Placement in step. Pure data: no HTTP, no
//! clock, no randomness beyond the uuids of new providers.
//!
//! Data flows one way: the tracker's [`pcitrack_tracker::TrackedDevice`]s and what Placement
//! holds ([`ProviderTree`], read by a client) go into [`view()`], which gives the
//! [`PciView`]; [`diff()`] turns the view and the same tree into [`Change`]s for the client to
//! send. Resource classes and traits are the tracker's ([`pcitrack_tracker::placement`]):
//! this crate names providers and counts devices, it does not re-normalise names.
//!
//! Modules, one job each:
//! * [`tree`]: what Placement holds (providers, inventories, traits, usages).
//! * [`view`]: the providers to report, and Nova's guards.
//! * [`diff`]: the changes, in the order to send them.
//! * [`client`]: Placement's REST API (blocking, `ureq`): read a tree, send changes, read a
//!   consumer's allocations.
//! * [`auth`]: a fixed token or Keystone v3 password authentication.
//! * [`reporter`]: one report, and the thread that keeps Placement in step.
#![deny(missing_docs)]

pub mod auth;
pub mod client;
pub mod diff;
pub mod reporter;
pub mod tree;
pub mod view;

pub use auth::{Auth, KeystonePassword};
pub use client::{Allocations, ApplyError, ClientConfig, ClientError, PlacementClient};
pub use reporter::{
    MAX_ATTEMPTS, Persist, ReportError, ReportInput, ReportOutcome, ReportState, ReportStatus,
    Reporter, ReporterHandle, ReporterOptions,
};

pub use diff::{Change, diff};
pub use tree::{Inventory, OWNER_NOVA, OWNER_TRAIT, ProviderTree, ResourceProvider};
pub use view::{
    PciProvider, PciView, ProviderAllocation, ViewError, ViewInput, WantedInventory,
    ensure_no_devname_specs, provider_name, view,
};
