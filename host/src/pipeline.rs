//! The one-way flow, wired: discovered devices → policy chains → tracker.
//!
//! This is the only place where the runtime and the tracker meet. They speak the vocabulary's
//! records ([`Assessment`], and the cleanup candidate and verdict of
//! [`pcitrack_model::cleanup`]), so nothing is converted here and neither crate knows the
//! other: the runtime's cleanup chain reaches the tracker through its small
//! [`CleanupPolicy`] trait.

use std::collections::BTreeSet;

use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};
use pcitrack_model::{Assessment, Device, PciAddress};
use pcitrack_runtime::{CleanupOutcome, NodeSockets, PolicySet};
use pcitrack_tracker::{CleanupPolicy, HostNumaCell, Store, SyncReport, Tracker, TrackerError};

/// The runtime's cleanup chain, as the tracker sees it: what the chain said, with the deciding
/// policy named in a keep's reason. Abstentions and the in-use guard are the tracker's.
pub struct RuntimeCleanup<'a>(pub &'a PolicySet);

impl CleanupPolicy for RuntimeCleanup<'_> {
    fn decide(&self, tracked: &[CleanupCandidate], candidates: &[usize]) -> Vec<CleanupVerdict> {
        self.0
            .cleanup(tracked, candidates)
            .into_iter()
            .map(CleanupOutcome::into_verdict)
            .collect()
    }
}

/// The sockets of the host's NUMA cells (read from sysfs, `ops::host_cells`) as the
/// policies' device facts give them (`host.get-device-facts`): the one topology the claims'
/// `socket` policy and the policies see.
pub fn node_sockets(cells: &[HostNumaCell]) -> NodeSockets {
    cells.iter().map(|c| (c.id, c.socket)).collect()
}

/// Runs the matcher and tagger chains over `devices` (sorted by address, as the contract
/// promises policies): each device with its verdict and, for operators, the reason.
pub fn evaluate(set: &PolicySet, devices: &[Device]) -> Vec<Assessment> {
    set.assessments(devices.to_vec())
}

/// One reconcile pass: assess `devices` and bring the tracker in line with them.
pub fn sync<S: Store>(
    tracker: &mut Tracker<S>,
    set: &PolicySet,
    devices: &[Device],
) -> Result<SyncReport, TrackerError> {
    let assessed = evaluate(set, devices);
    tracker.sync(&assessed, &RuntimeCleanup(set))
}

/// The tracker half of an incremental reconcile pass: brings the devices of `scope` (a
/// partial rescan's, see `pcitrack_discovery::rescan`) in line with `assessed` (what
/// [`evaluate_some`] gave for them) by the full sync's rules ([`Tracker::sync_some`]). The
/// agent assesses first and takes the tracker's lock only for this half.
///
/// # Errors
///
/// The tracker's ([`TrackerError::Store`]); nothing is written then.
pub fn sync_some<S: Store>(
    tracker: &mut Tracker<S>,
    set: &PolicySet,
    assessed: &[Assessment],
    scope: &BTreeSet<PciAddress>,
) -> Result<SyncReport, TrackerError> {
    tracker.sync_some(assessed, scope, &RuntimeCleanup(set))
}

/// The assessment half of an incremental reconcile pass: the devices of `scope` that
/// `inventory` (the whole host, sorted by address, the rescan patched in with [`patch`])
/// holds, assessed within all of it (the policies see every device, as in a full pass), in
/// order. Needs no tracker, so the agent runs it before taking the tracker's lock; then
/// [`sync_some`].
pub fn evaluate_some(
    set: &PolicySet,
    inventory: &[Device],
    scope: &BTreeSet<PciAddress>,
) -> Vec<Assessment> {
    let targets: Vec<u32> = (0..inventory.len() as u32)
        .filter(|&i| scope.contains(&inventory[i as usize].address))
        .collect();
    set.assessments_of(inventory, targets)
}

/// Replaces the entries of `old` (sorted by address) whose address is in `scope` by `new`
/// (sorted, all in `scope`): the inventory after a partial rescan, and the verdict rows after
/// its assessment. When the scope's devices are the same before and after (a device changed,
/// none came or went: most uevents), each is replaced where it stands, found by binary
/// search; otherwise the list is rebuilt in one pass.
pub fn patch<T>(
    mut old: Vec<T>,
    address: impl Fn(&T) -> PciAddress,
    scope: &BTreeSet<PciAddress>,
    new: Vec<T>,
) -> Vec<T> {
    let find = |old: &[T], a: PciAddress| old.binary_search_by_key(&a, &address).ok();
    let at: Vec<usize> = new.iter().filter_map(|n| find(&old, address(n))).collect();
    let in_old = scope.iter().filter(|&&a| find(&old, a).is_some()).count();
    if at.len() == new.len() && in_old == new.len() {
        for (i, n) in at.into_iter().zip(new) {
            old[i] = n;
        }
        return old;
    }
    let mut out = Vec::with_capacity(old.len() + new.len());
    let mut new = new.into_iter().peekable();
    for item in old {
        let a = address(&item);
        while let Some(n) = new.next_if(|n| address(n) < a) {
            out.push(n);
        }
        if !scope.contains(&a) {
            out.push(item);
        }
    }
    out.extend(new);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(function: u8) -> PciAddress {
        PciAddress::new(0, 0x10, 0, function).unwrap()
    }

    /// Rows as (address, version): which version of each row the patch kept.
    fn patched(old: &[(u8, u8)], scope: &[u8], new: &[(u8, u8)]) -> Vec<(PciAddress, u8)> {
        let rows = |r: &[(u8, u8)]| r.iter().map(|&(f, v)| (a(f), v)).collect::<Vec<_>>();
        let scope = scope.iter().map(|&f| a(f)).collect();
        patch(rows(old), |r| r.0, &scope, rows(new))
    }

    #[test]
    fn a_changed_device_is_replaced_where_it_stands() {
        let old = [(0, 0), (1, 0), (2, 0), (3, 0)];
        let out = patched(&old, &[1, 3], &[(1, 1), (3, 1)]);
        assert_eq!(out, [(a(0), 0), (a(1), 1), (a(2), 0), (a(3), 1)]);
    }

    #[test]
    fn devices_that_came_or_went_in_the_scope_rebuild_the_list() {
        let old = [(0, 0), (2, 0), (4, 0)];
        // 2 went, 3 came, 4 changed; 5 (in the scope, never known) stays absent.
        let out = patched(&old, &[2, 3, 4, 5], &[(3, 1), (4, 1)]);
        assert_eq!(out, [(a(0), 0), (a(3), 1), (a(4), 1)]);
        // Same count, different devices: 2 went and 3 came.
        let out = patched(&old, &[2, 3], &[(3, 1)]);
        assert_eq!(out, [(a(0), 0), (a(3), 1), (a(4), 0)]);
    }
}
