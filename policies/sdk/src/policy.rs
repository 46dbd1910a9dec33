//! The three kinds of policy, as traits a policy type implements.
//!
//! `init` builds the policy from its configuration and `evaluate` answers one batch. The
//! host gives every evaluation a fresh instance (so a trap or a leak cannot reach the next
//! call), which means `init` runs once per batch: keep it cheap, and do the expensive work
//! (parsing, compiling patterns) there rather than per device.

use crate::{CleanupOutput, Inventory, MatchOutput, PolicyInfo, Tag, TagOutput, TrackedDevice};

/// Decides which devices are assignable, and with which tags.
pub trait Matcher: Sized + 'static {
    /// Name, version and a one-line description.
    fn describe() -> PolicyInfo;
    /// Builds the policy from its configuration; an error reaches the operator verbatim.
    fn init(config: &str) -> Result<Self, String>;
    /// Pushes exactly one verdict per target into `out`, in order. An error means the
    /// configuration cannot be applied to this inventory.
    fn evaluate(
        &self,
        inventory: &Inventory,
        targets: &[u32],
        out: &mut MatchOutput,
    ) -> Result<(), String>;
}

/// A device a matcher found assignable, with its tags so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Index of the device in the inventory.
    pub device: u32,
    /// Its tags (shared with every other device that has the same set).
    pub tags: &'a [Tag],
}

/// Adds or changes tags on assignable devices, or rejects them.
pub trait Tagger: Sized + 'static {
    /// Name, version and a one-line description.
    fn describe() -> PolicyInfo;
    /// Builds the policy from its configuration; an error reaches the operator verbatim.
    fn init(config: &str) -> Result<Self, String>;
    /// Pushes exactly one verdict per candidate into `out`, in order.
    fn evaluate(
        &self,
        inventory: &Inventory,
        candidates: &[Candidate<'_>],
        out: &mut TagOutput,
    ) -> Result<(), String>;
}

/// Decides what happens to tracked devices the host no longer reports.
pub trait Cleanup: Sized + 'static {
    /// Name, version and a one-line description.
    fn describe() -> PolicyInfo;
    /// Builds the policy from its configuration; an error reaches the operator verbatim.
    fn init(config: &str) -> Result<Self, String>;
    /// Pushes exactly one verdict per candidate into `out`, in order. Whatever it says, the
    /// host never deletes a claimed or allocated device while it is held: a delete waits until
    /// the device is freed, a keep keeps it (freed, it becomes available again).
    fn evaluate(
        &self,
        tracked: &[TrackedDevice],
        candidates: &[u32],
        out: &mut CleanupOutput,
    ) -> Result<(), String>;
}
