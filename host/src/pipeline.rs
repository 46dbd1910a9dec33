//! The one-way flow, wired: discovered devices → policy chains → tracker.
//!
//! This is the only place where the runtime and the tracker meet. They speak the vocabulary's
//! records ([`Assessment`], and the cleanup candidate and verdict of
//! [`pcitrack_model::cleanup`]), so nothing is converted here and neither crate knows the
//! other: the runtime's cleanup chain reaches the tracker through its small
//! [`CleanupPolicy`] trait.

use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};
use pcitrack_model::{Assessment, Device};
use pcitrack_runtime::{CleanupOutcome, PolicySet};
use pcitrack_tracker::{CleanupPolicy, Store, SyncReport, Tracker, TrackerError};

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
