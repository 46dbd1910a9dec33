//! The one-way flow, wired: discovered devices → policy chains → tracker.
//!
//! This is the only place where the runtime and the tracker meet, through the tracker's
//! small [`CleanupPolicy`] trait and its plain [`Assessed`] records, so neither crate knows
//! the other.

use pcitrack_model::Device;
use pcitrack_runtime::{CleanupCandidate, CleanupVerdict, PolicySet};
use pcitrack_tracker::{
    Assessed, CleanupDecision, CleanupPolicy, Store, SyncReport, TrackedView, Tracker, TrackerError,
};

/// The runtime's cleanup chain, as the tracker sees it.
pub struct RuntimeCleanup<'a>(pub &'a PolicySet);

impl CleanupPolicy for RuntimeCleanup<'_> {
    fn decide(&self, tracked: &[TrackedView], candidates: &[usize]) -> Vec<CleanupDecision> {
        let tracked: Vec<CleanupCandidate> = tracked
            .iter()
            .map(|t| CleanupCandidate {
                address: t.address,
                vendor_id: t.vendor_id,
                product_id: t.product_id,
                dev_type: t.dev_type,
                status: t.status,
                owner: t.owner.clone(),
                parent_addr: t.parent_addr,
                reported: t.reported,
                missing_syncs: t.missing_syncs,
            })
            .collect();
        self.0
            .cleanup(&tracked, candidates)
            .into_iter()
            .map(|o| match o.verdict {
                CleanupVerdict::Delete => CleanupDecision::Delete,
                CleanupVerdict::Keep(reason) => {
                    CleanupDecision::Keep(format!("{reason} (policy {})", o.decided_by))
                }
            })
            .collect()
    }
}

/// A device's assessment with the reason it is not assignable, for operators.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// What the tracker takes.
    pub assessed: Assessed,
    /// Why it is not assignable, or which failure forced a fallback.
    pub reason: Option<String>,
}

/// Runs the matcher and tagger chains over `devices` (sorted here by address, as the
/// contract promises policies), keeping the reasons.
pub fn evaluate(set: &PolicySet, devices: &[Device]) -> Vec<Verdict> {
    let mut devices = devices.to_vec();
    devices.sort_by_key(|d| d.address);
    let assessments = set.assess(&devices);
    devices
        .into_iter()
        .zip(assessments)
        .map(|(device, a)| Verdict {
            assessed: Assessed {
                device,
                assignable: a.assignable,
                tags: a.tags.iter().cloned().collect(),
                remote_managed: a.remote_managed,
                decided_by: a.decided_by.to_string(),
            },
            reason: a.reason.map(|r| r.to_string()),
        })
        .collect()
}

/// Runs the matcher and tagger chains over `devices` (sorted here by address).
pub fn assess(set: &PolicySet, devices: &[Device]) -> Vec<Assessed> {
    evaluate(set, devices)
        .into_iter()
        .map(|v| v.assessed)
        .collect()
}

/// One reconcile pass: assess `devices` and bring the tracker in line with them.
pub fn sync<S: Store>(
    tracker: &mut Tracker<S>,
    set: &PolicySet,
    devices: &[Device],
) -> Result<SyncReport, TrackerError> {
    let assessed = assess(set, devices);
    tracker.sync(&assessed, &RuntimeCleanup(set))
}
