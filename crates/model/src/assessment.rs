//! The record of the "assessed" stage: a discovered device with the matcher and tagger
//! chains' verdict, as the policy runtime produces it and the tracker takes it.

use std::collections::BTreeMap;

use crate::Device;

/// A discovered device and what the policies decided about it.
///
/// One record from the runtime's output to the tracker's input (and the agent's
/// `/v1/verdicts`): the tracker keeps everything but the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The discovered record.
    pub device: Device,
    /// True when the device may be handed out; a device that is not assignable counts as
    /// not reported.
    pub assignable: bool,
    /// Its tags (pool keys); empty when not assignable.
    pub tags: BTreeMap<String, String>,
    /// The pooling value of `remote_managed` (not a tag): true when the tag reads as true
    /// the way Nova reads it.
    pub remote_managed: bool,
    /// The policy whose verdict decided (a tagger's name when a tagger retagged or
    /// rejected), or `built-in`.
    pub decided_by: String,
    /// Why it is not assignable, or which policy failure forced a fallback; for operators.
    pub reason: Option<String>,
}

impl Assessment {
    /// An assignable device without tags (tests, simple setups).
    pub fn assignable(device: Device) -> Self {
        Self {
            device,
            assignable: true,
            tags: BTreeMap::new(),
            remote_managed: false,
            decided_by: String::new(),
            reason: None,
        }
    }
}
