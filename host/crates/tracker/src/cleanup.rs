//! The cleanup chain's contract: which tracked devices that the host no longer reports (or
//! that the matcher no longer finds assignable) may be deleted.
//!
//! The policy runtime implements [`CleanupPolicy`] over its WASM chain; tests pass closures.
//! Whatever a policy says, the tracker never deletes a claimed or allocated device, nor one an
//! instance still owns: see [`crate::Tracker::sync`].

use pcitrack_model::{DevType, DeviceStatus, PciAddress};
use serde::Serialize;

/// What a cleanup policy sees of one tracked device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackedView {
    /// The device.
    pub address: PciAddress,
    /// PCI vendor id.
    pub vendor_id: u16,
    /// PCI device id.
    pub product_id: u16,
    /// Its type.
    pub dev_type: DevType,
    /// Its status before this sync.
    pub status: DeviceStatus,
    /// The instance holding it.
    pub owner: Option<String>,
    /// Its PF, for a VF or vDPA device.
    pub parent_addr: Option<PciAddress>,
    /// Whether this sync reported it as assignable.
    pub reported: bool,
    /// Consecutive syncs, this one included, that did not report it (0 when reported).
    pub missing_syncs: u32,
}

/// One verdict about one candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CleanupDecision {
    /// Delete the device (deferred until freed when it is in use).
    Delete,
    /// Keep it, for this reason (logged and reported).
    Keep(String),
    /// No opinion: the next policy in the chain, or the built-in default, decides.
    Abstain,
}

/// The cleanup chain, as the tracker calls it.
///
/// `tracked` is every tracked device (context: relatives, owners); `candidates` are indices
/// into it of the devices not reported this sync. The answer has one decision per candidate,
/// in the same order. A chain that fails answers `Keep("policy failed: …")` for each; an answer
/// of the wrong length is treated the same way by the tracker.
pub trait CleanupPolicy {
    /// Decides about each candidate.
    fn decide(&self, tracked: &[TrackedView], candidates: &[usize]) -> Vec<CleanupDecision>;
}

impl<F> CleanupPolicy for F
where
    F: Fn(&[TrackedView], &[usize]) -> Vec<CleanupDecision>,
{
    fn decide(&self, tracked: &[TrackedView], candidates: &[usize]) -> Vec<CleanupDecision> {
        self(tracked, candidates)
    }
}

/// A chain with no opinion: every candidate gets the built-in default.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultCleanup;

impl CleanupPolicy for DefaultCleanup {
    fn decide(&self, _tracked: &[TrackedView], candidates: &[usize]) -> Vec<CleanupDecision> {
        vec![CleanupDecision::Abstain; candidates.len()]
    }
}

/// The built-in default, Nova's seed rule (284ea72e96): an unreported device is deleted when
/// it is available, unavailable or unclaimable and nobody owns it; otherwise it is kept.
pub fn default_decision(view: &TrackedView) -> CleanupDecision {
    use DeviceStatus::*;
    match (&view.status, &view.owner) {
        (Available | Unavailable | Unclaimable, None) => CleanupDecision::Delete,
        (status, Some(owner)) => {
            CleanupDecision::Keep(format!("default rule: {status} and owned by {owner}"))
        }
        (status, None) => CleanupDecision::Keep(format!("default rule: {status}")),
    }
}
