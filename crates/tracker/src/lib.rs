//! pcitrack's tracker: what Nova's `PciDevTracker`, `PciDevice` and `PciDeviceStats` do, with
//! state that survives crashes.
//!
//! Data flows one way: discovery produces [`pcitrack_model::Device`] records, the policy
//! runtime assesses them (matcher and tagger verdicts arrive as
//! [`pcitrack_model::Assessment`]s; the cleanup chain answers through [`CleanupPolicy`] in the
//! vocabulary's [`pcitrack_model::cleanup`] terms), and the [`Tracker`] reconciles, persists (SQLite, see
//! [`store`] for the schema), pools and hands devices out. The tracker never reads sysfs and
//! never sees the WASM runtime.
//!
//! Modules, one job each:
//! * [`device_state`]: the claim/allocate/free/remove state machine over a device family.
//! * [`request`]: requests and `[pci] alias` parsing.
//! * [`pools`]: pools of free devices, request filtering and consumption.
//! * [`cleanup`]: the cleanup chain's contract (Nova's rule itself is the vocabulary's).
//! * [`record`]: the tracked-device record.
//! * [`placement`]: a device's Placement resource class and traits, normalised as Nova does.
//! * [`store`]: persistence (the `Store` trait and the SQLite store).
//! * [`sync`]: reconcile with what the host reports (Nova's `_set_hvdevs`).
//! * [`tracker`]: the operations, each one transaction.
//! * [`invariants`]: what must hold of any database, checkable after a crash.
#![deny(missing_docs)]

pub mod cleanup;
pub mod device_state;
pub mod invariants;
pub mod placement;
pub mod pools;
mod prune;
pub mod record;
pub mod request;
mod state;
pub mod store;
pub mod sync;
pub mod tracker;

pub use cleanup::{CleanupPolicy, DefaultCleanup};
pub use device_state::{Operation, TransitionError};
pub use pools::{HostNumaCell, NumaContext, Pool, PoolError, PoolKey, PoolSet, Shortage};
pub use record::{Profile, TagSets, TrackedDevice};
pub use request::{
    Alias, AliasConfigError, AliasError, AliasTable, NumaPolicy, PciRequest, RequestError, Spec,
};
pub use store::{Durability, SqliteStore, Store, StoreError};
pub use sync::{Deferral, Repair, SyncReport};
pub use tracker::{
    CandidateRequest, ClaimedDevice, DeviceFilter, FreeReport, Tracker, TrackerError,
};
