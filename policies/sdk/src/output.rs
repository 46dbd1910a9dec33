//! Where a policy writes its verdicts.
//!
//! Verdicts cross back into the host as one small enum per device plus tables of tag sets
//! and reasons: a string crosses once per batch, not once per device, which is most of the
//! cost of a call when thousands of devices get the same answer.

use crate::Tag;

/// A matcher's verdict on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchVerdict {
    /// No opinion: the next matcher decides.
    Abstain,
    /// Assignable, with the tag set of this index.
    Assign(u32),
    /// Not assignable, for the reason of this index.
    Reject(u32),
}

/// A tagger's verdict on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagVerdict {
    /// Tags stay as they are.
    Abstain,
    /// Tags become the set of this index.
    Retag(u32),
    /// Not assignable after all, for the reason of this index.
    Reject(u32),
}

/// A cleanup policy's verdict on one device as it crosses the contract (a keep's reason is
/// an index into the batch's table). Policies write verdicts through [`CleanupOutput`]; the
/// verdict itself is the vocabulary's [`pcitrack_model::cleanup::CleanupVerdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupVerdict {
    /// No opinion.
    Abstain,
    /// Delete the device (a claimed or allocated one when it is freed).
    Delete,
    /// Keep it, for the reason of this index.
    Keep(u32),
}

/// A table of strings handed out by index, with reuse of equal entries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Reasons(Vec<String>);

impl Reasons {
    /// The index of `reason`, added if new. Policies use a handful of reasons, so a linear
    /// search beats hashing here.
    fn intern(&mut self, reason: &str) -> u32 {
        match self.0.iter().position(|r| r == reason) {
            Some(i) => i as u32,
            None => {
                self.0.push(reason.to_string());
                (self.0.len() - 1) as u32
            }
        }
    }
}

/// A matcher's answers for one batch, in the order of the targets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MatchOutput {
    tag_sets: Vec<Vec<Tag>>,
    reasons: Reasons,
    verdicts: Vec<MatchVerdict>,
}

impl MatchOutput {
    /// An empty output with room for `n` verdicts.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            verdicts: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    /// Registers a tag set and returns its index for [`MatchOutput::assign`]. Register each
    /// distinct set once (for example one per spec), not once per device.
    pub fn add_tag_set(&mut self, tags: Vec<Tag>) -> u32 {
        self.tag_sets.push(tags);
        (self.tag_sets.len() - 1) as u32
    }

    /// The next target is assignable with the tag set `tag_set`.
    pub fn assign(&mut self, tag_set: u32) {
        self.verdicts.push(MatchVerdict::Assign(tag_set));
    }

    /// The next target is not assignable, because of `reason`.
    pub fn reject(&mut self, reason: &str) {
        let i = self.reasons.intern(reason);
        self.verdicts.push(MatchVerdict::Reject(i));
    }

    /// No opinion on the next target.
    pub fn abstain(&mut self) {
        self.verdicts.push(MatchVerdict::Abstain);
    }

    /// The verdicts so far.
    pub fn verdicts(&self) -> &[MatchVerdict] {
        &self.verdicts
    }

    /// The tag set of an [`MatchVerdict::Assign`].
    pub fn tag_set(&self, index: u32) -> &[Tag] {
        &self.tag_sets[index as usize]
    }

    /// The reason of a [`MatchVerdict::Reject`].
    pub fn reason(&self, index: u32) -> &str {
        &self.reasons.0[index as usize]
    }

    /// Takes the output apart: tag sets, reasons, verdicts.
    pub fn into_parts(self) -> (Vec<Vec<Tag>>, Vec<String>, Vec<MatchVerdict>) {
        (self.tag_sets, self.reasons.0, self.verdicts)
    }
}

/// A tagger's answers for one batch, in the order of the candidates.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TagOutput {
    tag_sets: Vec<Vec<Tag>>,
    reasons: Reasons,
    verdicts: Vec<TagVerdict>,
}

impl TagOutput {
    /// An empty output with room for `n` verdicts.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            verdicts: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    /// The next candidate's tags become `tags`. Equal consecutive sets are sent once.
    pub fn retag(&mut self, tags: Vec<Tag>) {
        if self.tag_sets.last() != Some(&tags) {
            self.tag_sets.push(tags);
        }
        self.verdicts
            .push(TagVerdict::Retag((self.tag_sets.len() - 1) as u32));
    }

    /// The next candidate is not assignable after all, because of `reason`.
    pub fn reject(&mut self, reason: &str) {
        let i = self.reasons.intern(reason);
        self.verdicts.push(TagVerdict::Reject(i));
    }

    /// The next candidate keeps its tags.
    pub fn abstain(&mut self) {
        self.verdicts.push(TagVerdict::Abstain);
    }

    /// The verdicts so far.
    pub fn verdicts(&self) -> &[TagVerdict] {
        &self.verdicts
    }

    /// The tag set of a [`TagVerdict::Retag`].
    pub fn tag_set(&self, index: u32) -> &[Tag] {
        &self.tag_sets[index as usize]
    }

    /// The reason of a [`TagVerdict::Reject`].
    pub fn reason(&self, index: u32) -> &str {
        &self.reasons.0[index as usize]
    }

    /// Takes the output apart: tag sets, reasons, verdicts.
    pub fn into_parts(self) -> (Vec<Vec<Tag>>, Vec<String>, Vec<TagVerdict>) {
        (self.tag_sets, self.reasons.0, self.verdicts)
    }
}

/// A cleanup policy's answers for one batch, in the order of the candidates.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupOutput {
    reasons: Reasons,
    verdicts: Vec<CleanupVerdict>,
}

impl CleanupOutput {
    /// An empty output with room for `n` verdicts.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            verdicts: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    /// The next candidate may be deleted.
    pub fn delete(&mut self) {
        self.verdicts.push(CleanupVerdict::Delete);
    }

    /// The next candidate is kept, because of `reason`.
    pub fn keep(&mut self, reason: &str) {
        let i = self.reasons.intern(reason);
        self.verdicts.push(CleanupVerdict::Keep(i));
    }

    /// No opinion on the next candidate.
    pub fn abstain(&mut self) {
        self.verdicts.push(CleanupVerdict::Abstain);
    }

    /// The next candidate gets `verdict`, in the vocabulary's terms (for example
    /// [`crate::TrackedDevice::nova_rule`]'s answer).
    pub fn push(&mut self, verdict: pcitrack_model::cleanup::CleanupVerdict) {
        use pcitrack_model::cleanup::CleanupVerdict as V;
        match verdict {
            V::Delete => self.delete(),
            V::Keep(reason) => self.keep(&reason),
            V::Abstain => self.abstain(),
        }
    }

    /// The verdicts so far.
    pub fn verdicts(&self) -> &[CleanupVerdict] {
        &self.verdicts
    }

    /// The reason of a [`CleanupVerdict::Keep`].
    pub fn reason(&self, index: u32) -> &str {
        &self.reasons.0[index as usize]
    }

    /// Takes the output apart: reasons, verdicts.
    pub fn into_parts(self) -> (Vec<String>, Vec<CleanupVerdict>) {
        (self.reasons.0, self.verdicts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_cross_once_however_many_devices_share_them() {
        let mut out = CleanupOutput::with_capacity(3);
        out.keep("in use");
        out.delete();
        out.keep("in use");
        let (reasons, verdicts) = out.into_parts();
        assert_eq!(reasons, vec!["in use".to_string()]);
        assert_eq!(
            verdicts,
            vec![
                CleanupVerdict::Keep(0),
                CleanupVerdict::Delete,
                CleanupVerdict::Keep(0)
            ]
        );
    }

    #[test]
    fn vocabulary_verdicts_are_written_like_their_calls() {
        use pcitrack_model::cleanup::CleanupVerdict as V;
        let mut out = CleanupOutput::default();
        out.push(V::Keep("owned".into()));
        out.push(V::Delete);
        out.push(V::Abstain);
        out.push(V::Keep("owned".into()));
        let (reasons, verdicts) = out.into_parts();
        assert_eq!(reasons, vec!["owned".to_string()]);
        assert_eq!(
            verdicts,
            vec![
                CleanupVerdict::Keep(0),
                CleanupVerdict::Delete,
                CleanupVerdict::Abstain,
                CleanupVerdict::Keep(0)
            ]
        );
    }

    #[test]
    fn equal_consecutive_tag_sets_are_sent_once() {
        let mut out = TagOutput::default();
        out.retag(vec![Tag::new("a", "1")]);
        out.retag(vec![Tag::new("a", "1")]);
        out.retag(vec![Tag::new("a", "2")]);
        let (sets, _, verdicts) = out.into_parts();
        assert_eq!(sets.len(), 2);
        assert_eq!(
            verdicts,
            vec![
                TagVerdict::Retag(0),
                TagVerdict::Retag(0),
                TagVerdict::Retag(1)
            ]
        );
    }
}
