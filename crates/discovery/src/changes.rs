//! From uevents to inventory changes: bursts are coalesced into one re-read of the devices
//! they touch, and the re-read is compared with what was known.
//!
//! Creating VFs emits add, change and bind for every VF and then a change on the PF; reading
//! sysfs once per event would re-read the same devices many times while they are still
//! settling. So events are gathered until the socket has been quiet for a short window (or a
//! cap is reached), and the affected devices (plus the PF of any VF, whose `sriov_numvfs`
//! changed) are read once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use pcitrack_model::{Device, PciAddress};

use crate::socket::{Received, UeventSource};
use crate::uevent::UEvent;

/// A change in the host's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryChange {
    /// A device appeared.
    Added(Box<Device>),
    /// A device's record changed.
    Changed {
        /// What was known.
        before: Box<Device>,
        /// What sysfs says now.
        after: Box<Device>,
    },
    /// A device disappeared.
    Removed(PciAddress),
}

/// What a burst of uevents asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Burst {
    /// PCI devices named by the events.
    pub affected: BTreeSet<PciAddress>,
    /// The socket overflowed: events were lost, rescan everything.
    pub rescan: bool,
}

impl Burst {
    /// Adds an event; only `SUBSYSTEM=pci` events and vDPA devices' (`SUBSYSTEM=vdpa`) matter.
    pub fn add(&mut self, event: &UEvent) {
        if let Some(a) = event.pci_address() {
            self.affected.insert(a);
        }
    }
}

/// Gathers events from `socket` until it has been quiet for `quiet` or `cap` has passed since
/// the first event. Returns `None` when nothing arrived within `wait`.
///
/// # Errors
///
/// The source failed ([`UeventSource::recv`]); the events gathered so far are lost, and the
/// caller should fall back to rescanning.
pub fn next_burst(
    socket: &dyn UeventSource,
    wait: Duration,
    quiet: Duration,
    cap: Duration,
) -> std::io::Result<Option<Burst>> {
    let mut burst = Burst::default();
    let mut first: Option<Instant> = None;
    loop {
        let timeout = match first {
            None => wait,
            Some(t) => quiet.min(cap.saturating_sub(t.elapsed())),
        };
        match socket.recv(timeout)? {
            Received::Event(e) => burst.add(&e),
            Received::Overflow => burst.rescan = true,
            Received::Dropped(reason) => tracing::warn!("dropped a uevent: {reason}"),
            Received::Timeout => return Ok(first.map(|_| burst)),
        }
        let started = *first.get_or_insert_with(Instant::now);
        if started.elapsed() >= cap {
            return Ok(Some(burst));
        }
    }
}

/// Re-reads the devices `affected` (and the PFs of any VFs among them, known before or now)
/// under `root`, and compares them with `known` (the last inventory).
pub fn changes(
    root: &Path,
    known: &[Device],
    affected: &BTreeSet<PciAddress>,
) -> Vec<InventoryChange> {
    let known: BTreeMap<PciAddress, &Device> = known.iter().map(|d| (d.address, d)).collect();
    let now = crate::scan(root);
    let now: BTreeMap<PciAddress, &Device> = now.devices.iter().map(|d| (d.address, d)).collect();
    let mut wanted = affected.clone();
    for a in affected {
        for d in [known.get(a), now.get(a)].into_iter().flatten() {
            wanted.extend(d.parent_addr);
        }
    }
    wanted
        .into_iter()
        .filter_map(|a| match (known.get(&a), now.get(&a)) {
            (None, Some(d)) => Some(InventoryChange::Added(Box::new((*d).clone()))),
            (Some(_), None) => Some(InventoryChange::Removed(a)),
            (Some(b), Some(d)) if b != d => Some(InventoryChange::Changed {
                before: Box::new((*b).clone()),
                after: Box::new((*d).clone()),
            }),
            _ => None,
        })
        .collect()
}
