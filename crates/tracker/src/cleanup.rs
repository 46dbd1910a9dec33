//! The cleanup chain's contract: which tracked devices that the host no longer reports (or
//! that the matcher no longer finds assignable) may be deleted.
//!
//! The candidate and the verdict are the vocabulary's ([`pcitrack_model::cleanup`]), shared
//! with the policy runtime and the guests; so is Nova's rule, which decides when every policy
//! abstains. The policy runtime implements [`CleanupPolicy`] over its WASM chain; tests pass
//! closures. What no policy decides is the in-use guard: the tracker never deletes a claimed or
//! allocated device while it is held (see [`crate::Tracker::sync`]).

use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};

/// The cleanup chain, as the tracker calls it.
///
/// `tracked` is every tracked device (context: relatives, owners); `candidates` are indices
/// into it of the devices not reported this sync. The answer has one verdict per candidate,
/// in the same order; [`CleanupVerdict::Abstain`] leaves the candidate to Nova's rule
/// ([`pcitrack_model::cleanup::nova_rule`]). A chain that fails answers `Keep("policy failed:
/// …")` for each; an answer of the wrong length is treated the same way by the tracker.
pub trait CleanupPolicy {
    /// Decides about each candidate.
    fn decide(&self, tracked: &[CleanupCandidate], candidates: &[usize]) -> Vec<CleanupVerdict>;
}

impl<F> CleanupPolicy for F
where
    F: Fn(&[CleanupCandidate], &[usize]) -> Vec<CleanupVerdict>,
{
    fn decide(&self, tracked: &[CleanupCandidate], candidates: &[usize]) -> Vec<CleanupVerdict> {
        self(tracked, candidates)
    }
}

/// A chain with no opinion: every candidate is left to Nova's rule.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultCleanup;

impl CleanupPolicy for DefaultCleanup {
    fn decide(&self, _tracked: &[CleanupCandidate], candidates: &[usize]) -> Vec<CleanupVerdict> {
        vec![CleanupVerdict::Abstain; candidates.len()]
    }
}
